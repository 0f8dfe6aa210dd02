"""The alarm state machine (pure): every row of the transitions table, the timers, resuming
after a restart, the legacy mapping, and the code guard."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from homesec.alarm import (
    AlarmMachine,
    AlarmSettings,
    ModeSettings,
    camera_alerts,
    from_legacy,
    inside,
    legacy_armed,
    zone_check,
)
from homesec.codes import CodeGuard, CodeSettings
from homesec.contract import (
    ALARM_SET,
    AlarmAction,
    AlarmCommand,
    AlarmMode,
    AlarmState,
    AlarmStatus,
)

T0 = 1_764_100_000.0
A = AlarmAction
S = AlarmState

SETTINGS = AlarmSettings(
    away=ModeSettings(exit_delay_seconds=30, entry_delay_seconds=20, entry_cameras=["door"]),
    home=ModeSettings(cameras=["garden", "door"]),
    night=ModeSettings(cameras=["door"], entry_delay_seconds=10, entry_cameras=["door"]),
    trigger_seconds=60,
)


def machine(state: S = S.DISARMED, mode: AlarmMode | None = None, **kw: object) -> AlarmMachine:
    return AlarmMachine(SETTINGS, AlarmStatus(state=state, mode=mode, changed_at=T0, **kw))


def armed_away() -> AlarmMachine:
    m = machine()
    m.command(A.ARM_AWAY, "owner", T0)
    m.tick(T0 + 30)
    assert m.status.state is S.ARMED_AWAY
    return m


def test_defaults_keep_todays_behaviour() -> None:
    """No settings: arming is immediate (no exit delay), every camera alerts, a detection
    triggers at once (no entry delay), the legacy switch arms away."""
    m = AlarmMachine(AlarmSettings(), from_legacy(False, AlarmSettings(), T0, "default"))
    assert m.command(A.ARM_AWAY, "slack:U1", T0).status.state is S.ARMED_AWAY
    assert camera_alerts(m.status, m.settings, "any-camera")
    assert m.detection("any-camera", "e1", T0 + 1).status.state is S.TRIGGERED
    assert m.status.until == T0 + 1 + 120
    assert from_legacy(True, AlarmSettings(), T0, "x").state is S.ARMED_AWAY


def test_exit_delay_then_armed() -> None:
    m = machine()
    out = m.command(A.ARM_AWAY, "owner", T0)
    assert out.changed and out.status.state is S.ARMING and out.status.until == T0 + 30
    assert out.status.mode is AlarmMode.AWAY and out.status.changed_by == "owner"
    assert not camera_alerts(m.status, SETTINGS, "door")  # nothing alerts while leaving
    assert m.detection("door", "e", T0 + 1).changed is False
    assert m.tick(T0 + 29.9).changed is False
    done = m.tick(T0 + 31)
    assert done.status.state is S.ARMED_AWAY and done.status.changed_at == T0 + 30
    assert done.status.changed_by == "exit delay"


def test_no_exit_delay_arms_at_once_and_modes_switch() -> None:
    m = machine()
    assert m.command(A.ARM_HOME, "owner", T0).status.state is S.ARMED_HOME
    assert m.command(A.ARM_NIGHT, "owner", T0 + 1).status.state is S.ARMED_NIGHT
    assert m.command(A.ARM_AWAY, "owner", T0 + 2).status.state is S.ARMING  # away's delay
    assert m.command(A.ARM_HOME, "owner", T0 + 3).status.state is S.ARMED_HOME


def test_same_command_twice_changes_nothing() -> None:
    m = machine()
    m.command(A.ARM_AWAY, "owner", T0)
    again = m.command(A.ARM_AWAY, "owner", T0 + 5)
    assert again.accepted and not again.changed and m.status.until == T0 + 30
    d = machine()
    assert d.command(A.DISARM, "x", T0).accepted and not d.command(A.DISARM, "x", T0).changed


def test_entry_camera_pending_then_triggered_by_timer() -> None:
    m = armed_away()
    out = m.detection("door", "e1", T0 + 100)
    assert out.status.state is S.PENDING and out.status.until == T0 + 120
    assert out.status.camera == "door" and out.status.event_id == "e1"
    assert out.status.changed_by == "camera:door"
    assert camera_alerts(m.status, SETTINGS, "door")
    assert m.detection("door", "e2", T0 + 105).changed is False  # the countdown goes on
    fired = m.tick(T0 + 121)
    assert fired.status.state is S.TRIGGERED and fired.status.until == T0 + 120 + 60
    assert fired.status.mode is AlarmMode.AWAY and fired.status.event_id == "e1"
    back = m.tick(T0 + 181)
    assert back.status.state is S.ARMED_AWAY and back.status.changed_by == "trigger time"


def test_pending_disarmed_in_time() -> None:
    m = armed_away()
    m.detection("door", "e1", T0 + 100)
    assert m.command(A.DISARM, "owner", T0 + 110).status.state is S.DISARMED
    assert m.status.mode is None and m.status.until is None
    assert m.tick(T0 + 200).changed is False


def test_other_camera_triggers_at_once_also_during_pending() -> None:
    m = armed_away()
    assert m.detection("hall", "e1", T0 + 100).status.state is S.TRIGGERED
    m = armed_away()
    m.detection("door", "e1", T0 + 100)
    out = m.detection("hall", "e2", T0 + 101)
    assert out.status.state is S.TRIGGERED and out.status.camera == "hall"


def test_mode_excludes_cameras() -> None:
    m = machine()
    m.command(A.ARM_HOME, "owner", T0)
    assert not camera_alerts(m.status, SETTINGS, "hall")
    assert m.detection("hall", "e1", T0 + 1).changed is False
    assert m.detection("garden", "e2", T0 + 2).status.state is S.TRIGGERED


def test_ack_stops_pending_and_triggered_but_stays_armed() -> None:
    m = armed_away()
    m.detection("door", "e1", T0 + 100)
    assert m.command(A.ACK, "owner", T0 + 101).status.state is S.ARMED_AWAY
    m.detection("hall", "e2", T0 + 102)
    acked = m.command(A.ACK, "owner", T0 + 103)
    assert acked.status.state is S.ARMED_AWAY and acked.status.changed_by == "owner"
    refused = m.command(A.ACK, "owner", T0 + 104)
    assert not refused.accepted and "nothing to acknowledge" in (refused.error or "")


def test_arming_refused_while_pending_or_triggered() -> None:
    m = armed_away()
    m.detection("hall", "e1", T0 + 100)
    out = m.command(A.ARM_HOME, "intruder", T0 + 101)
    assert not out.accepted and not out.changed and m.status.state is S.TRIGGERED


def test_trigger_panic_and_trigger_time_zero() -> None:
    m = machine()
    panic = m.command(A.TRIGGER, "ha", T0)
    assert panic.status.state is S.TRIGGERED and panic.status.mode is None
    assert m.tick(T0 + 61).status.state is S.DISARMED  # a panic from disarmed ends there
    forever = AlarmMachine(
        AlarmSettings(trigger_seconds=0), AlarmStatus(state=S.ARMED_HOME, mode=AlarmMode.HOME)
    )
    forever.command(A.TRIGGER, "ha", T0)
    assert forever.status.until is None and forever.tick(T0 + 10**6).changed is False
    assert forever.command(A.TRIGGER, "ha", T0 + 1).changed is False
    assert forever.command(A.ACK, "o", T0 + 2).status.state is S.ARMED_HOME


@pytest.mark.parametrize(
    ("state", "until", "expected"),
    [
        (S.ARMING, T0 + 10, S.ARMING),  # still leaving: the rest of the delay
        (S.ARMING, T0 - 10, S.ARMED_AWAY),
        (S.PENDING, T0 + 10, S.PENDING),
        (S.PENDING, T0 - 10, S.TRIGGERED),  # nobody disarmed in time
        (S.PENDING, T0 - 1000, S.TRIGGERED),  # the power cut may be the intruder's: now
        (S.TRIGGERED, T0 + 10, S.TRIGGERED),
        (S.TRIGGERED, T0 - 10, S.ARMED_AWAY),
    ],
)
def test_resume_after_restart_never_disarms(state: S, until: float, expected: S) -> None:
    m = machine(state, AlarmMode.AWAY, until=until)
    out = m.resume(T0)
    assert out.status.state is expected
    assert legacy_armed(out.status.state)
    if expected is state:
        assert out.status.until == until  # measured by the wall clock, not restarted
    if state is S.PENDING and expected is S.TRIGGERED:
        assert out.status.until == T0 + 60 and out.status.changed_at == T0


def test_legacy_mapping() -> None:
    for state in S:
        assert legacy_armed(state) is (state is not S.DISARMED)
    night = AlarmSettings(legacy_mode=AlarmMode.NIGHT)
    assert from_legacy(True, night, T0, "x").state is S.ARMED_NIGHT
    assert from_legacy(False, night, T0, "x").mode is None


def test_commands_from_the_wire() -> None:
    assert ALARM_SET.decode(b"ARM_HOME").action is A.ARM_HOME
    assert ALARM_SET.decode(b"disarm").action is A.DISARM
    cmd = ALARM_SET.decode(b'{"action": "disarm", "code": 1234, "source": "home-assistant"}')
    assert isinstance(cmd, AlarmCommand) and cmd.code is not None
    assert cmd.code.get_secret_value() == "1234" and "1234" not in repr(cmd)
    assert "1234" not in cmd.model_dump_json()  # never echoed
    assert ALARM_SET.decode(b'{"action": "ARM_AWAY", "code": null}').code is None
    assert ALARM_SET.decode(b'{"action": "ARM_AWAY", "code": ""}').code is None


def test_zones_select_where_in_the_frame() -> None:
    lower_half = [(0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)]
    triangle = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)]
    assert inside((0.5, 0.75), lower_half) and not inside((0.5, 0.25), lower_half)
    assert inside((0.2, 0.2), triangle) and not inside((0.8, 0.8), triangle)
    settings = AlarmSettings(home=ModeSettings(zones={"front": [lower_half]}))
    home = AlarmStatus(state=S.ARMED_HOME, mode=AlarmMode.HOME)
    check = zone_check(home, settings, "front", 640, 480)
    assert check is not None
    assert check((300, 300, 40, 100))  # feet at y=400 of 480: in the lower half
    assert not check((300, 20, 40, 100))  # feet at y=120: not
    assert not check(None)
    assert zone_check(home, settings, "back", 640, 480) is None  # no zones: the whole frame
    away = AlarmStatus(state=S.ARMED_AWAY, mode=AlarmMode.AWAY)
    assert zone_check(away, settings, "front", 640, 480) is None  # zones are per mode
    with pytest.raises(ValueError, match="at least 3 points"):
        ModeSettings(zones={"front": [[(0, 0), (1, 1)]]})
    with pytest.raises(ValueError, match="fractions"):
        ModeSettings(zones={"front": [[(0, 0), (2, 0), (0, 1)]]})


# ---- codes ----------------------------------------------------------------------------------


def test_codes_off_by_default() -> None:
    guard = CodeGuard(CodeSettings())
    assert not any(guard.required(a) for a in A)
    assert guard.check(A.DISARM, None, T0).ok


def test_code_required_for_disarm_and_ack_not_arm_or_trigger() -> None:
    guard = CodeGuard(CodeSettings(code=SecretStr("1234")))
    assert guard.required(A.DISARM) and guard.required(A.ACK)
    assert not guard.required(A.ARM_AWAY) and not guard.required(A.TRIGGER)
    assert guard.check(A.DISARM, None, T0).error == "code required"
    assert guard.check(A.DISARM, SecretStr("1234"), T0).ok
    arm = CodeGuard(CodeSettings(code=SecretStr("1234"), arm_required=True))
    assert arm.required(A.ARM_NIGHT) and not arm.check(A.ARM_NIGHT, None, T0).ok


def test_wrong_codes_lock_out_then_recover() -> None:
    guard = CodeGuard(CodeSettings(code=SecretStr("1234"), attempts=3, lockout_seconds=60))
    first = guard.check(A.DISARM, SecretStr("0000"), T0)
    assert first.error == "wrong code" and first.attempts_left == 2
    assert guard.check(A.DISARM, SecretStr("1111"), T0).attempts_left == 1
    locked = guard.check(A.DISARM, SecretStr("2222"), T0)
    assert locked.locked_until == T0 + 60 and "locked out" in (locked.error or "")
    right_too_soon = guard.check(A.DISARM, SecretStr("1234"), T0 + 30)
    assert not right_too_soon.ok and right_too_soon.locked_until == T0 + 60
    assert guard.check(A.DISARM, SecretStr("1234"), T0 + 61).ok
    # a right code resets the count
    guard.check(A.DISARM, SecretStr("0"), T0 + 62)
    guard.check(A.DISARM, SecretStr("1234"), T0 + 63)
    assert guard.check(A.DISARM, SecretStr("0"), T0 + 64).attempts_left == 2


def test_code_file_and_format(tmp_path) -> None:
    path = tmp_path / "alarm_code"
    path.write_text("4321\n")
    settings = CodeSettings(code_file=path)
    assert settings.enabled and settings.numeric
    assert settings.code is not None and settings.code.get_secret_value() == "4321"
    assert not CodeSettings(code=SecretStr("open sesame")).numeric
    assert not CodeSettings(code=SecretStr("")).enabled
