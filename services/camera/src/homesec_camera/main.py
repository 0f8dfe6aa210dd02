"""``python -m homesec_camera``: settings → bus → capture loop."""

from __future__ import annotations

from homesec.service import run_service
from homesec_camera.service import CameraService
from homesec_camera.settings import CameraSettings


def main(argv: list[str] | None = None) -> int:
    return run_service(
        "camera", CameraSettings, lambda rt, settings: CameraService(rt.bus, settings, rt.metrics)
    )
