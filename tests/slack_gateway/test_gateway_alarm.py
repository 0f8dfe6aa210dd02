"""The alarm from Slack: `/homesec arm home|away|night`, `ack`, the status line with who
changed it, a refused user, and an alert while pending that says when the alarm triggers."""

from __future__ import annotations

import time

import pytest
from gateway_fakes import FakeSlack, Harness, Peers, image, motion_event, write_snapshot

from homesec.contract import (
    ALARM_STATE,
    MOTION_EVENTS,
    AlarmAction,
    AlarmCommand,
    AlarmMode,
    AlarmState,
    AlarmStatus,
    EventType,
)
from homesec_slack_gateway.alerts import alert_text
from homesec_slack_gateway.commands import Action, parse
from homesec_slack_gateway.handlers import alarm_line
from support import wait_until

S = AlarmState


@pytest.fixture
def peers(make_bus) -> Peers:
    return Peers(make_bus)


def alarm_is(gateway: Harness, peers: Peers, state: S) -> None:
    wait_until(lambda: peers.owner.alarm.status.state is state)
    wait_until(lambda: (a := gateway.service.state.alarm()) is not None and a.state is state)


def test_parse_alarm_commands() -> None:
    assert parse("/homesec", "arm home").action is Action.ARM_HOME
    assert parse("/homesec", "ARM  night").action is Action.ARM_NIGHT
    assert parse("/homesec", "arm away").action is Action.ARM_AWAY
    assert parse("/homesec", "ack").action is Action.ACK
    assert parse("/homesec", "arm").action is Action.ARM  # the legacy switch stays


def test_arm_modes_ack_and_status(gateway: Harness, peers: Peers) -> None:
    for text, state in (("arm home", S.ARMED_HOME), ("arm night", S.ARMED_NIGHT)):
        response, _ = gateway.command("/homesec", text)
        body = response.json()
        assert body["response_type"] == "in_channel" and "<@U0OWNER>" in body["text"]
        alarm_is(gateway, peers, state)
    status = gateway.command("/homesec", "status")[0].json()["text"]
    assert "Alarm: *:crescent_moon: armed night*, by slack:U0OWNER" in status
    peers.owner.alarm.command(AlarmCommand(action=AlarmAction.TRIGGER, source="ha"), checked=False)
    alarm_is(gateway, peers, S.TRIGGERED)
    status = gateway.command("/homesec", "status")[0].json()["text"]
    assert "TRIGGERED (night), ends in " in status and "by ha" in status
    gateway.command("/homesec", "ack")
    alarm_is(gateway, peers, S.ARMED_NIGHT)
    assert peers.owner.alarm.status.changed_by == "slack:U0OWNER"
    # the legacy commands keep working on the legacy switch
    gateway.command("/pycam_off")
    alarm_is(gateway, peers, S.DISARMED)
    gateway.command("/homesec", "arm")
    alarm_is(gateway, peers, S.ARMED_AWAY)
    assert gateway.metric("homesec_slack_commands_total", command="arm_home", outcome="ok") == 1


def test_alarm_commands_need_an_allowed_user(gateway: Harness, peers: Peers) -> None:
    body = gateway.command("/homesec", "arm home", user="U0STRANGER")[0].json()
    assert body["response_type"] == "ephemeral" and "U0STRANGER" in body["text"]
    gateway.command("/homesec", "ack", user="U0STRANGER")
    time.sleep(0.5)
    assert peers.owner.alarm.status.state is S.DISARMED


def test_alert_while_pending_says_when_it_triggers(
    gateway: Harness, make_bus, slack: FakeSlack
) -> None:
    detector = make_bus("detector")
    until = time.time() + 30
    pending = AlarmStatus(
        state=S.PENDING, mode=AlarmMode.AWAY, changed_by="camera:front", until=until, camera="front"
    )
    detector.publish(ALARM_STATE, pending)
    wait_until(lambda: gateway.service.state.alarm() == pending)
    write_snapshot(gateway, "front", "front-0009", image(9))
    detector.publish(MOTION_EVENTS, motion_event("front-0009", EventType.START, alert=True))
    wait_until(lambda: slack.completed_uploads(), 15)
    comment = slack.completed_uploads()[0][0]["initial_comment"]
    assert "The alarm triggers in " in comment and "`/homesec disarm`" in comment
    seconds = int(comment.split("triggers in ")[1].split(" s")[0])
    assert 0 < seconds <= 30


def test_alarm_texts() -> None:
    t0 = 1_764_100_000.0
    event = motion_event("front-0001", EventType.START)
    pending = AlarmStatus(state=S.PENDING, mode=AlarmMode.AWAY, until=t0 + 25, camera="front")
    assert "triggers in 25 s" in alert_text(event, pending, now=t0)
    assert "The alarm is triggered" in alert_text(
        event, pending.model_copy(update={"state": S.TRIGGERED})
    )
    assert alert_text(event) == alert_text(event, AlarmStatus(state=S.ARMED_AWAY))
    assert alarm_line(pending, now=t0) == ":hourglass: PENDING (away) on front, triggers in 25 s"
    arming = AlarmStatus(state=S.ARMING, mode=AlarmMode.HOME, until=t0 + 9)
    assert alarm_line(arming, now=t0).endswith("arming (home), armed in 9 s")


def texts(slack: FakeSlack) -> str:
    return "\n".join(str(r.get("text", "")) for r in slack.responses)


def test_arm_before_the_detector_ever_ran_is_sent_until_it_answers(
    make_gateway, make_bus, slack: FakeSlack
) -> None:
    """A fresh broker drops a command nobody has subscribed to yet: the gateway tells the
    owner it is not confirmed, sends it again, and says so once the detector armed."""
    gateway = make_gateway(command_late_seconds=1.0)
    response, _ = gateway.command("/homesec", "arm")
    assert response.status_code == 200 and "Arming" in response.json()["text"]
    wait_until(lambda: "is not confirmed yet" in texts(slack), timeout=15)
    assert "*armed ON*" in texts(slack)
    status = gateway.command("/homesec", "status")[0].json()["text"]
    assert "Sent, not yet confirmed by the detector: armed" in status
    peers = Peers(make_bus)  # the detector starts only now
    wait_until(lambda: "*armed ON* confirmed after" in texts(slack), timeout=20)
    assert peers.owner.alarm.status.state is not S.DISARMED
    assert gateway.service.gateway.confirmer.pending() == []


def test_a_refused_alarm_command_is_reported(gateway: Harness, peers: Peers, slack) -> None:
    gateway.command("/homesec", "ack")  # nothing to acknowledge while disarmed
    wait_until(lambda: "refused by the detector" in texts(slack), timeout=15)
    assert "*ACK* refused by the detector: nothing to acknowledge while disarmed" in texts(slack)


def test_a_command_never_answered_is_reported_when_the_gateway_gives_up(
    make_gateway, slack: FakeSlack
) -> None:
    gateway = make_gateway(command_late_seconds=0.5, command_give_up_seconds=2.0)
    gateway.command("/homesec", "mute")  # no detector on this broker, ever
    wait_until(lambda: "*notifications OFF* was never confirmed" in texts(slack), timeout=15)
    assert "*notifications OFF* is not confirmed yet" in texts(slack)
    assert "homesec stopped sending it" in texts(slack)
    registry = gateway.bus.metrics.registry
    ended = {"command": "notifications", "outcome": "unconfirmed"}
    assert registry.get_sample_value("homesec_commands_ended_total", ended) == 1


def test_initialize_before_the_detector_ran_stays_within_the_response_url_budget(
    make_gateway, make_bus, slack: FakeSlack
) -> None:
    """`/homesec initialize` sets three switches; with no detector yet each is late, then
    confirmed: six notices, more than the five posts Slack takes on one response_url. The
    notices of one moment go out as one message, so Slack refuses none of them."""
    gateway = make_gateway(command_late_seconds=1.0, ptz_wait_seconds=1.0)
    response, response_url = gateway.command("/homesec", "initialize")
    assert response.status_code == 200 and "Initializing" in response.json()["text"]
    switches = ("*armed ON*", "*notifications ON*", "*auto_arm ON*")
    wait_until(
        lambda: all(f"{s} is not confirmed yet" in texts(slack) for s in switches), timeout=15
    )
    Peers(make_bus)  # the detector starts only now
    wait_until(lambda: all(f"{s} confirmed after" in texts(slack) for s in switches), timeout=30)
    assert gateway.service.gateway.confirmer.pending() == []
    assert slack.refused_responses == []
    assert len(slack.responses) <= 5
    late = [r for r in slack.responses if "is not confirmed yet" in r["text"]]
    assert len(late) == 1, "the three late notices are one message"
