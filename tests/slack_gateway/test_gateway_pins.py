"""The gateway and the detector's pins: a label click pins the event for the uploader before the
label is published; an alert's pin is released once the outbox settled the alert (posted or
suppressed), never while it is still queued, and never for an event the gateway has not seen."""

from __future__ import annotations

import time
from typing import Any

import pytest
from gateway_fakes import JPEG, FakeSlack, Fault, Harness, button_payload

import homesec_slack_gateway.pin_release as pin_release
from homesec.contract import (
    MOTION_EVENTS,
    TRAINING_LABELS,
    AlertDecision,
    EventType,
    MotionEvent,
)
from homesec.pins import PinKind, Pins
from support import wait_until


def alert(event_id: str, camera: str = "front") -> MotionEvent:
    return MotionEvent(
        type=EventType.START,
        event_id=event_id,
        camera=camera,
        started_at=time.time(),
        frame_seq=1,
        frame_captured_at=time.time(),
        area=0.1,
        motion_score=0.5,
        decision=AlertDecision(alert=True, reason="armed, motion"),
        snapshot=f"{camera}/{event_id}/snapshot.jpg",
        media_dir=f"{camera}/{event_id}",
    )


def detector_writes(gateway: Harness, event: MotionEvent) -> Pins:
    """What the detector does before it publishes an alert: the snapshot, then the pin."""
    path = gateway.settings.media_dir / event.camera / event.event_id / "snapshot.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(JPEG + b"\x00" * 16)
    pins = Pins(gateway.settings.pins_dir)
    assert pins.pin(PinKind.ALERT, event.camera, event.event_id)
    return pins


def pinned(pins: Pins) -> list[str]:
    return sorted(p.event_id for p in pins.scan(PinKind.ALERT))


def test_a_click_pins_the_event_before_its_label_is_published(
    make_gateway: Any, make_bus: Any
) -> None:
    gateway = make_gateway(allowed_users=["U0OWNER"])
    pins = Pins(gateway.settings.pins_dir)
    seen: list[bool] = []

    def on_label(msg: Any) -> None:  # at receipt the pin must already be there
        seen.append(pins.is_pinned(PinKind.LABEL, msg.payload.camera, msg.payload.event_id))

    uploader = make_bus("uploader", start=False)
    uploader.subscribe(TRAINING_LABELS, on_label)
    uploader.start()
    assert uploader.wait_connected(10)
    time.sleep(0.3)
    response = gateway.click(button_payload("front-0042|front|occupied", "homesec_label_occupied"))
    assert response.status_code == 200
    wait_until(lambda: seen, 15)
    assert seen == [True]
    # the gateway never releases label pins: that is the uploader's job
    gateway.service.pin_release.release_once()
    assert pins.is_pinned(PinKind.LABEL, "front", "front-0042")


def test_alert_pins_are_released_once_settled_and_not_before(
    make_gateway: Any, make_bus: Any, slack: FakeSlack
) -> None:
    gateway = make_gateway(alert_min_interval_seconds=3600)
    detector = make_bus("detector")
    posted, suppressed, queued = alert("front-1"), alert("front-2"), alert("back-1", "back")
    pins = detector_writes(gateway, posted)
    detector.publish(MOTION_EVENTS, posted)
    wait_until(lambda: gateway.metric("homesec_slack_alerts_sent_total") == 1, 15)

    slack.fail_next(  # Slack fails from now on: the next alert stays queued
        "files.getUploadURLExternal",
        *[Fault(500, {"ok": False, "error": "internal_error"}) for _ in range(1000)],
    )
    for event in (suppressed, queued):  # front-2: rate-limited (the camera alerted just now)
        detector_writes(gateway, event)
        detector.publish(MOTION_EVENTS, event)
    assert pins.pin(PinKind.ALERT, "front", "front-unseen")  # still at the broker
    wait_until(lambda: gateway.metric("homesec_slack_alerts_suppressed_total") == 1, 15)
    wait_until(lambda: gateway.metric("homesec_slack_alerts_failed_total") >= 1, 15)

    assert gateway.service.pin_release.release_once() == 2
    assert pinned(pins) == ["back-1", "front-unseen"]
    assert gateway.metric("homesec_slack_alert_pins_released_total") == 2

    slack.faults.clear()  # Slack is back
    wait_until(lambda: gateway.metric("homesec_slack_alerts_sent_total") == 2, 15)
    assert gateway.service.pin_release.release_once() == 1
    assert pinned(pins) == ["front-unseen"]


def test_the_release_runs_by_itself(
    make_gateway: Any, make_bus: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pin_release, "INTERVAL_SECONDS", 0.1)
    gateway = make_gateway()
    detector = make_bus("detector")
    event = alert("front-7")
    pins = detector_writes(gateway, event)
    detector.publish(MOTION_EVENTS, event)
    wait_until(lambda: gateway.metric("homesec_slack_alerts_sent_total") == 1, 15)
    wait_until(lambda: pinned(pins) == [], 5)
