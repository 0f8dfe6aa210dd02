"""``homesec tune``'s fast replay decides exactly as the straightforward one, on real footage.

One :class:`Replayer` replays the clip set's events under one candidate setting after another,
sharing its caches between them (motion tracks, frames kept in memory, the model's answers);
every candidate's outcomes must equal a fresh replay of that candidate alone with no cache at
all (``cached=False``: each frame read from its file, decoded, and checked by the model).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from homesec_detector.settings import DetectorSettings
from homesec_detector.trainset import TrainingEvent
from homesec_detector.tune_frames import FrameCache
from homesec_detector.tune_replay import Replayer
from homesec_detector.tune_search import knob_values, mask_values, with_knob
from homesec_detector.tune_tracks import MotionTracks, dump_results, load_results

FRAMES = 50


@pytest.fixture(scope="module")
def candidates(events: list[TrainingEvent]) -> list[DetectorSettings]:
    """The current settings, the motion knobs' settings (new motion tracks over the kept
    frames, masks among them), a few of the others, and the current settings again."""
    base = DetectorSettings()
    baseline = Replayer(base, 10.0, max_frames=FRAMES).outcomes(events, base)
    assert isinstance(baseline, list) and any(o.alert for o in baseline)
    knobs = knob_values(base) + mask_values(base, baseline)
    chosen = [k for k in knobs if k.block == "motion"] + [k for k in knobs if k.block != "motion"][
        ::4
    ]
    assert any(k.field == "masks" for k in chosen)
    return [base, *(with_knob(base, k) for k in chosen), base]


@pytest.fixture(scope="module")
def fresh(events: list[TrainingEvent], candidates: list[DetectorSettings]) -> list[list]:
    """Each candidate replayed alone, no cache at all: the straightforward replay."""
    out = []
    for settings in candidates:
        found = Replayer(settings, 10.0, max_frames=FRAMES).outcomes(events, settings, cached=False)
        assert isinstance(found, list)
        out.append(found)
    return out


def test_cached_replays_decide_as_fresh_ones(
    events: list[TrainingEvent], candidates: list[DetectorSettings], fresh: list[list]
) -> None:
    probe = Replayer(DetectorSettings(), 10.0, max_frames=FRAMES)
    probe.outcomes(events, DetectorSettings())
    budget = probe.frame_cache.bytes // 2  # half the events' frames: some are read again
    replayer = Replayer(DetectorSettings(), 10.0, max_frames=FRAMES, frame_cache=FrameCache(budget))
    for settings, expected in zip(candidates, fresh, strict=True):
        assert replayer.outcomes(events, settings) == expected, settings
    assert 0 < replayer.frame_cache.bytes <= budget
    assert replayer.frame_cache.dropped > 0


def test_tracks_from_an_earlier_run_decide_as_fresh_replays(
    events: list[TrainingEvent],
    candidates: list[DetectorSettings],
    fresh: list[list],
    tmp_path: Path,
) -> None:
    base, path = DetectorSettings(), tmp_path / "tracks.sqlite"
    first = Replayer(base, 10.0, max_frames=FRAMES, tracks=MotionTracks(path))
    assert first.outcomes(events, base) == fresh[0]
    assert first.tracks is not None
    first.tracks.close()
    (tracks,) = first.motion_cache.values()
    stored = {key: len(t.results) for key, t in tracks.items()}
    # a second run: the current setting's tracks come from disk and are extended where a
    # candidate replays further than the first run did (the detector catches up first)
    second = Replayer(base, 10.0, max_frames=FRAMES, tracks=MotionTracks(path))
    for settings, expected in zip(candidates, fresh, strict=True):
        assert second.outcomes(events, settings) == expected, settings
    assert second.tracks is not None and second.tracks.hits >= len(events)
    again = second.motion_cache[base.motion.model_dump_json()]
    assert any(len(again[key].results) > n for key, n in stored.items())
    second.tracks.close()


def test_a_track_survives_the_disk_exactly(events: list[TrainingEvent]) -> None:
    base = DetectorSettings()
    replayer = Replayer(base, 10.0, max_frames=FRAMES)
    replayer.outcomes(events, base)
    results = [
        r for t in replayer.motion_cache[base.motion.model_dump_json()].values() for r in t.results
    ]
    assert any(r is not None and r.boxes for r in results)
    assert load_results(dump_results(results)) == results


def test_frame_cache_keeps_recent_events_within_its_budget(tmp_path: Path) -> None:
    paths = []
    for i in range(3):
        path = tmp_path / f"{i}.bin"
        path.write_bytes(bytes(100))
        paths.append(path)
    cache = FrameCache(budget=250)
    decoded: list[bytes] = []

    def decode(data: bytes) -> np.ndarray:
        decoded.append(data)
        return np.zeros(10, np.uint8)

    a = cache.event("a", paths[:1])
    assert a.jpeg(0) == bytes(100) and cache.bytes == 100
    grey = a.grey(0, 1, decode)
    assert a.grey(0, 1, decode) is grey and len(decoded) == 1 and not grey.flags.writeable
    b = cache.event("b", paths[1:2])
    b.jpeg(0)
    assert cache.bytes == 210 and len(cache) == 2
    c = cache.event("c", paths[2:])
    c.jpeg(0)  # over budget: "a", the least recently used, goes
    assert cache.bytes == 200 and len(cache) == 2
    assert cache.event("b", paths[1:2]) is b
    assert cache.event("a", paths[:1]) is not a  # read again from its file
    big = cache.event("big", paths)
    for i in range(3):
        big.jpeg(i)
    assert cache.bytes <= 250 and cache.event("big", paths) is not big
