"""The durable record of every label and every object to upload (sqlite3, one file).

A label is written here before its MQTT handler returns, so the broker's PUBACK means the label
is on disk. Label states: ``waiting`` (event media not complete yet), ``pending`` (objects
listed, some not uploaded), ``done`` (every object uploaded or failed for good), ``superseded``
(the owner relabelled the event before it was uploaded). Object states: ``pending``,
``uploaded`` (size and ETag recorded), ``failed`` (a local problem that retrying cannot fix:
missing or corrupt file), ``skipped`` (its label was superseded).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from homesec.contract import TrainingLabel

LABEL_DOC = "label.json"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY,
    camera TEXT NOT NULL,
    event_id TEXT NOT NULL,
    label TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at REAL NOT NULL,
    state TEXT NOT NULL,
    day TEXT,
    error TEXT,
    completed_at REAL,
    cleaned_at REAL,
    UNIQUE (camera, event_id, label)
);
CREATE TABLE IF NOT EXISTS objects (
    label_id INTEGER NOT NULL REFERENCES labels (id),
    rel TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    size INTEGER,
    etag TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    error TEXT,
    uploaded_at REAL,
    PRIMARY KEY (label_id, rel)
);
CREATE INDEX IF NOT EXISTS objects_state ON objects (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT);
"""


@dataclass(frozen=True)
class LabelRow:
    id: int
    camera: str
    event_id: str
    label: str
    payload: TrainingLabel
    received_at: float
    state: str
    day: str | None
    error: str | None
    completed_at: float | None


@dataclass(frozen=True)
class ObjectRow:
    label_id: int
    rel: str
    key: str
    state: str
    size: int | None
    etag: str | None
    attempts: int
    error: str | None


@dataclass(frozen=True)
class NewObject:
    """An object to record when a label's files are listed."""

    rel: str
    key: str
    error: str | None = None  # set: recorded as failed at once (file missing)


@dataclass(frozen=True)
class Counts:
    pending_items: int
    pending_objects: int
    uploaded_objects: int
    failed_objects: int


class Ledger:
    """Thread-safe access to the ledger database (the MQTT thread adds, the loop uploads)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ---- labels --------------------------------------------------------------------------------

    def add_label(self, label: TrainingLabel, now: float) -> tuple[int, bool, list[int]]:
        """Record a label durably. Returns (id, created, ids of labels it superseded).

        The same (camera, event, label) twice (an MQTT redelivery) is recorded once. A different
        label for an event whose earlier label is not uploaded yet supersedes that label."""
        with self._tx() as db:
            row = db.execute(
                "SELECT id FROM labels WHERE camera=? AND event_id=? AND label=?",
                (label.camera, label.event_id, label.label.value),
            ).fetchone()
            if row is not None:
                return int(row["id"]), False, []
            older = [
                int(r["id"])
                for r in db.execute(
                    "SELECT id FROM labels WHERE camera=? AND event_id=? "
                    "AND state IN ('waiting', 'pending')",
                    (label.camera, label.event_id),
                )
            ]
            for old in older:
                db.execute(
                    "UPDATE labels SET state='superseded', completed_at=?, "
                    "error='relabelled before upload' WHERE id=?",
                    (now, old),
                )
                db.execute(
                    "UPDATE objects SET state='skipped' WHERE label_id=? AND state='pending'",
                    (old,),
                )
            cur = db.execute(
                "INSERT INTO labels (camera, event_id, label, payload, received_at, state) "
                "VALUES (?, ?, ?, ?, ?, 'waiting')",
                (
                    label.camera,
                    label.event_id,
                    label.label.value,
                    label.model_dump_json(),
                    now,
                ),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid, True, older

    def labels(self, state: str | None = None) -> list[LabelRow]:
        with self._lock:
            if state is None:
                rows = self._db.execute("SELECT * FROM labels ORDER BY id").fetchall()
            else:
                rows = self._db.execute(
                    "SELECT * FROM labels WHERE state=? ORDER BY id", (state,)
                ).fetchall()
        return [_label_row(r) for r in rows]

    def label(self, label_id: int) -> LabelRow:
        with self._lock:
            row = self._db.execute("SELECT * FROM labels WHERE id=?", (label_id,)).fetchone()
        return _label_row(row)

    def set_objects(
        self, label_id: int, day: str, objects: list[NewObject], error: str | None, now: float
    ) -> None:
        """List a waiting label's objects; objects with an error are failed from the start."""
        with self._tx() as db:
            state = db.execute("SELECT state FROM labels WHERE id=?", (label_id,)).fetchone()
            if state is None or state["state"] != "waiting":
                return  # superseded meanwhile, or listed already
            db.execute(
                "UPDATE labels SET state='pending', day=?, error=? WHERE id=?",
                (day, error, label_id),
            )
            db.executemany(
                "INSERT OR IGNORE INTO objects (label_id, rel, key, state, error) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (label_id, o.rel, o.key, "failed" if o.error else "pending", o.error)
                    for o in objects
                ],
            )

    def complete_labels(self, now: float) -> list[int]:
        """Mark pending labels whose objects are all settled as done; returns their ids."""
        with self._tx() as db:
            ids = [
                int(r["id"])
                for r in db.execute(
                    "SELECT id FROM labels l WHERE state='pending' AND NOT EXISTS "
                    "(SELECT 1 FROM objects o WHERE o.label_id=l.id AND o.state='pending')"
                )
            ]
            db.executemany(
                "UPDATE labels SET state='done', completed_at=? WHERE id=?",
                [(now, i) for i in ids],
            )
        return ids

    def cleanup_due(self, completed_before: float) -> list[LabelRow]:
        """Done labels whose local media has not been cleaned up yet."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM labels WHERE state='done' AND cleaned_at IS NULL "
                "AND completed_at <= ? ORDER BY id",
                (completed_before,),
            ).fetchall()
        return [_label_row(r) for r in rows]

    def mark_cleaned(self, label_id: int, now: float) -> None:
        with self._tx() as db:
            db.execute("UPDATE labels SET cleaned_at=? WHERE id=?", (now, label_id))

    # ---- objects -------------------------------------------------------------------------------

    def objects(self, label_id: int) -> list[ObjectRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM objects WHERE label_id=? ORDER BY rel", (label_id,)
            ).fetchall()
        return [_object_row(r) for r in rows]

    def due_objects(self, now: float, limit: int = 500) -> list[ObjectRow]:
        """Pending objects whose retry time has come. A label's ``label.json`` becomes due only
        after every other object of the label is settled, so it is always uploaded last."""
        with self._lock:
            rows = self._db.execute(
                "SELECT o.* FROM objects o JOIN labels l ON l.id=o.label_id "
                "WHERE o.state='pending' AND o.next_attempt_at<=? AND l.state='pending' "
                "AND (o.rel<>? OR NOT EXISTS (SELECT 1 FROM objects p WHERE "
                "p.label_id=o.label_id AND p.state='pending' AND p.rel<>?)) "
                "ORDER BY o.label_id, o.rel LIMIT ?",
                (now, LABEL_DOC, LABEL_DOC, limit),
            ).fetchall()
        return [_object_row(r) for r in rows]

    def next_retry_at(self) -> float | None:
        """Earliest retry time of an object that failed before (None when there is none)."""
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(next_attempt_at) AS t FROM objects WHERE state='pending' AND attempts>0"
            ).fetchone()
        return None if row["t"] is None else float(row["t"])

    def note_attempt(self, label_id: int, rel: str) -> None:
        """Count an upload attempt BEFORE it is made (a crash leaves a trace)."""
        with self._tx() as db:
            db.execute(
                "UPDATE objects SET attempts=attempts+1 WHERE label_id=? AND rel=?",
                (label_id, rel),
            )

    def mark_uploaded(self, label_id: int, rel: str, size: int, etag: str, now: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE objects SET state='uploaded', size=?, etag=?, uploaded_at=?, error=NULL "
                "WHERE label_id=? AND rel=? AND state='pending'",
                (size, etag, now, label_id, rel),
            )

    def mark_failed(self, label_id: int, rel: str, error: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE objects SET state='failed', error=? "
                "WHERE label_id=? AND rel=? AND state='pending'",
                (error[:500], label_id, rel),
            )

    def mark_retry(self, label_id: int, rel: str, error: str, next_attempt_at: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE objects SET error=?, next_attempt_at=? WHERE label_id=? AND rel=?",
                (error[:500], next_attempt_at, label_id, rel),
            )

    # ---- totals and small state -----------------------------------------------------------------

    def counts(self) -> Counts:
        with self._lock:
            items = self._db.execute(
                "SELECT COUNT(*) FROM labels WHERE state IN ('waiting', 'pending')"
            ).fetchone()[0]
            by_state = dict(
                self._db.execute("SELECT state, COUNT(*) FROM objects GROUP BY state").fetchall()
            )
        return Counts(
            pending_items=int(items),
            pending_objects=int(by_state.get("pending", 0)),
            uploaded_objects=int(by_state.get("uploaded", 0)),
            failed_objects=int(by_state.get("failed", 0)),
        )

    def get_meta(self, name: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return None if row is None or row["value"] is None else str(row["value"])

    def set_meta(self, name: str, value: str | None) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value=excluded.value",
                (name, value),
            )


def _label_row(r: sqlite3.Row) -> LabelRow:
    return LabelRow(
        id=int(r["id"]),
        camera=r["camera"],
        event_id=r["event_id"],
        label=r["label"],
        payload=TrainingLabel.model_validate_json(r["payload"]),
        received_at=float(r["received_at"]),
        state=r["state"],
        day=r["day"],
        error=r["error"],
        completed_at=r["completed_at"],
    )


def _object_row(r: sqlite3.Row) -> ObjectRow:
    return ObjectRow(
        label_id=int(r["label_id"]),
        rel=r["rel"],
        key=r["key"],
        state=r["state"],
        size=r["size"],
        etag=r["etag"],
        attempts=int(r["attempts"]),
        error=r["error"],
    )
