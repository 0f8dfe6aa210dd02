"""A head that only exists in memory, for development and tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from homesec_ptz.backends.base import PtzBackend


class SimulatedBackend(PtzBackend):
    """Keeps the angles. With ``slew_degrees_per_second`` > 0 the reported position travels
    towards the last commanded angles at that speed, like a real servo would."""

    name = "simulated"

    def __init__(
        self,
        pan: float = 0.0,
        tilt: float = 0.0,
        slew_degrees_per_second: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._slew = slew_degrees_per_second
        self._start = (pan, tilt)
        self._target = (pan, tilt)
        self._since = clock()
        self.moves: list[tuple[float, float]] = []

    def move(self, pan: float, tilt: float) -> None:
        with self._lock:
            self._start = self._position_locked()
            self._target = (pan, tilt)
            self._since = self._clock()
            self.moves.append((pan, tilt))

    def position(self) -> tuple[float, float]:
        with self._lock:
            return self._position_locked()

    def settling(self) -> bool:
        return self.position() != self._target

    def _position_locked(self) -> tuple[float, float]:
        if self._slew <= 0:
            return self._target
        travel = self._slew * (self._clock() - self._since)
        return (
            _towards(self._start[0], self._target[0], travel),
            _towards(self._start[1], self._target[1], travel),
        )


def _towards(start: float, target: float, travel: float) -> float:
    if abs(target - start) <= travel:
        return target
    return start + travel if target > start else start - travel
