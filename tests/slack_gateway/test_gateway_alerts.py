"""Alerts: once per event, with the snapshot bytes, buttons in training mode, in order and
exactly once through Slack 429s and 500s, rate-limited per camera, surviving a restart."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from gateway_fakes import FakeSlack, Fault, Harness, image, motion_event, write_snapshot

from homesec.contract import (
    MOTION_EVENTS,
    SERVICE_STATUS,
    SNAPSHOT,
    EventType,
    Frame,
    ServiceState,
    ServiceStatus,
    SystemSetting,
)
from homesec.state import SystemStateOwner
from support import Collector, wait_until


def test_armed_event_gives_exactly_one_alert_with_buttons(
    gateway: Harness, make_bus, slack: FakeSlack
) -> None:
    detector = make_bus("detector")
    write_snapshot(gateway, "front", "front-0001", image(1))
    detector.publish(MOTION_EVENTS, motion_event("front-0001", EventType.START, alert=False))
    detector.publish(MOTION_EVENTS, motion_event("front-0001", EventType.UPDATE, alert=True))
    detector.publish(MOTION_EVENTS, motion_event("front-0001", EventType.UPDATE, alert=True))
    detector.publish(MOTION_EVENTS, motion_event("front-0001", EventType.END, alert=True))
    wait_until(lambda: slack.calls_to("chat.postMessage"), 15)
    time.sleep(0.5)  # anything extra would arrive now
    uploads = slack.completed_uploads()
    assert len(uploads) == 1
    args, data = uploads[0]
    assert data == image(1)
    assert args["channel_id"] == "C0ALERTS"
    assert "Motion on front" in args["initial_comment"]
    assert "person 84%" in args["initial_comment"]
    assert "front-0001" in args["initial_comment"]
    posts = slack.calls_to("chat.postMessage")
    assert len(posts) == 1
    blocks = posts[0].args["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    buttons = blocks[1]["elements"]
    assert [b["style"] for b in buttons] == ["primary", "danger"]
    assert [b["value"] for b in buttons] == [
        "front-0001|front|occupied",
        "front-0001|front|unoccupied",
    ]
    assert gateway.metric("homesec_slack_alerts_sent_total") == 1
    assert gateway.metric("homesec_slack_alert_backlog") == 0
    assert gateway.metric("homesec_slack_api_seconds_count", method="chat.postMessage") == 1


def test_no_training_no_buttons_and_fallback_to_retained_snapshot(
    gateway: Harness, make_bus, slack: FakeSlack
) -> None:
    detector = make_bus("detector", start=False)
    owner = SystemStateOwner(detector, restore_wait_seconds=0.1)
    detector.start()
    assert detector.wait_connected(10)
    owner.set(SystemSetting.TRAINING, False, "test")
    wait_until(lambda: gateway.service.state.get(SystemSetting.TRAINING) is False)
    camera = make_bus("camera")
    frame = Frame(
        camera="front", seq=5, captured_at=time.time(), width=64, height=48, jpeg=image(9)
    )
    camera.publish(SNAPSHOT, frame, camera="front")
    wait_until(lambda: gateway.service.mirror.latest_snapshot("front") is not None)
    # the path tries to leave the media folder: refused, the retained snapshot is used
    detector.publish(MOTION_EVENTS, motion_event("front-0002", snapshot="../../../etc/passwd"))
    wait_until(lambda: slack.completed_uploads(), 15)
    assert slack.completed_uploads()[0][1] == image(9)
    time.sleep(0.3)
    assert slack.calls_to("chat.postMessage") == []


def test_slack_429_and_500_then_recovery_in_order_once(
    gateway: Harness, make_bus, slack: FakeSlack
) -> None:
    slack.fail_next(
        "files.getUploadURLExternal",
        Fault(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}),
        Fault(500, {"ok": False, "error": "internal_error"}),
        Fault(503, {"ok": False, "error": "service_unavailable"}),
    )
    slack.fail_next(
        "files.completeUploadExternal", Fault(500, {"ok": False, "error": "internal_error"})
    )
    slack.fail_next(
        "chat.postMessage",
        Fault(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}),
        Fault(500, {"ok": False, "error": "internal_error"}),
    )
    statuses: Collector[ServiceStatus] = Collector()
    detector = make_bus("detector", start=False)
    detector.subscribe(SERVICE_STATUS, statuses, service="slack-gateway")
    detector.start()
    assert detector.wait_connected(10)
    ids = [f"front-00{n}" for n in range(10, 14)]
    for n, event_id in enumerate(ids):
        write_snapshot(gateway, "front", event_id, image(n))
        detector.publish(MOTION_EVENTS, motion_event(event_id))
    wait_until(lambda: len(slack.calls_to("chat.postMessage")) == len(ids), 30)
    time.sleep(0.5)
    uploads = slack.completed_uploads()
    assert [data for _, data in uploads] == [image(n) for n in range(len(ids))]
    assert [args["initial_comment"].split("`")[1] for args, _ in uploads] == ids
    posts = slack.calls_to("chat.postMessage")
    values = [
        (json.loads(p.args["blocks"]) if isinstance(p.args["blocks"], str) else p.args["blocks"])[
            1
        ]["elements"][0]["value"]
        for p in posts
    ]
    assert values == [f"{i}|front|occupied" for i in ids]
    assert gateway.metric("homesec_slack_alerts_sent_total") == len(ids)
    assert gateway.metric("homesec_slack_alerts_failed_total") >= 3
    assert gateway.metric("homesec_slack_alert_backlog") == 0
    assert len(slack.calls_to("files.getUploadURLExternal", ok_only=False)) >= len(ids) + 3
    # the gateway said it was degraded while Slack failed, and ok once it recovered
    states = [s.state for s in statuses.payloads]
    assert ServiceState.DEGRADED in states
    wait_until(lambda: statuses.payloads[-1].state is ServiceState.OK)


def test_rate_limit_per_camera(make_gateway, make_bus, slack: FakeSlack) -> None:
    gateway = make_gateway(alert_min_interval_seconds=60)
    detector = make_bus("detector")
    for event_id, camera in [("front-1", "front"), ("front-2", "front"), ("back-1", "back")]:
        write_snapshot(gateway, camera, event_id, image(len(event_id)))
        detector.publish(MOTION_EVENTS, motion_event(event_id, camera=camera))
    wait_until(lambda: len(slack.completed_uploads()) == 2, 15)
    time.sleep(0.5)
    comments = [args["initial_comment"] for args, _ in slack.completed_uploads()]
    assert "front-1" in comments[0] and "back-1" in comments[1]
    assert gateway.metric("homesec_slack_alerts_suppressed_total") == 1


def test_alert_survives_gateway_restart(
    broker_settings, tmp_path: Path, make_bus, slack: FakeSlack
) -> None:
    first = Harness(broker_settings, tmp_path / "data", slack, slack_bot_token=None).start()
    detector = make_bus("detector")
    write_snapshot(first, "front", "front-0100", image(100))
    detector.publish(MOTION_EVENTS, motion_event("front-0100"))
    wait_until(lambda: first.metric("homesec_slack_alert_backlog") == 1, 15)
    first.stop()
    second = Harness(broker_settings, tmp_path / "data", slack).start()
    try:
        wait_until(lambda: slack.calls_to("chat.postMessage"), 15)
        # the detector repeats the event's update after the restart: still one alert
        detector.publish(MOTION_EVENTS, motion_event("front-0100", EventType.UPDATE))
        time.sleep(0.5)
        assert [data for _, data in slack.completed_uploads()] == [image(100)]
    finally:
        second.stop()


def test_a_redelivered_event_never_queues_or_posts_a_second_alert(
    gateway: Harness, make_bus, slack: FakeSlack
) -> None:
    detector = make_bus("detector")
    write_snapshot(gateway, "front", "front-0200", image(200))
    # QoS 1 is at-least-once: the broker may hand the same message over again
    for _ in range(3):
        detector.publish(MOTION_EVENTS, motion_event("front-0200"))
    wait_until(lambda: slack.calls_to("chat.postMessage"), 15)
    detector.publish(MOTION_EVENTS, motion_event("front-0200"))  # again, after it was posted
    time.sleep(0.5)
    assert [data for _, data in slack.completed_uploads()] == [image(200)]
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert gateway.metric("homesec_slack_alerts_sent_total") == 1


def test_a_store_failure_raises_so_the_event_is_redelivered_and_alerts_once(
    gateway: Harness, make_bus, slack: FakeSlack, monkeypatch
) -> None:
    store = gateway.service.store
    real_add = store.add_alert
    calls: list[str] = []

    def full_disk_twice(**kwargs):
        calls.append(kwargs["event_id"])
        if len(calls) <= 2:
            raise sqlite3.OperationalError("database or disk is full")
        return real_add(**kwargs)

    monkeypatch.setattr(store, "add_alert", full_disk_twice)
    detector = make_bus("detector")
    write_snapshot(gateway, "front", "front-0201", image(201))
    detector.publish(MOTION_EVENTS, motion_event("front-0201"))
    # the handler raised (it did not swallow the error), the bus tried it again, once more,
    # and then the alert was stored exactly once and posted exactly once
    wait_until(lambda: slack.calls_to("chat.postMessage"), 20)
    assert calls == ["front-0201"] * 3
    errors = gateway.metric("homesec_mqtt_handler_errors_total", topic_class="motion_events")
    assert errors == 2
    time.sleep(0.5)
    assert [data for _, data in slack.completed_uploads()] == [image(201)]
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert gateway.metric("homesec_mqtt_dead_letters_total", topic_class="motion_events") == 0
