"""Relabelling an event after (part of) its upload, and pruning the ledger.

The later label wins: the earlier label's objects leave the destination (moto's S3 server or
the local folder), the new label's objects are copied from them within the destination, and
nothing is lost or done twice across S3 outages and restarts."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from uploader_support import (
    BUCKET,
    DAY,
    EVENT_FILES,
    Clock,
    S3Server,
    bucket_objects,
    direct,
    files,
    key,
    label,
    make_event,
    sample,
    send,
    stop,
    uploader_settings,
    versions,
)

from homesec.contract import TrainingLabel
from homesec.settings import BrokerSettings
from homesec_uploader.ledger import LABEL_DOC, Ledger, NewObject
from homesec_uploader.s3_store import S3Store
from homesec_uploader.settings import UploaderSettings
from homesec_uploader.stores import DestinationError, LocalStore, Stored

ALL_FILES = [*EVENT_FILES, LABEL_DOC]


def later(item: TrainingLabel, seconds: float) -> TrainingLabel:
    return item.model_copy(update={"labelled_at": item.labelled_at + seconds})


def delete_markers(s3c: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for page in s3c.get_paginator("list_object_versions").paginate(Bucket=BUCKET):
        for marker in page.get("DeleteMarkers", []):
            counts[marker["Key"]] = counts.get(marker["Key"], 0) + 1
    return counts


# ---- S3 ------------------------------------------------------------------------------------------


def test_relabel_after_upload_and_cleanup_moves_the_objects_within_the_bucket(
    s3: S3Server, broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    settings = uploader_settings(broker_settings, tmp_path, s3)  # keep_local_days=0
    folder = make_event(settings.media_dir, "front", "ev-s3")
    original = files(folder)
    uploader = direct(make_bus, settings)
    send(make_bus, uploader, label("ev-s3"))
    assert uploader.run_once().uploaded == 8
    assert not folder.exists()  # the local media is gone: only the bucket has the files

    send(make_bus, uploader, label("ev-s3", verdict="unoccupied"))
    result = uploader.run_once()
    assert (result.copied, result.uploaded, result.deleted) == (7, 1, 8)
    assert result.failed == 0 and result.retry_later == 0

    s3c = s3.client()
    stored = bucket_objects(s3c)
    assert set(stored) == {key("ev-s3", rel, "unoccupied") for rel in ALL_FILES}
    for rel in EVENT_FILES:
        assert stored[key("ev-s3", rel, "unoccupied")] == original[rel]
    head = s3c.head_object(Bucket=BUCKET, Key=key("ev-s3", "snapshot.jpg", "unoccupied"))
    assert head["Metadata"]["label"] == "unoccupied"
    assert head["ContentType"] == "image/jpeg"
    assert head["ServerSideEncryption"] == "AES256"
    doc = json.loads(stored[key("ev-s3", LABEL_DOC, "unoccupied")])
    assert doc["label"]["label"] == "unoccupied"
    assert doc["key_prefix"] == f"training/unoccupied/front/{DAY}/ev-s3/"
    assert sorted(f["name"] for f in doc["files"]) == EVENT_FILES
    assert doc["errors"] == []
    # every new key written once; every old key deleted once (one delete marker)
    counts = versions(s3c, BUCKET)
    assert {k: n for k, n in counts.items() if "/unoccupied/" in k} == dict.fromkeys(stored, 1)
    assert delete_markers(s3c) == {key("ev-s3", rel): 1 for rel in ALL_FILES}

    assert [r.state for r in uploader.ledger.labels()] == ["superseded", "done"]
    assert sample(uploader, "homesec_uploader_objects_deleted_total") == 8
    assert sample(uploader, "homesec_uploader_copied_objects_total") == 7
    assert sample(uploader, "homesec_uploader_pending_deletes") == 0
    assert uploader.status().pending == 0
    again = uploader.run_once()  # nothing left to do
    assert (again.copied, again.uploaded, again.deleted, again.already_present) == (0, 0, 0, 0)
    stop(uploader)


class _CopyAnswerLost(S3Store):
    """S3 whose first CopyObject is done but its answer lost (the run sees an error)."""

    lost = False

    def copy(self, source: str, key: str, content_type: str, metadata: dict[str, str]) -> str:
        etag = super().copy(source, key, content_type, metadata)
        if not self.lost:
            self.lost = True
            raise DestinationError(f"S3 COPY {key}: connection lost")
        return etag


def test_a_copy_whose_answer_was_lost_is_not_made_twice(
    s3: S3Server, broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    clock = Clock(2e9)
    settings = uploader_settings(broker_settings, tmp_path, s3)
    make_event(settings.media_dir, "front", "ev-lost", preroll=0, frames=0)
    uploader = direct(make_bus, settings, clock, store=_CopyAnswerLost(settings))
    send(make_bus, uploader, label("ev-lost"))
    assert uploader.run_once().uploaded == 3
    send(make_bus, uploader, label("ev-lost", verdict="unoccupied"))
    result = uploader.run_once()
    assert result.retry_later == 1 and result.copied == 1  # event.json lost, snapshot copied
    clock.now += 1
    result = uploader.run_once()
    assert (result.already_present, result.copied, result.uploaded) == (1, 0, 1)
    new_keys = {
        key("ev-lost", rel, "unoccupied") for rel in ("event.json", "snapshot.jpg", LABEL_DOC)
    }
    counts = versions(s3.client(), BUCKET)
    assert {k: n for k, n in counts.items() if "/unoccupied/" in k} == dict.fromkeys(new_keys, 1)
    assert set(bucket_objects(s3.client())) == new_keys
    stop(uploader)


def test_relabel_while_s3_is_unreachable_is_done_once_after_a_restart(
    s3: S3Server, broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    clock = Clock(2e9)
    settings = uploader_settings(broker_settings, tmp_path, s3)
    make_event(settings.media_dir, "front", "ev-down")
    first = direct(make_bus, settings, clock)
    send(make_bus, first, label("ev-down"))
    assert first.run_once().uploaded == 8

    s3.stop()
    send(make_bus, first, label("ev-down", verdict="unoccupied"))
    result = first.run_once()
    assert result.unreachable and result.aborted and result.deleted == 0
    assert first.ledger.counts().pending_deletes == 8
    assert sample(first, "homesec_uploader_pending_deletes") == 8
    failures = first.registry.get_sample_value(
        "homesec_uploader_failures_total", {"reason": "unreachable"}
    )
    assert failures == 1
    # the old label.json is deleted first: it was tried, and is scheduled for a retry
    old_doc = next(o for o in first.ledger.objects(1) if o.rel == LABEL_DOC)
    assert old_doc.state == "deleting" and old_doc.attempts == 1
    assert old_doc.error is not None and "unreachable" in old_doc.error
    assert first.ledger.next_retry_at() is not None
    assert first.status().pending == 1  # the new label waits
    stop(first)  # a restart while the deletes are still to do

    s3.start()  # same port
    clock.now += 1  # past the retry time
    second = direct(make_bus, settings, clock, name="uploader2")
    result = second.run_once()
    assert (result.copied, result.uploaded, result.deleted) == (7, 1, 8)
    assert second.run_once().deleted == 0
    s3c = s3.client()
    assert set(bucket_objects(s3c)) == {key("ev-down", rel, "unoccupied") for rel in ALL_FILES}
    assert delete_markers(s3c) == {key("ev-down", rel): 1 for rel in ALL_FILES}
    assert second.ledger.counts().pending_deletes == 0
    assert second.status().last_error is None
    stop(second)


# ---- local mode ----------------------------------------------------------------------------------


@pytest.mark.parametrize("keep_local_days", [0.0, 2.0], ids=["media-cleaned", "media-kept"])
def test_relabel_after_upload_in_local_mode_moves_the_folder(
    keep_local_days: float, broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    clock = Clock(2e9)
    settings = uploader_settings(broker_settings, tmp_path, keep_local_days=keep_local_days)
    folder = make_event(settings.media_dir, "front", "ev-mv")
    original = files(folder)
    uploader = direct(make_bus, settings, clock)
    send(make_bus, uploader, label("ev-mv"))
    assert uploader.run_once().uploaded == 8
    assert folder.exists() == (keep_local_days > 0)

    send(make_bus, uploader, label("ev-mv", verdict="unoccupied"))
    result = uploader.run_once()
    assert (result.copied, result.uploaded, result.deleted) == (7, 1, 8)
    root = tmp_path / "training" / "training"
    assert not (root / "occupied").exists()  # emptied folders are removed too
    moved = files(root / f"unoccupied/front/{DAY}/ev-mv")
    assert set(moved) == set(ALL_FILES)
    assert {rel: moved[rel] for rel in EVENT_FILES} == original
    assert json.loads(moved[LABEL_DOC])["label"]["label"] == "unoccupied"

    # the new label owns the local media now: deleted keep_local_days after its upload
    clock.now += keep_local_days * 86400 + 1
    assert uploader.run_once().cleaned_labels == (1 if keep_local_days else 0)
    assert not folder.exists()
    stop(uploader)


def test_redelivered_labels_after_a_relabel_change_nothing(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    settings = uploader_settings(broker_settings, tmp_path)
    make_event(settings.media_dir, "front", "ev-dup")
    uploader = direct(make_bus, settings)
    first, second = label("ev-dup"), label("ev-dup", verdict="unoccupied")
    send(make_bus, uploader, first)
    uploader.run_once()
    send(make_bus, uploader, second)
    uploader.run_once()
    root = tmp_path / "training" / "training"
    before = files(root)
    rows = uploader.ledger.labels()
    objects = [uploader.ledger.objects(r.id) for r in rows]

    send(make_bus, uploader, first, second, first)  # QoS 1 redeliveries, in any order
    assert uploader.ledger.labels() == rows
    assert [uploader.ledger.objects(r.id) for r in rows] == objects
    result = uploader.run_once()
    assert (result.uploaded, result.copied, result.deleted, result.already_present) == (0,) * 4
    assert files(root) == before
    assert set(before) == {f"unoccupied/front/{DAY}/ev-dup/{rel}" for rel in ALL_FILES}
    stop(uploader)


@pytest.mark.parametrize("run_between", [True, False], ids=["moved-back", "before-the-move"])
def test_relabelling_back_to_the_first_label_makes_it_win_again(
    run_between: bool, broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    settings = uploader_settings(broker_settings, tmp_path)
    folder = make_event(settings.media_dir, "front", "ev-back")
    original = files(folder)
    uploader = direct(make_bus, settings)
    occupied = label("ev-back")
    send(make_bus, uploader, occupied)
    uploader.run_once()
    send(make_bus, uploader, label("ev-back", verdict="unoccupied"))
    if run_between:
        uploader.run_once()  # the event moved to unoccupied
    send(make_bus, uploader, later(occupied, 60))  # the owner changed their mind again
    result = uploader.run_once()
    assert result.failed == 0 and result.retry_later == 0

    root = tmp_path / "training" / "training"
    assert not (root / "unoccupied").exists()
    back = files(root / f"occupied/front/{DAY}/ev-back")
    assert {rel: back[rel] for rel in EVENT_FILES} == original
    doc = json.loads(back[LABEL_DOC])
    assert doc["label"]["labelled_at"] == occupied.labelled_at + 60
    assert sorted(f["name"] for f in doc["files"]) == EVENT_FILES
    rows = uploader.ledger.labels()
    assert [(r.label, r.state) for r in rows] == [
        ("occupied", "done"),
        ("unoccupied", "superseded"),
    ]
    assert uploader.ledger.counts().pending_deletes == 0
    stop(uploader)


class _StopAfterPuts(LocalStore):
    """A local destination that stops the run after ``n`` PUTs (an interrupted run)."""

    def __init__(self, settings: UploaderSettings, n: int, stop: threading.Event) -> None:
        super().__init__(settings)
        self.n, self.stop = n, stop

    def put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> Stored:
        stored = super().put(key, data, content_type, metadata)
        self.n -= 1
        if self.n == 0:
            self.stop.set()
        return stored


def test_relabel_of_a_partly_uploaded_label_copies_what_was_uploaded(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    settings = uploader_settings(broker_settings, tmp_path)
    folder = make_event(settings.media_dir, "front", "ev-part")
    original = files(folder)
    halt = threading.Event()
    uploader = direct(make_bus, settings, store=_StopAfterPuts(settings, 3, halt))
    send(make_bus, uploader, label("ev-part"))
    assert uploader.run_once(halt).uploaded == 3
    halt.clear()

    send(make_bus, uploader, label("ev-part", verdict="unoccupied"))
    result = uploader.run_once(halt)
    assert (result.copied, result.uploaded, result.deleted) == (3, 5, 3)
    root = tmp_path / "training" / "training"
    assert not (root / "occupied").exists()
    moved = files(root / f"unoccupied/front/{DAY}/ev-part")
    assert {rel: moved[rel] for rel in EVENT_FILES} == original
    assert [r.state for r in uploader.ledger.labels()] == ["superseded", "done"]
    stop(uploader)


# ---- the ledger on its own -----------------------------------------------------------------------


def key_of(verdict: str) -> Any:
    return lambda day, rel: f"t/{verdict}/{day}/{rel}"


def listed(ledger: Ledger, item: TrainingLabel, *rels: str) -> int:
    label_id, created, _ = ledger.add_label(item, 0.0, key_of(item.label.value))
    assert created
    objs = [NewObject(rel, f"t/{item.label.value}/{DAY}/{rel}") for rel in (*rels, LABEL_DOC)]
    ledger.set_objects(label_id, DAY, objs, None, 0.0)
    return label_id


def test_ledger_orders_copies_before_deletes_and_one_label_doc_per_event(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite")
    old = listed(ledger, label("ev1"), "snapshot.jpg")
    for rel in ("snapshot.jpg", LABEL_DOC):
        ledger.mark_uploaded(old, rel, 1, "e", 1.0)
    new, created, superseded = ledger.add_label(
        label("ev1", verdict="unoccupied"), 2.0, key_of("unoccupied")
    )
    assert created and superseded == [old]
    assert [(o.rel, o.state, o.source_key) for o in ledger.objects(new)] == [
        (LABEL_DOC, "pending", None),
        ("snapshot.jpg", "pending", f"t/occupied/{DAY}/snapshot.jpg"),
    ]
    # the copy source stays until the copy is done; the old label.json goes at once
    assert [(o.label_id, o.rel) for o in ledger.due_deletes(3.0)] == [(old, LABEL_DOC)]
    assert [(o.label_id, o.rel) for o in ledger.due_objects(3.0)] == [(new, "snapshot.jpg")]
    ledger.mark_uploaded(new, "snapshot.jpg", 1, "e", 3.0)
    # copied, but the old label.json is still there (S3 down?): the rest of the old label stays
    # (its folder must not look complete with files missing) and the new label.json waits
    assert [(o.label_id, o.rel) for o in ledger.due_deletes(4.0)] == [(old, LABEL_DOC)]
    assert ledger.due_objects(4.0) == []
    ledger.mark_deleted(old, LABEL_DOC, 4.0)
    assert [(o.label_id, o.rel) for o in ledger.due_deletes(5.0)] == [(old, "snapshot.jpg")]
    assert [(o.label_id, o.rel) for o in ledger.due_objects(5.0)] == [(new, LABEL_DOC)]
    ledger.close()


def test_ledger_upload_in_flight_when_superseded_is_deleted(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite")
    old = listed(ledger, label("ev1"), "snapshot.jpg")
    ledger.add_label(label("ev1", verdict="unoccupied"), 1.0, key_of("unoccupied"))
    assert {o.state for o in ledger.objects(old)} == {"skipped"}
    ledger.mark_uploaded(old, "snapshot.jpg", 1, "e", 2.0)  # the PUT was already under way
    assert [o.rel for o in ledger.due_deletes(3.0)] == ["snapshot.jpg"]
    ledger.close()


OLD_SCHEMA = """
CREATE TABLE labels (id INTEGER PRIMARY KEY, camera TEXT NOT NULL, event_id TEXT NOT NULL,
    label TEXT NOT NULL, payload TEXT NOT NULL, received_at REAL NOT NULL, state TEXT NOT NULL,
    day TEXT, error TEXT, completed_at REAL, cleaned_at REAL, UNIQUE (camera, event_id, label));
CREATE TABLE objects (label_id INTEGER NOT NULL REFERENCES labels (id), rel TEXT NOT NULL,
    key TEXT NOT NULL, state TEXT NOT NULL, size INTEGER, etag TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL DEFAULT 0, error TEXT,
    uploaded_at REAL, PRIMARY KEY (label_id, rel));
CREATE INDEX objects_state ON objects (state, next_attempt_at);
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT);
"""


def test_a_ledger_of_the_previous_version_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.execute(
        "INSERT INTO labels VALUES (1, 'front', 'ev1', 'occupied', ?, 1.0, 'done', ?, NULL, "
        "2.0, 3.0)",
        (label("ev1").model_dump_json(), DAY),
    )
    db.execute(
        "INSERT INTO objects VALUES (1, 'snapshot.jpg', 'k/snap', 'uploaded', 5, 'e', 1, 0, "
        "NULL, 2.0)"
    )
    db.commit()
    db.close()

    for _ in range(2):  # opening twice: the upgrade happens once
        ledger = Ledger(path)
        ledger.close()
    ledger = Ledger(path)
    (row,) = ledger.labels()
    assert (row.id, row.state, row.day) == (1, "done", DAY)
    (obj,) = ledger.objects(1)
    assert (obj.key, obj.state, obj.etag, obj.source_key) == ("k/snap", "uploaded", "e", None)
    new, created, superseded = ledger.add_label(
        label("ev1", verdict="unoccupied"), 4.0, key_of("unoccupied")
    )
    assert created and superseded == [1]
    assert {o.rel: o.source_key for o in ledger.objects(new)} == {
        LABEL_DOC: None,
        "snapshot.jpg": "k/snap",
    }
    assert ledger.counts().pending_deletes == 1
    ledger.close()


# ---- pruning ---------------------------------------------------------------------------------


def test_ledger_prune_forgets_only_finished_labels(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite")
    done = listed(ledger, label("done"), "snapshot.jpg")
    for rel in ("snapshot.jpg", LABEL_DOC):
        ledger.mark_uploaded(done, rel, 1, "e", 1.0)
    ledger.complete_labels(1.0)
    ledger.mark_cleaned(done, 2.0)
    uncleaned = listed(ledger, label("uncleaned"))
    ledger.mark_uploaded(uncleaned, LABEL_DOC, 1, "e", 1.0)
    ledger.complete_labels(1.0)
    listed(ledger, label("pending"), "snapshot.jpg")
    ledger.add_label(label("waiting"), 0.0, key_of("occupied"))
    relabelled = listed(ledger, label("re"), "snapshot.jpg")
    ledger.mark_uploaded(relabelled, "snapshot.jpg", 1, "e", 1.0)
    ledger.add_label(label("re", verdict="unoccupied"), 1.0, key_of("unoccupied"))
    uploaded = ledger.counts().uploaded_objects

    assert ledger.prune(1.5) == 0  # 'done' finished at 2.0 (cleaned), nothing older
    assert ledger.prune(100.0) == 1  # only 'done': the superseded label has a delete to do
    ledger.mark_deleted(relabelled, "snapshot.jpg", 50.0)
    assert ledger.prune(49.0) == 0  # settled at 50.0
    assert ledger.prune(100.0) == 1
    assert ledger.prune(100.0, uncleaned_done=True) == 1  # done but never cleaned (kept media)
    assert sorted((r.event_id, r.state) for r in ledger.labels()) == [
        ("pending", "pending"),
        ("re", "pending"),
        ("waiting", "waiting"),
    ]
    assert ledger.counts().uploaded_objects == uploaded  # the total survives pruning
    ledger.close()


@pytest.mark.parametrize("keep_days", [2.0, 0.0], ids=["two-days", "forever"])
def test_uploader_prunes_the_ledger_after_ledger_keep_days(
    keep_days: float, broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    clock = Clock(2e9)
    settings = uploader_settings(
        broker_settings, tmp_path, ledger_keep_days=keep_days, media_wait_seconds=1e9
    )
    make_event(settings.media_dir, "front", "ev-old")
    uploader = direct(make_bus, settings, clock)
    send(make_bus, uploader, label("ev-old"), label("ev-no-media"))
    result = uploader.run_once()
    assert (result.uploaded, result.cleaned_labels, result.pruned_labels) == (8, 1, 0)

    clock.now += 2 * 86400 - 1
    assert uploader.run_once().pruned_labels == 0
    clock.now += 2
    assert uploader.run_once().pruned_labels == (1 if keep_days else 0)
    clock.now += 365 * 86400
    assert uploader.run_once().pruned_labels == 0
    left = [(r.event_id, r.state) for r in uploader.ledger.labels()]
    if keep_days:  # a label still waiting for its media is never pruned
        assert left == [("ev-no-media", "waiting")]
    else:
        assert left == [("ev-old", "done"), ("ev-no-media", "waiting")]
    assert sample(uploader, "homesec_uploader_pruned_labels_total") == (1 if keep_days else 0)
    assert uploader.status().uploaded_objects_total == 8
    assert uploader.status().pending == 1
    stop(uploader)


def test_ledger_keep_days_setting(broker_settings: BrokerSettings, tmp_path: Path) -> None:
    assert UploaderSettings.model_fields["ledger_keep_days"].default == 90
    forever = uploader_settings(broker_settings, tmp_path, ledger_keep_days=0)
    assert forever.ledger_keep_days == 0
    with pytest.raises(ValidationError, match="ledger_keep_days"):
        uploader_settings(broker_settings, tmp_path, ledger_keep_days=-1)
