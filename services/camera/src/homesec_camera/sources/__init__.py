"""Frame sources: one module per kind, chosen by ``HOMESEC_CAMERA_SOURCE``."""

from __future__ import annotations

from homesec_camera.settings import CameraSettings
from homesec_camera.sources.base import FrameSource, SourceError


def build_source(settings: CameraSettings) -> FrameSource:
    """The source configured in ``settings`` (not yet opened)."""
    if settings.source == "demo":
        from homesec_camera.sources.demo import DemoSource

        return DemoSource(
            settings.width,
            settings.height,
            seed=settings.demo_seed,
            period_seconds=settings.demo_period_seconds,
            noise=settings.demo_noise,
        )
    if settings.source == "opencv":
        from homesec_camera.sources.opencv import OpenCvSource

        return OpenCvSource(
            settings.device,
            settings.width,
            settings.height,
            settings.fps,
            loop=settings.loop,
            read_timeout=settings.read_timeout_seconds,
        )
    from homesec_camera.sources.picamera2 import Picamera2Source

    return Picamera2Source(settings.width, settings.height, settings.fps)


__all__ = ["FrameSource", "SourceError", "build_source"]
