"""Whole-event outcomes kept on disk between ``homesec tune`` runs.

An :class:`~homesec_detector.tune_replay.EventOutcome` (did the event start motion, did it
alert, where) depends on the event's frames, the settings it was replayed under, the replay's
parameters (rate, frames replayed, the nominal check time), the detector's code, the libraries
and the model. :func:`~homesec_detector.tune_identity.replay_identity` hashes the code, OpenCV,
NumPy and the model identity; :meth:`EventOutcomes.key` adds the rest, so an
outcome is used only for exactly the inputs that produced it. A run on a set whose events were
all replayed before (the detector's nightly run, then the owner's) replays only the events it has
not seen: every other outcome is read back. The label is not part of the key (a relabelled event
keeps its outcome, counted under its new label).

Reading every frame to hash it would cost most of such a run, so the file also keeps each
event's frames digest under the frames' *file fingerprint* (path, size, modification time and
inode of every frame file): an event whose files did not change is not read at all. A file
rewritten in place keeps its path but not its modification time, so it is hashed again.

The file holds one replay identity's outcomes; a row stays while a run used it in the last
:data:`~homesec_detector.tune_kept.KEEP_UNUSED_DAYS` days (:mod:`~homesec_detector.tune_kept`),
so a run on another set or a subset keeps the house set's outcomes, like the motion tracks. One
writer: the ``tune`` process (replay workers never write it).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

from homesec_detector.settings import DetectorSettings
from homesec_detector.trainset import TrainingEvent
from homesec_detector.tune_frames import EventFrames
from homesec_detector.tune_identity import settings_key
from homesec_detector.tune_kept import claim_identity, drop_unused
from homesec_detector.tune_replay import EventOutcome

OUTCOMES_FILE = "tune/event-outcomes.sqlite"
"""Under the data dir: the outcomes (and frames digests) runs used lately."""


def fingerprint(paths: list[Path]) -> str | None:
    """The frames' file fingerprint (None when a file cannot be read: hash them instead)."""
    digest = hashlib.sha1()
    try:
        for path in paths:
            st = os.stat(path)
            digest.update(f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
            digest.update(f"{st.st_ino}\n".encode())
    except OSError:
        return None
    return digest.hexdigest()


class EventOutcomes:
    """A SQLite file of event outcomes and frames digests (written on :meth:`close`)."""

    def __init__(
        self,
        path: Path,
        identity: str,
        *,
        fps: float,
        max_frames: int | None,
        check_ms: float,
    ) -> None:
        self.path = path
        self.identity = identity
        self._replay = json.dumps([fps, max_frames, check_ms])
        self._run = time.time_ns()
        self.hits = 0
        """Outcomes read back from earlier runs."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outcomes (key TEXT PRIMARY KEY, run INTEGER, value TEXT)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS digests (print TEXT PRIMARY KEY, run INTEGER, value TEXT)"
        )
        claim_identity(self._db, identity, ["outcomes"])  # a digest is the bytes': kept
        drop_unused(self._db, ["outcomes", "digests"], self._run)
        self._digests: dict[str, str] = {}
        self._settings: tuple[DetectorSettings, str] | None = None

    def settings_key(self, settings: DetectorSettings) -> str:
        """:func:`settings_key`, computed once for consecutive calls with one settings object."""
        if self._settings is None or self._settings[0] is not settings:
            self._settings = (settings, settings_key(settings))
        return self._settings[1]

    def event_digest(
        self, event: TrainingEvent, paths: list[Path], frames: EventFrames | None = None
    ) -> str:
        """The event's frames digest (:meth:`EventFrames.digest`): once per run, from the
        fingerprint when its files did not change, else by reading them (``frames``: the
        replay's kept frames, else read here and let go)."""
        found = self._digests.get(event.key)
        if found is None:
            found = self.known_digest(paths)
            if found is None:
                if frames is None:
                    frames = EventFrames(event.key, paths, lambda _frames, _n: None)
                found = frames.digest()
                self.keep_digest(paths, found)
            self._digests[event.key] = found
        return found

    # ---- frames digests ----------------------------------------------------------------------

    def known_digest(self, paths: list[Path]) -> str | None:
        """The frames digest kept for these files unchanged, else None."""
        mark = fingerprint(paths)
        if mark is None:
            return None
        row = self._db.execute("SELECT value FROM digests WHERE print = ?", (mark,)).fetchone()
        if row is None:
            return None
        self._db.execute("UPDATE digests SET run = ? WHERE print = ?", (self._run, mark))
        return str(row[0])

    def keep_digest(self, paths: list[Path], digest: str) -> None:
        mark = fingerprint(paths)
        if mark is not None:
            self._db.execute(
                "INSERT OR REPLACE INTO digests VALUES (?, ?, ?)", (mark, self._run, digest)
            )

    # ---- outcomes ------------------------------------------------------------------------------

    def key(self, event: TrainingEvent, settings: str, digest: str) -> str:
        """``settings``: :func:`settings_key` of the replay's settings."""
        parts = [self.identity, self._replay, settings, digest, event.camera, event.fps]
        return hashlib.sha1(json.dumps(parts).encode()).hexdigest()

    def get(self, key: str, event: TrainingEvent) -> EventOutcome | None:
        row = self._db.execute("SELECT run, value FROM outcomes WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        if row[0] != self._run:
            self._db.execute("UPDATE outcomes SET run = ? WHERE key = ?", (self._run, key))
            self.hits += 1
        value = json.loads(row[1])
        return EventOutcome(
            key=event.key,
            occupied=event.occupied,
            motion=bool(value["motion"]),
            alert=bool(value["alert"]),
            boxes=tuple((b[0], b[1], b[2], b[3]) for b in value["boxes"]),
        )

    def put(self, key: str, outcome: EventOutcome) -> None:
        value = {"motion": outcome.motion, "alert": outcome.alert, "boxes": outcome.boxes}
        self._db.execute(
            "INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?)", (key, self._run, json.dumps(value))
        )

    def close(self) -> None:
        self._db.commit()
        self._db.close()
