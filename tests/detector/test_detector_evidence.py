"""The person evidence accumulator: tracks, filters, stationary boxes, the confirmation rule."""

from __future__ import annotations

from homesec_detector.evidence import (
    Candidate,
    Check,
    EvidenceSettings,
    PersonEvidence,
    iou,
    judge,
    plausible,
)

FRAME = (640, 480)
S = EvidenceSettings()


def check(seq: int, *cands: tuple[float, tuple[int, int, int, int]], fps: float = 10) -> Check:
    return Check(seq, seq / fps, FRAME, tuple(Candidate(s, b) for s, b in cands))


def walking(n: int, score: float, start: int = 0, x0: int = 100, step: int = 20) -> list[Check]:
    """A person box moving ``step`` px per check."""
    return [check(start + i, (score, (x0 + step * i, 100, 80, 200))) for i in range(n)]


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (10, 0, 10, 10)) == 0.0
    assert abs(iou((0, 0, 10, 10), (5, 0, 10, 10)) - 50 / 150) < 1e-9


def test_no_checks_no_verdict() -> None:
    verdict = PersonEvidence().verdict
    assert not verdict.confirmed and verdict.reason == "no check"


def test_median_over_min_checks_confirms_a_walking_person() -> None:
    checks = walking(S.min_checks, 0.7)
    assert not judge(checks[:-1], S).confirmed  # one check short
    verdict = judge(checks, S)
    assert verdict.confirmed and verdict.score == 0.7 and "median" in verdict.reason
    assert verdict.box == checks[-1].candidates[0].box


def test_one_high_score_confirms_a_box_that_moved() -> None:
    first = check(0, (S.min_score, (100, 100, 80, 200)))
    high = check(1, (S.confirm_single, (130, 100, 80, 200)))
    verdict = judge([first, high], S)
    assert verdict.confirmed and "one check" in verdict.reason
    # the same score on a box that has not moved (yet): a poster scores high on every check
    assert not judge([high], S).confirmed
    assert not judge([high, check(2, (0.9, (131, 101, 80, 199)))], S).confirmed
    # ... unless it showed up on a motion region
    on_motion = Check(1, 0.1, FRAME, high.candidates, motion=((120, 90, 100, 220),))
    assert judge([on_motion], S).confirmed


def test_scattered_hits_do_not_make_a_track() -> None:
    """Car fronts scoring now here, now there: each hit starts its own track."""
    checks = [check(i, (0.7, (40 + 150 * (i % 4), 60 * (i % 3), 60, 90))) for i in range(8)]
    verdict = judge(checks, S)
    assert not verdict.confirmed and verdict.tracks >= 4


def test_low_median_does_not_confirm() -> None:
    scores = [0.5, 0.7, 0.5, 0.5, 0.7, 0.5]  # a pet: now and then above the median threshold
    checks = [check(i, (s, (100 + 10 * i, 100, 80, 160))) for i, s in enumerate(scores)]
    assert not judge(checks, S).confirmed


def test_box_shape_and_size_filters() -> None:
    assert plausible((0, 0, 80, 200), FRAME, S)
    assert not plausible((0, 0, 200, 60), FRAME, S)  # lying flat: a car, a bench
    assert not plausible((0, 0, 5, 10), FRAME, S)  # a few pixels
    assert not plausible((0, 0, 640, 480), FRAME, S.model_copy(update={"max_area_fraction": 0.5}))
    wide = [check(i, (0.9, (50 + 20 * i, 300, 300, 100))) for i in range(5)]
    assert not judge(wide, S).confirmed


def test_a_box_that_stays_put_stops_counting() -> None:
    """A poster scoring 0.7 on every check never reaches min_checks counted checks."""
    poster = [check(i, (0.7, (300, 100, 60, 150))) for i in range(20)]
    settings = S.model_copy(update={"stationary_checks": 2, "min_checks": 3})
    verdict = judge(poster, settings)
    assert not verdict.confirmed and "over 2 checks" in verdict.reason
    # the same scores on a moving box confirm
    assert judge(walking(3, 0.7), settings).confirmed


def test_stationary_then_moving_counts_again() -> None:
    settings = S.model_copy(update={"stationary_checks": 1, "min_checks": 3})
    still = [check(i, (0.7, (300, 100, 60, 150))) for i in range(5)]
    moving = [check(5 + i, (0.7, (320 + 20 * i, 100, 60, 150))) for i in range(2)]
    assert not judge(still, settings).confirmed
    assert judge(still + moving, settings).confirmed


def test_a_track_ends_after_the_gap() -> None:
    first = walking(2, 0.7)
    later = walking(1, 0.7, start=2 + int(10 * S.max_gap_seconds) + 5, x0=124)
    verdict = judge(first + later, S)
    assert not verdict.confirmed and verdict.tracks == 2


def test_two_people_are_two_tracks_and_each_may_confirm() -> None:
    checks = [
        check(i, (0.7, (50 + 25 * i, 100, 80, 200)), (0.5, (400 - 25 * i, 100, 80, 200)))
        for i in range(3)
    ]
    verdict = judge(checks, S)
    assert verdict.confirmed and verdict.tracks == 2 and verdict.box[0] < 200  # type: ignore[index]


def test_order_of_feeding_does_not_matter() -> None:
    checks = walking(4, 0.65)
    forward = PersonEvidence()
    backward = PersonEvidence()
    for c in checks:
        forward.add(c)
    for c in reversed(checks):
        backward.add(c)  # pre-roll frames checked late land where they belong
    assert forward.verdict == backward.verdict


def test_querying_changes_nothing() -> None:
    evidence = PersonEvidence()
    for c in walking(2, 0.7):
        evidence.add(c)
    first = evidence.verdict
    assert evidence.verdict == first == evidence.verdict
    assert not first.confirmed


def test_forget_before_and_clear() -> None:
    evidence = PersonEvidence()
    for c in walking(3, 0.7):
        evidence.add(c)
    assert evidence.verdict.confirmed
    evidence.forget_before(0.15)  # keeps the checks of frames 2 (0.2 s) and later
    assert evidence.checks == 1 and not evidence.verdict.confirmed
    evidence.clear()
    assert evidence.checks == 0 and evidence.verdict.reason == "no check"


def test_below_min_score_is_no_evidence() -> None:
    checks = walking(5, S.min_score - 0.01)
    assert judge(checks, S).reason == "no person-like box"


def test_after_missed_checks_a_person_continues_the_nearest_track() -> None:
    """Seen at frames 0, 1, then 8 (checks in between found nothing): 28 px further on."""
    checks = [
        check(0, (0.7, (50, 200, 30, 80))),
        check(1, (0.7, (54, 200, 30, 80))),
        check(8, (0.7, (82, 200, 30, 80))),
    ]
    verdict = judge(checks, S)
    assert verdict.tracks == 1 and verdict.confirmed
    assert judge(checks, S.model_copy(update={"max_speed": 0})).tracks == 2


def test_a_box_that_never_moved_never_confirms() -> None:
    still = [check(i, (0.95, (300, 100, 60, 150))) for i in range(10)]
    verdict = judge(still, S)
    assert not verdict.confirmed and verdict.score == 0.95
