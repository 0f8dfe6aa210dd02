"""``python -m homesec_detector``: settings → bus → detector → run until SIGTERM."""

from __future__ import annotations

import logging

from homesec.service import ServiceRuntime
from homesec.settings import load_settings
from homesec_detector.service import DetectorService
from homesec_detector.settings import DetectorSettings

log = logging.getLogger("homesec_detector")


def main(argv: list[str] | None = None) -> int:
    settings = load_settings(DetectorSettings)
    with ServiceRuntime("detector", settings) as rt:
        try:
            detector = DetectorService(rt.bus, settings, rt.metrics)
        except (OSError, ValueError) as exc:
            log.error("cannot start the detector", extra={"error": str(exc)})
            return 2
        rt.start()
        detector.run(rt.stop_event)
    return 0
