"""A live network camera: an MJPEG-over-HTTP stream (what most IP cameras serve) from a real
local HTTP server, read through the opencv source's grabber thread."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from homesec.bus import Bus
from homesec.contract import FRAMES, SERVICE_STATUS, Frame, ServiceState, ServiceStatus
from homesec.metrics import ServiceMetrics
from homesec.settings import BrokerSettings
from homesec_camera.service import CameraService
from homesec_camera.settings import CameraSettings
from homesec_camera.sources.base import SourceError
from homesec_camera.sources.opencv import OpenCvSource
from support import Collector, wait_until

STREAM_FPS = 30


class MjpegServer(http.server.ThreadingHTTPServer):
    """Serves an endless multipart/x-mixed-replace JPEG stream; the grey level of frame n is
    (n * 3) % 256. ``drop()`` ends every open stream (a network camera going away)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _StreamHandler)
        self.streaming = threading.Event()
        self.streaming.set()
        self.requests = 0

    def drop(self) -> None:
        self.streaming.clear()

    def resume(self) -> None:
        self.streaming.set()


class _StreamHandler(http.server.BaseHTTPRequestHandler):
    server: MjpegServer

    def do_GET(self) -> None:
        self.server.requests += 1
        if not self.server.streaming.is_set():
            self.send_error(503, "camera offline")
            return
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        n = 0
        try:
            while self.server.streaming.is_set():
                image = np.full((120, 160, 3), (n * 3) % 256, np.uint8)
                jpeg = cv2.imencode(".jpg", image)[1].tobytes()
                head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                self.wfile.write(head % len(jpeg) + jpeg + b"\r\n")
                n += 1
                time.sleep(1 / STREAM_FPS)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stream() -> Iterator[MjpegServer]:
    server = MjpegServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.drop()
    server.shutdown()
    server.server_close()


def test_grabber_returns_the_newest_frame_not_a_backlog(stream: MjpegServer) -> None:
    url = f"http://127.0.0.1:{stream.server_address[1]}/video.mjpg"
    source = OpenCvSource(url, 160, 120, 5.0, read_timeout=5)
    source.open()
    try:
        levels = []
        for _ in range(4):
            levels.append(int(source.read()[60, 80, 0]))
            assert source.last_capture_time is not None
            assert 0 <= time.time() - source.last_capture_time < 2  # when it arrived, not now
            time.sleep(0.3)  # a slow consumer: ~9 stream frames arrive in between
        steps = [(b - a) % 256 for a, b in zip(levels, levels[1:], strict=False)]
        assert all(step >= 9 for step in steps), levels  # skipped ahead, no stale queue
        stream.drop()
        with pytest.raises(SourceError, match="read failed|no frame"):
            for _ in range(10):
                source.read()
    finally:
        source.close()


def test_dropped_stream_degrades_reconnects_and_hides_credentials(
    stream: MjpegServer, broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    url = f"http://admin:hunter2@127.0.0.1:{stream.server_address[1]}/video.mjpg"
    statuses: Collector[ServiceStatus] = Collector()
    frames: Collector[Frame] = Collector()
    listener = make_bus("listener")
    listener.subscribe(SERVICE_STATUS, statuses, service="camera")
    assert listener.subscribe(FRAMES, frames, camera="front").wait(10)
    settings = CameraSettings(
        broker=broker_settings,
        metrics_port=0,
        data_dir=tmp_path,
        source="opencv",
        device=url,
        width=160,
        height=120,
        fps=10,
        reconnect_min_seconds=0.3,
        reconnect_max_seconds=1.0,
        read_timeout_seconds=2,
    )
    metrics = ServiceMetrics("camera")
    bus = Bus(settings.broker, "camera", metrics)
    service = CameraService(bus, settings, metrics)
    stop = threading.Event()
    bus.start()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        frames.wait_for(5, timeout=15)
        stream.drop()
        degraded = wait_until(
            lambda: next((s for s in statuses.payloads if s.state == ServiceState.DEGRADED), None),
            15,
        )
        assert "retrying in" in degraded.detail
        assert degraded.info["fps"] == 0.0
        assert all("hunter2" not in s.model_dump_json() for s in statuses.payloads)
        requests_while_down = stream.requests
        time.sleep(1.5)
        assert stream.requests - requests_while_down <= 4  # backoff, not a reconnect storm
        count = len(frames.items)
        stream.resume()
        frames.wait_for(count + 5, timeout=15)
        wait_until(lambda: statuses.payloads[-1].state == ServiceState.OK, 15)
    finally:
        stop.set()
        thread.join(10)
        bus.stop(timeout=1)
    assert not thread.is_alive()
