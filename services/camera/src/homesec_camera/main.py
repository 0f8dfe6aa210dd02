"""``python -m homesec_camera``: settings → bus → capture loop."""

from __future__ import annotations

from homesec.service import ServiceRuntime
from homesec.settings import load_settings
from homesec_camera.service import CameraService
from homesec_camera.settings import CameraSettings


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(CameraSettings)
    with ServiceRuntime("camera", settings) as rt:
        camera = CameraService(rt.bus, settings, rt.metrics)
        rt.start()
        camera.run(rt.stop_event)
    return 0
