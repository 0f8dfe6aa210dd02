"""Writing files so that a crash or power cut leaves the old file or the new one, never half.

The one way homesec writes a file it relies on: the state owners' local copies, PTZ presets,
event media, pins and the local training store. :class:`FileLock` keeps two processes from
writing the same files at once (``homesec tune``'s kept files).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    ``durable`` also fsyncs the file before the rename and the folder after it, so the new
    content survives a power cut once this returns (state, presets, uploaded training data);
    without it the write is only atomic (event media, written many times a second)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a folder's entries (a new or renamed file) durable; a no-op where unsupported."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class FileLock:
    """An exclusive advisory lock (``flock``) on ``path``, held until :meth:`release` or the
    process ends (a crash releases it: nothing stale to clean up).

    When another process holds it, ``on_wait`` is called once with what the holder wrote in the
    file (its pid) and the lock is then waited for. Two opens in one process exclude each other
    too (``flock`` locks an open file, not a process)."""

    def __init__(self, path: Path, on_wait: Callable[[str], None] | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait(os.pread(self._fd, 64, 0).decode(errors="replace").strip())
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(self._fd)
            raise

    def release(self) -> None:
        """Let the next holder in (a second call does nothing)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
