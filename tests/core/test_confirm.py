"""homesec.confirm: commands sent until their owner answers (a fresh broker drops a command sent
before the owner's first subscription; the sender must notice and send it again)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry

from homesec.confirm import (
    AlarmResults,
    Answer,
    Confirmer,
    Ended,
    Outcome,
    OwnerOnline,
    alarm_check,
    setting_check,
)
from homesec.contract import (
    ALARM_SERVICE_SET,
    SYSTEM_SET,
    AlarmAction,
    AlarmCommand,
    AlarmMode,
    AlarmResult,
    AlarmState,
    AlarmStatus,
    SetCommand,
    SystemSetting,
    SystemValue,
)
from homesec.state import SystemStateOwner, SystemStateView
from support import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def confirmer(clock: Clock, **kwargs: float) -> Confirmer:
    options = {"resend_min_seconds": 2.0, "resend_max_seconds": 8.0, "late_seconds": 10.0}
    options.update(kwargs)
    return Confirmer(clock=clock, **options)  # type: ignore[arg-type]


def test_resends_with_backoff_until_answered_and_reports_late_then_confirmed():
    clock, sends, late, ended = Clock(), [], [], []
    answer: list[Answer | None] = [None]
    registry = CollectorRegistry()
    c = Confirmer(clock=clock, resend_min_seconds=2.0, resend_max_seconds=8.0, registry=registry)
    c.submit(
        "armed", lambda: sends.append(clock.now), lambda: answer[0], on_late=late.append,
        on_done=ended.append,
    )  # fmt: skip
    assert sends == [1000.0]  # sent at once, in the caller's thread
    for _ in range(40):  # 20 s in steps of 0.5 s
        clock.now += 0.5
        c.step()
    # 2, 4, 8, 8 s apart (capped): 1000, 1002, 1006, 1014
    assert sends == [1000.0, 1002.0, 1006.0, 1014.0]
    assert late == [10.0] and ended == []
    assert c.pending() == ["armed"]
    answer[0] = Answer(Outcome.CONFIRMED)
    c.step()
    assert ended == [Ended(Outcome.CONFIRMED, 20.0, 4, True)]
    assert c.pending() == []
    sample = registry.get_sample_value
    assert sample("homesec_commands_ended_total", {"command": "armed", "outcome": "confirmed"}) == 1
    assert sample("homesec_commands_resent_total", {"command": "armed"}) == 3


def test_answered_at_once_is_neither_late_nor_resent():
    clock, sends, ended = Clock(), [], []
    c = confirmer(clock)
    c.submit("alarm", lambda: sends.append(1), lambda: Answer(Outcome.CONFIRMED),
             on_done=ended.append)  # fmt: skip
    c.step()
    assert sends == [1] and ended == [Ended(Outcome.CONFIRMED, 0.0, 1, False)]


def test_gives_up_after_the_limit_and_says_so():
    clock, sends, ended = Clock(), [], []
    c = confirmer(clock, give_up_seconds=30.0)
    c.submit("armed", lambda: sends.append(1), lambda: None, on_done=ended.append)
    for _ in range(70):
        clock.now += 0.5
        c.step()
    assert [e.outcome for e in ended] == [Outcome.UNCONFIRMED]
    assert ended[0].late and ended[0].sends == len(sends) == 5  # 0, 2, 6, 14, 22 s
    assert c.pending() == []


def test_no_resend_while_the_broker_is_unreachable():
    clock, sends = Clock(), []
    ready = [False]
    c = Confirmer(clock=clock, ready=lambda: ready[0])
    c.submit("armed", lambda: sends.append(clock.now), lambda: None)
    for _ in range(20):
        clock.now += 1
        c.step()
    assert sends == [1000.0]  # the bus queues the first one; no pile of copies behind it
    ready[0] = True
    c.step()
    assert sends == [1000.0, 1020.0]


def test_a_newer_command_for_the_same_key_ends_the_older():
    clock, ended_first, sends = Clock(), [], []
    c = confirmer(clock)
    c.submit("armed", lambda: sends.append("on"), lambda: None, on_done=ended_first.append)
    c.submit("armed", lambda: sends.append("off"), lambda: None)
    assert [e.outcome for e in ended_first] == [Outcome.SUPERSEDED]
    clock.now += 3
    c.step()
    assert sends == ["on", "off", "off"]  # only the newer one is sent again


def test_stop_ends_what_is_pending():
    clock, ended = Clock(), []
    c = confirmer(clock)
    c.submit("armed", lambda: None, lambda: None, on_done=ended.append)
    c.stop()
    assert [e.outcome for e in ended] == [Outcome.STOPPED]


def test_setting_check_confirms_refuses_and_yields_to_a_newer_change_by_someone_else():
    sent_at = 5000.0
    value: list[SystemValue | None] = [None]
    result: list[AlarmResult | None] = [None]
    check = setting_check(lambda: value[0], True, "slack:U1", sent_at, lambda: result[0])
    assert check() is None  # the state was never received
    # the owner's first restore publishes its default: not an answer, and not someone else
    value[0] = SystemValue(value=False, changed_at=sent_at + 3, changed_by="default")
    assert check() is None
    value[0] = SystemValue(value=False, changed_at=sent_at - 60, changed_by="slack:U2")
    assert check() is None  # older than the command: still waiting
    value[0] = SystemValue(value=False, changed_at=sent_at + 1, changed_by="home-assistant")
    assert check() == Answer(Outcome.SUPERSEDED, "changed by home-assistant since")
    value[0] = SystemValue(value=True, changed_at=sent_at + 1, changed_by="slack:U1")
    assert check() == Answer(Outcome.CONFIRMED)
    result[0] = AlarmResult(
        action=AlarmAction.ARM_AWAY, accepted=False, error="the alarm is triggered",
        state=AlarmState.TRIGGERED, request_id="r1",
    )  # fmt: skip
    assert check() == Answer(Outcome.REFUSED, "the alarm is triggered")


def test_alarm_check_waits_for_its_result_and_yields_to_a_newer_change():
    sent_at = 5000.0
    status: list[AlarmStatus | None] = [None]
    result: list[AlarmResult | None] = [None]
    check = alarm_check(
        AlarmAction.ARM_HOME, lambda: status[0], lambda: result[0], "slack:U1", sent_at
    )
    assert check() is None
    status[0] = AlarmStatus(state=AlarmState.DISARMED, changed_at=sent_at + 2)  # a restore
    assert check() is None
    status[0] = AlarmStatus(
        state=AlarmState.ARMED_HOME, mode=AlarmMode.HOME, changed_at=sent_at + 2,
        changed_by="presence",
    )  # fmt: skip
    assert check() == Answer(Outcome.CONFIRMED)  # someone else did what it asks
    status[0] = AlarmStatus(
        state=AlarmState.ARMED_AWAY, mode=AlarmMode.AWAY, changed_at=sent_at + 2,
        changed_by="home-assistant",
    )  # fmt: skip
    assert check() == Answer(Outcome.SUPERSEDED, "armed_away by home-assistant since")
    result[0] = AlarmResult(
        action=AlarmAction.ARM_HOME, accepted=True, state=AlarmState.ARMED_HOME, request_id="x"
    )
    assert check() == Answer(Outcome.CONFIRMED)


def test_arm_sent_before_the_owner_ever_subscribed_is_applied(make_bus):
    """On a fresh broker the first arm has no session to wait in and is dropped; the
    confirmer sends it again once the owner runs, and the house is armed."""
    sender_bus = make_bus("slack-gateway", start=False)
    view = SystemStateView(sender_bus, alarm=True)
    results = AlarmResults(sender_bus)
    sender_bus.start()
    assert sender_bus.wait_connected(10)
    c = Confirmer(resend_min_seconds=0.5, resend_max_seconds=1.0, late_seconds=1.0,
                  ready=lambda: sender_bus.connected)  # fmt: skip
    c.start()
    ended: list[Ended] = []
    command = SetCommand(value=True, source="slack:U1", request_id="first-arm")
    c.submit(
        "armed",
        lambda: sender_bus.publish(SYSTEM_SET, command, setting="armed"),
        setting_check(
            lambda: view.retained(SystemSetting.ARMED),
            True,
            "slack:U1",
            time.time(),
            lambda: results.get("first-arm"),
        ),
        on_done=ended.append,
    )
    time.sleep(1.5)  # the first send is gone: nobody had subscribed to system/+/set
    owner_bus = make_bus("detector", start=False)
    owner = SystemStateOwner(owner_bus, restore_wait_seconds=0.3)
    owner_bus.start()
    owner.start()
    assert owner.wait_restored(10)
    wait_until(lambda: ended, timeout=15)
    assert ended[0].outcome is Outcome.CONFIRMED and ended[0].late and ended[0].sends >= 2
    assert owner.get(SystemSetting.ARMED) is True
    assert owner.alarm.status.state is not AlarmState.DISARMED
    c.stop()


def test_alarm_command_refused_by_the_owner_is_reported(make_bus):
    owner_bus = make_bus("detector", start=False)
    owner = SystemStateOwner(owner_bus, restore_wait_seconds=0.3)
    owner_bus.start()
    owner.start()
    assert owner.wait_restored(10)
    sender_bus = make_bus("slack-gateway", start=False)
    view = SystemStateView(sender_bus, alarm=True)
    results = AlarmResults(sender_bus)
    sender_bus.start()
    assert sender_bus.wait_connected(10)
    c = Confirmer(resend_min_seconds=0.5, resend_max_seconds=1.0)
    c.start()
    ended: list[Ended] = []
    command = AlarmCommand(action=AlarmAction.ACK, source="slack:U1", request_id="ack-1")
    c.submit(
        "alarm",
        lambda: sender_bus.publish(ALARM_SERVICE_SET, command),
        alarm_check(
            AlarmAction.ACK, view.alarm, lambda: results.get("ack-1"), "slack:U1", time.time()
        ),  # fmt: skip
        on_done=ended.append,
    )
    wait_until(lambda: ended, timeout=10)
    assert ended[0].outcome is Outcome.REFUSED
    assert "nothing to acknowledge" in (ended[0].detail or "")
    assert ended[0].sends == 1
    c.stop()


def test_a_copy_applied_before_is_answered_not_applied_again(make_bus):
    """A copy that waited in the owner's session behind a newer command from someone else
    (sent again while the owner was a zombie) must not undo that command."""
    owner_bus = make_bus("detector", start=False)
    owner = SystemStateOwner(owner_bus, restore_wait_seconds=0.3)
    owner_bus.start()
    owner.start()
    assert owner.wait_restored(10)
    owner.set(SystemSetting.ARMED, True, "presence")
    owner.set(SystemSetting.ARMED, False, "slack:U1", request_id="disarm-1")
    assert owner.get(SystemSetting.ARMED) is False
    owner.set(SystemSetting.ARMED, True, "home-assistant")  # newer, from someone else
    owner.set(SystemSetting.ARMED, False, "slack:U1", request_id="disarm-1")  # the late copy
    assert owner.get(SystemSetting.ARMED) is True
    assert owner.alarm.status.changed_by == "home-assistant"
    disarm = AlarmCommand(action=AlarmAction.DISARM, source="slack:U1", request_id="disarm-2")
    first = owner.alarm.command(disarm, checked=False)
    assert first.accepted and owner.alarm.status.state is AlarmState.DISARMED
    owner.alarm.command(AlarmCommand(action=AlarmAction.ARM_AWAY, source="ha"), checked=False)
    assert owner.alarm.command(disarm, checked=False) == first  # answered again, as before
    assert owner.alarm.status.state is not AlarmState.DISARMED
    owner.set(SystemSetting.NOTIFICATIONS, False, "slack:U1", request_id="mute-1")
    owner.set(SystemSetting.NOTIFICATIONS, True, "home-assistant")
    owner.set(SystemSetting.NOTIFICATIONS, False, "slack:U1", request_id="mute-1")
    assert owner.get(SystemSetting.NOTIFICATIONS) is True
    owner.stop()


def test_no_copy_is_sent_to_an_owner_that_is_offline(make_bus):
    """An offline owner's session holds the first copy: nothing is piled up behind it. Once
    the owner has been online a while without answering, the copy is sent."""
    sender_bus = make_bus("slack-gateway", start=False)
    owner = OwnerOnline(sender_bus)
    sender_bus.start()
    assert sender_bus.wait_connected(10)
    sends: list[float] = []
    c = Confirmer(resend_min_seconds=0.3, resend_max_seconds=0.3, owner=owner)
    c.start()
    c.submit("armed", lambda: sends.append(time.monotonic()), lambda: None)
    time.sleep(1.5)
    assert len(sends) == 1  # the owner never came online
    detector = make_bus("detector")  # its bus announces it online (retained)
    assert detector.wait_connected(10)
    wait_until(lambda: len(sends) >= 3, timeout=10)
    detector.stop(timeout=1)  # offline (a clean stop publishes it)
    wait_until(lambda: not owner.online_for(0), timeout=10)
    time.sleep(0.5)
    count = len(sends)
    time.sleep(1.2)
    assert len(sends) == count
    c.stop()
