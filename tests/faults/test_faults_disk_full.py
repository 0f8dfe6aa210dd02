"""Fault: the disk holding event media is nearly full, then full, then has room again.

The detector runs in-process (its `DetectorService`, a real Mosquitto) with `HOMESEC_DATA_DIR` on
a 4 MiB tmpfs mounted by the test and `media.max_total_mb` = 1.5 (below the tmpfs size).
Synthetic frames (a textured scene, a bright box crossing it) published on FRAMES make one motion
event per crossing. Expected:

1. retention deletes the oldest event folders: `homesec_detector_media_pruned_total` > 0 and the
   media folder stays under the cap while events keep coming;
2. a filler file takes the rest of the tmpfs, so media writes fail with ENOSPC: no crash (camera
   worker and media writer threads alive), events still published on the bus,
   `homesec_detector_media_errors_total` > 0, retained status `degraded`;
3. the filler is deleted: the next event's media is written again and the status returns to `ok`
   (the service's recovery delay, 60 s in production, is shortened to 2 s for the test).
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fault_support import tmpfs

import homesec_detector.service as detector_service
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
from homesec.settings import BrokerSettings
from homesec_detector.events import EventSettings
from homesec_detector.media_writer import MediaSettings
from homesec_detector.service import DetectorService
from homesec_detector.settings import DetectorSettings
from support import Collector, wait_until

TMPFS_SIZE = "4m"
MAX_TOTAL_MB = 1.5
W, H = 320, 240


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, unmounted at teardown."""
    with tmpfs(tmp_path / "disk", TMPFS_SIZE, "DISK-FULL") as disk:
        yield disk


def _jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


class Scene:
    """A textured still scene; `crossing()` frames move a bright box across it."""

    def __init__(self) -> None:
        rng = np.random.default_rng(7)
        self.base = cv2.resize(
            rng.integers(40, 200, (60, 80, 3), dtype=np.uint8), (W, H), cv2.INTER_CUBIC
        )
        self.still = _jpeg(self.base)

    def crossing(self, n: int = 14) -> list[bytes]:
        frames = []
        for i in range(n):
            image = self.base.copy()
            x = 20 + 12 * i
            cv2.rectangle(image, (x, 60), (x + 70, 180), (250, 250, 250), -1)
            frames.append(_jpeg(image))
        return frames


class Camera:
    """Publishes frames on FRAMES with increasing seq / captured_at."""

    def __init__(self, bus: Any, fps: float = 20.0) -> None:
        self.bus = bus
        self.fps = fps
        self.seq = 0

    def send(self, jpeg: bytes) -> None:
        self.seq += 1
        frame = Frame(
            camera="front", seq=self.seq, captured_at=time.time(), width=W, height=H, jpeg=jpeg
        )
        self.bus.publish(FRAMES, frame, camera="front")
        time.sleep(1 / self.fps)


def media_bytes(media_dir: Path) -> int:
    total = 0
    for root, _, files in os.walk(media_dir):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                pass
    return total


def fill(path: Path) -> int:
    """Write zeros to ``path`` until the file system is full; returns the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 4096, 1):  # big chunks, then the last pages
            while True:
                try:
                    written += os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return written


def metric(service: DetectorService, name: str) -> float:
    value = service.bus.metrics.registry.get_sample_value(name)
    return 0.0 if value is None else value


def test_media_disk_nearly_full_then_full_then_free(
    small_disk: Path,
    broker_settings: BrokerSettings,
    make_bus: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(detector_service, "MEDIA_RECOVERY_SECONDS", 2.0)
    settings = DetectorSettings(
        broker=broker_settings,
        metrics_port=0,
        data_dir=small_disk,
        person_mode=PersonMode.OFF,
        ha_discovery=False,
        events=EventSettings(quiet_seconds=0.5),
        media=MediaSettings(
            max_total_mb=MAX_TOTAL_MB,
            preroll_frames=10,
            max_event_frames=40,
            draw_boxes=True,
            retention_interval_seconds=0.5,
        ),
    )
    bus = make_bus("detector", start=False)
    service = DetectorService(bus, settings, bus.metrics)
    bus.start()
    assert bus.wait_connected(10)
    service.start()
    try:
        client = make_bus("client", start=False)
        events: Collector[MotionEvent] = Collector()
        statuses: Collector[ServiceStatus] = Collector()
        client.subscribe(MOTION_EVENTS, events)
        client.subscribe(SERVICE_STATUS, statuses, service="detector")
        client.start()
        assert client.wait_connected(10)
        camera = Camera(client)
        scene = Scene()

        def one_event() -> str:
            """A crossing, then still frames until the event ended; returns its id."""
            for _ in range(12):
                camera.send(scene.still)
            before = len(events.payloads)
            for jpeg in scene.crossing():
                camera.send(jpeg)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                camera.send(scene.still)
                new = events.payloads[before:]
                if any(e.type is EventType.END for e in new):
                    starts = [e for e in new if e.type is EventType.START]
                    assert len(starts) == 1
                    return starts[0].event_id
            raise AssertionError(f"no complete event; got {[e.type for e in new]}")

        # 1. nearly full: retention keeps the media under its cap, oldest first
        media_dir = settings.media_dir
        first_ids = [one_event() for _ in range(5)]
        assert service.media.flush(10)
        wait_until(lambda: metric(service, "homesec_detector_media_pruned_total") > 0, 10)
        assert media_bytes(media_dir) <= MAX_TOTAL_MB * 1024 * 1024
        left = {p.name for p in (media_dir / "front").iterdir()}
        assert first_ids[-1] in left and first_ids[0] not in left, "the oldest went first"
        assert metric(service, "homesec_detector_media_errors_total") == 0

        # 2. full: writes fail with ENOSPC, the detector carries on
        filler = small_disk / "filler.bin"
        assert fill(filler) > 1024 * 1024, "the tmpfs had room left before the filler"
        full_ids = [one_event() for _ in range(2)]
        assert service.media.flush(10)
        assert metric(service, "homesec_detector_media_errors_total") > 0
        wait_until(
            lambda: statuses.payloads and statuses.payloads[-1].state is ServiceState.DEGRADED, 10
        )
        assert service.workers["front"].thread.is_alive()
        assert service.media._thread is not None and service.media._thread.is_alive()
        assert not (media_dir / "front" / full_ids[-1] / "snapshot.jpg").exists()

        # 3. room again: media written, status ok
        filler.unlink()
        time.sleep(detector_service.MEDIA_RECOVERY_SECONDS + 0.5)
        errors_before = metric(service, "homesec_detector_media_errors_total")
        back_id = one_event()
        assert service.media.flush(10)
        assert (media_dir / "front" / back_id / "snapshot.jpg").stat().st_size > 0
        assert metric(service, "homesec_detector_media_errors_total") == errors_before
        wait_until(lambda: statuses.payloads[-1].state is ServiceState.OK, 10)
        assert shutil.disk_usage(small_disk).free > 0
    finally:
        service.close()
