"""Clocks for the capture loop: frame pacing and an fps meter."""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable


class Pacer:
    """Ticks at a fixed rate against a monotonic clock.

    Deadlines are ``start + k / fps``, so small delays never accumulate into drift. When the
    loop falls more than a frame behind, the missed ticks are skipped (and reported) instead of
    being caught up in a burst."""

    def __init__(self, fps: float, clock: Callable[[], float]) -> None:
        self.period = 1.0 / fps
        self._clock = clock
        self._next = clock()

    def reset(self) -> None:
        """Restart the schedule now (after a reconnect)."""
        self._next = self._clock()

    def wait(self, stop: threading.Event) -> int:
        """Sleep until the next tick; returns how many ticks were skipped because the loop was
        late. Returns -1 if ``stop`` was set while waiting."""
        now = self._clock()
        skipped = 0
        if now >= self._next + self.period:
            skipped = math.floor((now - self._next) / self.period)
            self._next += skipped * self.period
        delay = self._next - now
        if delay > 0 and stop.wait(delay):
            return -1
        self._next += self.period
        return skipped


class FpsMeter:
    """Effective frame rate over a sliding window of recent frame times."""

    def __init__(self, window_seconds: float, clock: Callable[[], float]) -> None:
        self.window = window_seconds
        self._clock = clock
        self._times: deque[float] = deque()

    def tick(self) -> None:
        now = self._clock()
        self._times.append(now)
        self._trim(now)

    def fps(self) -> float:
        now = self._clock()
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        span = now - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def clear(self) -> None:
        self._times.clear()

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window:
            self._times.popleft()
