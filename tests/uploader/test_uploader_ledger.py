"""The sqlite ledger on its own: durability, redelivery, ordering, retries, the state
transition table and schema migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from uploader_support import label

import homesec_uploader.ledger as ledger_module
from homesec_uploader.ledger import (
    LABEL_DOC,
    LABEL_TRANSITIONS,
    MIGRATIONS,
    OBJECT_TRANSITIONS,
    IllegalTransition,
    LabelState,
    Ledger,
    LedgerTooNew,
    NewObject,
    ObjectState,
)


def objects(*rels: str) -> list[NewObject]:
    return [NewObject(rel, f"k/{rel}") for rel in rels]


def key_of(day: str, rel: str) -> str:
    return f"new/{day}/{rel}"


def test_label_survives_reopen_and_redelivery_is_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "uploader" / "ledger.sqlite"
    ledger = Ledger(path)
    first = ledger.add_label(label("ev1"), 100.0, key_of)
    again = ledger.add_label(label("ev1"), 101.0, key_of)
    assert first[1] is True and again == (first[0], False, [])
    ledger.close()

    reopened = Ledger(path)
    rows = reopened.labels()
    assert [(r.event_id, r.label, r.state, r.received_at) for r in rows] == [
        ("ev1", "occupied", "waiting", 100.0)
    ]
    assert rows[0].payload == label("ev1")
    assert reopened.counts().pending_items == 1
    reopened.close()


def test_label_doc_is_due_only_after_every_other_object_is_settled(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite")
    label_id, _, _ = ledger.add_label(label("ev1"), 0.0, key_of)
    ledger.set_objects(
        label_id, "2025-11-25", objects("event.json", "snapshot.jpg", LABEL_DOC), None, 0
    )
    assert [o.rel for o in ledger.due_objects(1.0)] == ["event.json", "snapshot.jpg"]
    ledger.mark_uploaded(label_id, "event.json", 10, "etag", 1.0)
    ledger.mark_failed(label_id, "snapshot.jpg", "corrupt")
    assert [o.rel for o in ledger.due_objects(1.0)] == [LABEL_DOC]
    ledger.mark_uploaded(label_id, LABEL_DOC, 5, "etag2", 2.0)
    assert ledger.complete_labels(3.0) == [label_id]
    counts = ledger.counts()
    assert (counts.pending_items, counts.uploaded_objects, counts.failed_objects) == (0, 2, 1)
    ledger.close()


def test_retry_time_and_attempts(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite")
    label_id, _, _ = ledger.add_label(label("ev1"), 0.0, key_of)
    ledger.set_objects(label_id, "2025-11-25", objects("event.json", LABEL_DOC), None, 0)
    assert ledger.next_retry_at() is None
    ledger.note_attempt(label_id, "event.json")
    ledger.mark_retry(label_id, "event.json", "S3 unreachable", 50.0)
    assert ledger.next_retry_at() == 50.0
    assert ledger.due_objects(49.0) == []
    (due,) = ledger.due_objects(50.0)
    assert due.attempts == 1 and due.error == "S3 unreachable"
    ledger.close()


def test_objects_are_listed_once_even_if_two_threads_try(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite")
    label_id, _, _ = ledger.add_label(label("ev1"), 0.0, key_of)
    ledger.set_objects(label_id, "2025-11-25", objects("event.json", LABEL_DOC), None, 0)
    ledger.set_objects(label_id, "2025-11-26", objects("other.json"), "late", 0)
    assert [o.rel for o in ledger.objects(label_id)] == ["event.json", LABEL_DOC]
    assert ledger.label(label_id).day == "2025-11-25"
    ledger.close()


# ---- states: an explicit transition table, enforced by the database ------------------------------


def test_transition_tables_name_every_state() -> None:
    assert set(LABEL_TRANSITIONS) == set(LabelState)
    assert set(OBJECT_TRANSITIONS) == set(ObjectState)
    for table in (LABEL_TRANSITIONS, OBJECT_TRANSITIONS):
        for targets in table.values():
            assert targets <= set(table)
    assert LABEL_TRANSITIONS[LabelState.DONE] == {LabelState.SUPERSEDED}
    assert OBJECT_TRANSITIONS[ObjectState.FAILED] == frozenset()


def done_label(path: Path) -> tuple[Ledger, int]:
    ledger = Ledger(path)
    label_id, _, _ = ledger.add_label(label("ev1"), 0.0, key_of)
    ledger.set_objects(label_id, "2025-11-25", objects("snapshot.jpg", LABEL_DOC), None, 0)
    ledger.mark_failed(label_id, "snapshot.jpg", "corrupt")
    ledger.mark_uploaded(label_id, LABEL_DOC, 5, "etag", 1.0)
    assert ledger.complete_labels(2.0) == [label_id]
    return ledger, label_id


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE labels SET state='waiting'",  # done -> waiting
        "UPDATE labels SET state='pending'",  # done -> pending
        "UPDATE labels SET state='bogus'",  # not a state at all
        "UPDATE objects SET state='pending' WHERE rel='snapshot.jpg'",  # failed is final
        "UPDATE objects SET state='deleted' WHERE rel='label.json'",  # uploaded -> deleted
        "INSERT INTO labels (camera, event_id, label, payload, received_at, state) "
        "VALUES ('front', 'ev2', 'occupied', '{}', 0, 'done')",  # born done
        "INSERT INTO objects (label_id, rel, key, state) VALUES (1, 'x.jpg', 'k', 'uploaded')",
    ],
)
def test_an_illegal_transition_raises_whoever_writes_it(tmp_path: Path, statement: str) -> None:
    path = tmp_path / "l.sqlite"
    ledger, label_id = done_label(path)
    # any connection (a hand-made fix with the sqlite3 shell too): the triggers are in the file
    other = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError, match="illegal transition"):
        other.execute(statement)
    other.close()
    # through the ledger: IllegalTransition, and the transaction is rolled back
    with pytest.raises(IllegalTransition), ledger._tx() as db:
        db.execute("UPDATE labels SET cleaned_at=9 WHERE id=?", (label_id,))
        db.execute(statement)
    row = ledger.label(label_id)
    assert row.state is LabelState.DONE and ledger.cleanup_due(10.0) == [row]
    assert {o.rel: o.state for o in ledger.objects(label_id)} == {
        LABEL_DOC: ObjectState.UPLOADED,
        "snapshot.jpg": ObjectState.FAILED,
    }
    ledger.close()


def test_legal_transitions_pass_the_database(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    ledger, label_id = done_label(path)
    ledger.close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("UPDATE labels SET state='superseded'")  # done -> superseded
    other.execute("UPDATE objects SET state='deleting' WHERE rel='label.json'")
    other.execute("UPDATE objects SET state='deleted' WHERE rel='label.json'")
    other.execute("UPDATE labels SET state='superseded', error='x'")  # same state: no move
    other.close()


# ---- schema versions: PRAGMA user_version and numbered migrations --------------------------------

CURRENT_UNVERSIONED_SCHEMA = """
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
ALTER TABLE objects ADD COLUMN source_key TEXT;
ALTER TABLE objects ADD COLUMN deleted_at REAL;
CREATE INDEX IF NOT EXISTS objects_source ON objects (source_key);
"""
"""What the uploader before schema versions (commit 47d0b4e) leaves on disk: its _SCHEMA, then
its _ADDED_COLUMNS and _AFTER_MIGRATION; user_version stays 0."""


def unversioned_ledger(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(CURRENT_UNVERSIONED_SCHEMA)
    db.execute(
        "INSERT INTO labels VALUES (1, 'front', 'ev1', 'occupied', ?, 1.0, 'pending', "
        "'2025-11-25', NULL, NULL, NULL)",
        (label("ev1").model_dump_json(),),
    )
    db.executemany(
        "INSERT INTO objects (label_id, rel, key, state, size, etag, attempts, source_key) "
        "VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
        [
            ("snapshot.jpg", "k/snap", "uploaded", 5, "e", 1, None),
            ("event.json", "k/event", "pending", None, None, 2, "old/event"),
            (LABEL_DOC, "k/label", "pending", None, None, 0, None),
        ],
    )
    db.execute("INSERT INTO meta VALUES ('last_success_at', '7.0')")
    db.commit()
    db.close()


def user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def test_an_unversioned_ledger_of_the_current_schema_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    unversioned_ledger(path)
    assert user_version(path) == 0
    ledger = Ledger(path)
    assert ledger.version == len(MIGRATIONS) == user_version(path)
    (row,) = ledger.labels()
    assert (row.id, row.state, row.day) == (1, LabelState.PENDING, "2025-11-25")
    assert [(o.rel, o.state, o.attempts, o.source_key) for o in ledger.objects(1)] == [
        ("event.json", ObjectState.PENDING, 2, "old/event"),
        (LABEL_DOC, ObjectState.PENDING, 0, None),
        ("snapshot.jpg", ObjectState.UPLOADED, 1, None),
    ]
    assert ledger.get_meta("last_success_at") == "7.0"
    # the upgraded ledger works on: upload, complete, and its states are enforced
    ledger.mark_uploaded(1, "event.json", 3, "e2", 8.0)
    ledger.mark_uploaded(1, LABEL_DOC, 4, "e3", 9.0)
    assert ledger.complete_labels(10.0) == [1]
    with pytest.raises(IllegalTransition), ledger._tx() as db:
        db.execute("UPDATE labels SET state='waiting'")
    ledger.close()
    Ledger(path).close()  # opening again changes nothing
    assert user_version(path) == len(MIGRATIONS)


def test_a_ledger_from_a_newer_uploader_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.commit()
    db.close()
    with pytest.raises(LedgerTooNew, match="newer"):
        Ledger(path)


def test_a_failing_migration_step_leaves_the_version_where_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.sqlite"
    Ledger(path).close()
    before = len(MIGRATIONS)

    def broken(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE half_done (x)")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(ledger_module, "MIGRATIONS", [*MIGRATIONS, broken])
    with pytest.raises(sqlite3.OperationalError):
        Ledger(path)
    assert user_version(path) == before
    db = sqlite3.connect(path)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    assert "half_done" not in tables  # rolled back with the version
