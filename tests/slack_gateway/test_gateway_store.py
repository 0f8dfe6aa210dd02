"""The durable outbox: order, once per event, per-camera rate limit, stages, parking,
pruning, and the migration of an older file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from homesec_slack_gateway.store import ClipStage, Stage, Store


def test_store_orders_dedupes_rate_limits_and_prunes(tmp_path: Path) -> None:
    store = Store(tmp_path / "q.sqlite3")
    common = {"text": "t", "training": True, "image": b"\xff\xd8", "min_interval": 10.0}
    assert store.add_alert(event_id="a", camera="front", now=100.0, **common) == "queued"
    assert store.add_alert(event_id="a", camera="front", now=200.0, **common) == "duplicate"
    assert store.add_alert(event_id="b", camera="front", now=105.0, **common) == "rate_limited"
    assert store.add_alert(event_id="c", camera="back", now=105.0, **common) == "queued"
    assert store.add_alert(event_id="d", camera="front", now=111.0, **common) == "queued"
    first = store.next_alert()
    assert first is not None and first.event_id == "a" and first.stage is Stage.QUEUED
    store.set_stage(first.id, Stage.UPLOADED)
    again = store.next_alert()
    assert again is not None and again.event_id == "a" and again.stage is Stage.UPLOADED
    store.set_stage(first.id, Stage.SENT)
    assert [store.next_alert().event_id] == ["c"]  # type: ignore[union-attr]
    assert store.alert_backlog() == 2
    store.prune(older_than_seconds=0)  # delivered and suppressed rows go, queued ones stay
    assert store.alert_backlog() == 2
    assert store.add_alert(event_id="a", camera="x", now=1e12, **common) == "queued"
    store.close()


def test_parked_alerts_leave_the_queue_keep_their_reason_and_are_pruned(tmp_path: Path) -> None:
    store = Store(tmp_path / "q.sqlite3")
    common = {"camera": "front", "text": "t", "training": False, "min_interval": 0.0}
    store.add_alert(event_id="a", image=b"\xff\xd8", now=100.0, **common)
    store.add_alert(event_id="b", image=None, now=101.0, **common)
    first = store.next_alert()
    assert first is not None and first.event_id == "a"
    store.park(first.id, "invalid_blocks", fallback_error=None)
    assert store.next_alert().event_id == "b"  # type: ignore[union-attr]
    assert store.has_alert("a") and not store.has_alert("zzz")
    parked = store.get_alert(first.id)
    assert parked is not None and parked.stage is Stage.PARKED and parked.image is None
    count, newest = store.parked_alerts()
    assert count == 1
    assert (newest[0].event_id, newest[0].reason, newest[0].fallback_error) == (
        "a",
        "invalid_blocks",
        None,
    )
    assert store.add_alert(event_id="a", image=None, now=200.0, **common) == "duplicate"
    store.prune(older_than_seconds=0)
    assert store.parked_alerts()[0] == 0 and store.alert_backlog() == 1
    store.close()


def test_last_event_never_moves_back_on_a_redelivered_older_event(tmp_path: Path) -> None:
    store = Store(tmp_path / "q.sqlite3")
    store.note_event(200.0, "front")
    store.note_event(100.0, "back")  # an older event, redelivered late
    assert (store.get_meta("last_event_at"), store.get_meta("last_event_camera")) == (
        "200.0",
        "front",
    )
    store.note_event(300.0, "back")
    assert store.get_meta("last_event_camera") == "back"
    store.close()


def test_a_queue_file_of_the_previous_version_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE alerts (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL"
        " UNIQUE, camera TEXT NOT NULL, created_at REAL NOT NULL, text TEXT NOT NULL,"
        " training INTEGER NOT NULL, image BLOB, stage INTEGER NOT NULL, attempts INTEGER NOT"
        " NULL DEFAULT 0, last_error TEXT, sent_at REAL);"
        "INSERT INTO alerts (event_id, camera, created_at, text, training, image, stage)"
        " VALUES ('old-1', 'front', 1.0, 'queued before the upgrade', 1, NULL, 0);"
    )
    old.commit()
    old.close()
    store = Store(path)
    queued = store.next_alert()
    assert queued is not None and queued.event_id == "old-1"
    store.park(queued.id, "invalid_blocks", fallback_error="msg_too_long")
    assert store.parked_alerts()[1][0].fallback_error == "msg_too_long"
    assert store.waiting_clips() == []  # the clips table came with the migration
    store.close()
    again = Store(path)  # opening a migrated file changes nothing
    assert again.parked_alerts()[0] == 1
    again.close()


def test_a_clip_is_owed_with_its_alert_until_settled(tmp_path: Path) -> None:
    store = Store(tmp_path / "q.sqlite3")
    common = {"camera": "front", "text": "t", "training": False, "image": None}
    assert store.add_alert(event_id="front-1", min_interval=60, clip=True, now=100.0, **common)
    assert store.add_alert(event_id="front-2", min_interval=60, clip=True, now=110.0, **common)
    assert store.clip_stage("front-2") is None  # rate-limited: no alert, no clip
    (waiting,) = store.waiting_clips()
    assert (waiting.event_id, waiting.alert_stage) == ("front-1", Stage.QUEUED)
    alert = store.next_alert()
    assert alert is not None
    store.set_stage(alert.id, Stage.SENT)
    assert store.waiting_clips()[0].alert_stage is Stage.SENT
    assert not store.alert_settled("front", "front-1")  # the clip is still owed
    store.record_clip_failure("front-1", "internal_error")
    assert store.waiting_clips()[0].attempts == 1
    store.settle_clip("front-1", ClipStage.SENT)
    assert store.alert_settled("front", "front-1") and store.waiting_clips() == []
    store.prune(older_than_seconds=0)
    assert store.clip_stage("front-1") is None
    store.close()
