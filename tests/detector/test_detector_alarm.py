"""The detector and the alarm over a real broker: a mode that excludes a camera, a detection
that triggers the alarm, an entry camera that makes it pending, and the alarm cleared."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_detector_service import publish_frames, walk_in_frames

from homesec.alarm import AlarmSettings, ModeSettings
from homesec.contract import (
    ALARM_SERVICE_SET,
    ALARM_STATE,
    ALERT_SNAPSHOT,
    MOTION_EVENTS,
    AlarmAction,
    AlarmCommand,
    AlarmState,
    AlarmStatus,
    EventType,
    Frame,
    MotionEvent,
    PersonMode,
)
from homesec.settings import BrokerSettings
from homesec_detector.events import EventSettings
from homesec_detector.service import DetectorService
from homesec_detector.settings import DetectorSettings
from support import Collector, wait_until


@pytest.fixture
def detector(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> Iterator[DetectorService]:
    settings = DetectorSettings(
        broker=broker_settings,
        metrics_port=0,
        data_dir=tmp_path,
        person_mode=PersonMode.OFF,  # motion alone alerts: no model needed here
        events=EventSettings(quiet_seconds=1.0, min_notify_seconds=0),
        alarm=AlarmSettings(
            home=ModeSettings(cameras=["garden"]),
            # night: the front camera only for someone standing in the upper half of the frame
            night=ModeSettings(zones={"front": [[(0, 0), (1, 0), (1, 0.5), (0, 0.5)]]}),
            away=ModeSettings(entry_delay_seconds=60, entry_cameras=["front"]),
            trigger_seconds=0,
        ),
        ha_discovery=False,
    )
    bus = make_bus("detector", start=False)
    service = DetectorService(bus, settings, bus.metrics)
    bus.start()
    assert bus.wait_connected(10)
    service.start()
    assert service.state.wait_restored(10)
    yield service
    service.close()


def ended(events: Collector[MotionEvent], camera: str) -> list[MotionEvent]:
    return [e for e in events.payloads if e.camera == camera and e.type is EventType.END]


def test_modes_select_cameras_and_detections_move_the_alarm(
    detector: DetectorService, make_bus: Any
) -> None:
    client = make_bus("slack-gateway")
    events: Collector[MotionEvent] = Collector()
    alarm: Collector[AlarmStatus] = Collector()
    client.subscribe(MOTION_EVENTS, events).wait(10)
    client.subscribe(ALARM_STATE, alarm).wait(10)

    def command(action: AlarmAction) -> None:
        client.publish(ALARM_SERVICE_SET, AlarmCommand(action=action, source="slack:U1"))

    def reaches(state: AlarmState) -> AlarmStatus:
        wait_until(lambda: alarm.payloads and alarm.payloads[-1].state is state, 15)
        return alarm.payloads[-1]

    command(AlarmAction.ARM_HOME)
    reaches(AlarmState.ARMED_HOME)
    # home mode leaves the front camera out: its motion neither alerts nor triggers
    publish_frames(client, walk_in_frames(), fps=20, camera="front")
    wait_until(lambda: ended(events, "front"), 20)
    front = [e for e in events.payloads if e.camera == "front"]
    assert front and not any(e.decision.alert or e.decision.alarm for e in front)
    assert alarm.payloads[-1].state is AlarmState.ARMED_HOME
    # ... the garden camera alerts and triggers; trigger_seconds 0: until acknowledged
    publish_frames(client, walk_in_frames(), fps=20, camera="garden")
    raised = reaches(AlarmState.TRIGGERED)
    assert raised.camera == "garden" and raised.changed_by == "camera:garden"
    wait_until(lambda: ended(events, "garden"), 20)
    garden = [e for e in events.payloads if e.camera == "garden"]
    assert any(e.decision.alert and e.decision.alarm for e in garden)
    assert raised.event_id == garden[0].event_id
    # the alert's snapshot is retained for Home Assistant's image entity
    snapshots: Collector[Frame] = Collector()
    make_bus("home-assistant").subscribe(ALERT_SNAPSHOT, snapshots, camera="garden")
    shot = snapshots.wait_for(1)[0]
    assert shot.jpeg[:2] == b"\xff\xd8" and shot.width == 640 and shot.height == 480
    command(AlarmAction.ACK)
    assert reaches(AlarmState.ARMED_HOME).changed_by == "slack:U1"
    # away: the front door is an entry camera, so its detection is pending (and alerts)
    command(AlarmAction.ARM_AWAY)
    reaches(AlarmState.ARMED_AWAY)
    events.items.clear()
    publish_frames(client, walk_in_frames(), fps=20, camera="front")
    pending = reaches(AlarmState.PENDING)
    assert pending.camera == "front" and pending.until is not None
    wait_until(lambda: ended(events, "front"), 20)
    assert any(e.decision.alert for e in events.payloads)  # the owner is told, with the delay
    command(AlarmAction.DISARM)
    reaches(AlarmState.DISARMED)
    # night's zone leaves out where the walker stands (the bottom of the frame)
    command(AlarmAction.ARM_NIGHT)
    reaches(AlarmState.ARMED_NIGHT)
    events.items.clear()
    publish_frames(client, walk_in_frames(), fps=20, camera="front")
    wait_until(lambda: ended(events, "front"), 20)
    assert {e.decision.reason for e in events.payloads} == {"outside the alarm mode's zones"}
    assert alarm.payloads[-1].state is AlarmState.ARMED_NIGHT
