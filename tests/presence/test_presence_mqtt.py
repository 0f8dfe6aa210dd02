"""The MQTT presence backend with Home Assistant's own payloads: ``mqtt_statestream`` publishes
each entity's bare state, retained, on ``<base_topic>/<domain>/<id>/state`` (``home``,
``not_home``, a zone name, ``unknown``, ``unavailable``). Updates apply at once, not at the
next poll: the poll interval here is 10 minutes, so only the push can explain a change."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from test_presence_service import StartPresence, World, set_auto_arm, start_presence, world

from homesec.contract import AlarmState, SystemSetting
from homesec.settings import BrokerSettings
from support import wait_until

__all__ = ["start_presence", "world"]  # fixtures

BASE = "homeassistant/statestream"
ALICE = f"{BASE}/person/alice/state"
BOB = f"{BASE}/device_tracker/bobs_phone/state"
NEVER = 600.0  # poll interval: no poll happens during a test


class StatestreamHA:
    """Publishes like Home Assistant's mqtt_statestream: QoS 1, retained, the bare state."""

    def __init__(self, settings: BrokerSettings) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.connect(settings.host, settings.port)
        self.client.loop_start()

    def state(self, topic: str, state: str) -> None:
        self.client.publish(topic, state.encode(), qos=1, retain=True).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def ha(broker_settings: BrokerSettings):
    publisher = StatestreamHA(broker_settings)
    yield publisher
    publisher.close()


def mqtt_presence(start: StartPresence):
    return start(
        backend="mqtt",
        poll_seconds=NEVER,
        mqtt={"trackers": {"alice": ALICE, "bob": BOB}},
        people={},
    )


def who(world: World) -> dict[str, bool]:
    last = world.last_presence()
    return {p.name: p.home for p in last.people} if last else {}


def test_tracker_updates_apply_at_once(world: World, start_presence: StartPresence, ha) -> None:
    ha.state(ALICE, "home")  # retained before the service starts: applied on subscribe
    ha.state(BOB, "not_home")
    presence = mqtt_presence(start_presence)
    wait_until(lambda: who(world) == {"alice": True, "bob": False})
    ha.state(BOB, "home")
    wait_until(lambda: who(world) == {"alice": True, "bob": True})
    ha.state(ALICE, "Work")  # a zone: not home
    wait_until(lambda: who(world).get("alice") is False)
    assert presence.metric("homesec_presence_polls_total") >= 3  # one observation per update


def test_unavailable_is_unknown_not_away(world: World, start_presence: StartPresence, ha) -> None:
    """HA's tracker integration going down must not empty the house (and arm it)."""
    ha.state(ALICE, "home")
    ha.state(BOB, "not_home")
    presence = mqtt_presence(start_presence)
    set_auto_arm(world, presence, True)
    wait_until(lambda: who(world).get("alice") is True)
    ha.state(ALICE, "unavailable")
    ha.state(BOB, "unknown")
    wait_until(lambda: presence.metric("homesec_presence_polls_total") >= 3)
    assert who(world).get("alice") is not False
    assert world.owner.alarm.status.state is AlarmState.DISARMED
    # everybody really leaves: the house arms at once (after the grace period)
    ha.state(ALICE, "not_home")
    ha.state(BOB, "not_home")
    wait_until(lambda: world.owner.get(SystemSetting.ARMED), 15)
    assert world.owner.alarm.status.changed_by == "presence"
