"""Request verification: unsigned, badly signed, replayed or oversized requests change nothing."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import httpx
from gateway_fakes import Harness, button_payload, sign

from homesec.contract import SYSTEM_SET, TRAINING_LABELS, SetCommand, TrainingLabel
from support import Collector


def _arm_body() -> bytes:
    return urlencode(
        {"command": "/homesec", "text": "arm", "user_id": "U0OWNER", "channel_id": "C1"}
    ).encode()


def _watch(make_bus) -> tuple[Collector[SetCommand], Collector[TrainingLabel]]:
    bus = make_bus("watcher", start=False)
    sets: Collector[SetCommand] = Collector()
    labels: Collector[TrainingLabel] = Collector()
    bus.subscribe(SYSTEM_SET, sets)
    bus.subscribe(TRAINING_LABELS, labels)
    bus.start()
    assert bus.wait_connected(10)
    return sets, labels


def test_refuses_unsigned_bad_replayed_and_oversized(gateway: Harness, make_bus) -> None:
    sets, labels = _watch(make_bus)
    body = _arm_body()
    cases = {
        "missing_headers": gateway.post(body, headers={}),
        "bad_signature": gateway.post(body, headers=sign(body, secret="not-the-secret")),
        "stale_timestamp": gateway.post(body, headers=sign(body, int(time.time()) - 301)),
        "bad_timestamp": gateway.post(
            body, headers={**sign(body), "X-Slack-Request-Timestamp": "soon"}
        ),
    }
    for reason, response in cases.items():
        assert response.status_code == 401, reason
        assert response.json()["detail"], reason
        assert gateway.metric("homesec_slack_signature_failures_total", reason=reason) == 1
    # a signature over different bytes than the body that arrives (tampered body)
    tampered = gateway.post(body.replace(b"arm", b"disarm"), headers=sign(body))
    assert tampered.status_code == 401
    assert gateway.metric("homesec_slack_signature_failures_total", reason="bad_signature") == 2

    big = b"text=" + b"a" * (gateway.settings.max_body_bytes + 1)
    assert gateway.post(big).status_code == 413
    assert gateway.metric("homesec_slack_signature_failures_total", reason="too_large") == 1

    click = urlencode(
        {"payload": json.dumps(button_payload("e1|front|occupied", "homesec_label_occupied"))}
    ).encode()
    assert gateway.post(click, headers={}).status_code == 401

    # a properly signed request still works, and only it changed anything
    ok = gateway.post(body)
    assert ok.status_code == 200
    assert sets.wait_for(1)[0].value is True
    time.sleep(0.5)
    assert len(sets.items) == 1
    assert labels.items == []
    assert gateway.metric("homesec_slack_commands_total", command="arm", outcome="ok") == 1


def test_without_signing_secret_everything_is_refused(make_gateway, make_bus) -> None:
    sets, _ = _watch(make_bus)
    gateway = make_gateway(slack_signing_secret=None)
    body = _arm_body()
    response = gateway.post(body)  # signed with the secret Slack would use
    assert response.status_code == 401
    assert "SLACK_SIGNING_SECRET" in response.json()["detail"]
    assert gateway.metric("homesec_slack_signature_failures_total", reason="no_signing_secret") == 1
    time.sleep(0.5)
    assert sets.items == []


def test_bad_interaction_payloads_get_400(gateway: Harness, make_bus) -> None:
    _, labels = _watch(make_bus)
    bad_values = [
        ("__import__('os').system('id')", "homesec_label_occupied"),
        ("e1|front", "homesec_label_occupied"),
        ("../x|front|occupied", "homesec_label_occupied"),
        ("e1|front|maybe", "homesec_label_occupied"),
        ("e1|front|unoccupied", "homesec_label_occupied"),  # value disagrees with the button
        ("e1|front|occupied", "some_other_action"),
    ]
    for value, action_id in bad_values:
        response = gateway.click(button_payload(value, action_id))
        assert response.status_code == 400, value
        assert response.json()["detail"]
    not_json = urlencode({"payload": "{not json"}).encode()
    assert gateway.post(not_json).status_code == 400
    assert gateway.post(b"hello=world").status_code == 400
    time.sleep(0.5)
    assert labels.items == []


def test_health_metrics_and_url_verification(gateway: Harness) -> None:
    health = httpx.get(gateway.url + "/healthz", timeout=10).json()
    assert health["status"] == "ok" and health["mqtt_connected"] is True
    challenge = json.dumps({"type": "url_verification", "challenge": "abc123"}).encode()
    response = gateway.post(challenge, content_type="application/json")
    assert response.json() == {"challenge": "abc123"}
    gateway.post(b"x=1", headers={})
    assert gateway.metric("homesec_slack_signature_failures_total", reason="missing_headers") == 1
    assert gateway.metric("homesec_slack_alert_backlog") == 0
    # the public port serves no metrics (they are on the unpublished metrics port)
    assert httpx.get(gateway.url + "/metrics/", timeout=10).status_code == 404
