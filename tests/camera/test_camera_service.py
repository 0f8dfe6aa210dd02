"""The camera service against a real Mosquitto: frames, snapshots, status, reconnects."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from homesec.bus import Bus
from homesec.contract import (
    AVAILABILITY,
    FRAMES,
    SERVICE_STATUS,
    SNAPSHOT,
    SNAPSHOT_REQUEST,
    Frame,
    ServiceState,
    ServiceStatus,
    SnapshotRequest,
)
from homesec.metrics import ServiceMetrics
from homesec.settings import BrokerSettings
from homesec_camera.service import CameraService
from homesec_camera.settings import CameraSettings
from support import Collector, wait_until


class Running:
    """A camera service running in a thread of the test process."""

    def __init__(self, service: CameraService, bus: Bus, metrics: ServiceMetrics) -> None:
        self.service = service
        self.bus = bus
        self.metrics = metrics
        self.stop = threading.Event()
        self.thread = threading.Thread(target=service.run, args=(self.stop,), daemon=True)

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, {"camera": "front", **labels})
        return value or 0.0


@contextmanager
def camera(broker_settings: BrokerSettings, tmp_path: Path, **overrides: Any) -> Iterator[Running]:
    settings = CameraSettings(
        broker=broker_settings, metrics_port=0, data_dir=tmp_path, **overrides
    )
    metrics = ServiceMetrics("camera")
    bus = Bus(settings.broker, "camera", metrics)
    service = CameraService(bus, settings, metrics)
    running = Running(service, bus, metrics)
    bus.start()
    assert bus.wait_connected(10)
    running.thread.start()
    try:
        yield running
    finally:
        running.stop.set()
        running.thread.join(10)
        assert not running.thread.is_alive()
        bus.stop(timeout=1)


def write_video(path: Path, frames: int, size: tuple[int, int] = (160, 120)) -> Path:
    """An MJPG .avi: a white 20x20 marker in the top-left corner; frame number in the red
    channel of the bottom-right pixel block."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, size)
    assert writer.isOpened()
    for i in range(frames):
        img = np.zeros((size[1], size[0], 3), np.uint8)
        img[:20, :20] = 255
        img[-16:, -16:, 2] = (i * 10) % 256
        writer.write(img)
    writer.release()
    return path


def decode(frame: Frame) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def latest_status(collector: Collector[ServiceStatus]) -> ServiceStatus | None:
    payloads = collector.payloads
    return payloads[-1] if payloads else None


def test_frames_flow_at_the_configured_rate(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    frames: Collector[Frame] = Collector()
    listener = make_bus("listener")
    listener.subscribe(FRAMES, frames, camera="front")
    wait_until(lambda: listener.connected)
    time.sleep(0.2)
    with camera(broker_settings, tmp_path, fps=10, width=320, height=240) as cam:
        frames.wait_for(3, timeout=15)
        start_count, start = len(frames.items), time.monotonic()
        time.sleep(3.0)
        rate = (len(frames.items) - start_count) / (time.monotonic() - start)
        assert 5 <= rate <= 13, rate  # 10 fps, generous for a loaded 2-core machine
        got = frames.payloads
        seqs = [f.seq for f in got]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        first = got[0]
        assert (first.camera, first.width, first.height) == ("front", 320, 240)
        assert abs(got[-1].captured_at - time.time()) < 5
        assert decode(got[-1]).shape == (240, 320, 3)
        assert cam.metric("homesec_camera_frames_published_total") >= len(got) - 1
        assert cam.metric("homesec_camera_frames_captured_total") >= len(got)
        assert cam.metric("homesec_camera_target_fps") == 10
        assert cam.metric("homesec_camera_source_up") == 1
        assert cam.metric("homesec_camera_fps") > 3
        assert cam.metric("homesec_camera_encode_seconds_count") >= len(got)


def test_broker_outage_drops_frames_and_recovers(
    broker: Any, broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    with camera(broker_settings, tmp_path, fps=10, width=160, height=120) as cam:
        wait_until(lambda: cam.metric("homesec_camera_frames_published_total") >= 5, 15)
        broker.kill()
        wait_until(lambda: not cam.bus.connected, 10)
        published = cam.metric("homesec_camera_frames_published_total")
        time.sleep(1.0)
        assert cam.metric("homesec_camera_frames_published_total") == published  # not queued
        assert cam.metrics.registry.get_sample_value(
            "homesec_mqtt_messages_dropped_total", {"topic_class": "frames"}
        )
        broker.start()
        frames: Collector[Frame] = Collector()
        listener = make_bus("listener")
        listener.subscribe(FRAMES, frames, camera="front")
        got = frames.wait_for(3, timeout=20)
        assert got[-1].seq > 10  # the loop kept capturing through the outage
        assert cam.thread.is_alive()


def test_rotation_applied_end_to_end(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    video = write_video(tmp_path / "marker.avi", 30)
    frames: Collector[Frame] = Collector()
    listener = make_bus("listener")
    assert listener.subscribe(FRAMES, frames, camera="front").wait(10)
    with camera(
        broker_settings,
        tmp_path,
        source="opencv",
        device=str(video),
        loop=True,
        width=160,
        height=120,
        rotate=90,
        hflip=True,
        fps=20,
    ):
        frames.wait_for(3, timeout=15)
    frame = frames.payloads[-1]
    assert (frame.width, frame.height) == (120, 160)  # rotated: width and height swap
    image = decode(frame)
    # hflip moves the top-left marker to the top-right, then 90° clockwise to bottom-right
    assert image[-10:, -10:].mean() > 200
    assert image[:10, :10].mean() < 60


def test_snapshot_retained_and_on_request(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    with camera(broker_settings, tmp_path, snapshot_interval_seconds=60) as cam:
        wait_until(lambda: cam.metric("homesec_camera_snapshots_published_total") >= 1, 15)
        wait_until(lambda: cam.service.loop.seq >= 10, 15)
        snaps: Collector[Frame] = Collector()
        client = make_bus("client", start=False)
        client.subscribe(SNAPSHOT, snaps, camera="front")
        client.start()
        assert client.wait_connected(10)
        retained = snaps.wait_for(1)[0]
        assert snaps.items[0].retained
        assert retained.seq == 0  # the periodic refresh is 60 s away: still the first frame
        client.publish(SNAPSHOT_REQUEST, SnapshotRequest(request_id="r1"), camera="front")
        fresh = snaps.wait_for(2)[1]
        assert not snaps.items[1].retained
        assert fresh.seq > retained.seq + 5
        assert decode(fresh).shape == (480, 640, 3)
        assert cam.metric("homesec_camera_snapshots_published_total") >= 2


def test_end_of_file_degrades_and_retries_with_backoff(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    video = write_video(tmp_path / "short.avi", 4)
    statuses: Collector[ServiceStatus] = Collector()
    listener = make_bus("listener")
    assert listener.subscribe(SERVICE_STATUS, statuses, service="camera").wait(10)
    with camera(
        broker_settings,
        tmp_path,
        source="opencv",
        device=str(video),
        loop=False,
        fps=20,
        width=160,
        height=120,
        reconnect_min_seconds=0.2,
        reconnect_max_seconds=0.8,
    ) as cam:
        status = wait_until(
            lambda: (s := latest_status(statuses)) and s.state == ServiceState.DEGRADED and s, 15
        )
        assert status.detail.startswith("source failed: end of file; retrying in")
        assert status.info["camera"] == "front" and status.info["fps"] == 0.0
        loop = cam.service.loop
        before, start = loop.open_attempts, time.monotonic()
        time.sleep(3.0)
        attempts = loop.open_attempts - before
        elapsed = time.monotonic() - start
        # backoff 0.2, 0.4, 0.8, 0.8 ... s: a handful of reopen attempts, never a busy loop
        assert 2 <= attempts <= elapsed / 0.2 + 1, attempts
        assert cam.metric("homesec_camera_capture_errors_total") >= 2
        assert cam.metric("homesec_camera_frames_dropped_total", reason="disconnected") > 0
        assert cam.service.loop.seq >= 4  # the file was played (and replayed after reopening)


def test_looping_file_keeps_playing(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    video = write_video(tmp_path / "loop.avi", 5)
    frames: Collector[Frame] = Collector()
    listener = make_bus("listener")
    assert listener.subscribe(FRAMES, frames, camera="front").wait(10)
    with camera(
        broker_settings,
        tmp_path,
        source="opencv",
        device=str(video),
        loop=True,
        fps=20,
        width=160,
        height=120,
    ) as cam:
        frames.wait_for(16, timeout=15)  # more than three passes through a 5-frame file
        assert cam.metric("homesec_camera_capture_errors_total") == 0
        assert cam.bus.status.state == ServiceState.OK
    reds = [int(decode(f)[-8, -8, 2]) for f in frames.payloads[:16]]
    assert max(reds) >= 30 and reds.count(min(reds)) >= 3  # frame counter wraps around


def test_missing_device_degrades_then_recovers(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    video = tmp_path / "later.avi"
    statuses: Collector[ServiceStatus] = Collector()
    online: Collector[Any] = Collector()
    listener = make_bus("listener")
    listener.subscribe(SERVICE_STATUS, statuses, service="camera")
    assert listener.subscribe(AVAILABILITY, online, service="camera").wait(10)
    with camera(
        broker_settings,
        tmp_path,
        source="opencv",
        device=str(video),
        loop=True,
        fps=10,
        width=160,
        height=120,
        reconnect_min_seconds=0.2,
        reconnect_max_seconds=0.5,
    ) as cam:
        status = wait_until(
            lambda: (s := latest_status(statuses)) and s.state == ServiceState.DEGRADED and s, 15
        )
        assert "no such video file" in status.detail
        assert cam.thread.is_alive()
        assert online.payloads[-1].root == "online"
        assert cam.metric("homesec_camera_source_up") == 0
        write_video(tmp_path / "tmp.avi", 10).rename(video)  # the camera comes back
        wait_until(
            lambda: (
                (s := latest_status(statuses))
                and s.state == ServiceState.OK
                and s.info.get("source") == "opencv"
            ),
            15,
        )
        wait_until(lambda: cam.metric("homesec_camera_source_up") == 1, 10)


def test_missing_v4l2_device_keeps_service_alive(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    statuses: Collector[ServiceStatus] = Collector()
    listener = make_bus("listener")
    assert listener.subscribe(SERVICE_STATUS, statuses, service="camera").wait(10)
    with camera(
        broker_settings,
        tmp_path,
        source="opencv",
        device="/dev/video99",
        reconnect_min_seconds=0.2,
        reconnect_max_seconds=0.4,
        status_interval_seconds=0.5,
    ) as cam:
        wait_until(lambda: len([s for s in statuses.payloads if s.state == "degraded"]) >= 3, 15)
        assert all("/dev/video99" in s.detail for s in statuses.payloads if s.state == "degraded")
        assert cam.thread.is_alive() and cam.bus.connected


@pytest.mark.parametrize("interval", [0.5])
def test_status_reports_fps_periodically(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path, interval: float
) -> None:
    statuses: Collector[ServiceStatus] = Collector()
    listener = make_bus("listener")
    assert listener.subscribe(SERVICE_STATUS, statuses, service="camera").wait(10)
    with camera(broker_settings, tmp_path, status_interval_seconds=interval, fps=8):
        wait_until(lambda: len([s for s in statuses.payloads if s.info.get("fps", 0) > 2]) >= 2, 15)
    status = [s for s in statuses.payloads if s.info.get("fps", 0) > 2][-1]
    assert status.state == ServiceState.OK
    assert status.info["target_fps"] == 8
    assert (status.info["source"], status.info["width"], status.info["height"]) == (
        "demo",
        640,
        480,
    )
    assert status.info["camera"] == "front"


def test_first_status_carries_a_measured_fps(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    statuses: Collector[ServiceStatus] = Collector()
    listener = make_bus("listener")
    assert listener.subscribe(SERVICE_STATUS, statuses, service="camera").wait(10)
    with camera(broker_settings, tmp_path, fps=10, width=160, height=120):
        first = wait_until(
            lambda: next((s for s in statuses.payloads if "camera" in s.info), None), 15
        )
    assert first.state == ServiceState.OK
    assert first.info["fps"] > 3  # published ~1 s after frames started, not at the first frame
