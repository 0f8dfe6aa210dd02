"""The interface every frame source implements, and the error a failing source raises."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class SourceError(RuntimeError):
    """The source cannot deliver frames (not found, unplugged, stream dropped, end of file).

    The capture loop closes the source and reopens it with backoff."""


class FrameSource(ABC):
    """A camera or camera-like thing that yields BGR images.

    ``open()`` may block for a while (device probing, RTSP handshake); ``read()`` returns the
    next frame as an ``HxWx3`` uint8 BGR array or raises :class:`SourceError`; ``close()`` is
    idempotent and safe after a failed ``open()``."""

    kind: str = "source"
    last_capture_time: float | None = None
    """Unix time the frame returned by the last ``read()`` was taken, when the source knows it
    better than "now" (a grabber thread); None means the frame was taken during ``read()``."""

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self) -> np.ndarray: ...

    @abstractmethod
    def close(self) -> None: ...

    def describe(self) -> str:
        """Short human-readable name for logs and status (never contains credentials)."""
        return self.kind
