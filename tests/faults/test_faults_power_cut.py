"""Fault: a power cut, and what a reboot may leave behind, against a real Mosquitto with
persistence and the detector (the one writer of ``system/*``) as a real process.

Every scenario arms the house first, then cuts the power (``kill -9`` of the detector and the
broker, after the broker's 1 s autosave) and starts again in a different order or with state
lost:

* the detector starts 10 s before the broker (Docker restarts containers in any order);
* the broker lost its store (a fresh, empty broker) while the detector kept its data folder;
* the detector lost its data folder while the broker kept its store;
* both lost: the documented defaults (a fresh install).

A watcher connected as soon as the broker listens records every value of the state topics; in
the first three scenarios not one of them may say ``false`` for ``armed``. A last scenario cuts
the power while the alarm is triggered (timed states in tests/core/test_alarm_owner.py).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from homesec.broker import MosquittoProcess
from homesec.bus import Bus
from homesec.contract import (
    ALARM_SERVICE_SET,
    ALARM_STATE,
    SYSTEM_SET,
    SYSTEM_STATE,
    AlarmAction,
    AlarmCommand,
    AlarmState,
    AlarmStatus,
    SetCommand,
    SystemSetting,
    SystemValue,
)
from homesec.settings import BrokerSettings
from homesec.state import DEFAULTS
from support import Collector, ServiceProcess, wait_until

pytestmark = pytest.mark.slow

DETECTOR_ENV = {
    "HOMESEC_DETECTOR_PERSON_MODE": "off",  # no frames here: the model is not needed
    "HOMESEC_BROKER_RECONNECT_MIN_SECONDS": "1",
    "HOMESEC_BROKER_RECONNECT_MAX_SECONDS": "2",
}


class StateWatcher:
    """Every value published on ``system/+`` while it is connected, retained ones included."""

    def __init__(self, settings: BrokerSettings) -> None:
        self.values: Collector[SystemValue] = Collector()
        self.bus = Bus(settings, "power-cut-watcher", persistent=False)
        self.bus.subscribe(SYSTEM_STATE, self.values)
        self.bus.start()
        assert self.bus.wait_connected(10), "watcher did not connect"

    def of(self, setting: SystemSetting) -> list[SystemValue]:
        return [m.payload for m in self.values.items if m.params["setting"] == setting.value]

    def latest(self, setting: SystemSetting) -> SystemValue | None:
        seen = self.of(setting)
        return seen[-1] if seen else None

    def stop(self) -> None:
        self.bus.stop(timeout=1)


@pytest.fixture
def watchers(broker_settings: BrokerSettings) -> Iterator[list[StateWatcher]]:
    started: list[StateWatcher] = []
    yield started
    for watcher in started:
        watcher.stop()


def detector(broker_settings: BrokerSettings, data_dir: Path) -> ServiceProcess:
    return ServiceProcess("detector", broker_settings, data_dir, **DETECTOR_ENV)


def arm_then_cut_power(
    broker: MosquittoProcess, broker_settings: BrokerSettings, data_dir: Path, make_bus
) -> None:
    """Run the detector, arm the house, wait for the broker's autosave, then kill both."""
    with detector(broker_settings, data_dir) as det:
        watcher = StateWatcher(broker_settings)
        try:
            client = make_bus("slack-gateway")
            assert client.publish_confirmed(
                SYSTEM_SET, SetCommand(value=True, source="slack:U0OWNER"), setting="armed"
            )
            wait_until(
                lambda: (v := watcher.latest(SystemSetting.ARMED)) is not None and v.value, 10
            )
            client.stop(timeout=1)
        finally:
            watcher.stop()
        time.sleep(2.5)  # past the broker's autosave (1 s in the dev config)
        det.kill()
        broker.kill()


def wipe_broker_store(broker: MosquittoProcess) -> None:
    for store in broker.data_dir.glob("*.db"):
        store.unlink()


def assert_never_disarmed(watcher: StateWatcher) -> None:
    armed = watcher.of(SystemSetting.ARMED)
    assert armed, "no value of system/armed seen"
    assert all(v.value for v in armed), [
        (v.value, v.changed_by) for v in armed
    ]  # never a false, not even for a moment


def test_detector_started_10s_before_the_broker_keeps_the_house_armed(
    broker: MosquittoProcess, broker_settings: BrokerSettings, tmp_path: Path, make_bus, watchers
) -> None:
    data_dir = tmp_path / "detector"
    arm_then_cut_power(broker, broker_settings, data_dir, make_bus)

    det = detector(broker_settings, data_dir)
    try:
        det.start(wait_online=False)
        time.sleep(10)  # the services come up first after the reboot
        assert det.proc is not None and det.proc.poll() is None, "detector died without broker"
        broker.start()
        watchers.append(watcher := StateWatcher(broker_settings))
        det.wait_online(30)
        time.sleep(3)  # the restore window and anything the detector would publish after it
        assert_never_disarmed(watcher)
        latest = watcher.latest(SystemSetting.ARMED)
        assert latest is not None and latest.changed_by == "slack:U0OWNER"
        det.stop()
    except BaseException as exc:
        det.__exit__(type(exc))
        raise
    det.__exit__(None)


def test_broker_that_lost_its_store_gets_the_detectors_local_copy(
    broker: MosquittoProcess, broker_settings: BrokerSettings, tmp_path: Path, make_bus, watchers
) -> None:
    data_dir = tmp_path / "detector"
    arm_then_cut_power(broker, broker_settings, data_dir, make_bus)
    wipe_broker_store(broker)
    broker.start()
    watchers.append(watcher := StateWatcher(broker_settings))
    assert watcher.latest(SystemSetting.ARMED) is None  # the broker really has nothing
    with detector(broker_settings, data_dir) as det:
        wait_until(lambda: watcher.latest(SystemSetting.ARMED) is not None, 15)
        time.sleep(2)
        assert_never_disarmed(watcher)
        for setting in (SystemSetting.NOTIFICATIONS, SystemSetting.TRAINING):
            assert watcher.latest(setting) is not None  # every switch is back on the broker
        det.stop()


def test_detector_that_lost_its_data_folder_takes_the_retained_value(
    broker: MosquittoProcess, broker_settings: BrokerSettings, tmp_path: Path, make_bus, watchers
) -> None:
    data_dir = tmp_path / "detector"
    arm_then_cut_power(broker, broker_settings, data_dir, make_bus)
    shutil.rmtree(data_dir)
    broker.start()
    watchers.append(watcher := StateWatcher(broker_settings))
    with detector(broker_settings, data_dir) as det:
        time.sleep(3)  # restore window, then whatever the detector publishes
        assert_never_disarmed(watcher)
        # the local copy is rebuilt (on a loaded machine the detector may start late)
        state_file = data_dir / "state" / "system.json"
        wait_until(state_file.exists, timeout=30)
        wait_until(lambda: '"value": true' in state_file.read_text(), timeout=10)
        assert '"armed"' in state_file.read_text()
        assert_never_disarmed(watcher)
        output = det.stop()
    assert "system state restored" in output


def test_both_lost_gives_the_documented_defaults(
    broker: MosquittoProcess, broker_settings: BrokerSettings, tmp_path: Path, make_bus, watchers
) -> None:
    data_dir = tmp_path / "detector"
    arm_then_cut_power(broker, broker_settings, data_dir, make_bus)
    shutil.rmtree(data_dir)
    wipe_broker_store(broker)
    broker.start()
    watchers.append(watcher := StateWatcher(broker_settings))
    with detector(broker_settings, data_dir) as det:
        for setting, value in DEFAULTS.items():
            seen = wait_until(lambda s=setting: watcher.latest(s), 15)
            assert seen.value is value, setting
            assert seen.changed_by == "default"
        det.stop()


def test_power_cut_while_triggered_comes_back_triggered_never_disarmed(
    broker: MosquittoProcess, broker_settings: BrokerSettings, tmp_path: Path, make_bus, watchers
) -> None:
    """The alarm went off (an intruder, then the power): after the reboot, with the detector up
    before the broker, the alarm resumes triggered for the rest of its trigger time and
    neither ``alarm/state`` nor ``system/armed`` says disarmed for a moment."""
    data_dir = tmp_path / "detector"
    env = {"HOMESEC_DETECTOR_ALARM__TRIGGER_SECONDS": "600"}
    alarm: Collector[AlarmStatus] = Collector()
    with ServiceProcess("detector", broker_settings, data_dir, **DETECTOR_ENV, **env) as det:
        client = make_bus("slack-gateway")
        client.subscribe(ALARM_STATE, alarm).wait(10)
        for action in (AlarmAction.ARM_AWAY, AlarmAction.TRIGGER):
            assert client.publish_confirmed(
                ALARM_SERVICE_SET, AlarmCommand(action=action, source="slack:U0OWNER")
            )
        wait_until(lambda: alarm.payloads and alarm.payloads[-1].state is AlarmState.TRIGGERED)
        until = alarm.payloads[-1].until
        client.stop(timeout=1)
        time.sleep(2.5)  # past the broker's autosave
        det.kill()
        broker.kill()
    det = ServiceProcess("detector", broker_settings, data_dir, **DETECTOR_ENV, **env)
    try:
        det.start(wait_online=False)
        time.sleep(5)
        broker.start()
        watchers.append(watcher := StateWatcher(broker_settings))
        after: Collector[AlarmStatus] = Collector()
        watcher.bus.subscribe(ALARM_STATE, after).wait(10)
        det.wait_online(30)
        time.sleep(3)
        assert_never_disarmed(watcher)
        states = [s.state for s in after.payloads]
        assert states and set(states) == {AlarmState.TRIGGERED}, states
        assert after.payloads[-1].until == until  # the rest of the trigger time
        det.stop()
    except BaseException as exc:
        det.__exit__(type(exc))
        raise
    det.__exit__(None)
