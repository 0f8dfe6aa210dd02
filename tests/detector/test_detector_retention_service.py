"""Retention inside the running detector (real Mosquitto): its own thread, never on the path that
publishes events; alert pins written before the alert goes out; degraded while pinned media
alone exceed the cap."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from homesec.contract import (
    FRAMES,
    MOTION_EVENTS,
    SERVICE_STATUS,
    EventType,
    Frame,
    MotionEvent,
    PersonMode,
    ServiceState,
    ServiceStatus,
)
from homesec.pins import PinKind, Pins
from homesec.settings import BrokerSettings
from homesec_detector.events import EventSettings
from homesec_detector.media_writer import MediaSettings
from homesec_detector.service import DetectorService
from homesec_detector.settings import DetectorSettings
from support import Collector, bus_metric, wait_until

W, H = 320, 240
DAY = 86400.0


def _jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


BASE = cv2.resize(
    np.random.default_rng(7).integers(40, 200, (60, 80, 3), dtype=np.uint8),
    (W, H),
    cv2.INTER_CUBIC,
)
STILL = _jpeg(BASE)


def crossing(n: int = 14) -> list[bytes]:
    frames = []
    for i in range(n):
        image = BASE.copy()
        x = 20 + 12 * i
        cv2.rectangle(image, (x, 60), (x + 70, 180), (250, 250, 250), -1)
        frames.append(_jpeg(image))
    return frames


class Camera:
    def __init__(self, bus: Any) -> None:
        self.bus = bus
        self.seq = 0

    def send(self, frames: list[bytes], fps: float = 20.0) -> None:
        for data in frames:
            self.seq += 1
            frame = Frame(
                camera="front", seq=self.seq, captured_at=time.time(), width=W, height=H, jpeg=data
            )
            self.bus.publish(FRAMES, frame, camera="front")
            time.sleep(1 / fps)

    def event(self) -> None:
        self.send([STILL] * 10 + crossing() + [STILL] * 5)


def old_event(media: Path, name: str, size: int = 20_000, age: float = 40 * DAY) -> Path:
    folder = media / "front" / name
    folder.mkdir(parents=True)
    (folder / "snapshot.jpg").write_bytes(b"x" * size)
    (folder / "event.json").write_text("{}")
    then = time.time() - age
    os.utime(folder / "event.json", (then, then))
    return folder


@pytest.fixture
def start_detector(
    broker_settings: BrokerSettings,
    run_detector: Callable[[DetectorSettings], DetectorService],
    tmp_path: Path,
) -> Callable[..., DetectorService]:
    def start(**media: Any) -> DetectorService:
        settings = DetectorSettings(
            broker=broker_settings,
            metrics_port=0,
            data_dir=tmp_path,
            person_mode=PersonMode.OFF,
            ha_discovery=False,
            default_armed=True,  # motion alerts (person mode off)
            events=EventSettings(quiet_seconds=0.5),
            media=MediaSettings(preroll_frames=5, max_event_frames=20, **media),
        )
        return run_detector(settings)

    return start


def watch(make_bus: Any) -> tuple[Any, Collector[MotionEvent], Collector[ServiceStatus]]:
    client = make_bus("client", start=False)
    events: Collector[MotionEvent] = Collector()
    statuses: Collector[ServiceStatus] = Collector()
    client.subscribe(MOTION_EVENTS, events)
    client.subscribe(SERVICE_STATUS, statuses, service="detector")
    client.start()
    assert client.wait_connected(10)
    time.sleep(0.3)  # subscriptions in place
    return client, events, statuses


def test_a_slow_retention_pass_does_not_delay_events(
    start_detector: Callable[..., DetectorService],
    make_bus: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Retention is stuck deleting (a slow SD card) while a whole event is published."""
    media = tmp_path / "media"
    olds = [old_event(media, f"front-old-{i}") for i in range(3)]
    entered, release = threading.Event(), threading.Event()
    real_rmtree = shutil.rmtree

    def stuck_rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        entered.set()
        release.wait(30)
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", stuck_rmtree)
    service = start_detector(retention_interval_seconds=0.2)
    client, events, _ = watch(make_bus)
    assert entered.wait(10), "retention never started deleting"
    try:
        camera = Camera(client)
        started = time.monotonic()
        camera.event()
        wait_until(lambda: any(e.type is EventType.END for e in events.payloads), 10)
        assert not release.is_set() and olds[0].exists(), "retention was still stuck"
        types = [e.type for e in events.payloads]
        assert types[0] is EventType.START and types[-1] is EventType.END
        # START is published while the crossing is still being sent, END half a second after
        assert time.monotonic() - started < 6
        start = events.payloads[0]
        assert (media / start.snapshot).is_file()  # type: ignore[operator]
    finally:
        release.set()
    wait_until(lambda: bus_metric(service.bus, "homesec_detector_media_pruned_total") == 3, 10)
    assert not any(f.exists() for f in olds)


def test_a_failing_retention_pass_is_counted_and_retried(
    start_detector: Callable[..., DetectorService],
    make_bus: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    media = tmp_path / "media"
    old = old_event(media, "front-old")
    broken = threading.Event()
    broken.set()
    real_rmtree = shutil.rmtree

    def failing_rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        if broken.is_set():
            raise RuntimeError("retention bug")
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", failing_rmtree)
    service = start_detector(retention_interval_seconds=0.2)
    client, events, _ = watch(make_bus)
    wait_until(lambda: bus_metric(service.bus, "homesec_detector_retention_errors_total") >= 2, 10)
    Camera(client).event()
    wait_until(lambda: any(e.type is EventType.END for e in events.payloads), 10)
    assert old.exists()
    broken.clear()  # the next pass works again
    wait_until(lambda: not old.exists(), 10)
    # counted once the pass that removed it returns
    wait_until(lambda: bus_metric(service.bus, "homesec_detector_media_pruned_total") == 1, 10)


def test_alert_is_pinned_before_it_is_published(
    start_detector: Callable[..., DetectorService], make_bus: Any, tmp_path: Path
) -> None:
    service = start_detector(retention_interval_seconds=0.2, max_total_mb=0.001)
    seen: list[tuple[EventType, bool]] = []

    def on_event(msg: Any) -> None:  # at receipt: the pin must already be on disk
        event: MotionEvent = msg.payload
        seen.append(
            (event.type, service.pins.is_pinned(PinKind.ALERT, event.camera, event.event_id))
        )

    client = make_bus("client", start=False)
    client.subscribe(MOTION_EVENTS, on_event)
    client.start()
    assert client.wait_connected(10)
    time.sleep(0.3)
    Camera(client).event()
    wait_until(lambda: any(t is EventType.END for t, _ in seen), 10)
    assert seen[0] == (EventType.START, True)
    assert all(pinned for _, pinned in seen)
    # a tiny cap: the alert's folder is kept (the gateway has not released it)
    time.sleep(0.6)
    (pin,) = service.pins.scan(PinKind.ALERT)
    assert (tmp_path / "media" / "front" / pin.event_id / "snapshot.jpg").is_file()


def test_pinned_media_over_the_cap_degrade_the_status_but_alerts_flow(
    start_detector: Callable[..., DetectorService], make_bus: Any, tmp_path: Path
) -> None:
    media = tmp_path / "media"
    owed = old_event(media, "front-owed", size=30_000, age=60)
    assert Pins(tmp_path / "pins").pin(PinKind.LABEL, "front", "front-owed")  # owed to S3
    client, events, statuses = watch(make_bus)
    service = start_detector(retention_interval_seconds=0.2, max_total_mb=0.01)

    def degraded() -> ServiceStatus | None:
        last = statuses.payloads[-1] if statuses.payloads else None
        return last if last is not None and last.state is ServiceState.DEGRADED else None

    status = wait_until(degraded, 10)
    assert "pinned media" in status.detail and "max_total_mb" in status.detail
    assert bus_metric(service.bus, "homesec_detector_media_pinned_bytes") >= 30_000
    Camera(client).event()  # still detecting and alerting
    wait_until(lambda: any(e.type is EventType.END for e in events.payloads), 10)
    assert events.payloads[0].decision.alert
    assert owed.exists()

    # the alert's own folder is pinned too (no gateway here): both released, back to ok
    (alert_pin,) = service.pins.scan(PinKind.ALERT)
    service.pins.release(PinKind.LABEL, "front", "front-owed")
    wait_until(lambda: not owed.exists(), 10)
    assert statuses.payloads[-1].state is ServiceState.DEGRADED
    service.pins.release(PinKind.ALERT, "front", alert_pin.event_id)
    wait_until(lambda: statuses.payloads[-1].state is ServiceState.OK, 10)
    assert not (tmp_path / "media" / "front" / alert_pin.event_id).exists()
