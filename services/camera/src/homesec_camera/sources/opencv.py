"""OpenCV source: USB/V4L2 device (index or /dev/videoN), RTSP/HTTP stream, or a video file.

Live sources (devices and streams) are read by a grabber thread that keeps only the newest
frame, so a camera or stream delivering faster than the configured fps never builds up a
backlog of stale frames (RTSP latency stays bounded). Files are read in order, one frame per
``read()``, so a file plays at the camera's configured fps, optionally looped."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from homesec_camera.sources.base import FrameSource, SourceError

log = logging.getLogger("homesec_camera.opencv")


def parse_device(device: str) -> int | str:
    """An integer index for ``"0"``, otherwise the string itself (path or URL)."""
    return int(device) if device.isdigit() else device


def redact(device: str) -> str:
    """The device with any ``user:password@`` removed, for logs and status."""
    parts = urlsplit(device)
    if parts.scheme and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, ""))
    return device


class OpenCvSource(FrameSource):
    """Frames from ``cv2.VideoCapture``, resized to the configured size when needed."""

    kind = "opencv"

    def __init__(
        self,
        device: str,
        width: int,
        height: int,
        fps: float,
        *,
        loop: bool = False,
        read_timeout: float = 5.0,
    ) -> None:
        self.device = device
        self.target = parse_device(device)
        self.width = width
        self.height = height
        self.fps = fps
        self.loop = loop
        self.read_timeout = read_timeout
        self.is_file = isinstance(self.target, str) and (
            "://" not in self.target and not self.target.startswith("/dev/")
        )
        self._cap: cv2.VideoCapture | None = None
        self._grabber: _Grabber | None = None

    def describe(self) -> str:
        return f"opencv {redact(self.device)}"

    def open(self) -> None:
        self.close()
        if self.is_file and not Path(str(self.target)).is_file():
            raise SourceError(f"no such video file: {self.device}")
        if isinstance(self.target, str) and self.target.startswith("/dev/"):
            if not Path(self.target).exists():
                raise SourceError(f"no such device: {self.target}")
        cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {redact(self.device)}")
        if not self.is_file:
            if not isinstance(self.target, str) or self.target.startswith("/dev/"):
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
                cap.set(cv2.CAP_PROP_FPS, self.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            self._grabber = _Grabber(cap)
            self._grabber.start()
        self._cap = cap

    def read(self) -> np.ndarray:
        if self._cap is None:
            raise SourceError("source is not open")
        if self._grabber is not None:
            frame, self.last_capture_time = self._grabber.next(self.read_timeout)
        else:
            frame = self._read_file(self._cap)
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        if frame.shape[1] != self.width or frame.shape[0] != self.height:
            shrink = frame.shape[1] > self.width
            frame = cv2.resize(
                frame,
                (self.width, self.height),
                interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
            )
        return frame

    def _read_file(self, cap: cv2.VideoCapture) -> np.ndarray:
        ok, frame = cap.read()
        if ok:
            return frame
        if not self.loop:
            raise SourceError("end of file")
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        ok, frame = cap.read()
        if not ok:
            raise SourceError("cannot rewind video file")
        return frame

    def close(self) -> None:
        grabber, self._grabber = self._grabber, None
        cap, self._cap = self._cap, None
        if grabber is not None and not grabber.stop(self.read_timeout):
            # A read blocked inside the backend: releasing now could crash it; leak instead.
            log.warning(
                "capture thread did not stop; abandoning it", extra={"device": self.describe()}
            )
            return
        if cap is not None:
            cap.release()


class _Grabber:
    """Reads a live capture continuously, keeping only the newest frame."""

    def __init__(self, cap: cv2.VideoCapture) -> None:
        self._cap = cap
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._frame_time = 0.0
        self._count = 0
        self._taken = 0
        self._error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="camera-grabber", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def next(self, timeout: float) -> tuple[np.ndarray, float]:
        """A frame newer than the last one returned and the Unix time it arrived; SourceError
        on failure or timeout."""
        with self._cond:
            ready = self._cond.wait_for(
                lambda: self._count > self._taken or self._error is not None, timeout
            )
            if self._count > self._taken and self._frame is not None:
                self._taken = self._count
                return self._frame, self._frame_time
            if self._error is not None:
                raise SourceError(self._error)
            assert not ready
            raise SourceError(f"no frame within {timeout:g} s")

    def _run(self) -> None:
        while not self._stop.is_set():
            ok, frame = self._cap.read()
            arrived = time.time()
            with self._cond:
                if not ok:
                    self._error = "read failed (device unplugged or stream dropped)"
                    self._cond.notify_all()
                    return
                self._frame = frame
                self._frame_time = arrived
                self._count += 1
                self._cond.notify_all()
