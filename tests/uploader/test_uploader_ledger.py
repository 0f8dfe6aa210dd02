"""The sqlite ledger on its own: durability, redelivery, ordering, retries."""

from __future__ import annotations

from pathlib import Path

from uploader_support import label

from homesec_uploader.ledger import LABEL_DOC, Ledger, NewObject


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
