"""Pimoroni Pan-Tilt HAT through the ``pantilthat`` library (imported lazily: Pi only).

Uses only the library's documented module API: ``pan(angle)``, ``tilt(angle)`` (-90..90,
``ValueError`` outside), ``get_pan()``, ``get_tilt()``, ``servo_enable(1|2, bool)`` and
``idle_timeout(seconds)``.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from homesec_ptz.backends.base import PtzBackend

log = logging.getLogger("homesec_ptz.pantilthat")

IDLE_TIMEOUT_SECONDS = 2
"""Servos are switched off this long after the last move (stops jitter and humming)."""


class PanTiltHatBackend(PtzBackend):
    name = "pantilthat"

    def __init__(self) -> None:
        try:
            self._hat: Any = importlib.import_module("pantilthat")
        except ImportError as exc:
            raise RuntimeError(
                "backend 'pantilthat' needs the pantilthat package and python3-smbus "
                "(install homesec-ptz[pi] on the Raspberry Pi)"
            ) from exc
        self._hat.servo_enable(1, True)
        self._hat.servo_enable(2, True)
        self._hat.idle_timeout(IDLE_TIMEOUT_SECONDS)

    def move(self, pan: float, tilt: float) -> None:
        self._hat.pan(pan)
        self._hat.tilt(tilt)

    def position(self) -> tuple[float, float]:
        pan = self._hat.get_pan()
        tilt = self._hat.get_tilt()
        return float(pan if pan is not None else 0.0), float(tilt if tilt is not None else 0.0)

    def close(self) -> None:
        try:
            self._hat.servo_enable(1, False)
            self._hat.servo_enable(2, False)
        except OSError as exc:  # I2C gone at shutdown: nothing else to do
            log.warning("could not disable servos", extra={"error": str(exc)})
