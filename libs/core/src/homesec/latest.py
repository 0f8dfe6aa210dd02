"""A one-item mailbox: the producer overwrites, the consumer takes the newest.

Used where frames are latest-wins: when a consumer falls behind, stale items are replaced
(and counted) instead of queued, so latency stays bounded."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """Thread-safe slot holding at most one pending item."""

    def __init__(self) -> None:
        self._item: T | None = None
        self._cond = threading.Condition()
        self.replaced = 0
        """Items overwritten before the consumer took them (dropped as stale)."""

    def put(self, item: T) -> bool:
        """Store ``item``; returns True when it replaced one that was never taken."""
        with self._cond:
            dropped = self._item is not None
            if dropped:
                self.replaced += 1
            self._item = item
            self._cond.notify()
            return dropped

    def take(self, timeout: float | None = None) -> T | None:
        """The newest item, waiting up to ``timeout``; None if nothing came."""
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item
