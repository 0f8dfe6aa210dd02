"""Entry point: ``python -m homesec_ptz``."""

from __future__ import annotations

from homesec.service import ServiceRuntime
from homesec.settings import load_settings
from homesec_ptz.controller import PtzController
from homesec_ptz.settings import PtzSettings


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(PtzSettings)
    with ServiceRuntime("ptz", settings) as rt:
        controller = PtzController(rt.bus, settings, rt.metrics)
        rt.start()
        controller.run(rt.stop_event)
    return 0
