"""The kept tune files (outcomes, motion tracks) keep what other runs use, for a while, and
nothing of another identity."""

from __future__ import annotations

from pathlib import Path

import pytest

from homesec.contract import Label
from homesec_detector import tune_kept, tune_outcomes, tune_tracks
from homesec_detector.trainset import TrainingEvent
from homesec_detector.tune_outcomes import EventOutcomes
from homesec_detector.tune_replay import EventOutcome
from homesec_detector.tune_tracks import MotionTracks

DAY_NS = 86_400 * 1_000_000_000
LATER = tune_kept.KEEP_UNUSED_DAYS + 1


def _event(name: str) -> TrainingEvent:
    return TrainingEvent(
        key=f"occupied/cam1/2026-12-01/{name}",
        event_id=name,
        camera="cam1",
        label=Label.OCCUPIED,
        source="slack",
        folder=Path("/nonexistent") / name,
        preroll=1,
        frames=1,
    )


def _at(monkeypatch: pytest.MonkeyPatch, module: object, day: int) -> None:
    """The stores opened from now on start their run on ``day`` (days after the epoch's 1e18)."""
    monkeypatch.setattr(module, "time", _Clock(10**18 + day * DAY_NS))


class _Clock:
    def __init__(self, ns: int) -> None:
        self.ns = ns

    def time_ns(self) -> int:
        return self.ns


def _outcomes(path: Path, identity: str = "replay-1") -> EventOutcomes:
    return EventOutcomes(path, identity, fps=10.0, max_frames=10, check_ms=20.0)


def test_a_run_on_another_set_keeps_the_outcomes_the_nightly_run_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "outcomes.sqlite"
    house, other = _event("house"), _event("other")
    outcome = EventOutcome(house.key, True, True, True, ((0.1, 0.2, 0.3, 0.4),))

    _at(monkeypatch, tune_outcomes, 0)  # the nightly run on the house's set
    store = _outcomes(path)
    store.put("house-key", outcome)
    store.close()
    _at(monkeypatch, tune_outcomes, 1)  # the owner's run on another set
    store = _outcomes(path)
    store.put("other-key", EventOutcome(other.key, True, True, False))
    store.close()

    _at(monkeypatch, tune_outcomes, 2)  # the next nightly run reads its outcome back
    store = _outcomes(path)
    assert store.get("house-key", house) == outcome
    assert store.hits == 1
    store.close()

    # a month later, only what a run used in the meantime is left
    _at(monkeypatch, tune_outcomes, 2 + tune_kept.KEEP_UNUSED_DAYS)
    store = _outcomes(path)
    assert store.get("house-key", house) == outcome  # used on day 2: still within the window
    store.close()
    _at(monkeypatch, tune_outcomes, 2 + tune_kept.KEEP_UNUSED_DAYS + 1)
    store = _outcomes(path)
    assert store.get("other-key", other) is None  # last used on day 1: dropped
    assert store.get("house-key", house) == outcome
    store.close()

    # another replay identity (the replay's code upgraded): nothing of the old one is served
    store = _outcomes(path, identity="replay-2")
    assert store.get("house-key", house) is None
    store.close()
    store = _outcomes(path)  # and going back does not bring it back: the file was emptied
    assert store.get("house-key", house) is None
    store.close()


def test_motion_tracks_stay_while_used_and_go_with_their_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tracks.sqlite"
    _at(monkeypatch, tune_tracks, 0)
    tracks = MotionTracks(path)
    tracks.put("house", [None, None])
    tracks.close()
    _at(monkeypatch, tune_tracks, 1)
    tracks = MotionTracks(path)
    tracks.put("other", [None])
    tracks.close()
    _at(monkeypatch, tune_tracks, LATER)  # "house" last used on day 0, "other" on day 1
    tracks = MotionTracks(path)
    assert tracks.get("other") == [None]
    assert tracks.get("house") is None
    tracks.close()

    monkeypatch.setattr(tune_tracks, "motion_identity", lambda: "other motion code")
    tracks = MotionTracks(path)
    assert tracks.get("other") is None
    tracks.close()
