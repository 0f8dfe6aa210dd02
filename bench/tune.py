"""``homesec tune`` benchmark: the search with its caches vs the same search replaying from scratch.

    uv run python bench/tune.py [--copies N] [--max-frames N]

Builds the test training set (trainset_build.clip_set: evaluation clips at 320x240, one false
alert labelled on purpose), ``--copies`` times under distinct event ids, and runs the whole tune
search twice in one process, one thread: once as ``homesec tune`` does it (motion results and
person checks cached between settings) and once with every replay uncached (a fresh decode,
motion pass and model run per setting: the baseline). Prints both times, the ratio, the model
runs each needed, per-event cost, and checks both propose the same.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import cv2

from homesec_detector.settings import DetectorSettings
from homesec_detector.trainset import load_events
from homesec_detector.trainset_build import DAY, write_clip_set
from homesec_detector.tune_replay import Replayer
from homesec_detector.tune_search import search

ASSETS = Path(__file__).resolve().parents[1] / "tests" / "assets"


def run(events, settings, max_frames: int, cached: bool) -> tuple[float, int, int, dict]:
    replayer = Replayer(settings, 10.0, max_frames=max_frames)
    replayer.detector()  # the model loads once, outside the timing
    started = time.perf_counter()
    baseline = replayer.outcomes(events, settings, cached=cached)
    assert baseline is not None
    proposal = search(
        settings,
        baseline,
        lambda s, must: replayer.outcomes(events, s, cached=cached, must_alert=must),
    )
    seconds = time.perf_counter() - started
    env = {k.env: k.value for k in proposal.knobs}
    return seconds, replayer.model_checks, proposal.tried, env


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--copies", type=int, default=2)
    p.add_argument("--max-frames", type=int, default=50)
    args = p.parse_args()
    cv2.setNumThreads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-tune-"))
    try:
        for copy in range(args.copies):
            root = tmp / f"c{copy}"
            write_clip_set(ASSETS, root, camera=f"cam{copy}" if copy else "front")
        merged = tmp / "set"
        for copy in range(args.copies):
            shutil.copytree(tmp / f"c{copy}", merged, dirs_exist_ok=True)
        events, _ = load_events(merged)
        frames = sum(e.preroll + min(e.frames, args.max_frames) for e in events)
        settings = DetectorSettings()
        fast, fast_checks, tried, env = run(events, settings, args.max_frames, cached=True)
        slow, slow_checks, _, slow_env = run(events, settings, args.max_frames, cached=False)
        assert env == slow_env, "cached and uncached searches must propose the same"
        print(f"training set: {len(events)} events, {frames} frames replayed per setting ({DAY})")
        print(f"settings tried: {tried}; proposal: {env}")
        print(
            f"cached (homesec tune)  {fast:7.2f} s  {fast_checks:6d} model runs  "
            f"{1000 * fast / (len(events) * (tried + 1)):.1f} ms per event and setting"
        )
        print(
            f"uncached (baseline)    {slow:7.2f} s  {slow_checks:6d} model runs  "
            f"{1000 * slow / (len(events) * (tried + 1)):.1f} ms per event and setting"
        )
        print(
            f"ratio: the cached search takes {fast / slow:.2f} of the baseline's time "
            f"({slow / fast:.1f}x faster)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
