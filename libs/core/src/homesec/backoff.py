"""Exponential backoff, the one used everywhere in homesec (reconnects, retries, restarts).

``delay(n)`` is the pure rule; :class:`Backoff` counts failures for a loop that retries one
thing. Delays run ``minimum, 2*minimum, 4*minimum ...`` capped at ``maximum``.
"""

from __future__ import annotations


def backoff_delay(failures: int, minimum: float, maximum: float) -> float:
    """Seconds to wait after ``failures`` consecutive failures (1 → ``minimum``)."""
    if failures <= 0:
        return 0.0
    return min(maximum, minimum * 2.0 ** min(failures - 1, 60))


class Backoff:
    """Counts consecutive failures of one retried operation; ``reset()`` after a success."""

    def __init__(self, minimum: float, maximum: float) -> None:
        if minimum <= 0 or maximum < minimum:
            raise ValueError(f"backoff needs 0 < minimum <= maximum, got {minimum}, {maximum}")
        self.minimum = minimum
        self.maximum = maximum
        self.failures = 0

    def next_delay(self) -> float:
        """Record a failure and return how long to wait before the next try."""
        self.failures += 1
        return backoff_delay(self.failures, self.minimum, self.maximum)

    def reset(self) -> None:
        self.failures = 0
