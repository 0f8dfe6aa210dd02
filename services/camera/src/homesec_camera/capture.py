"""The capture loop: read → orient → encode → publish, paced, with reconnect and snapshots.

Plain Python: it talks to the outside world only through a :class:`FrameSink` (the service
implements it with the MQTT bus), so it runs and is tested without a broker."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from homesec.backoff import Backoff
from homesec.contract import Frame, ServiceState
from homesec_camera.imaging import JpegEncoder, orient
from homesec_camera.metrics import CameraMetrics
from homesec_camera.settings import CameraSettings
from homesec_camera.sources.base import FrameSource, SourceError
from homesec_camera.timing import FpsMeter, Pacer

log = logging.getLogger("homesec_camera.capture")

FPS_WINDOW_SECONDS = 5.0
"""Window of the effective-fps measurement."""
STABLE_SECONDS = 10.0
"""A source that delivered frames this long resets the reconnect backoff to its minimum."""
FIRST_STATUS_SECONDS = 1.0
"""Delay of the first status after frames start flowing, so it carries a measured fps."""


class FrameSink(Protocol):
    """Where the capture loop sends its output."""

    def publish_frame(self, frame: Frame) -> bool: ...

    def publish_snapshot(self, frame: Frame) -> bool: ...

    def publish_status(self, state: ServiceState, detail: str, info: dict[str, Any]) -> None: ...


class CaptureLoop:
    """Runs one camera until ``stop`` is set."""

    def __init__(
        self,
        settings: CameraSettings,
        source: FrameSource,
        sink: FrameSink,
        metrics: CameraMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.source = source
        self.sink = sink
        self.metrics = metrics
        self._clock = clock
        self._encoder = JpegEncoder(settings.jpeg_quality)
        self._pacer = Pacer(settings.fps, clock)
        self._backoff = Backoff(settings.reconnect_min_seconds, settings.reconnect_max_seconds)
        self._fps = FpsMeter(FPS_WINDOW_SECONDS, clock)
        self._lock = threading.Lock()
        self._latest: Frame | None = None
        self._snapshot_pending = False
        self._last_snapshot = float("-inf")
        self._next_status = clock() + min(FIRST_STATUS_SECONDS, settings.status_interval_seconds)
        self._state = ServiceState.OK
        self._detail = ""
        self._open = False
        self._up_since = 0.0
        self.seq = -1
        self.late_frames = 0
        self.open_attempts = 0
        metrics.target_fps.set(settings.fps)
        metrics.source_up.set(0)

    # ---- public --------------------------------------------------------------------------

    @property
    def latest(self) -> Frame | None:
        """The newest published frame (None before the first one)."""
        with self._lock:
            return self._latest

    def request_snapshot(self) -> bool:
        """Publish the newest frame on the snapshot topic now (safe from any thread).

        Before the first frame exists, the first captured frame is published instead.
        Returns whether a snapshot was published right away."""
        with self._lock:
            frame = self._latest
            if frame is None:
                self._snapshot_pending = True
                return False
        self._publish_snapshot(frame)
        return True

    def status_info(self) -> dict[str, Any]:
        width, height = self.settings.output_size
        return {
            "camera": self.settings.camera_id,
            "fps": round(self._fps.fps(), 2) if self._open else 0.0,
            "target_fps": self.settings.fps,
            "source": self.settings.source,
            "width": width,
            "height": height,
        }

    def run(self, stop: threading.Event) -> None:
        """Capture until ``stop`` is set; never raises for source failures."""
        log.info(
            "camera starting",
            extra={"camera": self.settings.camera_id, "source": self.source.describe()},
        )
        try:
            while not stop.is_set():
                if not self._open and not self._try_open(stop):
                    continue
                skipped = self._pacer.wait(stop)
                if skipped < 0:
                    break
                if skipped:
                    self.late_frames += skipped
                    self.metrics.dropped_late.inc(skipped)
                try:
                    image = self.source.read()
                except SourceError as exc:
                    self._fail(str(exc), stop)
                    continue
                self._emit(image, self.source.last_capture_time or time.time())
                self._periodic_status()
        finally:
            self.source.close()
            self.metrics.source_up.set(0)
            self.metrics.fps.set(0)

    # ---- internals -----------------------------------------------------------------------

    def _try_open(self, stop: threading.Event) -> bool:
        self.open_attempts += 1
        try:
            self.source.open()
        except SourceError as exc:
            self._fail(str(exc), stop)
            return False
        self._open = True
        self._up_since = self._clock()
        self._pacer.reset()
        self._fps.clear()
        log.info("source opened", extra={"source": self.source.describe()})
        return True

    def _fail(self, reason: str, stop: threading.Event) -> None:
        """Close the source, report degraded and wait out the backoff (interruptibly)."""
        self.metrics.capture_errors.inc()
        if self._open and self._clock() - self._up_since >= STABLE_SECONDS:
            self._backoff.reset()
        self._open = False
        self.source.close()
        self.metrics.source_up.set(0)
        self.metrics.fps.set(0)
        self._fps.clear()
        delay = self._backoff.next_delay()
        detail = f"source failed: {reason}; retrying in {delay:g} s"[:500]
        log.warning(
            "source failed",
            extra={"source": self.source.describe(), "reason": reason, "retry_seconds": delay},
        )
        self._set_status(ServiceState.DEGRADED, detail)
        deadline = self._clock() + delay
        while not stop.is_set():
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            if stop.wait(min(remaining, self.settings.status_interval_seconds)):
                break
            self._periodic_status()
        missed = int(delay * self.settings.fps)
        if missed:
            self.metrics.dropped_disconnected.inc(missed)

    def _emit(self, image: Any, captured_at: float) -> None:
        s = self.settings
        self.seq += 1
        self.metrics.frames_captured.inc()
        oriented = orient(image, rotate=s.rotate, hflip=s.hflip, vflip=s.vflip)
        started = time.perf_counter()
        jpeg = self._encoder.encode(oriented)
        self.metrics.encode_seconds.observe(time.perf_counter() - started)
        frame = Frame(
            camera=s.camera_id,
            seq=self.seq,
            captured_at=captured_at,
            width=oriented.shape[1],
            height=oriented.shape[0],
            jpeg=jpeg,
        )
        with self._lock:
            self._latest = frame
            pending, self._snapshot_pending = self._snapshot_pending, False
        if self.sink.publish_frame(frame):
            self.metrics.frames_published.inc()
        self._fps.tick()
        self.metrics.fps.set(self._fps.fps())
        self.metrics.source_up.set(1)
        if self._state is not ServiceState.OK:
            log.info("source delivering frames", extra={"source": self.source.describe()})
            self._set_status(ServiceState.OK, "", next_in=FIRST_STATUS_SECONDS)
        now = self._clock()
        if pending or now - self._last_snapshot >= s.snapshot_interval_seconds:
            self._publish_snapshot(frame)

    def _publish_snapshot(self, frame: Frame) -> None:
        self._last_snapshot = self._clock()
        if self.sink.publish_snapshot(frame):
            self.metrics.snapshots_published.inc()

    def _periodic_status(self) -> None:
        if self._clock() >= self._next_status:
            self._set_status(self._state, self._detail)

    def _set_status(self, state: ServiceState, detail: str, next_in: float | None = None) -> None:
        """Publish the status now; the next periodic one follows after ``next_in`` seconds
        (default: the status interval)."""
        self._state, self._detail = state, detail
        interval = self.settings.status_interval_seconds
        self._next_status = self._clock() + min(interval, next_in if next_in else interval)
        self.sink.publish_status(state, detail, self.status_info())
