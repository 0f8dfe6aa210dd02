"""The durable outbox: order, once per event, per-camera rate limit, stages, pruning."""

from __future__ import annotations

from pathlib import Path

from homesec_slack_gateway.store import Stage, Store


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
