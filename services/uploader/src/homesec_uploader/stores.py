"""Destinations: an S3 bucket (``s3_store``, boto3 imported only in S3 mode) or a local folder.

Both store objects under the same keys and answer ``head(key)`` with the size and the MD5 hex
digest (S3's ETag for a single-part upload without SSE-KMS), which is how the uploader proves an
object is already there and never uploads it twice. ``copy`` and ``delete`` move a relabelled
event's objects to the new label's keys.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from homesec.files import atomic_write
from homesec.media import resolve_inside
from homesec_uploader.settings import UploaderSettings


class DestinationError(Exception):
    """The destination refused or could not be reached; the upload is retried later."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True)
class Stored:
    size: int
    etag: str  # without quotes


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class Store(Protocol):
    mode: str
    destination: str
    verifies_md5: bool

    def head(self, key: str) -> Stored | None: ...

    def put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> Stored:
        """Store ``data`` under ``key``; returns what the destination confirmed."""
        ...

    def copy(self, source: str, key: str, content_type: str, metadata: dict[str, str]) -> str:
        """Copy the object at ``source`` to ``key`` within the destination; returns the ETag."""
        ...

    def delete(self, key: str) -> None:
        """Delete ``key``; deleting a key that does not exist succeeds."""
        ...


class LocalStore:
    """A folder with the same key layout (the default when no bucket is configured)."""

    mode = "local"
    verifies_md5 = True

    def __init__(self, settings: UploaderSettings) -> None:
        self.root = settings.training_dir
        self.destination = settings.destination

    def _path(self, key: str) -> Path:
        return resolve_inside(self.root, key)

    def head(self, key: str) -> Stored | None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DestinationError(f"local folder {self.root}: {exc}") from None
        return Stored(len(data), md5_hex(data))

    def put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> Stored:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write(self._path(key), data)
        except OSError as exc:
            raise DestinationError(f"local folder {self.root}: {exc}") from None
        return Stored(len(data), md5_hex(data))

    def copy(self, source: str, key: str, content_type: str, metadata: dict[str, str]) -> str:
        try:
            data = self._path(source).read_bytes()
        except OSError as exc:
            raise DestinationError(f"local folder {self.root}: {exc}") from None
        return self.put(key, data, content_type, metadata).etag

    def delete(self, key: str) -> None:
        """Remove the file, then its folders up to the root as far as they are empty."""
        try:
            path = self._path(key)
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise DestinationError(f"local folder {self.root}: {exc}") from None
        root = self.root.resolve()
        for folder in path.parents:
            if folder == root or root not in folder.parents:
                break
            try:
                folder.rmdir()
            except OSError:
                break  # not empty (or gone): the folders above are not empty either


def make_store(settings: UploaderSettings) -> Store:
    """The configured destination; boto3 (~9 MB of memory) is imported only in S3 mode."""
    if settings.mode == "s3":
        from homesec_uploader.s3_store import S3Store

        return S3Store(settings)
    return LocalStore(settings)
