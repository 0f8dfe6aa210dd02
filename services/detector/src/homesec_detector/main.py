"""``python -m homesec_detector``: settings → bus → detector → run until SIGTERM."""

from __future__ import annotations

from homesec.service import run_service
from homesec_detector.service import DetectorService
from homesec_detector.settings import DetectorSettings


def main(argv: list[str] | None = None) -> int:
    return run_service(
        "detector",
        DetectorSettings,
        lambda rt, settings: DetectorService(rt.bus, settings, rt.metrics),
    )
