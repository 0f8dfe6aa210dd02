"""``homesec tune`` benchmark: a few hundred events, cold and warm, against the exhaustive search.

    uv run python bench/tune.py [--seeds N] [--max-frames N] [--baseline-seeds N] [--keep DIR]
                                [--jobs N [N ...]] [--no-exhaustive]

The training set is ``--seeds`` draws of the evaluation set (``trainset_build.write_eval_set``:
~56 clips per draw at 640x480 and 320x240, person clips occupied but two far-away figures the
owner called unoccupied, everything else unoccupied), replayed as ``homesec tune`` does
(``--max-frames`` event frames after the pre-roll, 10 fps), one thread, the models loaded
outside the timings (``--jobs`` above 1: each worker loads them, inside the timings). Runs,
each with fresh in-memory caches:

* **cold**: ``run_tune`` with an empty answers file (every model answer computed once);
* **warm**: ``run_tune`` again on the files the cold run left (a second ``homesec tune``):
  every event's outcome read back;
* **warm, no outcomes**: the same on the answers and motion tracks only (the second run as it
  was before the outcomes file; also a run whose settings changed in the events or evidence
  blocks);
* **warm, answers only**: the same with the answers file but no motion tracks (every frame
  decoded and analysed again: a second run whose motion settings changed);
* **after a run on a subset**: the owner's run on the first draw only, on the cold run's files,
  then the nightly run on the whole set again: every outcome the subset's run did not use is
  still kept (``tune_kept``), so nothing is replayed;
* **after a day's labels**: the detector's nightly run (``homesec_detector.tune_schedule``) on
  the set without ``--new`` of its events, then the owner's run on the whole set on the files
  the nightly run left: the new events are cold, the rest warm;
* **exhaustive** (the baseline, on the first ``--baseline-seeds`` draws only: it is slow):
  the same search and caches, but every candidate replayed on every event (no bound: the
  search as it was before the bound), next to a cold run on the same events for the ratio.

``--jobs 1 2`` runs the cold and warm runs once per ``--jobs`` value (``run_tune(jobs=N)``,
each with its own files; the other runs use the first value), ``--no-exhaustive`` leaves out the
exhaustive run and its cold run. Every run must propose the same, and the cold (and warm) runs
of every ``--jobs`` the same replays and model runs. Prints seconds, model runs, replays and the
ratios, and the kept files' sizes after the cold run.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2

from homesec_detector.settings import DetectorSettings
from homesec_detector.trainset import TrainingEvent, load_events
from homesec_detector.trainset_build import write_eval_set
from homesec_detector.tune import KeptFiles, run_tune
from homesec_detector.tune_replay import Bound, EventOutcome, Replayer, Stopped
from homesec_detector.tune_search import search

ASSETS = Path(__file__).resolve().parents[1] / "tests" / "assets"
PI_FACTOR = 4.0
"""Assumed Pi 4 core / this x86 core time ratio for the model-bound work (3-5x, see
docs/performance.md); the evaluation's --check-ms 80 vs 20 assumes the same 4x."""


def timed_tune(
    events: list[TrainingEvent],
    settings: DetectorSettings,
    frames: int,
    files: Path | None,
    jobs: int = 1,
    outcomes: bool = True,
) -> dict[str, Any]:
    """``run_tune`` keeping the model's answers, the motion tracks and (``outcomes``) the
    events' outcomes in ``files`` (a folder), as ``homesec tune`` does."""
    kept = None
    if files is not None:
        kept = KeptFiles.in_folder(files, settings, fps=10.0, max_frames=frames, outcomes=outcomes)
    try:
        return run_tune(events, settings, fps=10.0, max_frames=frames, kept=kept, jobs=jobs)
    finally:
        if kept is not None:
            kept.close()


def exhaustive(events: list[TrainingEvent], settings: DetectorSettings, frames: int) -> dict:
    """The search without the bound: every candidate on every event (must-alert ones first)."""
    replayer = Replayer(settings, 10.0, max_frames=frames)
    replayer.detector()
    started = time.perf_counter()
    baseline = replayer.outcomes(events, settings)
    assert isinstance(baseline, list)

    def evaluate(s: DetectorSettings, bound: Bound) -> list[EventOutcome] | Stopped:
        return replayer.outcomes(
            events, s, bound=Bound(bound.must_alert, None, tuple(sorted(bound.must_alert)))
        )

    proposal = search(settings, baseline, evaluate)
    return {
        "seconds": time.perf_counter() - started,
        "model_checks": replayer.model_checks,
        "replays": replayer.replays,
        "candidates_tried": proposal.tried,
        "env": {k.env: str(k.value) for k in proposal.knobs},
    }


def _seed(event: TrainingEvent) -> int:
    """The evaluation set's draw an event came from (its id: ``front-s<seed>-<clip>``)."""
    return int(event.event_id.removeprefix("front-s").split("-")[0])


def row(name: str, events: int, r: dict[str, Any], ref: float | None = None) -> str:
    ratio = f"{r['seconds'] / ref:6.3f}" if ref else "     -"
    pi = PI_FACTOR * r["seconds"]
    return (
        f"{name:26} {events:6d} {r['candidates_tried']:5d} {r['replays']:7d} "
        f"{r['model_checks']:7d} {r['seconds']:8.2f} {ratio}  ~{pi:7.0f}"
    )


def _cpu(r: dict[str, Any]) -> str:
    """CPU seconds: this process's, and each worker's (the critical path when cores are free)."""
    workers = "+".join(f"{s:.1f}" for s in r["worker_cpu_seconds"])
    return f"{r['cpu_seconds']:.1f}" + (f" (parent) + {workers} (workers)" if workers else "")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=5, help="draws of the evaluation set (~56 each)")
    p.add_argument("--baseline-seeds", type=int, default=1, help="draws the exhaustive run gets")
    p.add_argument("--max-frames", type=int, default=100)
    p.add_argument("--keep", type=Path, help="build the set here once and reuse it")
    p.add_argument(
        "--jobs", type=int, nargs="+", default=[1], help="worker processes (cold, warm per value)"
    )
    p.add_argument("--no-exhaustive", action="store_true", help="leave out the exhaustive run")
    p.add_argument(
        "--new", type=int, default=10, help="events labelled since the nightly run (0: no run)"
    )
    args = p.parse_args()
    cv2.setNumThreads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-tune-"))
    try:
        root = args.keep or tmp / "set"
        if not (root / "occupied").is_dir():
            write_eval_set(ASSETS, root, args.seeds)
        events, _ = load_events(root)
        events = [e for e in events if _seed(e) < args.seeds]
        few = [e for e in events if _seed(e) < args.baseline_seeds]
        settings = DetectorSettings()
        Replayer(settings, 10.0).detector()  # the models' files are read once, outside

        first = args.jobs[0]
        colds: dict[int, dict[str, Any]] = {}
        warms: dict[int, dict[str, Any]] = {}
        for jobs in args.jobs:
            kept = tmp / f"kept-{jobs}"
            colds[jobs] = timed_tune(events, settings, args.max_frames, kept, jobs)
            if jobs == first:
                only = tmp / "answers-only"
                only.mkdir()
                shutil.copy(kept / "answers.sqlite", only / "answers.sqlite")
            warms[jobs] = timed_tune(events, settings, args.max_frames, kept, jobs)
        cold, warm = colds[first], warms[first]
        sizes = {f.name: f.stat().st_size for f in sorted((tmp / f"kept-{first}").glob("*.sqlite"))}
        subset = [e for e in events if _seed(e) < 1]
        timed_tune(subset, settings, args.max_frames, tmp / f"kept-{first}", first)
        after_subset = timed_tune(events, settings, args.max_frames, tmp / f"kept-{first}", first)
        warm_answers = timed_tune(events, settings, args.max_frames, only, first)
        no_outcomes = timed_tune(
            events, settings, args.max_frames, tmp / f"kept-{first}", first, outcomes=False
        )
        if args.new:
            step = max(1, len(events) // args.new)
            labelled_today = {e.key for e in events[::step][: args.new]}
            before = [e for e in events if e.key not in labelled_today]
            nightly = timed_tune(before, settings, args.max_frames, tmp / "nightly", first)
            owner = timed_tune(events, settings, args.max_frames, tmp / "nightly", first)
        proposals = {
            "cold": cold["proposal"]["env"],
            "warm": warm["proposal"]["env"],
            "warm, answers only": warm_answers["proposal"]["env"],
            "warm, no outcomes": no_outcomes["proposal"]["env"],
            "after a run on a subset": after_subset["proposal"]["env"],
            **({"after a day's labels": owner["proposal"]["env"]} if args.new else {}),
            **{f"cold, jobs {j}": r["proposal"]["env"] for j, r in colds.items()},
            **{f"warm, jobs {j}": r["proposal"]["env"] for j, r in warms.items()},
        }
        assert len({json.dumps(p, sort_keys=True) for p in proposals.values()}) == 1, proposals
        for runs in (colds, warms):
            counts = {j: (r["replays"], r["model_checks"]) for j, r in runs.items()}
            assert len(set(counts.values())) == 1, counts
        if not args.no_exhaustive:
            few_cold = timed_tune(few, settings, args.max_frames, tmp / "few", first)
            slow = exhaustive(few, settings, args.max_frames)
            assert few_cold["proposal"]["env"] == slow["env"], (few_cold, slow)

        frames = sum(e.preroll + min(e.frames, args.max_frames) for e in events)
        print(
            f"training set: {len(events)} events ({sum(e.occupied for e in events)} occupied), "
            f"{frames} frames per full replay, --max-frames {args.max_frames}"
        )
        print(f"current: {cold['current']['alert']}; proposal: {cold['proposal']['env']}")
        print(
            f"{'run':26} {'events':>6} {'tried':>5} {'replays':>7} {'models':>7} "
            f"{'seconds':>8} {'ratio':>6}  Pi est. s (x{PI_FACTOR:g})"
        )
        if not args.no_exhaustive:
            print(row("exhaustive (baseline)", len(few), slow))
            print(row("cold (homesec tune)", len(few), few_cold, slow["seconds"]))
        for jobs in args.jobs:
            ref = colds[first]["seconds"] if jobs != first else None
            print(row(f"cold, jobs {jobs}", len(events), colds[jobs], ref))
        for jobs in args.jobs:
            ref = warms[first]["seconds"] if jobs != first else None
            print(row(f"warm, jobs {jobs}", len(events), warms[jobs], ref))
        print(row("warm, no outcomes", len(events), no_outcomes, cold["seconds"]))
        print(row("warm, answers only", len(events), warm_answers, cold["seconds"]))
        print(row(f"after a run on {len(subset)}", len(events), after_subset, cold["seconds"]))
        if args.new:
            print(row("nightly (day before)", len(before), nightly))
            print(row(f"owner, {args.new} new events", len(events), owner, cold["seconds"]))
        for jobs in args.jobs:
            r = colds[jobs]
            w = warms[jobs]
            print(
                f"jobs {jobs}: cold {r['speculative_replays']} speculative replays, "
                f"{r['model_runs']} model runs in all, CPU s {_cpu(r)}; warm "
                f"{w['speculative_replays']} speculative replays, CPU s {_cpu(w)}"
            )
        if not args.no_exhaustive:
            print(
                f"cold/exhaustive on {len(few)} events: "
                f"{few_cold['seconds'] / slow['seconds']:.3f} "
                f"({slow['seconds'] / few_cold['seconds']:.1f}x faster)"
            )
        print(f"warm/cold on {len(events)}: {warm['seconds'] / cold['seconds']:.3f}")
        print(
            "kept files after the cold run: "
            + ", ".join(f"{n} {b / 1e6:.1f} MB" for n, b in sizes.items())
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
