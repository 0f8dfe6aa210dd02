"""Destinations: an S3 bucket (``s3_store``, boto3 imported only in S3 mode) or a local folder.

Both store objects under the same keys and answer ``head(key)`` with the size and the MD5 hex
digest (S3's ETag for a single-part upload without SSE-KMS), which is how the uploader proves an
object is already there and never uploads it twice. ``copy`` and ``delete`` move a relabelled
event's objects to the new label's keys. :class:`MirroredStore` keeps a local copy of an S3
training set (``HOMESEC_UPLOADER_LOCAL_COPY``) for the detector's nightly ``homesec tune``.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from homesec.files import atomic_write
from homesec.media import resolve_inside
from homesec_uploader.settings import UploaderSettings

if TYPE_CHECKING:
    from homesec_uploader.s3_store import S3Store


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

    def get(self, key: str) -> bytes:
        """The object's bytes (DestinationError when it cannot be read)."""
        ...

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

    def size(self, key: str) -> int | None:
        """The stored file's size (a ``stat``, nothing read), None when there is none."""
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DestinationError(f"local folder {self.root}: {exc}") from None

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise DestinationError(f"local folder {self.root}: {exc}") from None

    def put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> Stored:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write(self._path(key), data)
        except OSError as exc:
            raise DestinationError(f"local folder {self.root}: {exc}") from None
        return Stored(len(data), md5_hex(data))

    def copy(self, source: str, key: str, content_type: str, metadata: dict[str, str]) -> str:
        return self.put(key, self.get(source), content_type, metadata).etag

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


class MirroredKeys:
    """The keys the local copy holds because the bucket held them (put, copied or fetched
    through the copy, or seen in both at a sync), in a SQLite file of the uploader's: a key the
    bucket later lacks was deleted there, while a file the bucket never held (a set kept in
    local mode before the switch to S3) is not the copy's to remove."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("CREATE TABLE IF NOT EXISTS mirrored (key TEXT PRIMARY KEY)")

    def add(self, keys: Iterable[str]) -> None:
        try:
            with self._lock:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT OR IGNORE INTO mirrored VALUES (?)", ((k,) for k in keys)
                )
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise DestinationError(f"local copy's key list: {exc}") from None

    def discard(self, key: str) -> None:
        try:
            with self._lock:
                self._db.execute("DELETE FROM mirrored WHERE key = ?", (key,))
        except sqlite3.Error as exc:
            raise DestinationError(f"local copy's key list: {exc}") from None

    def holds(self, key: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM mirrored WHERE key = ?", (key,)).fetchone()
        return row is not None

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass(frozen=True)
class Synced:
    """What :meth:`MirroredStore.sync` did to the folder."""

    fetched: int
    """Objects fetched from the bucket."""
    removed: int
    """Files removed: their objects are gone from the bucket."""
    refused: int = 0
    """Files the bucket lost that were kept: the bucket shares nothing with the folder."""


def _files_under(folder: Path, prefix: str) -> Iterator[str]:
    """The keys (``prefix/relative/path``) of the regular files under ``folder``."""
    for dirpath, _dirs, names in os.walk(folder):
        rel = Path(dirpath).relative_to(folder)
        for name in names:
            if (Path(dirpath) / name).is_file():
                yield "/".join((prefix, *rel.parts, name))


def _older_than(path: Path, moment: float) -> bool:
    try:
        return path.stat().st_mtime < moment
    except FileNotFoundError:
        return False


class MirroredStore:
    """The bucket, with a copy of every object in the local training folder.

    Each ``put``, ``copy`` and ``delete`` is done in the bucket, then in the folder, and an
    object counts as stored (``head``) only where both hold it: a failed local write is a
    destination error, retried like any other. ``head`` of an object the bucket has and the
    folder lacks (stored before the copy was turned on, or a local write that failed after
    the bucket's) first fetches it into the folder, so a retry, a relabel's copy and an
    unchanged object never need the event's local media again."""

    mode = "s3"

    def __init__(self, bucket: S3Store, local: LocalStore, prefix: str, keys: MirroredKeys) -> None:
        self.bucket = bucket
        self.local = local
        self.prefix = prefix
        self.keys = keys
        self.verifies_md5 = bucket.verifies_md5
        self.destination = f"{bucket.destination} (a copy in {local.root})"

    def head(self, key: str) -> Stored | None:
        found = self.bucket.head(key)
        if found is not None:
            self._fill(key, found)
        return found

    def _fill(self, key: str, found: Stored) -> bool:
        """Fetch ``key`` into the folder unless it holds that object already; whether it did."""
        mine = self.local.head(key)
        if (
            mine is not None
            and mine.size == found.size
            and (not self.verifies_md5 or mine == found)
        ):
            return False
        data = self.bucket.get(key)
        if len(data) != found.size or (self.verifies_md5 and md5_hex(data) != found.etag):
            raise DestinationError(f"{key}: the bucket's object changed while it was read")
        self.local.put(key, data, "", {})
        self.keys.add([key])
        return True

    def sync(self, stop: Callable[[], bool] = lambda: False) -> Synced:
        """Bring the folder's copy of the bucket's training set up to date.

        Fetches every object the folder lacks (stored before the copy was turned on, or lost
        from the folder), each event's ``label.json`` last, so a folder the detector reads as
        complete is; a file of the object's size counts as held (a ``stat``: a sync does not
        read the whole set). Then removes from the folder what the bucket held and no longer
        holds (:class:`MirroredKeys`: deleted outside homesec, by a lifecycle rule or the
        owner), each event's ``label.json`` first, but only files older than the listing and
        only when the listing was complete and shares an object with the folder: a wrong
        bucket or prefix (nothing in common) removes nothing (:attr:`Synced.refused`). Stops
        early on ``stop()``."""
        started = time.time()
        root = self.local.root / self.prefix
        local = set(_files_under(root, self.prefix))
        fetched, common = 0, 0
        labels: list[tuple[str, Stored]] = []
        held: list[str] = []  # in both: the bucket's, from now on
        for key, found in self.bucket.listing(self.prefix + "/"):
            if stop():
                return Synced(fetched, 0)
            if key in local:
                local.discard(key)
                common += 1
                if self.local.size(key) == found.size:
                    held.append(key)
                    continue
            if key.rsplit("/", 1)[-1] == "label.json":
                labels.append((key, found))
            else:
                fetched += self._fill(key, found)
        for key, found in labels:
            if stop():
                return Synced(fetched, 0)
            fetched += self._fill(key, found)
        self.keys.add(held)
        gone = [
            k for k in local if _older_than(self.local.root / k, started) and self.keys.holds(k)
        ]
        if gone and not common:
            return Synced(fetched, 0, refused=len(gone))
        gone.sort(key=lambda k: (not k.endswith("/label.json"), k))
        removed = 0
        for key in gone:
            if stop():
                break
            self.local.delete(key)
            self.keys.discard(key)
            removed += 1
        return Synced(fetched, removed)

    def close(self) -> None:
        self.keys.close()

    def get(self, key: str) -> bytes:
        return self.bucket.get(key)

    def put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> Stored:
        stored = self.bucket.put(key, data, content_type, metadata)
        self.local.put(key, data, content_type, metadata)
        self.keys.add([key])
        return stored

    def copy(self, source: str, key: str, content_type: str, metadata: dict[str, str]) -> str:
        etag = self.bucket.copy(source, key, content_type, metadata)
        if self.local.size(source) is not None:
            self.local.copy(source, key, content_type, metadata)
        else:
            self.local.put(key, self.bucket.get(key), content_type, metadata)
        self.keys.add([key])
        return etag

    def delete(self, key: str) -> None:
        self.bucket.delete(key)
        self.local.delete(key)
        self.keys.discard(key)


def make_store(settings: UploaderSettings) -> Store:
    """The configured destination; boto3 (~9 MB of memory) is imported only in S3 mode."""
    if settings.mode == "s3":
        from homesec_uploader.s3_store import S3Store

        if settings.local_copy:
            return MirroredStore(
                S3Store(settings),
                LocalStore(settings),
                settings.key_prefix,
                MirroredKeys(settings.local_copy_keys_path),
            )
        return S3Store(settings)
    return LocalStore(settings)
