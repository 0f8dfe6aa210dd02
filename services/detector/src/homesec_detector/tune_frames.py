"""Training events' frames kept in memory between the replays of ``homesec tune``.

A replay reads an event's JPEG files and decodes each to the motion detector's reduced
greyscale; neither depends on the setting being searched (the decode's reduction follows the
frame width and ``motion.analysis_width``, which the search never changes, and is part of the
key anyway). :class:`FrameCache` keeps both per event, as far as a replay read them, within a
byte budget: the least recently used event is dropped first. The search replays the same few
events (the false alerts, the occupied events candidates lose) under many settings, so they
stay in memory while the rest pass through once.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

FRAME_BUDGET_BYTES = 64 * 1024 * 1024
"""Default memory for kept frames (JPEG bytes and decoded greys): ~1,200 frames at 640x480;
small enough to run beside the stack on a 512 MB Pi (`--frame-memory` raises it)."""

Decoder = Callable[[bytes], np.ndarray | None]


class EventFrames:
    """One event's frames: JPEG bytes read on first use, greys decoded on first use."""

    def __init__(self, key: str, paths: list[Path], on_grow: Callable[[EventFrames, int], None]):
        self.key = key
        self.paths = paths
        self.bytes = 0
        self._jpegs: list[bytes] = []
        self._greys: dict[tuple[int, int], np.ndarray | None] = {}
        self._on_grow = on_grow
        self._digest: str | None = None
        self._sha1s: list[str] = []

    def __len__(self) -> int:
        return len(self.paths)

    def jpeg(self, index: int) -> bytes:
        """Frame ``index``'s bytes (read from its file once)."""
        while len(self._jpegs) <= index:
            data = self.paths[len(self._jpegs)].read_bytes()
            self._jpegs.append(data)
            self._grow(len(data))
        return self._jpegs[index]

    def sha1(self, index: int) -> str:
        """SHA-1 of frame ``index``'s bytes (hex, computed once)."""
        while len(self._sha1s) <= index:
            self._sha1s.append(hashlib.sha1(self.jpeg(len(self._sha1s))).hexdigest())
        return self._sha1s[index]

    def digest(self) -> str:
        """SHA-1 of every frame's SHA-1, in order (reads them all)."""
        if self._digest is None:
            whole = hashlib.sha1()
            for index in range(len(self.paths)):
                whole.update(self.sha1(index).encode())
            self._digest = whole.hexdigest()
        return self._digest

    def grey(self, index: int, flag: int, decode: Decoder) -> np.ndarray | None:
        """Frame ``index`` decoded with ``flag`` by ``decode`` (once; None: undecodable). The
        array is shared between replays: read-only."""
        key = (index, flag)
        if key not in self._greys:
            grey = decode(self.jpeg(index))
            if grey is not None:
                grey.flags.writeable = False
                self._grow(grey.nbytes)
            self._greys[key] = grey
        return self._greys[key]

    def _grow(self, n: int) -> None:
        self.bytes += n
        self._on_grow(self, n)


class FrameCache:
    """Events' :class:`EventFrames` within ``budget`` bytes (least recently used dropped)."""

    def __init__(self, budget: int = FRAME_BUDGET_BYTES) -> None:
        self.budget = budget
        self.bytes = 0
        self.dropped = 0
        """Events dropped to stay within the budget."""
        self._events: OrderedDict[str, EventFrames] = OrderedDict()

    def event(self, key: str, paths: list[Path]) -> EventFrames:
        """The frames of event ``key`` (``paths``: its frame files, in replay order)."""
        found = self._events.get(key)
        if found is not None and found.paths == paths:
            self._events.move_to_end(key)
            return found
        if found is not None:
            self._drop(key)
        frames = self._events[key] = EventFrames(key, paths, self._grew)
        return frames

    def __len__(self) -> int:
        return len(self._events)

    def _grew(self, frames: EventFrames, n: int) -> None:
        if self._events.get(frames.key) is not frames:
            return  # dropped already: its frames go when its replay ends
        self.bytes += n
        for key in list(self._events):
            if self.bytes <= self.budget:
                break
            if key != frames.key:
                self._drop(key)
        if self.bytes > self.budget:
            self._drop(frames.key)  # one event larger than the budget: it is not kept

    def _drop(self, key: str) -> None:
        self.bytes -= self._events.pop(key).bytes
        self.dropped += 1
