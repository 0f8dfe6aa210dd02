"""The pure parts of homesec tune: the search's rule, the env diff, --apply, the missed buffer."""

from __future__ import annotations

from homesec_detector.media_writer import BufferedFrame, MissedBuffer
from homesec_detector.settings import DetectorSettings
from homesec_detector.tune_replay import Bound, EventOutcome
from homesec_detector.tune_search import (
    Knob,
    apply_env,
    env_diff,
    knob_values,
    mask_values,
    replay_order,
    search,
    with_knob,
)


def _o(key: str, occupied: bool, alert: bool, box=(0.1, 0.1, 0.2, 0.2)) -> EventOutcome:
    return EventOutcome(key, occupied, alert, alert, (box,) if alert else ())


def test_search_never_trades_an_occupied_alert_for_fewer_false_alerts() -> None:
    base = DetectorSettings()
    baseline = [_o("p1", True, True), _o("p2", True, True), _o("n1", False, True)]

    def evaluate(s: DetectorSettings, bound: Bound):
        # a stricter threshold drops the false alert but also p2; a higher confirm_median
        # drops only the false alert
        if s.motion.delta_thresh > base.motion.delta_thresh:
            return [_o("p1", True, True), _o("p2", True, False), _o("n1", False, False)]
        if s.evidence.confirm_median > base.evidence.confirm_median:
            return [_o("p1", True, True), _o("p2", True, True), _o("n1", False, False)]
        return baseline

    proposal = search(base, baseline, evaluate, masks=False)
    assert [(k.block, k.field) for k in proposal.knobs] == [("evidence", "confirm_median")]
    assert proposal.settings.motion.delta_thresh == base.motion.delta_thresh
    assert {o.key for o in proposal.outcomes if o.alert} == {"p1", "p2"}


def test_no_feasible_improvement_proposes_nothing() -> None:
    base = DetectorSettings()
    baseline = [_o("p1", True, True), _o("n1", False, True)]
    proposal = search(base, baseline, lambda s, bound: [_o("p1", True, False)] * 1 + baseline[1:])
    assert proposal.knobs == [] and proposal.settings == base


def test_env_diff_and_apply_keep_every_other_line() -> None:
    base = DetectorSettings()
    new = with_knob(base, Knob("motion", "delta_thresh", 9))
    new = with_knob(new, Knob("motion", "masks", [[[0, 0], [0.5, 0], [0.5, 0.5]]]))
    diff = env_diff(base, new)
    assert diff == {
        "HOMESEC_DETECTOR_MOTION__DELTA_THRESH": ("5", "9"),
        "HOMESEC_DETECTOR_MOTION__MASKS": ("[]", "[[[0.0,0.0],[0.5,0.0],[0.5,0.5]]]"),
    }
    text = "# comment\nHOMESEC_CAMERA_FPS=10\nexport HOMESEC_DETECTOR_MOTION__DELTA_THRESH=5\n"
    out = apply_env(text, {name: value for name, (_, value) in diff.items()})
    assert out.splitlines() == [
        "# comment",
        "HOMESEC_CAMERA_FPS=10",
        "HOMESEC_DETECTOR_MOTION__DELTA_THRESH=9",
        "",
        "# proposed by homesec tune",
        "HOMESEC_DETECTOR_MOTION__MASKS=[[[0.0,0.0],[0.5,0.0],[0.5,0.5]]]",
    ]


def test_knobs_skip_the_current_value_and_masks_merge_overlapping_false_alerts() -> None:
    base = DetectorSettings()
    knobs = knob_values(base)
    assert all(getattr(getattr(base, k.block), k.field) != k.value for k in knobs)
    assert len({(k.block, k.field, str(k.value)) for k in knobs}) == len(knobs)
    outcomes = [
        _o("n1", False, True, (0.1, 0.1, 0.1, 0.1)),
        _o("n2", False, True, (0.15, 0.12, 0.1, 0.1)),
        _o("n3", False, True, (0.7, 0.7, 0.1, 0.1)),
        _o("p1", True, True, (0.4, 0.4, 0.1, 0.1)),
    ]
    masks = mask_values(base, outcomes)
    assert len(masks) == 3  # the two overlapping ones merged, the far one, and both together
    assert all(len(k.value) == 1 and len(k.value[0]) == 4 for k in masks)


def test_missed_buffer_keeps_seconds_at_its_rate_and_shares_the_bytes() -> None:
    buffer = MissedBuffer(seconds=2.0, fps=2.0)
    data = [bytes([i]) * 10 for i in range(50)]
    for i in range(50):  # 10 fps for 5 s
        buffer.append(
            BufferedFrame(seq=i, captured_at=100 + i / 10, jpeg=data[i], width=4, height=4)
        )
    frames = buffer.since(0)
    assert [f.seq for f in frames] == [25, 30, 35, 40, 45]  # 2 s, both ends kept
    assert frames[0].jpeg is data[25]  # the camera's bytes, not a copy
    assert buffer.rate(frames) == 2.0
    assert [f.seq for f in buffer.since(104.0)] == [40, 45]
    off = MissedBuffer(seconds=0, fps=0)
    off.append(BufferedFrame(seq=1, captured_at=1.0, jpeg=b"x", width=1, height=1))
    assert off.since(0) == []


def test_replay_order_puts_what_decides_first() -> None:
    outcomes = [
        _o("p1", True, True),
        _o("quiet", False, False),
        _o("p2", True, True),
        _o("missed", True, False),
        _o("fa", False, True),
    ]
    assert replay_order(outcomes, {"p2": 3}) == ("fa", "missed", "p2", "p1", "quiet")
