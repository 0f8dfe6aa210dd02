"""System state: one owner applies /set commands and republishes; views mirror it; state and
queued commands survive restarts of the owner."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from homesec.contract import SYSTEM_SET, SetCommand, SystemSetting
from homesec.state import SystemStateOwner, SystemStateView
from support import wait_until

ARMED = SystemSetting.ARMED


def start_owner(make_bus, **kwargs) -> tuple[SystemStateOwner, object]:
    bus = make_bus("detector", start=False)
    owner = SystemStateOwner(bus, restore_wait_seconds=0.3, **kwargs)
    bus.start()
    assert bus.wait_connected(10)
    owner.start()
    assert owner.wait_restored(10)
    return owner, bus


def test_set_command_is_applied_and_mirrored(make_bus):
    owner, _ = start_owner(make_bus)
    view_bus = make_bus("slack-gateway", start=False)
    view = SystemStateView(view_bus)
    view_bus.start()
    changes = []
    view.on_change(lambda s, v: changes.append((s, v.value, v.changed_by)))
    wait_until(lambda: view.known(ARMED))
    assert view.get(ARMED) is False
    make_bus("cli").publish(SYSTEM_SET, SetCommand(value=True, source="slack:U1"), setting="armed")
    wait_until(lambda: view.get(ARMED) is True)
    assert owner.get(ARMED) is True
    assert changes[-1] == (ARMED, True, "slack:U1")


def test_bare_on_off_from_home_assistant(make_bus, broker_settings):
    owner, _ = start_owner(make_bus)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(broker_settings.host, broker_settings.port)
    client.loop_start()
    client.publish("homesec/system/notifications/set", b"OFF", qos=1).wait_for_publish(5)
    wait_until(lambda: owner.get(SystemSetting.NOTIFICATIONS) is False)
    client.publish("homesec/system/unknown/set", b"ON", qos=1).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def test_state_restored_after_owner_restart(make_bus):
    owner, bus = start_owner(make_bus)
    owner.set(ARMED, True, "test")
    bus.flush()
    bus.stop()
    owner2, _ = start_owner(make_bus)
    wait_until(lambda: owner2.get(ARMED) is True)


def test_command_sent_while_owner_down_is_applied_on_return(make_bus):
    owner, bus = start_owner(make_bus)
    owner.set(ARMED, False, "test")  # a retained "false" is on the broker
    assert bus.flush()
    bus.stop()
    assert make_bus("presence").publish_confirmed(
        SYSTEM_SET, SetCommand(value=True, source="presence"), setting="armed"
    )
    owner2, _ = start_owner(make_bus)
    wait_until(lambda: owner2.get(ARMED) is True)
    # the stale retained "false" that arrives after the queued command must not win
    time.sleep(0.6)
    assert owner2.get(ARMED) is True
    assert owner2.snapshot()[ARMED].changed_by == "presence"
