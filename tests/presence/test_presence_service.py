"""The presence service on a real Mosquitto, with a detector-side SystemStateOwner playing the
one writer of ``system/*``: the house empties → armed after the grace period, someone returns
→ disarmed, auto-arm off → nothing, backend outage → degraded and nothing."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from presence_fake_router import FakeRouter, cookie_router_config

from homesec.broker import MosquittoProcess
from homesec.bus import Bus
from homesec.contract import (
    PRESENCE,
    SERVICE_STATUS,
    SYSTEM_SET,
    PresenceState,
    ServiceStatus,
    SetCommand,
    SystemSetting,
)
from homesec.settings import BrokerSettings
from homesec.state import SystemStateOwner
from homesec_presence.service import PresenceService
from homesec_presence.settings import PresenceSettings
from support import (
    Collector,
    ServiceProcess,
    ServiceThread,
    assert_module_exits_2_naming,
    wait_until,
)

ALICE_MAC = "aa:bb:cc:dd:ee:01"
BOB_MAC = "aa:bb:cc:dd:ee:02"
GRACE = 1.0
POLL = 0.1
HEADER = "IP address       HW type     Flags       HW address            Mask     Device\n"


def write_arp(path: Path, *macs: str) -> None:
    rows = [
        f"192.168.1.{10 + i}     0x1         0x2         {mac}     *        wlan0\n"
        for i, mac in enumerate(macs)
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(HEADER + "".join(rows))
    os.replace(tmp, path)  # atomic, like the kernel's view


Running = ServiceThread[PresenceService]


@dataclass
class World:
    client: Bus
    owner: SystemStateOwner
    presence: Collector[PresenceState]
    sets: Collector[SetCommand]
    status: Collector[ServiceStatus]
    detector: Bus

    def last_presence(self) -> PresenceState | None:
        items = self.presence.payloads
        return items[-1] if items else None

    def armed(self) -> bool:
        return self.owner.get(SystemSetting.ARMED)


@pytest.fixture
def world(make_bus: Callable[..., Bus]) -> World:
    detector = make_bus("detector", start=False)
    owner = SystemStateOwner(detector, restore_wait_seconds=0.2)
    detector.start()
    assert detector.wait_connected(10)
    owner.start()
    client = make_bus("client", start=False)
    presence: Collector[PresenceState] = Collector()
    sets: Collector[SetCommand] = Collector()
    status: Collector[ServiceStatus] = Collector()
    client.subscribe(PRESENCE, presence)
    client.subscribe(SYSTEM_SET, sets, setting="armed")
    client.subscribe(SERVICE_STATUS, status, service="presence")
    client.start()
    assert client.wait_connected(10)
    assert owner.wait_restored(10)
    return World(client, owner, presence, sets, status, detector)


StartPresence = Callable[..., Running]


@pytest.fixture
def start_presence(
    make_bus: Callable[..., Bus], broker_settings: BrokerSettings, tmp_path: Path
) -> Iterator[StartPresence]:
    running: list[Running] = []

    def start(**overrides: Any) -> Running:
        values: dict[str, Any] = {
            "broker": broker_settings,
            "metrics_port": 0,
            "data_dir": tmp_path,
            "poll_seconds": POLL,
            "away_grace_seconds": GRACE,
            "restore_wait_seconds": 0.3,
            "people": {"alice": [ALICE_MAC], "bob": [BOB_MAC.upper().replace(":", "-")]},
        }
        values.update(overrides)
        settings = PresenceSettings(**values)
        bus = make_bus("presence", start=False)
        handle = ServiceThread(PresenceService(bus, settings, bus.metrics), bus)
        running.append(handle)
        return handle

    yield start
    for handle in running:
        handle.stop()


def set_auto_arm(world: World, presence: Running, value: bool) -> None:
    world.owner.set(SystemSetting.AUTO_ARM, value, "test")
    wait_until(lambda: presence.service.system.get(SystemSetting.AUTO_ARM) is value, 10)


def test_house_empties_then_someone_returns(
    world: World, start_presence: StartPresence, tmp_path: Path
) -> None:
    arp = tmp_path / "arp"
    write_arp(arp, ALICE_MAC)
    presence = start_presence(neighbours={"arp_path": arp})
    set_auto_arm(world, presence, True)
    state = wait_until(lambda: (s := world.last_presence()) and s.anyone_home and s, 10)
    assert {p.name: p.home for p in state.people} == {"alice": True, "bob": False}
    assert state.backend == "neighbours" and state.backend_ok
    assert not world.armed()

    write_arp(arp)  # alice's phone leaves the Wi-Fi
    left_at = time.monotonic()
    wait_until(world.armed, 15)
    # not before the grace period (counted from her last sighting, at most one poll earlier)
    assert time.monotonic() - left_at >= GRACE - POLL
    # the empty house is published before the arm request, but it reaches this client on its
    # own path: the owner may apply the request first
    wait_until(lambda: (s := world.last_presence()) and not s.anyone_home, 5)
    assert [s.value for s in world.sets.wait_for(1)] == [True]
    assert world.sets.payloads[0].source == "presence"
    assert world.owner.snapshot()[SystemSetting.ARMED].changed_by == "presence"

    write_arp(arp, BOB_MAC.upper())  # bob comes home: disarm at once
    wait_until(lambda: not world.armed(), 15)
    assert [s.value for s in world.sets.wait_for(2)] == [True, False]
    assert presence.metric("homesec_presence_arm_requests_total", action="arm") == 1
    assert presence.metric("homesec_presence_arm_requests_total", action="disarm") == 1
    assert presence.metric("homesec_presence_people_home") == 1
    assert presence.metric("homesec_presence_person_home", person="bob") == 1
    assert presence.metric("homesec_presence_backend_up") == 1
    assert presence.metric("homesec_presence_polls_total") > 5


def test_arm_request_that_reached_nobody_is_sent_until_the_detector_applies_it(
    world: World,
    start_presence: StartPresence,
    tmp_path: Path,
    broker: MosquittoProcess,
    make_bus: Callable[..., Bus],
) -> None:
    """The broker came back without its persistence file (no session holds the detector's
    subscriptions) while the detector is still down: the house empties, and the arm request
    reaches nobody. Presence sends it again until the restarted detector applies it."""
    arp = tmp_path / "arp"
    write_arp(arp, ALICE_MAC)
    presence = start_presence(neighbours={"arp_path": arp})
    set_auto_arm(world, presence, True)
    wait_until(lambda: (s := world.last_presence()) and s.anyone_home, 10)
    world.owner.stop()
    world.detector.stop(timeout=1)
    broker.kill()
    (broker.data_dir / "mosquitto.db").unlink(missing_ok=True)
    broker.start()
    wait_until(lambda: presence.metric("homesec_mqtt_connected") == 1, 15)
    write_arp(arp)  # alice leaves while the detector is down
    wait_until(lambda: presence.metric("homesec_presence_arm_requests_total", action="arm"), 15)
    time.sleep(1.0)
    detector = make_bus("detector", start=False)
    owner = SystemStateOwner(detector, restore_wait_seconds=0.2)
    detector.start()
    owner.start()
    assert owner.wait_restored(10)
    wait_until(lambda: owner.get(SystemSetting.ARMED), 30)
    assert owner.snapshot()[SystemSetting.ARMED].changed_by == "presence"
    confirmed = {"command": "armed", "outcome": "confirmed"}
    wait_until(lambda: presence.metric("homesec_commands_ended_total", **confirmed) == 1, 10)
    assert presence.metric("homesec_commands_resent_total", command="armed") >= 1
    owner.stop()


def test_auto_arm_off_never_changes_armed(
    world: World, start_presence: StartPresence, tmp_path: Path
) -> None:
    arp = tmp_path / "arp"
    write_arp(arp, ALICE_MAC)
    presence = start_presence(neighbours={"arp_path": arp})
    assert world.owner.get(SystemSetting.AUTO_ARM) is False  # the default
    wait_until(lambda: (s := world.last_presence()) and s.anyone_home, 10)
    write_arp(arp)
    wait_until(lambda: (s := world.last_presence()) and not s.anyone_home, 15)
    time.sleep(0.5)  # a few more polls with the house empty
    write_arp(arp, ALICE_MAC)
    wait_until(lambda: (s := world.last_presence()) and s.anyone_home, 15)
    time.sleep(0.5)
    assert world.sets.payloads == []
    assert not world.armed()
    assert presence.metric("homesec_presence_arm_requests_total", action="arm") == 0


def test_router_outage_degrades_and_never_flips_armed(
    world: World, start_presence: StartPresence
) -> None:
    router = FakeRouter().start()
    try:
        router.state.set_devices([{"mac": ALICE_MAC, "hostname": "alices-phone"}])
        presence = start_presence(backend="router", router=cookie_router_config(router.url))
        set_auto_arm(world, presence, True)
        wait_until(lambda: (s := world.last_presence()) and s.anyone_home, 10)

        router.state.fail_status = 500  # the router breaks, and alice leaves meanwhile
        router.state.set_devices([])
        state = wait_until(lambda: (s := world.last_presence()) and not s.backend_ok and s, 10)
        assert state.backend_error is not None and "HTTP 500" in state.backend_error, state
        assert state.anyone_home, state  # frozen, not "unseen"
        status = wait_until(lambda: [s for s in world.status.payloads if s.state == "degraded"], 10)
        assert "HTTP 500" in status[-1].detail, status
        time.sleep(GRACE * 2.5)  # an outage much longer than the grace period
        assert world.sets.payloads == [] and not world.armed(), world.sets.items
        last = world.last_presence()
        assert last is not None and last.anyone_home and not last.backend_ok, last
        assert presence.metric("homesec_presence_backend_up") == 0
        assert presence.metric("homesec_presence_backend_errors_total", backend="router") > 3

        router.state.fail_status = None  # back: alice is gone, but only for a grace period
        recovered_at = time.monotonic()
        wait_until(lambda: world.status.payloads[-1].state == "ok", 10)  # recovered
        wait_until(world.armed, 15)
        elapsed = time.monotonic() - recovered_at
        assert elapsed >= GRACE, f"armed {elapsed:.3f}s after the router recovered"
        # the arm request and the armed state reach this client on their own paths
        wait_until(lambda: world.sets.payloads, 10)
        assert [s.value for s in world.sets.payloads] == [True], world.sets.items
    finally:
        router.stop()


def test_mqtt_tracker_backend(world: World, start_presence: StartPresence) -> None:
    topic = "homeassistant/device_tracker/alice_phone/state"
    world.client.publish_raw(topic, "home", retain=True)
    presence = start_presence(backend="mqtt", people={}, mqtt={"trackers": {"alice": topic}})
    set_auto_arm(world, presence, True)
    state = wait_until(lambda: (s := world.last_presence()) and s.anyone_home and s, 10)
    assert state.backend == "mqtt" and [p.name for p in state.people] == ["alice"]

    world.client.publish_raw(topic, "not_home", retain=True)
    wait_until(world.armed, 15)
    world.client.publish_raw(topic, "home", retain=True)
    wait_until(lambda: not world.armed(), 15)
    assert [s.value for s in world.sets.wait_for(2)] == [True, False]


def test_restart_restores_who_was_home(
    world: World, start_presence: StartPresence, tmp_path: Path
) -> None:
    arp = tmp_path / "arp"
    write_arp(arp, ALICE_MAC)
    first = start_presence(neighbours={"arp_path": arp})
    set_auto_arm(world, first, True)
    wait_until(lambda: (s := world.last_presence()) and s.anyone_home, 10)
    first.stop()
    write_arp(arp)  # alice left while the service was down
    second = start_presence(neighbours={"arp_path": arp})
    # restored "alice home" from the retained state, so her leaving is a real departure
    wait_until(world.armed, 15)
    assert second.metric("homesec_presence_arm_requests_total", action="arm") == 1


def test_restart_does_not_replay_auto_arm(
    world: World, start_presence: StartPresence, tmp_path: Path
) -> None:
    """Someone at home armed on purpose (auto-arm on): a presence restart must not disarm."""
    arp = tmp_path / "arp"
    write_arp(arp, ALICE_MAC)
    first = start_presence(neighbours={"arp_path": arp})
    set_auto_arm(world, first, True)
    wait_until(lambda: (s := world.last_presence()) and s.anyone_home, 10)
    world.owner.set(SystemSetting.ARMED, True, "slack:U1")
    first.stop()
    second = start_presence(neighbours={"arp_path": arp})
    wait_until(lambda: second.service.system.get(SystemSetting.AUTO_ARM), 10)
    wait_until(lambda: second.metric("homesec_presence_polls_total") >= 10, 15)
    assert world.sets.payloads == []
    assert world.armed()


def test_auto_arm_switched_on_while_presence_was_down_applies(
    world: World, start_presence: StartPresence, tmp_path: Path
) -> None:
    arp = tmp_path / "arp"
    write_arp(arp, ALICE_MAC)
    first = start_presence(neighbours={"arp_path": arp}, people={"alice": [ALICE_MAC]})
    wait_until(lambda: (s := world.last_presence()) and s.anyone_home, 10)
    write_arp(arp)  # alice leaves; auto-arm is off, so nothing is requested
    wait_until(lambda: (s := world.last_presence()) and not s.anyone_home, 15)
    first.stop()
    time.sleep(0.05)
    world.owner.set(SystemSetting.AUTO_ARM, True, "slack:U1")  # while presence is down
    start_presence(neighbours={"arp_path": arp}, people={"alice": [ALICE_MAC]})
    # alice is restored as away, so there is no transition: only the fresh switch-on arms
    wait_until(world.armed, 15)
    assert [s.value for s in world.sets.wait_for(1)] == [True]


def test_python_m_homesec_presence_runs(
    world: World, broker_settings: BrokerSettings, tmp_path: Path
) -> None:
    arp = tmp_path / "arp"
    write_arp(arp, ALICE_MAC)
    with ServiceProcess(
        "presence",
        broker_settings,
        tmp_path,
        HOMESEC_PRESENCE_PEOPLE=f'{{"alice": ["{ALICE_MAC.upper()}"]}}',
        HOMESEC_PRESENCE_NEIGHBOURS__ARP_PATH=str(arp),
        HOMESEC_PRESENCE_POLL_SECONDS="0.2",
    ) as presence:
        state = wait_until(lambda: (s := world.last_presence()) and s.anyone_home and s, 20)
        assert state.people[0].name == "alice"
        presence.stop()


def test_bad_people_setting_exits_2(tmp_path: Path) -> None:
    assert_module_exits_2_naming(
        "homesec_presence", tmp_path, HOMESEC_PRESENCE_PEOPLE='{"alice": ["not a device!"]}'
    )
