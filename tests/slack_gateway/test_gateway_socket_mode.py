"""Socket Mode: the same commands and button clicks over a WebSocket, each envelope acked."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from gateway_fakes import JPEG, FakeSlack, Harness, Peers, button_payload

from homesec.contract import TRAINING_LABELS, Label, TrainingLabel
from support import Collector, wait_until

_ids = itertools.count(1)

# (command, text, fragment of the acknowledgement's answer)
COMMANDS = [
    ("/homesec", "arm", "Arming"),
    ("/homesec", "disarm", "Disarming"),
    ("/homesec", "mute", "Notifications off"),
    ("/homesec", "unmute", "Notifications on"),
    ("/homesec", "auto on", "auto-arming on"),
    ("/homesec", "auto off", "auto-arming off"),
    ("/homesec", "train on", "Training buttons on"),
    ("/homesec", "train off", "Training buttons off"),
    ("/homesec", "status", "homesec status"),
    ("/homesec", "snapshot", "Fetching a snapshot"),
    ("/homesec", "rotate 20 5", "Rotating *front* to pan 20°, tilt 5°"),
    ("/homesec", "position", "at pan 20°, tilt 5°"),
    ("/homesec", "help", "rotate PAN TILT"),
    ("/homesec", "initialize", "Initializing"),
    ("/homesec", "dance", "Unknown command"),
    ("/pycam_on", "", "Arming"),
    ("/pycam_off", "", "Disarming"),
    ("/notifications_on", "", "Notifications on"),
    ("/notifications_off", "", "Notifications off"),
    ("/auto_detect_on", "", "auto-arming on"),
    ("/auto_detect_off", "", "auto-arming off"),
    ("/status", "", "homesec status"),
    ("/last_image", "", "Fetching a snapshot"),
    ("/rotate", "-30 15", "Rotating *front* to pan -30°, tilt 15°"),
    ("/current_position", "", "at pan -30°, tilt 15°"),
    ("/initialize", "", "Initializing"),
]


def envelope(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "envelope_id": f"env-{next(_ids)}",
        "type": kind,
        "accepts_response_payload": kind == "slash_commands",
        "payload": payload,
        "retry_attempt": 0,
        "retry_reason": "",
    }


@pytest.fixture
def socket_gateway(make_gateway, slack: FakeSlack) -> Harness:
    gateway = make_gateway(socket_mode=True, slack_signing_secret=None)
    wait_until(lambda: slack.socket_connected, 15)
    assert gateway.service.http_port is None  # no HTTP port in Socket Mode
    assert slack.calls_to("apps.connections.open")
    return gateway


def test_every_command_over_socket_mode(
    socket_gateway: Harness, slack: FakeSlack, make_bus
) -> None:
    peers = Peers(make_bus)
    switch_count = ptz_count = 0
    for command, text, fragment in COMMANDS:
        form = {
            "command": command,
            "text": text,
            "user_id": "U0OWNER",
            "channel_id": "C0ASK",
            "response_url": slack.response_url(),
        }
        env = envelope("slash_commands", form)
        slack.send_envelope(env)
        ack = wait_until(lambda e=env: slack.ack_for(e["envelope_id"]), 15)
        assert fragment in ack["payload"]["text"], (command, text, ack)
        if "→" in ack["payload"]["text"]:
            switch_count += ack["payload"]["text"].count("→")
            peers.sets.wait_for(switch_count)
        if "rotate" in (command + text) or "initialize" in (command + text):
            # the next command (position) must see where the head went
            ptz_count += 1
            request = peers.ptz_commands.wait_for(ptz_count)[ptz_count - 1]
            wait_until(
                lambda r=request: (
                    (s := socket_gateway.service.mirror.ptz_state("front"))
                    and s.last_request_id == r.request_id
                )
            )
    assert switch_count == 14 + 6  # 14 switch commands + 2 initializes of 3 switches
    wait_until(lambda: len(slack.completed_uploads()) == 2, 15)
    assert all(data == JPEG for _, data in slack.completed_uploads())


def test_button_click_over_socket_mode(socket_gateway: Harness, slack: FakeSlack, make_bus) -> None:
    uploader = make_bus("uploader", start=False)
    labels: Collector[TrainingLabel] = Collector()
    uploader.subscribe(TRAINING_LABELS, labels)
    uploader.start()
    assert uploader.wait_connected(10)
    env = envelope(
        "interactive", button_payload("front-0042|front|occupied", "homesec_label_occupied")
    )
    slack.send_envelope(env)
    assert wait_until(lambda: slack.ack_for(env["envelope_id"]), 15)
    label = labels.wait_for(1)[0]
    assert (label.event_id, label.label, label.labelled_by) == (
        "front-0042",
        Label.OCCUPIED,
        "slack:U0OWNER",
    )
    wait_until(lambda: slack.calls_to("chat.update"), 15)

    # Slack redelivers an envelope whose ack it missed: acked again, labelled once
    slack.send_envelope({**env, "retry_attempt": 1, "retry_reason": "timeout"})
    wait_until(lambda: sum(a.get("envelope_id") == env["envelope_id"] for a in slack.acks) == 2)

    bad = envelope("interactive", button_payload("x|y", "homesec_label_occupied"))
    slack.send_envelope(bad)
    assert wait_until(lambda: slack.ack_for(bad["envelope_id"]), 15)  # acked, nothing published
    assert len(labels.items) == 1
