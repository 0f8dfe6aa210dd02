"""Entry point: ``python -m homesec_ptz``."""

from __future__ import annotations

from homesec.service import run_service
from homesec_ptz.controller import PtzController
from homesec_ptz.settings import PtzSettings


def main(argv: list[str] | None = None) -> int:
    return run_service(
        "ptz", PtzSettings, lambda rt, settings: PtzController(rt.bus, settings, rt.metrics)
    )
