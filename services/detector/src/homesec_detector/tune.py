"""``homesec tune TRAINING_SET``: the owner's labels tune the detector's settings.

Replays every complete labelled event of the training set (a folder in the uploader's layout or
``s3://bucket/prefix``, see :mod:`homesec_detector.trainset`) through the detector's code path
under the current settings (``HOMESEC_DETECTOR_*``, .env), prints the original's 2x2 table with
precision and recall, searches the settings that matter for the one that removes the most false
alerts without losing any occupied event (:mod:`homesec_detector.tune_search`), and prints the
proposal as environment variables with the new table. ``--apply FILE`` writes the proposal into
an env file; ``--record`` leaves the result where the detector service publishes it (the weekly
report in Slack says whether a change is proposed). Nothing changes the running system unless
the owner applies the proposal and restarts the detector.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from homesec.files import FileLock, atomic_write
from homesec.settings import load_settings
from homesec_detector.evaluate import DEFAULT_CHECK_MS, camera_fps
from homesec_detector.settings import DetectorSettings
from homesec_detector.trainset import TrainingEvent, open_training_set
from homesec_detector.tune_cache import CACHE_FILE, ModelAnswers
from homesec_detector.tune_frames import FRAME_BUDGET_BYTES, FrameCache
from homesec_detector.tune_identity import model_identity, replay_identity, run_basis
from homesec_detector.tune_outcomes import OUTCOMES_FILE, EventOutcomes
from homesec_detector.tune_pool import MAX_DEFAULT_JOBS, ReplayPool, WorkerError, default_jobs
from homesec_detector.tune_replay import Bound, EventOutcome, FramesGone, Replayer, Stopped
from homesec_detector.tune_result import RESULT_FILE
from homesec_detector.tune_schedule import BASIS_FILE
from homesec_detector.tune_search import Proposal, apply_env, env_diff, score, search
from homesec_detector.tune_tracks import TRACKS_FILE, MotionTracks


class Progress:
    """A one-line progress bar on a terminal (nothing otherwise)."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.total = 0
        self.done = 0
        self.what = ""

    def start(self, what: str, total: int) -> None:
        self.what, self.total, self.done = what, max(1, total), 0
        self._draw()

    def step(self) -> None:
        self.done += 1
        if self.done == self.total or self.done % 5 == 0:
            self._draw()

    def end(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def _draw(self) -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * min(self.done, self.total) / self.total)
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r{self.what:12} [{bar}] {self.done}/{self.total}")
        self.stream.flush()


def lock_file(kept: Path) -> Path:
    """The lock a run holds on one of its kept files while it runs."""
    return kept.with_name(kept.name + ".lock")


@dataclass
class KeptFiles:
    """What a run reads and adds to between runs: the model's answers, the motion tracks and
    the events' outcomes (``outcomes`` None: every event replayed, as by the bench's baseline).

    One run at a time holds them (the detector's nightly run and the owner's run in a shell
    share the data dir's files): :meth:`open` waits while another run holds any of them."""

    answers: ModelAnswers
    tracks: MotionTracks
    outcomes: EventOutcomes | None
    locks: list[FileLock] = field(default_factory=list)

    @classmethod
    def open(
        cls,
        settings: DetectorSettings,
        *,
        answers: Path,
        tracks: Path,
        outcomes: Path | None,
        fps: float,
        max_frames: int | None,
        check_ms: float,
        on_wait: Callable[[Path, str], None] | None = None,
    ) -> KeptFiles:
        """``on_wait(file, holder)``: called when another run (``holder``: its pid) holds one of
        the files, before waiting for it."""
        locks: list[FileLock] = []
        try:
            for path in sorted({p.resolve() for p in (answers, tracks, outcomes) if p}):
                wait = None if on_wait is None else functools.partial(on_wait, path)
                locks.append(FileLock(lock_file(path), wait))
            model = model_identity(settings)
            kept = None
            if outcomes is not None:
                kept = EventOutcomes(
                    outcomes,
                    replay_identity(settings, model),
                    fps=fps,
                    max_frames=max_frames,
                    check_ms=check_ms,
                )
            return cls(ModelAnswers(answers, model), MotionTracks(tracks), kept, locks)
        except BaseException:
            for lock in locks:
                lock.release()
            raise

    @classmethod
    def in_folder(
        cls,
        folder: Path,
        settings: DetectorSettings,
        *,
        fps: float,
        max_frames: int | None,
        check_ms: float = DEFAULT_CHECK_MS,
        outcomes: bool = True,
    ) -> KeptFiles:
        """The three files in one folder (scripts and tests)."""
        return cls.open(
            settings,
            answers=folder / "answers.sqlite",
            tracks=folder / "tracks.sqlite",
            outcomes=folder / "outcomes.sqlite" if outcomes else None,
            fps=fps,
            max_frames=max_frames,
            check_ms=check_ms,
        )

    def close(self) -> None:
        try:
            for store in (self.answers, self.tracks, self.outcomes):
                if store is not None:
                    store.close()
        finally:
            for lock in self.locks:
                lock.release()


def run_tune(
    events: list[TrainingEvent],
    settings: DetectorSettings,
    *,
    fps: float,
    max_frames: int | None,
    check_ms: float = DEFAULT_CHECK_MS,
    masks: bool = True,
    progress: Progress | None = None,
    kept: KeptFiles | None = None,
    frame_memory: int = FRAME_BUDGET_BYTES,
    jobs: int = 1,
) -> dict[str, Any]:
    """The whole tune as a JSON-able result (no printing; ``kept``: the files kept on disk
    between runs, read and added to (None: in memory only);
    ``frame_memory``: bytes of frames kept in memory between replays, in all; ``jobs``: worker
    processes replaying (1: all in this process), same result). An event whose files go away
    during the run (relabelled, or removed with the bucket's copy: :class:`FramesGone`) is left
    out, named in ``skipped``, and the search is done again without it (the replays kept so
    far are read back)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    answers = kept.answers if kept is not None else None
    tracks = kept.tracks if kept is not None else None
    outcomes = kept.outcomes if kept is not None else None
    jobs = max(1, min(jobs, len(events)))
    replayer = None
    if jobs == 1:
        replayer = Replayer(
            settings,
            fps,
            max_frames=max_frames,
            check_ms=check_ms,
            answers=answers,
            tracks=tracks,
            outcome_store=outcomes,
            frame_cache=FrameCache(frame_memory),
        )
    gone: list[str] = []
    earlier: dict[str, Any] = {}  # the pools of attempts an event's files went away in
    while True:
        pool = None
        try:
            if replayer is not None:
                proposal, baseline = _search(replayer, events, settings, masks, progress)
            else:
                pool = ReplayPool(
                    events,
                    settings,
                    fps,
                    jobs=jobs,
                    max_frames=max_frames,
                    check_ms=check_ms,
                    frame_memory=frame_memory,
                    answers=answers,
                    tracks=tracks,
                    outcomes=outcomes,
                )
                with pool:
                    proposal, baseline = _search(pool, events, settings, masks, progress)
            break
        except FramesGone as exc:  # relabelled or removed meanwhile: the run goes on without it
            gone.append(str(exc))
            events = [e for e in events if e.key != exc.key]
            if pool is not None:
                earlier = _add_counts(earlier, _pool_counts(pool))
            if not events:
                raise ValueError("every event's files went away during the run") from exc
    if replayer is not None:
        counts: dict[str, Any] = {
            "replays": replayer.replays,
            "model_checks": replayer.model_checks,
            "answers_from_disk": answers.hits if answers is not None else 0,
            "tracks_from_disk": tracks.hits if tracks is not None else 0,
            "speculative_replays": 0,
            "model_runs": replayer.model_checks,
            "worker_cpu_seconds": [],
        }
    else:
        assert pool is not None
        counts = _add_counts(earlier, _pool_counts(pool))
    counts["outcomes_from_disk"] = outcomes.hits if outcomes is not None else 0
    diff = env_diff(settings, proposal.settings)
    current, proposed = score(baseline), score(proposal.outcomes)
    return {
        "training_set_events": len(events),
        "occupied": sum(1 for e in events if e.occupied),
        "unoccupied": sum(1 for e in events if not e.occupied),
        "missed_samples": sum(1 for e in events if e.source == "missed"),
        "current": current,
        "proposal": {
            "changes": len(diff),
            "env": {name: new for name, (_old, new) in diff.items()},
            "diff": {name: {"current": old, "proposed": new} for name, (old, new) in diff.items()},
            **proposed,
        },
        "removed_false_alerts": sorted(
            set(current["false_alerts"]) - set(proposed["false_alerts"])
        ),
        "candidates_tried": proposal.tried,
        "jobs": jobs,
        **counts,
        "seconds": round(time.perf_counter() - started, 3),
        "cpu_seconds": round(time.process_time() - cpu_started, 3),
        "at": time.time(),
        "skipped": gone,
    }


def _pool_counts(pool: ReplayPool) -> dict[str, Any]:
    return {
        "replays": pool.replays,
        "model_checks": pool.model_checks,
        "answers_from_disk": pool.answers_from_disk,
        "tracks_from_disk": pool.tracks_from_disk,
        "speculative_replays": pool.speculative_replays,
        "model_runs": pool.model_runs,
        "worker_cpu_seconds": pool.cpu_seconds,
    }


def _add_counts(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two attempts' counts together (worker CPU seconds by worker)."""
    if not a:
        return b
    cpu = [x + y for x, y in zip(a["worker_cpu_seconds"], b["worker_cpu_seconds"], strict=True)]
    return {k: cpu if k == "worker_cpu_seconds" else a[k] + b[k] for k in b}


class Replays(Protocol):
    """A :class:`Replayer` or a :class:`ReplayPool`: outcomes under a setting."""

    def outcomes(
        self,
        events: Sequence[TrainingEvent],
        settings: DetectorSettings,
        *,
        progress: Callable[[], None] | None = None,
        bound: Bound | None = None,
    ) -> list[EventOutcome] | Stopped: ...


def _search(
    replays: Replays,
    events: list[TrainingEvent],
    settings: DetectorSettings,
    masks: bool,
    progress: Progress | None,
) -> tuple[Proposal, list[EventOutcome]]:
    """The baseline replay, then the search; (the proposal, the baseline's outcomes)."""

    def evaluate(candidate: DetectorSettings, bound: Bound) -> list[EventOutcome] | Stopped:
        return replays.outcomes(events, candidate, bound=bound)

    if progress is not None:
        progress.start("replaying", len(events))
    baseline = replays.outcomes(events, settings, progress=progress.step if progress else None)
    assert not isinstance(baseline, Stopped)
    if progress is not None:
        progress.start("searching", 40)
    proposal = search(
        settings,
        baseline,
        evaluate,
        masks=masks and len({e.camera for e in events}) == 1,
        on_candidate=progress.step if progress else None,
    )
    if progress is not None:
        progress.end()
    return proposal, baseline


def format_table(title: str, s: dict[str, Any]) -> str:
    a = s["alert"]
    precision = "-" if s["precision"] is None else f"{s['precision']:.3f}"
    recall = "-" if s["recall"] is None else f"{s['recall']:.3f}"
    lines = [
        title,
        "  motion_model  person  actual  count",
        *(
            f"  {r['motion_model']:>12}  {r['person']:>6}  {r['actual']:>6}  {r['count']:>5}"
            for r in s["original_table"]
        ),
        f"  alerts: {a['tp']} on occupied, {a['fp']} false, {a['fn']} missed, "
        f"{a['tn']} rightly quiet; precision {precision}, recall {recall}",
    ]
    return "\n".join(lines)


def format_result(result: dict[str, Any]) -> str:
    p = result["proposal"]
    lines = [
        f"training set: {result['training_set_events']} events ({result['occupied']} occupied, "
        f"{result['unoccupied']} unoccupied, {result['missed_samples']} missed alerts)",
        "",
        format_table("current settings", result["current"]),
        "",
    ]
    if not p["changes"]:
        lines.append(
            "no change proposed: no setting removes a false alert and keeps every occupied event"
        )
    else:
        lines.append(f"proposal ({p['changes']} change(s)):")
        for name, values in p["diff"].items():
            lines.append(f"- {name}={values['current']}")
            lines.append(f"+ {name}={values['proposed']}")
        lines += ["", format_table("with the proposal", p)]
        removed = result["removed_false_alerts"]
        lines.append(f"  false alerts removed: {len(removed)}")
        lines.extend(f"    {key}" for key in removed)
    lines.append(
        f"\n{result['candidates_tried']} settings tried, {result['replays']} replays, "
        f"{result['model_checks']} model runs ({result['outcomes_from_disk']} event outcomes, "
        f"{result['answers_from_disk']} answers and {result['tracks_from_disk']} motion tracks "
        "from earlier runs), "
        f"{result['seconds']:.1f} s"
    )
    if result["jobs"] > 1:
        lines.append(
            f"{result['jobs']} worker processes: {result['speculative_replays']} replays past a "
            f"stop (dropped), {result['model_runs']} model runs in all"
        )
    return "\n".join(lines)


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """What the detector publishes on ``training/tune`` (docs/training.md)."""
    current, proposal = result["current"], result["proposal"]
    return {
        "at": result["at"],
        "events": result["training_set_events"],
        "false_alerts": current["alert"]["fp"],
        "missed": current["alert"]["fn"],
        "proposes_change": bool(proposal["changes"]),
        "false_alerts_removed": len(result["removed_false_alerts"]),
        "env": proposal["env"],
    }


def lower_priority() -> None:
    """Nice 19, and the first process the kernel's OOM killer takes (each only as far as
    this process may go)."""
    try:
        os.nice(19)
    except OSError:
        pass
    try:
        Path("/proc/self/oom_score_adj").write_text("1000")
    except OSError:
        pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="homesec tune",
        description="Replay the labelled training set through the detector and propose the "
        "settings that remove the most false alerts without losing any occupied event.",
    )
    p.add_argument(
        "training_set",
        help="folder in the uploader's layout (<label>/<camera>/<day>/<event_id>/...) or "
        "s3://bucket/prefix (read with the HOMESEC_UPLOADER_* settings)",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument(
        "--apply", type=Path, metavar="FILE", help="write the proposal into this env file"
    )
    p.add_argument(
        "--record",
        action="store_true",
        help=f"keep the summary in <data_dir>/{RESULT_FILE}: the detector publishes it "
        "(training/tune) for the weekly report",
    )
    p.add_argument("--fps", type=float, help="replay rate (default: the camera's fps)")
    p.add_argument(
        "--max-frames",
        type=int,
        default=100,
        help="event frames replayed after the pre-roll (default %(default)s; 0: all)",
    )
    p.add_argument("--no-masks", action="store_true", help="do not propose masks")
    p.add_argument("--cache", type=Path, help="S3: local copy of the set (default: a temp dir)")
    p.add_argument(
        "--answers",
        type=Path,
        metavar="FILE",
        help=f"the model's answers kept between runs (default <data_dir>/{CACHE_FILE})",
    )
    p.add_argument(
        "--tracks",
        type=Path,
        metavar="FILE",
        help=f"the motion tracks kept between runs (default <data_dir>/{TRACKS_FILE})",
    )
    p.add_argument(
        "--outcomes",
        type=Path,
        metavar="FILE",
        help=f"the events' outcomes kept between runs (default <data_dir>/{OUTCOMES_FILE})",
    )
    p.add_argument(
        "--no-answers",
        action="store_true",
        help="neither read nor keep the model's answers, the motion tracks nor the outcomes",
    )
    p.add_argument(
        "--frame-memory",
        type=int,
        default=FRAME_BUDGET_BYTES // 2**20,
        metavar="MB",
        help="frames kept in memory between replays (default %(default)s MB)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=default_jobs(),
        metavar="N",
        help="worker processes replaying events (default: the usable CPUs, at most "
        f"{MAX_DEFAULT_JOBS} and one per 400 MB available: %(default)s; 1: in this process); "
        "the result does not depend on it",
    )
    p.add_argument(
        "--low-priority",
        action="store_true",
        help="run at the lowest CPU priority, first in line when the kernel runs out of memory "
        "(what the detector's nightly run uses)",
    )
    p.add_argument(
        "--check-ms",
        type=float,
        default=DEFAULT_CHECK_MS,
        help="CPU budget charged per person check (default %(default)s)",
    )
    return p


def waiting_message(path: Path, holder: str) -> None:
    """Tell the owner why ``tune`` does not start yet (the nightly run may take minutes)."""
    who = f"pid {holder}" if holder else "another process"
    print(
        f"homesec tune: waiting for the tune run of {who} to finish (it holds {path}; "
        "--no-answers runs without the kept files)",
        file=sys.stderr,
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.low_priority:
        lower_priority()
    settings = load_settings(DetectorSettings)
    progress = Progress(sys.stderr, sys.stderr.isatty() and not args.json)
    try:
        with tempfile.TemporaryDirectory(prefix="homesec-tune-") as tmp:
            events, skipped = open_training_set(args.training_set, args.cache or Path(tmp))
            if not events:
                print(
                    f"homesec tune: no complete labelled event in {args.training_set}",
                    file=sys.stderr,
                )
                return 2
            fps = args.fps or camera_fps()
            kept = None
            if not args.no_answers:
                kept = KeptFiles.open(
                    settings,
                    answers=args.answers or settings.data_dir / CACHE_FILE,
                    tracks=args.tracks or settings.data_dir / TRACKS_FILE,
                    outcomes=args.outcomes or settings.data_dir / OUTCOMES_FILE,
                    fps=fps,
                    max_frames=args.max_frames or None,
                    check_ms=args.check_ms,
                    on_wait=waiting_message,
                )
            try:
                result = run_tune(
                    events,
                    settings,
                    fps=fps,
                    max_frames=args.max_frames or None,
                    check_ms=args.check_ms,
                    masks=not args.no_masks,
                    progress=progress,
                    kept=kept,
                    frame_memory=args.frame_memory * 2**20,
                    jobs=args.jobs,
                )
            finally:
                if kept is not None:
                    kept.close()
    except (OSError, ValueError, sqlite3.Error, WorkerError) as exc:
        print(f"homesec tune: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        progress.end()
        print("homesec tune: interrupted (nothing proposed)", file=sys.stderr)
        return 130
    result["skipped"] = [*skipped, *result["skipped"]]
    if args.apply is not None and result["proposal"]["env"]:
        old = args.apply.read_text(encoding="utf-8") if args.apply.is_file() else ""
        atomic_write(args.apply, apply_env(old, result["proposal"]["env"]).encode())
    if args.record:
        path = settings.data_dir / RESULT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        identity = kept.outcomes.identity if kept is not None and kept.outcomes else None
        atomic_write(settings.data_dir / BASIS_FILE, run_basis(settings, identity).encode())
        atomic_write(path, json.dumps(summary(result), indent=2).encode())
    if args.json:
        print(json.dumps(result))
    else:
        print(format_result(result))
        for reason in skipped:
            print(f"skipped {reason}")
        if args.apply is not None:
            what = "written into" if result["proposal"]["env"] else "nothing to write into"
            print(f"proposal {what} {args.apply}; restart the detector to use it")
    return 0
