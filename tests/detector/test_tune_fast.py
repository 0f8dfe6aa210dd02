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
from homesec_detector.trainset import TrainingEvent, load_events
from homesec_detector.trainset_build import write_clip_set
from homesec_detector.tune_frames import FrameCache
from homesec_detector.tune_replay import Replayer
from homesec_detector.tune_search import knob_values, mask_values, with_knob

ASSETS = Path(__file__).resolve().parents[1] / "assets"
FRAMES = 50


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> list[TrainingEvent]:
    root = tmp_path_factory.mktemp("training") / "training"
    write_clip_set(ASSETS, root)
    found, _ = load_events(root)
    return found


def _candidates(base: DetectorSettings, replayer: Replayer, events: list[TrainingEvent]):
    baseline = replayer.outcomes(events, base)
    assert isinstance(baseline, list)
    knobs = knob_values(base) + mask_values(base, baseline)
    # the motion knobs (new motion tracks over the kept frames) and a few of the others
    chosen = [k for k in knobs if k.block == "motion"] + [
        k for k in knobs if k.block != "motion"
    ][::4]
    return baseline, [with_knob(base, k) for k in chosen]


@pytest.mark.parametrize("budget", [256 * 1024 * 1024, 400_000], ids=["all-kept", "evicting"])
def test_cached_replays_decide_as_fresh_ones(events: list[TrainingEvent], budget: int) -> None:
    base = DetectorSettings()
    replayer = Replayer(base, 10.0, max_frames=FRAMES, frame_cache=FrameCache(budget))
    baseline, candidates = _candidates(base, replayer, events)
    assert any(o.alert for o in baseline) and any(c.motion.masks for c in candidates)
    for settings in [base, *candidates, base]:
        fast = replayer.outcomes(events, settings)
        fresh = Replayer(base, 10.0, max_frames=FRAMES).outcomes(events, settings, cached=False)
        assert fast == fresh, settings
    assert replayer.frame_cache.bytes <= budget
    if budget < 1_000_000:
        assert len(replayer.frame_cache) < len(events)  # events were dropped and read again


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
