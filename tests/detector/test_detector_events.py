"""Event rule, lifecycle and alert decision (pure logic, simulated clock)."""

from __future__ import annotations

from homesec.contract import EventType, MotionEvent, PersonMode, is_identifier
from homesec_detector.events import (
    DecisionInputs,
    EventSettings,
    EventTracker,
    PersonFinding,
    decide,
    make_event_id,
)
from homesec_detector.motion import MotionResult

ARMED = DecisionInputs(
    armed=True, notifications=True, person_mode=PersonMode.REQUIRE, person_threshold=0.5
)
T0 = 1_764_100_000.0
FPS = 10.0


def moving(area: float = 0.05, box: tuple[int, int, int, int] = (10, 20, 100, 200)) -> MotionResult:
    return MotionResult(occupied=True, boxes=[box], largest_area=area, size=(640, 480))


STILL = MotionResult(occupied=False, size=(640, 480))


class Run:
    """Feeds a tracker frame by frame at 10 fps."""

    def __init__(self, tracker: EventTracker, inputs: DecisionInputs = ARMED) -> None:
        self.tracker = tracker
        self.inputs = inputs
        self.seq = 0
        self.messages: list[MotionEvent] = []

    @property
    def now(self) -> float:
        return T0 + self.seq / FPS

    def feed(
        self, result: MotionResult, person: PersonFinding | None = None, n: int = 1
    ) -> list[MotionEvent]:
        out = []
        for _ in range(n):
            out += self.tracker.step(self.now, self.seq, self.now, result, person, self.inputs)
            self.seq += 1
        self.messages += out
        return out


ORIGINAL = EventSettings(window_frames=30)


def test_event_starts_when_60_percent_of_30_frames_are_occupied() -> None:
    run = Run(EventTracker("front", ORIGINAL))
    assert run.feed(moving(), n=17) == []
    started = run.feed(moving())
    assert [m.type for m in started] == [EventType.START]
    start = started[0]
    assert start.frame_seq == 17
    assert start.motion_score == 18 / 30
    assert start.box is not None and (start.box.x, start.box.h) == (10, 200)
    assert start.media_dir == f"front/{start.event_id}"
    assert start.snapshot == f"front/{start.event_id}/snapshot.jpg"


def test_default_window_is_10_frames_and_fires_whenever_the_original_does() -> None:
    assert EventSettings().window_frames == 10
    pattern = [True] * 6 + [False] * 4  # any 18-of-30 run contains a 6-of-10 third
    fast = Run(EventTracker("front"))
    slow = Run(EventTracker("front", ORIGINAL))
    for occupied in pattern * 3:
        for run in (fast, slow):
            run.feed(moving() if occupied else STILL)
    assert fast.messages[0].frame_seq == 5
    assert slow.messages[0].frame_seq >= fast.messages[0].frame_seq


def test_intermittent_motion_below_the_fraction_never_starts() -> None:
    run = Run(EventTracker("front", ORIGINAL))
    for _ in range(40):
        run.feed(moving())
        run.feed(STILL)
    assert run.messages == []  # 50% < 60%


def test_window_and_fraction_are_settings() -> None:
    run = Run(EventTracker("front", EventSettings(window_frames=5, min_occupied_fraction=0.6)))
    assert run.feed(moving(), n=2) == []
    assert [m.type for m in run.feed(moving())] == [EventType.START]


def test_update_on_growth_and_person_then_end_after_quiet() -> None:
    run = Run(EventTracker("front", EventSettings(window_frames=30, quiet_seconds=2)))
    run.feed(moving(0.05), n=18)
    assert run.feed(moving(0.055)) == []  # grew less than 25 %
    grew = run.feed(moving(0.2, (0, 0, 300, 400)))
    assert [m.type for m in grew] == [EventType.UPDATE]
    assert grew[0].area == 0.2 and grew[0].box is not None and grew[0].box.w == 300
    person = run.feed(moving(0.1), PersonFinding(0.8, (5, 5, 50, 150), confirmed=True))
    assert [m.type for m in person] == [EventType.UPDATE]
    assert person[0].person_score == 0.8 and person[0].decision.alert
    assert person[0].decision.reason == "armed, person confirmed (0.80)"
    assert run.feed(STILL, n=19) == []
    ended = run.feed(STILL)
    assert [m.type for m in ended] == [EventType.END]
    end = ended[0]
    assert end.ended_at is not None and end.ended_at - end.started_at > 2
    assert end.decision.alert  # once alerted, stays alerted
    assert len({m.event_id for m in run.messages}) == 1
    assert not run.tracker.active


def test_tick_ends_an_event_when_frames_stop() -> None:
    run = Run(EventTracker("front", EventSettings(quiet_seconds=5)))
    run.feed(moving(), n=20)
    assert run.tracker.tick(run.now + 1, 0, run.now) == []
    ended = run.tracker.tick(run.now + 6, 0, run.now)
    assert [m.type for m in ended] == [EventType.END]


def test_decision_reasons() -> None:
    finding = PersonFinding(0.21, None, confirmed=False)
    yes = PersonFinding(0.84, None, confirmed=True)
    disarmed = DecisionInputs(False, True, PersonMode.REQUIRE, 0.5)
    muted = DecisionInputs(True, False, PersonMode.REQUIRE, 0.5)
    annotate = DecisionInputs(True, True, PersonMode.ANNOTATE, 0.5)
    off = DecisionInputs(True, True, PersonMode.OFF, 0.5)
    assert decide(disarmed, yes, T0, None, 10).reason == "disarmed"
    assert decide(muted, yes, T0, None, 10).reason == "muted"
    # muted or within the alert gap: no Slack alert, but it still counts for the alarm
    assert decide(muted, yes, T0, None, 10).alarm
    assert decide(ARMED, yes, T0, T0 - 1, 10).alarm
    assert not decide(disarmed, yes, T0, None, 10).alarm
    assert not decide(ARMED, finding, T0, None, 10).alarm
    # the mode's zones: the person's box counts when there is one, else the motion's
    upper = DecisionInputs(True, True, PersonMode.REQUIRE, 0.5, zone=lambda b: b == (1, 1, 1, 1))
    placed = PersonFinding(0.84, (1, 1, 1, 1), confirmed=True)
    assert decide(upper, placed, T0, None, 10, box=(9, 9, 9, 9)).alarm
    outside = decide(upper, yes, T0, None, 10, box=(9, 9, 9, 9))
    assert not outside.alert and not outside.alarm
    assert outside.reason == "outside the alarm mode's zones"
    assert decide(upper, yes, T0, None, 10, box=(1, 1, 1, 1)).alert
    no = decide(ARMED, finding, T0, None, 10)
    assert not no.alert and no.reason == "no person confirmed (best 0.21)"
    assert decide(ARMED, None, T0, None, 10).reason == "no person confirmed (not checked)"
    ok = decide(ARMED, yes, T0, None, 10)
    assert ok.alert and ok.reason == "armed, person confirmed (0.84)"
    assert decide(annotate, finding, T0, None, 10).alert
    assert decide(off, None, T0, None, 10).reason == "armed, motion (person check off)"
    gap = decide(ARMED, yes, T0 + 4, T0, 10)
    assert not gap.alert and gap.reason == "within 10 s of the previous alert"


def test_min_gap_between_alerts_of_a_camera() -> None:
    run = Run(
        EventTracker(
            "front", EventSettings(window_frames=30, quiet_seconds=1, min_notify_seconds=10)
        )
    )
    yes = PersonFinding(0.9, None, confirmed=True)
    first = run.feed(moving(), yes, n=18)
    assert first[0].decision.alert
    run.feed(STILL, n=11)  # ends after 1 s
    second = run.feed(moving(), yes, n=18)
    assert second and second[0].type is EventType.START
    assert not second[0].decision.alert and "previous alert" in second[0].decision.reason
    later = run.feed(moving(), yes, n=80)  # 8 s later the gap has passed: it alerts now
    assert [m.decision.alert for m in later] == [True]  # one update, no per-frame chatter


def test_disarmed_event_is_reported_but_not_alerted() -> None:
    run = Run(EventTracker("front", ORIGINAL), DecisionInputs(False, True, PersonMode.REQUIRE, 0.5))
    start = run.feed(moving(), PersonFinding(0.9, None, True), n=18)
    assert start[0].type is EventType.START and not start[0].decision.alert
    assert start[0].decision.reason == "disarmed"


def test_event_ids_are_identifiers_even_for_long_camera_ids() -> None:
    event_id = make_event_id("front", T0, 1)
    assert event_id.startswith("front-20251125-") and len(event_id.split("-")[-1]) == 4
    long_camera = "c" * 64
    for kind in ("", "unocc"):
        assert is_identifier(make_event_id(long_camera, T0, 1, kind))
    assert make_event_id("front", T0, 1) == make_event_id("front", T0, 1)
    assert make_event_id("front", T0, 1) != make_event_id("front", T0, 2)
