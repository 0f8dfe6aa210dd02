"""Raspberry Pi camera through picamera2 (libcamera).

``picamera2`` is imported inside :meth:`Picamera2Source.open` only: it needs libcamera, which
Raspberry Pi OS ships through apt (``python3-picamera2``), so the package stays installable
anywhere. The ``main`` stream is configured as ``RGB888``, which picamera2 lays out in memory
as B, G, R — OpenCV's order — so frames need no colour conversion."""

from __future__ import annotations

from typing import Any

import numpy as np

from homesec_camera.sources.base import FrameSource, SourceError


class Picamera2Source(FrameSource):
    """Frames from the ``main`` stream of a Pi camera."""

    kind = "picamera2"

    def __init__(self, width: int, height: int, fps: float, camera_num: int = 0) -> None:
        self.width = width
        self.height = height
        self.fps = fps
        self.camera_num = camera_num
        self._camera: Any = None

    def describe(self) -> str:
        return f"picamera2 camera {self.camera_num}"

    def open(self) -> None:
        self.close()
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise SourceError(
                f"picamera2 is not installed ({exc}); on Raspberry Pi OS: apt install "
                "python3-picamera2"
            ) from None
        frame_us = int(1_000_000 / self.fps)
        camera = None
        try:
            camera = Picamera2(self.camera_num)
            config = camera.create_video_configuration(
                main={"size": (self.width, self.height), "format": "RGB888"},
                controls={"FrameDurationLimits": (frame_us, frame_us)},
            )
            camera.configure(config)
            camera.start()
        except Exception as exc:  # libcamera raises RuntimeError, IndexError, OSError, ...
            if camera is not None:
                _quietly_close(camera)
            raise SourceError(f"cannot start Pi camera: {exc}") from None
        self._camera = camera

    def read(self) -> np.ndarray:
        if self._camera is None:
            raise SourceError("source is not open")
        try:
            array = self._camera.capture_array("main")
        except Exception as exc:  # a camera that stops answering surfaces as any error
            raise SourceError(f"capture failed: {exc}") from None
        frame = np.asarray(array)
        if frame.ndim != 3 or frame.shape[2] not in (3, 4):
            raise SourceError(f"unexpected frame shape {frame.shape}")
        if frame.shape[2] == 4:
            frame = frame[:, :, :3]
        return np.ascontiguousarray(frame)

    def close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            _quietly_close(camera)


def _quietly_close(camera: Any) -> None:
    for method in ("stop", "close"):
        try:
            getattr(camera, method)()
        except Exception:  # closing a failed camera must not mask the original error
            pass
