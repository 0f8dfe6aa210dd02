"""Authorisation fails closed (access.py): users not in ALLOWED_USERS are refused every command
but help and every button, with a reply naming the setting; an empty list refuses everyone;
``*`` opens the gateway to the workspace. Over HTTP and Socket Mode, new and original commands."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from gateway_fakes import FakeSlack, Harness, button_payload, responses_for

from homesec.contract import (
    PTZ_COMMAND,
    SNAPSHOT_REQUEST,
    SYSTEM_SET,
    TRAINING_LABELS,
)
from homesec_slack_gateway.access import ALLOWED_USERS_SETTING
from homesec_slack_gateway.settings import SlackGatewaySettings
from support import Collector, wait_until

STATE_CHANGES = [
    ("/homesec", "arm"),
    ("/homesec", "disarm"),
    ("/homesec", "mute"),
    ("/homesec", "unmute"),
    ("/homesec", "auto on"),
    ("/homesec", "auto off"),
    ("/homesec", "train on"),
    ("/homesec", "train off"),
    ("/homesec", "rotate 30 20"),
    ("/homesec", "initialize"),
    ("/pycam_on", ""),
    ("/pycam_off", ""),
    ("/notifications_on", ""),
    ("/notifications_off", ""),
    ("/auto_detect_on", ""),
    ("/auto_detect_off", ""),
    ("/rotate", "30 20"),
    ("/initialize", ""),
]
READ_ONLY = [
    ("/homesec", "status"),
    ("/status", ""),
    ("/homesec", "snapshot"),
    ("/last_image", ""),
    ("/homesec", "position"),
    ("/current_position", ""),
]
LABEL = ("front-0001|front|occupied", "homesec_label_occupied")
_envelopes = itertools.count(1)


class Effects:
    """Everything a command or a click could publish, watched on the real broker."""

    def __init__(self, make_bus) -> None:
        self.sets: Collector[Any] = Collector()
        self.ptz: Collector[Any] = Collector()
        self.snapshots: Collector[Any] = Collector()
        self.labels: Collector[Any] = Collector()
        bus = make_bus("watcher", start=False)
        bus.subscribe(SYSTEM_SET, self.sets)
        bus.subscribe(PTZ_COMMAND, self.ptz)
        bus.subscribe(SNAPSHOT_REQUEST, self.snapshots)
        bus.subscribe(TRAINING_LABELS, self.labels)
        bus.start()
        assert bus.wait_connected(10)

    def none_after(self, seconds: float = 0.5) -> bool:
        time.sleep(seconds)
        return not (self.sets.items or self.ptz.items or self.snapshots.items or self.labels.items)


@pytest.fixture
def effects(make_bus) -> Effects:
    return Effects(make_bus)


def _refused(gateway: Harness, command: str, text: str, user: str) -> str:
    response, _ = gateway.command(command, text, user=user)
    assert response.status_code == 200
    body = response.json()
    assert body["response_type"] == "ephemeral", (command, text, body)
    assert ALLOWED_USERS_SETTING in body["text"], (command, text, body)
    assert f"`{user}`" in body["text"]  # the owner can copy the id into the setting
    return str(body["text"])


def _click_refused(gateway: Harness, slack: FakeSlack, user: str) -> str:
    before = len(slack.responses)
    url = slack.response_url()
    response = gateway.click(button_payload(*LABEL, user=user, response_url=url))
    assert response.status_code == 200
    answer = responses_for(slack, before + 1)[-1]  # what the user sees in Slack
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False
    assert ALLOWED_USERS_SETTING in answer["text"] and f"`{user}`" in answer["text"]
    return str(answer["text"])


def test_a_stranger_is_refused_every_command_but_help_and_every_button(
    make_gateway, effects: Effects, slack: FakeSlack
) -> None:
    gateway = make_gateway(allowed_users=["U0OWNER", "U0PARTNER"])
    for command, text in STATE_CHANGES + READ_ONLY:
        assert "is not in" in _refused(gateway, command, text, "U0STRANGER")
    _click_refused(gateway, slack, "U0STRANGER")
    assert effects.none_after()
    assert gateway.metric("homesec_slack_commands_total", command="disarm", outcome="denied") == 2
    assert gateway.metric("homesec_slack_commands_total", command="label", outcome="denied") == 1
    assert gateway.metric("homesec_slack_commands_total", command="status", outcome="denied") == 2
    response, _ = gateway.command("/homesec", "help", user="U0STRANGER")
    assert "rotate PAN TILT" in response.json()["text"]

    # the listed users are served
    response, _ = gateway.command("/pycam_off", user="U0PARTNER")
    assert response.json()["response_type"] == "in_channel"
    assert effects.sets.wait_for(1)[0].value is False
    assert gateway.click(button_payload(*LABEL, user="U0PARTNER")).status_code == 200
    assert effects.labels.wait_for(1)[0].labelled_by == "slack:U0PARTNER"


def test_an_empty_list_refuses_everyone_but_help(
    make_gateway, effects: Effects, slack: FakeSlack
) -> None:
    gateway = make_gateway(allowed_users=[])  # the default
    for command, text in STATE_CHANGES + READ_ONLY:
        text_of_refusal = _refused(gateway, command, text, "U0OWNER")  # even the admin
        assert "no Slack user may control it yet" in text_of_refusal
        assert "`*`" in text_of_refusal
    assert "no Slack user may control it yet" in _click_refused(gateway, slack, "U0OWNER")
    assert effects.none_after()
    response, _ = gateway.command("/homesec", "", user="U0OWNER")
    assert "rotate PAN TILT" in response.json()["text"]
    assert gateway.metric("homesec_slack_commands_total", command="help", outcome="ok") == 1


def test_star_opens_the_gateway_to_the_whole_workspace(
    make_gateway, effects: Effects, slack: FakeSlack
) -> None:
    gateway = make_gateway(allowed_users=["*"])
    response, _ = gateway.command("/homesec", "disarm", user="U0ANYONE")
    assert response.json()["response_type"] == "in_channel"
    assert effects.sets.wait_for(1)[0].source == "slack:U0ANYONE"
    gateway.command("/rotate", "10 5", user="U0ANYONE")
    assert effects.ptz.wait_for(1)[0].pan == 10
    response, _ = gateway.command("/status", user="U0ANYONE")
    assert "homesec status" in response.json()["text"]
    assert gateway.click(button_payload(*LABEL, user="U0ANYONE")).status_code == 200
    assert effects.labels.wait_for(1)[0].labelled_by == "slack:U0ANYONE"
    # initialize still needs an admin
    response, _ = gateway.command("/initialize", user="U0ANYONE")
    assert "HOMESEC_SLACK_GATEWAY_ADMIN_USERS" in response.json()["text"]
    time.sleep(0.3)
    assert len(effects.sets.items) == 1


def _envelope(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "envelope_id": f"access-{next(_envelopes)}",
        "type": kind,
        "accepts_response_payload": kind == "slash_commands",
        "payload": payload,
        "retry_attempt": 0,
        "retry_reason": "",
    }


def test_socket_mode_refuses_strangers_the_same_way(
    make_gateway, effects: Effects, slack: FakeSlack
) -> None:
    make_gateway(socket_mode=True, slack_signing_secret=None)
    wait_until(lambda: slack.socket_connected, 15)
    for command, text in [("/homesec", "disarm"), ("/pycam_off", ""), ("/rotate", "30 20")]:
        form = {"command": command, "text": text, "user_id": "U0STRANGER", "channel_id": "C1"}
        env = _envelope("slash_commands", form)
        slack.send_envelope(env)
        ack = wait_until(lambda e=env: slack.ack_for(e["envelope_id"]), 15)
        assert ALLOWED_USERS_SETTING in ack["payload"]["text"], ack
    url = slack.response_url()
    click = _envelope("interactive", button_payload(*LABEL, user="U0STRANGER", response_url=url))
    slack.send_envelope(click)
    wait_until(lambda: slack.ack_for(click["envelope_id"]), 15)
    assert ALLOWED_USERS_SETTING in responses_for(slack)[-1]["text"]
    assert effects.none_after()


def test_the_setting_reads_ids_and_star_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv(ALLOWED_USERS_SETTING, " U0OWNER , U0PARTNER,")
    assert SlackGatewaySettings().allowed_users == ["U0OWNER", "U0PARTNER"]
    monkeypatch.setenv(ALLOWED_USERS_SETTING, "*")
    assert SlackGatewaySettings().allowed_users == ["*"]
    monkeypatch.delenv(ALLOWED_USERS_SETTING)
    assert SlackGatewaySettings().allowed_users == []
