"""The durable record of every label and every object to upload (sqlite3, one file).

A label is written here before its MQTT handler returns, so the broker's PUBACK means the label
is on disk. Label states (:class:`LabelState`): ``waiting`` (event media not complete yet),
``pending`` (objects listed, some not settled), ``done`` (every object uploaded or failed for
good), ``superseded`` (the owner relabelled the event: the later label wins). Object states
(:class:`ObjectState`): ``pending`` (to upload, from the event folder or, with ``source_key``,
copied within the destination), ``uploaded`` (size and ETag recorded), ``failed`` (a local
problem that retrying cannot fix: missing or corrupt file), ``skipped`` (its label was
superseded before the object was uploaded), ``deleting`` (its label was superseded after the
upload: to delete from the destination) and ``deleted``.

The legal moves are the tables :data:`LABEL_TRANSITIONS` and :data:`OBJECT_TRANSITIONS` (and the
states a row may be inserted in). The database enforces them: triggers generated from the tables
at every open make an illegal insert or update fail, raised as :class:`IllegalTransition`, so no
code path (nor a hand-made SQL fix) can move a row where the ledger does not expect it.

The schema is versioned with ``PRAGMA user_version``: :data:`MIGRATIONS` is the numbered list of
steps, and opening a ledger applies the steps after its version, each in its own transaction
with the version it reaches. Steps 1-3 are the schema of the releases before versioning; they
are idempotent because an unversioned ledger (version 0) may already have any of them.

Relabelling keeps two invariants, enforced by the order in which work becomes due:

* a key is deleted only once no pending object still copies from it, so the new label never
  loses its media even when the local files were already cleaned up;
* a label's ``label.json`` (what marks a folder complete for training) is uploaded last and
  deleted first, and an event's new ``label.json`` is uploaded only once the earlier label's one
  is deleted: at no time are two labels of one event complete in the destination.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from homesec.contract import TrainingLabel

LABEL_DOC = "label.json"

KeyOf = Callable[[str, str], str]
"""``(day, rel) -> key`` of an object of the label being added."""


class LabelState(StrEnum):
    WAITING = "waiting"
    PENDING = "pending"
    DONE = "done"
    SUPERSEDED = "superseded"


class ObjectState(StrEnum):
    PENDING = "pending"
    UPLOADED = "uploaded"
    FAILED = "failed"
    SKIPPED = "skipped"
    DELETING = "deleting"
    DELETED = "deleted"


LABEL_START: frozenset[LabelState] = frozenset({LabelState.WAITING})
"""The state a label row is inserted in."""

LABEL_TRANSITIONS: Mapping[LabelState, frozenset[LabelState]] = {
    # objects listed; relabelled before they were listed
    LabelState.WAITING: frozenset({LabelState.PENDING, LabelState.SUPERSEDED}),
    # every object settled; relabelled
    LabelState.PENDING: frozenset({LabelState.DONE, LabelState.SUPERSEDED}),
    # relabelled after the upload
    LabelState.DONE: frozenset({LabelState.SUPERSEDED}),
    # relabelled back to this label: the row is revived
    LabelState.SUPERSEDED: frozenset({LabelState.WAITING}),
}

OBJECT_START: frozenset[ObjectState] = frozenset({ObjectState.PENDING, ObjectState.FAILED})
"""The states an object row is inserted in (failed: its file was missing when listed)."""

OBJECT_TRANSITIONS: Mapping[ObjectState, frozenset[ObjectState]] = {
    # stored; failed for good; its label superseded before the upload
    ObjectState.PENDING: frozenset({ObjectState.UPLOADED, ObjectState.FAILED, ObjectState.SKIPPED}),
    # its label superseded after the upload: delete it from the destination
    ObjectState.UPLOADED: frozenset({ObjectState.DELETING}),
    # stored after all (the PUT was under way when its label was superseded): delete it
    ObjectState.SKIPPED: frozenset({ObjectState.DELETING}),
    # deleted; its label revived (listed again: to upload, or failed)
    ObjectState.DELETING: frozenset({ObjectState.DELETED, ObjectState.PENDING, ObjectState.FAILED}),
    ObjectState.DELETED: frozenset({ObjectState.PENDING, ObjectState.FAILED}),
    ObjectState.FAILED: frozenset(),
}


class IllegalTransition(ValueError):
    """A ledger row was to move between states its transition table does not allow."""


def _state_triggers(
    table: str, start: frozenset[str], moves: Mapping[str, frozenset[str]]
) -> list[str]:
    """Triggers that make SQLite refuse a state outside ``start`` on insert and a move outside
    ``moves`` on update (RAISE -> sqlite3.IntegrityError -> IllegalTransition)."""
    starts = ", ".join(f"'{s}'" for s in sorted(start))
    pairs = ", ".join(f"'{a}>{b}'" for a, targets in sorted(moves.items()) for b in sorted(targets))
    return [
        f"DROP TRIGGER IF EXISTS {table}_state_insert",
        f"DROP TRIGGER IF EXISTS {table}_state_update",
        f"CREATE TRIGGER {table}_state_insert BEFORE INSERT ON {table} "
        f"WHEN NEW.state NOT IN ({starts}) BEGIN "
        f"SELECT RAISE(ABORT, 'illegal transition: {table} inserted in that state'); END",
        f"CREATE TRIGGER {table}_state_update BEFORE UPDATE OF state ON {table} "
        f"WHEN NEW.state IS NOT OLD.state AND (OLD.state || '>' || NEW.state) NOT IN ({pairs}) "
        f"BEGIN SELECT RAISE(ABORT, 'illegal transition: {table} state move'); END",
    ]


_TRIGGERS = _state_triggers("labels", LABEL_START, LABEL_TRANSITIONS) + _state_triggers(
    "objects", OBJECT_START, OBJECT_TRANSITIONS
)


# ---- schema migrations (PRAGMA user_version) ----------------------------------------------------

Migration = Callable[[sqlite3.Connection], None]


def _m1_tables(db: sqlite3.Connection) -> None:
    """The first release's tables."""
    for statement in (
        "CREATE TABLE IF NOT EXISTS labels (id INTEGER PRIMARY KEY, camera TEXT NOT NULL, "
        "event_id TEXT NOT NULL, label TEXT NOT NULL, payload TEXT NOT NULL, "
        "received_at REAL NOT NULL, state TEXT NOT NULL, day TEXT, error TEXT, "
        "completed_at REAL, cleaned_at REAL, UNIQUE (camera, event_id, label))",
        "CREATE TABLE IF NOT EXISTS objects (label_id INTEGER NOT NULL REFERENCES labels (id), "
        "rel TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL, size INTEGER, etag TEXT, "
        "attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL DEFAULT 0, "
        "error TEXT, uploaded_at REAL, PRIMARY KEY (label_id, rel))",
        "CREATE INDEX IF NOT EXISTS objects_state ON objects (state, next_attempt_at)",
        "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)",
    ):
        db.execute(statement)


def _m2_relabel_columns(db: sqlite3.Connection) -> None:
    """Relabelling: copy from ``source_key`` instead of the event folder; when deleted."""
    for table, column, decl in (
        ("objects", "source_key", "TEXT"),
        ("objects", "deleted_at", "REAL"),
    ):
        present = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")


def _m3_source_index(db: sqlite3.Connection) -> None:
    db.execute("CREATE INDEX IF NOT EXISTS objects_source ON objects (source_key)")


MIGRATIONS: list[Migration] = [_m1_tables, _m2_relabel_columns, _m3_source_index]
"""Step N brings a ledger to ``user_version`` N. Append only; never edit a released step."""


class LedgerTooNew(RuntimeError):
    """The ledger was written by a newer uploader (its schema version is unknown here)."""


def migrate(db: sqlite3.Connection) -> int:
    """Apply the steps after the ledger's ``user_version``; returns the version reached."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > len(MIGRATIONS):
        raise LedgerTooNew(
            f"ledger schema version {version} is newer than this uploader's {len(MIGRATIONS)}"
        )
    for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            step(db)
            db.execute(f"PRAGMA user_version = {number}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    return len(MIGRATIONS)


_PRUNED_UPLOADED = "pruned_uploaded_objects"  # meta: uploaded objects of pruned labels


@dataclass(frozen=True)
class LabelRow:
    id: int
    camera: str
    event_id: str
    label: str
    payload: TrainingLabel
    received_at: float
    state: LabelState
    day: str | None
    error: str | None
    completed_at: float | None


@dataclass(frozen=True)
class ObjectRow:
    label_id: int
    rel: str
    key: str
    state: ObjectState
    size: int | None
    etag: str | None
    attempts: int
    error: str | None
    source_key: str | None = None


@dataclass(frozen=True)
class NewObject:
    """An object to record when a label's files are listed."""

    rel: str
    key: str
    error: str | None = None  # set: recorded as failed at once (file missing)
    source_key: str | None = None  # set: copied from this key in the destination


@dataclass(frozen=True)
class Counts:
    pending_items: int
    pending_objects: int
    uploaded_objects: int  # ever confirmed stored, pruned rows included
    failed_objects: int
    pending_deletes: int = 0


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
        self.version = migrate(self._db)
        with self._tx() as db:
            for statement in _TRIGGERS:
                db.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except sqlite3.IntegrityError as exc:
                self._db.execute("ROLLBACK")
                if "illegal transition" in str(exc):
                    raise IllegalTransition(str(exc)) from exc
                raise
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ---- labels --------------------------------------------------------------------------------

    def add_label(
        self, label: TrainingLabel, now: float, key_of: KeyOf
    ) -> tuple[int, bool, list[int]]:
        """Record a label durably. Returns (id, created, ids of labels it superseded).

        The same (camera, event, label) twice (an MQTT redelivery, or two people giving the same
        answer) is recorded once. A different label for the event supersedes the event's earlier
        labels, uploaded or not: the later label wins. When an earlier label was listed already,
        the new one takes over its listing at once (``key_of`` names the new keys): files the
        earlier label uploaded are copied from its keys, the rest come from the event folder, and
        the earlier label's uploaded objects are scheduled for deletion. Relabelling back to a
        label the event had before (a newer ``labelled_at`` than that label's) revives its row."""
        with self._tx() as db:
            row = db.execute(
                "SELECT id, state, payload FROM labels WHERE camera=? AND event_id=? AND label=?",
                (label.camera, label.event_id, label.label.value),
            ).fetchone()
            if row is not None and (
                row["state"] != "superseded"
                or label.labelled_at
                <= TrainingLabel.model_validate_json(row["payload"]).labelled_at
            ):
                return int(row["id"]), False, []
            older = [
                _label_row(r)
                for r in db.execute(
                    "SELECT * FROM labels WHERE camera=? AND event_id=? AND state<>'superseded' "
                    "ORDER BY id",
                    (label.camera, label.event_id),
                )
            ]
            listed = [r for r in older if r.state in ("pending", "done")]
            objects = _take_over(db, listed[-1], key_of) if listed else None
            for old in older:
                _supersede(db, old.id, label.label.value, now)
            label_id = _insert_or_revive(db, label, None if row is None else int(row["id"]), now)
            if objects is not None:
                day, error = listed[-1].day, listed[-1].error
                db.execute(
                    "UPDATE labels SET state='pending', day=?, error=? WHERE id=?",
                    (day, error, label_id),
                )
                _put_objects(db, label_id, objects)
            return label_id, True, [r.id for r in older]

    def labels(self, state: str | None = None) -> list[LabelRow]:
        with self._lock:
            if state is None:
                rows = self._db.execute("SELECT * FROM labels ORDER BY id").fetchall()
            else:
                rows = self._db.execute(
                    "SELECT * FROM labels WHERE state=? ORDER BY id", (state,)
                ).fetchall()
        return [_label_row(r) for r in rows]

    def owed_events(self) -> set[tuple[str, str]]:
        """(camera, event_id) of events with a label still waiting or pending: their media are
        still needed (pinned for the uploader)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT camera, event_id FROM labels WHERE state IN (?, ?)",
                (LabelState.WAITING, LabelState.PENDING),
            ).fetchall()
        return {(r["camera"], r["event_id"]) for r in rows}

    def owes(self, camera: str, event_id: str) -> bool:
        """True when the event has a label still waiting or pending."""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM labels WHERE camera=? AND event_id=? AND state IN (?, ?) LIMIT 1",
                (camera, event_id, LabelState.WAITING, LabelState.PENDING),
            ).fetchone()
        return row is not None

    def knows_event(self, camera: str, event_id: str) -> bool:
        """True when the ledger holds any label of the event."""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM labels WHERE camera=? AND event_id=? LIMIT 1", (camera, event_id)
            ).fetchone()
        return row is not None

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
            _put_objects(db, label_id, objects)

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

    def prune(self, finished_before: float, uncleaned_done: bool = False) -> int:
        """Forget labels (and their objects) finished before ``finished_before``; returns how
        many. Finished: ``done`` with its local media cleaned up (or, with ``uncleaned_done``,
        done at all), or ``superseded`` with every delete settled. Waiting and pending labels,
        and superseded ones whose old objects are not deleted yet, are never pruned."""
        with self._tx() as db:
            ids = [
                int(r["id"])
                for r in db.execute(
                    "SELECT id FROM labels l WHERE (state='done' AND (cleaned_at<=? "
                    "OR (? AND completed_at<=?))) OR (state='superseded' AND NOT EXISTS "
                    "(SELECT 1 FROM objects o WHERE o.label_id=l.id "
                    "AND o.state IN ('pending', 'deleting')) AND max(completed_at, COALESCE("
                    "(SELECT MAX(deleted_at) FROM objects o WHERE o.label_id=l.id), 0))<=?)",
                    (finished_before, uncleaned_done, finished_before, finished_before),
                )
            ]
            if not ids:
                return 0
            chosen = json.dumps(ids)
            uploaded = db.execute(
                "SELECT COUNT(*) FROM objects WHERE label_id IN (SELECT value FROM json_each(?)) "
                "AND state IN ('uploaded', 'deleting', 'deleted')",
                (chosen,),
            ).fetchone()[0]
            db.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) "
                "DO UPDATE SET value=CAST(COALESCE(value, 0) AS INTEGER)+excluded.value",
                (_PRUNED_UPLOADED, int(uploaded)),
            )
            for table, column in (("objects", "label_id"), ("labels", "id")):
                db.execute(
                    f"DELETE FROM {table} WHERE {column} IN (SELECT value FROM json_each(?))",
                    (chosen,),
                )
        return len(ids)

    # ---- objects -------------------------------------------------------------------------------

    def objects(self, label_id: int) -> list[ObjectRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM objects WHERE label_id=? ORDER BY rel", (label_id,)
            ).fetchall()
        return [_object_row(r) for r in rows]

    def due_objects(self, now: float, limit: int = 500) -> list[ObjectRow]:
        """Pending objects whose retry time has come. A label's ``label.json`` becomes due only
        after every other object of the label is settled, so it is always uploaded last, and
        only once no earlier label of the event still has a ``label.json`` to delete."""
        with self._lock:
            rows = self._db.execute(
                "SELECT o.* FROM objects o JOIN labels l ON l.id=o.label_id "
                "WHERE o.state='pending' AND o.next_attempt_at<=? AND l.state='pending' "
                "AND (o.rel<>? OR (NOT EXISTS (SELECT 1 FROM objects p WHERE "
                "p.label_id=o.label_id AND p.state='pending' AND p.rel<>?) "
                "AND NOT EXISTS (SELECT 1 FROM objects d JOIN labels dl ON dl.id=d.label_id "
                "WHERE d.state='deleting' AND d.rel=? AND dl.camera=l.camera "
                "AND dl.event_id=l.event_id))) "
                "ORDER BY o.label_id, o.rel LIMIT ?",
                (now, LABEL_DOC, LABEL_DOC, LABEL_DOC, limit),
            ).fetchall()
        return [_object_row(r) for r in rows]

    def due_deletes(self, now: float, limit: int = 500) -> list[ObjectRow]:
        """Objects to delete whose retry time has come: never a key a pending object still
        copies from, and a label's ``label.json`` first (its other objects only once it is
        gone, so a folder that looks complete is complete)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT o.* FROM objects o WHERE o.state='deleting' AND o.next_attempt_at<=? "
                "AND NOT EXISTS (SELECT 1 FROM objects p WHERE p.state='pending' "
                "AND p.source_key=o.key) "
                "AND (o.rel=? OR NOT EXISTS (SELECT 1 FROM objects d WHERE "
                "d.label_id=o.label_id AND d.state='deleting' AND d.rel=?)) "
                "ORDER BY o.rel<>?, o.label_id, o.rel LIMIT ?",
                (now, LABEL_DOC, LABEL_DOC, LABEL_DOC, limit),
            ).fetchall()
        return [_object_row(r) for r in rows]

    def next_retry_at(self) -> float | None:
        """Earliest retry time of an object that failed before (None when there is none)."""
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(next_attempt_at) AS t FROM objects "
                "WHERE state IN ('pending', 'deleting') AND attempts>0"
            ).fetchone()
        return None if row["t"] is None else float(row["t"])

    def note_attempt(self, label_id: int, rel: str) -> None:
        """Count an attempt (upload, copy or delete) BEFORE it is made (a crash leaves a trace)."""
        with self._tx() as db:
            db.execute(
                "UPDATE objects SET attempts=attempts+1 WHERE label_id=? AND rel=?",
                (label_id, rel),
            )

    def mark_uploaded(self, label_id: int, rel: str, size: int, etag: str, now: float) -> None:
        """Record a confirmed upload. An object whose label was superseded while its upload was
        in flight (``skipped`` meanwhile) is stored all the same: it becomes ``deleting``."""
        with self._tx() as db:
            db.execute(
                "UPDATE objects SET state=CASE state WHEN 'skipped' THEN 'deleting' "
                "ELSE 'uploaded' END, size=?, etag=?, uploaded_at=?, error=NULL, "
                "attempts=CASE state WHEN 'skipped' THEN 0 ELSE attempts END, next_attempt_at=0 "
                "WHERE label_id=? AND rel=? AND state IN ('pending', 'skipped')",
                (size, etag, now, label_id, rel),
            )

    def mark_deleted(self, label_id: int, rel: str, now: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE objects SET state='deleted', deleted_at=?, error=NULL "
                "WHERE label_id=? AND rel=? AND state='deleting'",
                (now, label_id, rel),
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
            pruned = self._db.execute(
                "SELECT value FROM meta WHERE name=?", (_PRUNED_UPLOADED,)
            ).fetchone()
        uploaded = sum(int(by_state.get(s, 0)) for s in ("uploaded", "deleting", "deleted"))
        return Counts(
            pending_items=int(items),
            pending_objects=int(by_state.get("pending", 0)),
            uploaded_objects=uploaded + (0 if pruned is None else int(pruned["value"])),
            failed_objects=int(by_state.get("failed", 0)),
            pending_deletes=int(by_state.get("deleting", 0)),
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


# ---- relabelling steps (inside add_label's transaction) -------------------------------------


def _take_over(db: sqlite3.Connection, old: LabelRow, key_of: KeyOf) -> list[NewObject]:
    """The new label's objects, from the listing of the event's current label ``old``: what
    ``old`` uploaded is copied from its key, what it has still pending comes from where ``old``
    would have taken it, what failed for good fails again with the same reason."""
    assert old.day is not None
    objects = [NewObject(LABEL_DOC, key_of(old.day, LABEL_DOC))]
    for r in db.execute("SELECT * FROM objects WHERE label_id=? ORDER BY rel", (old.id,)):
        obj = _object_row(r)
        if obj.rel == LABEL_DOC:
            continue
        key = key_of(old.day, obj.rel)
        if obj.state == "uploaded":
            objects.append(NewObject(obj.rel, key, source_key=obj.key))
        elif obj.state == "pending":
            objects.append(NewObject(obj.rel, key, source_key=obj.source_key))
        elif obj.state == "failed":
            objects.append(NewObject(obj.rel, key, error=obj.error or "failed"))
    return objects


def _supersede(db: sqlite3.Connection, label_id: int, by: str, now: float) -> None:
    """Mark a label superseded: its pending objects are skipped, its uploaded ones deleted."""
    db.execute(
        "UPDATE labels SET state='superseded', completed_at=?, error=? WHERE id=?",
        (now, f"relabelled {by}", label_id),
    )
    db.execute(
        "UPDATE objects SET state='skipped' WHERE label_id=? AND state='pending'", (label_id,)
    )
    db.execute(
        "UPDATE objects SET state='deleting', attempts=0, next_attempt_at=0, error=NULL "
        "WHERE label_id=? AND state='uploaded'",
        (label_id,),
    )


def _insert_or_revive(
    db: sqlite3.Connection, label: TrainingLabel, existing: int | None, now: float
) -> int:
    """A new ``waiting`` row, or the superseded row of the same label made current again (its
    finished objects are forgotten; the ones still to delete stay until listed again)."""
    if existing is None:
        cur = db.execute(
            "INSERT INTO labels (camera, event_id, label, payload, received_at, state) "
            "VALUES (?, ?, ?, ?, ?, 'waiting')",
            (label.camera, label.event_id, label.label.value, label.model_dump_json(), now),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid
    db.execute(
        "UPDATE labels SET payload=?, received_at=?, state='waiting', day=NULL, error=NULL, "
        "completed_at=NULL, cleaned_at=NULL WHERE id=?",
        (label.model_dump_json(), now, existing),
    )
    db.execute("DELETE FROM objects WHERE label_id=? AND state<>'deleting'", (existing,))
    return existing


def _put_objects(db: sqlite3.Connection, label_id: int, objects: list[NewObject]) -> None:
    """Record objects to upload; an object of a revived label that was to be deleted (or was)
    becomes pending again (its upload starts with a HEAD, so a key still there is not resent)."""
    db.executemany(
        "INSERT INTO objects (label_id, rel, key, state, error, source_key) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (label_id, rel) DO UPDATE SET "
        "key=excluded.key, state=excluded.state, error=excluded.error, "
        "source_key=excluded.source_key, size=NULL, etag=NULL, attempts=0, next_attempt_at=0, "
        "uploaded_at=NULL, deleted_at=NULL WHERE objects.state IN ('deleting', 'deleted')",
        [
            (label_id, o.rel, o.key, "failed" if o.error else "pending", o.error, o.source_key)
            for o in objects
        ],
    )


def _label_row(r: sqlite3.Row) -> LabelRow:
    return LabelRow(
        id=int(r["id"]),
        camera=r["camera"],
        event_id=r["event_id"],
        label=r["label"],
        payload=TrainingLabel.model_validate_json(r["payload"]),
        received_at=float(r["received_at"]),
        state=LabelState(r["state"]),
        day=r["day"],
        error=r["error"],
        completed_at=r["completed_at"],
    )


def _object_row(r: sqlite3.Row) -> ObjectRow:
    return ObjectRow(
        label_id=int(r["label_id"]),
        rel=r["rel"],
        key=r["key"],
        state=ObjectState(r["state"]),
        size=r["size"],
        etag=r["etag"],
        attempts=int(r["attempts"]),
        error=r["error"],
        source_key=r["source_key"],
    )
