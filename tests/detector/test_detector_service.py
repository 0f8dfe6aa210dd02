"""The detector service against a real Mosquitto: frames in, events/state out."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from homesec.contract import (
    FRAMES,
    MOTION_EVENTS,
    MOTION_STATE,
    SERVICE_STATUS,
    SYSTEM_SET,
    SYSTEM_STATE,
    EventType,
    Frame,
    MotionEvent,
    OnOff,
    PersonMode,
    ServiceState,
    ServiceStatus,
    SetCommand,
    SystemSetting,
    SystemValue,
)
from homesec.settings import BrokerSettings
from homesec_detector.events import EventSettings
from homesec_detector.service import DetectorService
from homesec_detector.settings import DetectorSettings
from support import Collector, ServiceProcess, assert_module_exits_2_naming, bus_metric, wait_until

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def walk_in_frames(photo_name: str = "coco_fastestdet_2.jpg") -> list[bytes]:
    """A static road scene, then people (a real photo) slide into view."""
    cap = cv2.VideoCapture(str(ASSETS / "video" / "road_640x360.avi"))
    ok, base = cap.read()
    cap.release()
    assert ok
    base = cv2.resize(base, (640, 480))
    photo = cv2.imread(str(ASSETS / "images" / photo_name))
    photo = cv2.resize(photo, (400, int(photo.shape[0] * 400 / photo.shape[1])))
    frames = [jpeg(base)] * 10
    for i in range(40):
        canvas = base.copy()
        canvas[40 : 40 + photo.shape[0], 20 + 4 * i : 420 + 4 * i] = photo[: 480 - 40]
        frames.append(jpeg(canvas))
    return frames + [jpeg(base)] * 5


def publish_frames(bus: Any, frames: list[bytes], fps: float, camera: str = "front") -> None:
    for seq, data in enumerate(frames):
        frame = Frame(
            camera=camera, seq=seq, captured_at=time.time(), width=640, height=480, jpeg=data
        )
        bus.publish(FRAMES, frame, camera=camera)
        time.sleep(1 / fps)


@pytest.fixture
def detector(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> Iterator[DetectorService]:
    settings = DetectorSettings(
        broker=broker_settings,
        metrics_port=0,
        data_dir=tmp_path,
        events=EventSettings(quiet_seconds=1.5),
    )
    bus = make_bus("detector", start=False)
    service = DetectorService(bus, settings, bus.metrics)
    bus.start()
    assert bus.wait_connected(10)
    service.start()
    yield service
    service.close()


def metric(service: DetectorService, name: str, **labels: str) -> float:
    return bus_metric(service.bus, name, **labels)


def test_frames_in_event_out_with_state_and_media(
    detector: DetectorService, make_bus: Any, tmp_path: Path
) -> None:
    client = make_bus("client")
    events: Collector[MotionEvent] = Collector()
    states: Collector[SystemValue] = Collector()
    client.subscribe(MOTION_EVENTS, events)
    assert client.subscribe(SYSTEM_STATE, states, setting="armed").wait(10)
    # the owner applies the command and republishes the retained state
    client.publish(SYSTEM_SET, SetCommand(value=True, source="test"), setting="armed")
    wait_until(lambda: any(s.value and s.changed_by == "test" for s in states.payloads), 15)
    wait_until(lambda: detector.state.get(SystemSetting.ARMED), 5)

    publish_frames(client, walk_in_frames(), fps=20)
    start = events.wait_for(1, timeout=20)[0]
    assert start.type is EventType.START
    assert start.camera == "front" and start.event_id.startswith("front-")
    assert start.snapshot and (tmp_path / "media" / start.snapshot).is_file()

    retained: Collector[OnOff] = Collector()
    late = make_bus("late-listener")
    late.subscribe(MOTION_STATE, retained, camera="front")
    wait_until(lambda: retained.payloads, 10)
    assert retained.payloads[-1].root in ("ON", "OFF")

    wait_until(lambda: any(e.type is EventType.END for e in events.payloads), 20)
    alerted = [e for e in events.payloads if e.decision.alert]
    assert alerted and alerted[0].decision.reason.startswith("armed, person confirmed")
    wait_until(lambda: retained.payloads[-1].root == "OFF", 10)

    assert metric(detector, "homesec_detector_frames_processed_total", camera="front") > 20
    assert metric(detector, "homesec_detector_motion_events_total", camera="front") == 1
    assert metric(detector, "homesec_detector_alerts_total", camera="front") == 1
    assert metric(detector, "homesec_detector_person_checks_total", camera="front") >= 1
    assert metric(detector, "homesec_detector_event_latency_seconds_count", camera="front") >= 1
    assert metric(detector, "homesec_detector_stage_seconds_count", stage="motion") > 20
    assert metric(detector, "homesec_detector_motion_active", camera="front") == 0


def test_motion_state_is_retained_for_late_subscribers(
    detector: DetectorService, make_bus: Any
) -> None:
    client = make_bus("client")
    publish_frames(client, walk_in_frames()[:45], fps=20, camera="side")
    wait_until(lambda: metric(detector, "homesec_detector_motion_active", camera="side") == 1, 20)
    retained: Collector[OnOff] = Collector()
    late = make_bus("late-listener")
    late.subscribe(MOTION_STATE, retained, camera="side")
    assert retained.wait_for(1, 10)[0].root == "ON"
    assert retained.items[0].retained


def test_stopping_ends_open_events(detector: DetectorService, make_bus: Any) -> None:
    client = make_bus("client")
    events: Collector[MotionEvent] = Collector()
    states: Collector[OnOff] = Collector()
    client.subscribe(MOTION_EVENTS, events)
    assert client.subscribe(MOTION_STATE, states, camera="hall").wait(10)
    publish_frames(client, walk_in_frames()[:30], fps=20, camera="hall")
    assert events.wait_for(1, 20)[0].type is EventType.START
    detector.close()
    detector.bus.flush(5)
    wait_until(lambda: events.payloads[-1].type is EventType.END, 10)
    wait_until(lambda: states.payloads and states.payloads[-1].root == "OFF", 10)


def test_pet_event_is_rejected_and_counted(detector: DetectorService, make_bus: Any) -> None:
    detector.state.set(SystemSetting.ARMED, True, "test")
    client = make_bus("client")
    events: Collector[MotionEvent] = Collector()
    assert client.subscribe(MOTION_EVENTS, events).wait(10)
    publish_frames(client, walk_in_frames("coco_fastestdet_4.jpg"), fps=20, camera="yard")
    wait_until(lambda: any(e.type is EventType.END for e in events.payloads), 20)
    assert not any(e.decision.alert for e in events.payloads)
    assert events.payloads[-1].decision.reason.startswith("no person confirmed")
    wait_until(
        lambda: metric(detector, "homesec_detector_person_rejections_total", camera="yard") == 1,
        5,
    )
    assert metric(detector, "homesec_detector_alerts_total", camera="yard") == 0


def test_latest_wins_drops_are_counted_when_the_worker_is_slow(
    detector: DetectorService, make_bus: Any
) -> None:
    client = make_bus("client")
    frames = walk_in_frames()
    publish_frames(client, frames[:1], fps=100, camera="slow")
    worker = wait_until(lambda: detector.workers.get("slow"), 10)
    original = worker.pipeline.process

    def slow_process(frame: Frame, now: float | None = None) -> Any:
        time.sleep(0.2)  # a Pi that cannot keep up
        return original(frame, now)

    worker.pipeline.process = slow_process  # type: ignore[method-assign]
    publish_frames(client, frames[:30], fps=50, camera="slow")

    def total() -> float:
        return metric(detector, "homesec_detector_frames_processed_total", camera="slow") + metric(
            detector, "homesec_detector_frames_dropped_total", camera="slow"
        )

    wait_until(lambda: total() >= 30, 20)  # every frame is either processed or counted
    time.sleep(0.5)
    dropped = metric(detector, "homesec_detector_frames_dropped_total", camera="slow")
    assert dropped >= 10
    assert total() <= 31
    # the newest frame is the one processed last
    assert worker.pipeline._last is not None and worker.pipeline._last.seq == 29


def test_process_runs_goes_online_publishes_state_and_stops(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    states: Collector[SystemValue] = Collector()
    listener = make_bus("listener")
    assert listener.subscribe(SYSTEM_STATE, states).wait(10)
    with ServiceProcess(
        "detector", broker_settings, tmp_path, HOMESEC_DETECTOR_DEFAULT_ARMED="true"
    ) as detector:
        wait_until(lambda: len(states.payloads) >= 4, 20)  # defaults published by the owner
        armed = [m for m in states.items if m.topic.endswith("/armed")]
        assert armed and armed[-1].payload.value is True
        publish_frames(listener, walk_in_frames()[:3], fps=20)
        text = detector.metrics_text()
        assert "homesec_detector_frames_processed_total" in text
        assert "homesec_detector_media_errors_total" in text
        detector.stop()


def test_unwritable_media_reports_degraded_but_events_flow(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data folder should be")
    settings = DetectorSettings(
        broker=broker_settings, metrics_port=0, data_dir=blocker, person_mode=PersonMode.OFF
    )
    bus = make_bus("detector", start=False)
    service = DetectorService(bus, settings, bus.metrics)
    bus.start()
    assert bus.wait_connected(10)
    service.start()
    try:
        client = make_bus("client")
        statuses: Collector[ServiceStatus] = Collector()
        events: Collector[MotionEvent] = Collector()
        client.subscribe(SERVICE_STATUS, statuses, service="detector")
        assert client.subscribe(MOTION_EVENTS, events).wait(10)
        publish_frames(client, walk_in_frames()[:30], fps=20)
        assert events.wait_for(1, 20)[0].type is EventType.START
        wait_until(lambda: any(s.state is ServiceState.DEGRADED for s in statuses.payloads), 10)
        assert metric(service, "homesec_detector_media_errors_total") >= 1
    finally:
        service.close()


def test_bad_setting_exits_2(tmp_path: Path) -> None:
    assert_module_exits_2_naming("homesec_detector", tmp_path, HOMESEC_DETECTOR_MOTION__ALPHA="7")
