"""Every command, new and original, through signed HTTP against a real broker and fake peers."""

from __future__ import annotations

import time

import pytest
from gateway_fakes import JPEG, FakeSlack, Harness, Peers, responses_for

from homesec.contract import (
    AVAILABILITY,
    PRESENCE,
    Availability,
    PersonPresence,
    PresenceState,
    ServiceState,
    SystemSetting,
)
from homesec_slack_gateway.alerts import format_time
from support import wait_until

SWITCH_CASES = [
    ("/homesec", "arm", SystemSetting.ARMED, True),
    ("/homesec", "disarm", SystemSetting.ARMED, False),
    ("/homesec", "mute", SystemSetting.NOTIFICATIONS, False),
    ("/homesec", "unmute", SystemSetting.NOTIFICATIONS, True),
    ("/homesec", "auto on", SystemSetting.AUTO_ARM, True),
    ("/homesec", "auto off", SystemSetting.AUTO_ARM, False),
    ("/homesec", "train on", SystemSetting.TRAINING, True),
    ("/homesec", "train off", SystemSetting.TRAINING, False),
    ("/pycam_on", "", SystemSetting.ARMED, True),
    ("/pycam_off", "", SystemSetting.ARMED, False),
    ("/notifications_on", "", SystemSetting.NOTIFICATIONS, True),
    ("/notifications_off", "", SystemSetting.NOTIFICATIONS, False),
    ("/auto_detect_on", "", SystemSetting.AUTO_ARM, True),
    ("/auto_detect_off", "", SystemSetting.AUTO_ARM, False),
]


@pytest.fixture
def peers(make_bus) -> Peers:
    return Peers(make_bus)


def test_switch_commands_and_aliases_publish_set_commands(gateway: Harness, peers: Peers) -> None:
    for i, (command, text, setting, value) in enumerate(SWITCH_CASES, start=1):
        response, _ = gateway.command(command, text)
        assert response.status_code == 200, (command, text)
        body = response.json()
        assert body["response_type"] == "in_channel"
        assert f"{setting.value}:" in body["text"], body
        payloads = peers.sets.wait_for(i)
        msg = peers.sets.items[i - 1]
        assert msg.params["setting"] == setting.value, (command, text)
        assert payloads[i - 1].value is value
        assert payloads[i - 1].source == "slack:U0OWNER"
        wait_until(lambda s=setting, v=value: peers.owner.get(s) is v)
        wait_until(lambda s=setting, v=value: gateway.service.state.get(s) is v)
    assert gateway.metric("homesec_slack_commands_total", command="arm", outcome="ok") == 2
    assert gateway.metric("homesec_slack_commands_total", command="mute", outcome="ok") == 2


@pytest.mark.parametrize("command", [("/homesec", "status"), ("/status", "")])
def test_status_reports_everything(gateway: Harness, peers: Peers, make_bus, command) -> None:
    presence = make_bus("presence")
    presence.publish(
        PRESENCE,
        PresenceState(
            anyone_home=True,
            people=[
                PersonPresence(name="alice", home=True),
                PersonPresence(name="bob", home=False),
            ],
            backend="arp",
        ),
    )
    peers.camera.set_status(ServiceState.OK, "", camera="front", fps=9.8, target_fps=10)
    uploader = make_bus("uploader")
    uploader.publish(AVAILABILITY, Availability("offline"), service="uploader")
    # the bus publishes its own first status just after wait_connected() returned: let it
    # arrive first, or it may overwrite the degraded one (reported to the core bus's owner)
    wait_until(lambda: "uploader" in gateway.service.mirror.status)
    uploader.set_status(ServiceState.DEGRADED, "s3 unreachable")  # the topic's one writer
    peers.owner.set(SystemSetting.ARMED, True, "test")
    wait_until(lambda: gateway.service.state.get(SystemSetting.ARMED))
    wait_until(lambda: gateway.service.mirror.presence is not None)
    wait_until(lambda: "camera" in gateway.service.mirror.status)
    wait_until(lambda: gateway.service.mirror.availability.get("uploader") == "offline")
    wait_until(
        lambda: (
            (s := gateway.service.mirror.status.get("uploader")) is not None
            and s.state is ServiceState.DEGRADED
        )
    )
    gateway.service.store.set_meta("last_event_at", str(1764100000.0))
    gateway.service.store.set_meta("last_event_camera", "front")

    response, _ = gateway.command(*command)
    text = response.json()["text"]
    assert response.json()["response_type"] == "ephemeral"
    assert "Armed: *ON*" in text
    assert "Notifications: *ON*" in text
    assert "Auto-arm (presence): *OFF*" in text
    assert "Training buttons: *ON*" in text
    assert "Home: *alice*" in text and "bob" not in text
    assert "camera online" in text and "ptz online" in text and "detector online" in text
    assert "uploader offline (degraded: s3 unreachable)" in text
    assert "slack-gateway online" in text
    assert f"Last event: {format_time(1764100000.0)} on front" in text
    assert "fps: 9.8 of 10" in text


def test_snapshot_and_last_image_post_the_fresh_frame(
    gateway: Harness, peers: Peers, slack: FakeSlack
) -> None:
    for n, command in enumerate([("/homesec", "snapshot"), ("/last_image", "")], start=1):
        response, url = gateway.command(*command, channel="C0ASK")
        assert response.status_code == 200
        assert "Fetching a snapshot" in response.json()["text"]
        wait_until(lambda n=n: len(slack.completed_uploads()) == n, 15)
        args, data = slack.completed_uploads()[-1]
        assert data == JPEG
        assert args["channel_id"] == "C0ASK"
        assert "<@U0OWNER>" in args["initial_comment"]
        wait_until(lambda n=n: len(slack.responses) == n, 15)
        assert "posted" in slack.responses[-1]["text"]
    assert len(peers.snapshot_requests.items) == 2
    assert peers.snapshot_requests.payloads[0].requested_by == "slack:U0OWNER"


def test_snapshot_without_camera_says_so(gateway: Harness, slack: FakeSlack) -> None:
    response, _ = gateway.command("/homesec", "snapshot")
    assert response.status_code == 200
    body = responses_for(slack)[0]
    assert "No snapshot" in body["text"]
    assert slack.completed_uploads() == []


@pytest.mark.parametrize("command", [("/homesec", "rotate 30 -10"), ("/rotate", "30 -10")])
def test_rotate_reports_resulting_position(
    gateway: Harness, peers: Peers, slack: FakeSlack, command
) -> None:
    response, _ = gateway.command(*command)
    assert "Rotating *front* to pan 30°, tilt -10°" in response.json()["text"]
    cmd = peers.ptz_commands.wait_for(1)[0]
    assert (cmd.pan, cmd.tilt, cmd.source) == (30, -10, "slack:U0OWNER")
    body = responses_for(slack)[0]
    assert "now at pan 30°, tilt -10°" in body["text"]

    for position in [("/homesec", "position"), ("/current_position", "")]:
        response, _ = gateway.command(*position)
        assert "at pan 30°, tilt -10°" in response.json()["text"]


def test_rotate_out_of_range_is_refused(gateway: Harness, peers: Peers) -> None:
    response, _ = gateway.command("/rotate", "120 0")
    body = response.json()
    assert body["response_type"] == "ephemeral"
    assert "out of range" in body["text"] and "/homesec" in body["text"]
    time.sleep(0.3)
    assert peers.ptz_commands.items == []
    assert gateway.metric("homesec_slack_commands_total", command="unknown", outcome="usage") == 1


def test_rotate_without_ptz_service_times_out_politely(make_gateway, slack: FakeSlack) -> None:
    gateway = make_gateway(ptz_wait_seconds=0.3)
    gateway.command("/rotate", "10 10")
    assert "No answer from the ptz service" in responses_for(slack)[0]["text"]
    response, _ = gateway.command("/current_position")
    assert "No position known" in response.json()["text"]


def test_help_and_unknown_input(gateway: Harness) -> None:
    response, _ = gateway.command("/homesec", "help")
    assert "rotate PAN TILT" in response.json()["text"]
    response, _ = gateway.command("/homesec", "launch rockets")
    body = response.json()
    assert body["response_type"] == "ephemeral"
    assert "Unknown command `launch rockets`" in body["text"]
    assert "/pycam_on" in body["text"]


@pytest.mark.parametrize("command", [("/initialize", ""), ("/homesec", "initialize")])
def test_initialize_is_for_admins(make_gateway, peers: Peers, slack: FakeSlack, command) -> None:
    gateway = make_gateway(allowed_users=["U0OWNER", "U0GUEST"])  # a guest, allowed, not admin
    response, _ = gateway.command(*command, user="U0GUEST")
    assert "Only the configured admin users" in response.json()["text"]
    time.sleep(0.3)
    assert peers.sets.items == [] and peers.ptz_commands.items == []
    assert gateway.metric("homesec_slack_commands_total", command="initialize", outcome="denied")

    response, _ = gateway.command(*command, user="U0OWNER")
    assert "Initializing" in response.json()["text"]
    peers.sets.wait_for(3)
    got = {(m.params["setting"], m.payload.value) for m in peers.sets.items}
    assert got == {("armed", True), ("notifications", True), ("auto_arm", True)}
    cmd = peers.ptz_commands.wait_for(1)[0]
    assert (cmd.pan, cmd.tilt) == (40, 10)
    assert "now at pan 40°, tilt 10°" in responses_for(slack)[0]["text"]


def test_allowed_users_restricts_everything(make_gateway, peers: Peers) -> None:
    gateway = make_gateway(allowed_users=["U0OWNER"])
    response, _ = gateway.command("/pycam_off", user="U0STRANGER")
    assert "HOMESEC_SLACK_GATEWAY_ALLOWED_USERS" in response.json()["text"]
    time.sleep(0.3)
    assert peers.sets.items == []
    response, _ = gateway.command("/pycam_off", user="U0OWNER")
    assert peers.sets.wait_for(1)[0].value is False


def test_no_bot_token_still_serves_commands(make_gateway, peers: Peers, slack: FakeSlack) -> None:
    gateway = make_gateway(slack_bot_token=None)
    response, _ = gateway.command("/pycam_on")
    assert response.status_code == 200
    assert peers.sets.wait_for(1)[0].value is True
    gateway.command("/last_image")
    assert "no SLACK_BOT_TOKEN" in responses_for(slack)[0]["text"]
