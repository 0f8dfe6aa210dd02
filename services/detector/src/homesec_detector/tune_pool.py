"""``homesec tune --jobs N``: the replays spread over worker processes, results as one process.

:class:`ReplayPool` answers :meth:`outcomes` like :meth:`Replayer.outcomes
<homesec_detector.tune_replay.Replayer.outcomes>` (same arguments, same result, bit for bit),
with the replays done by ``N`` workers (:mod:`homesec_detector.tune_worker`; each loads the
models once, the parent never does). On Linux they are forked by a fork server that imported the
worker's modules (their memory shared) but never ran OpenCV: a plain fork of a process whose
OpenCV thread pool has run can hang in the child (seen: ``cv2.setNumThreads`` in a worker
forked after an in-process replay); elsewhere they are spawned.

* **dispatch**: events go out in the bound's order, at most ``window`` positions ahead of the
  first result not yet consumed; an event always goes to the same worker (its frames, motion
  tracks and model answers stay in that worker's memory from one candidate to the next);
* **consume**: results are taken strictly in order and fed to the same
  :class:`~homesec_detector.tune_replay.Tally` as the sequential replay, so the stop decision and
  the outcomes returned are the sequential ones. Replays dispatched past a stop are
  *speculative*: their outcomes are dropped (their answers and tracks are kept: they are right);
  queued ones are skipped once the next candidate's tasks arrive;
* **counts**: ``replays`` are consumed replays; ``model_checks`` the distinct model answers the
  consumed replays needed that the answers file did not hold at the start (what one process
  computes with an answers file), ``answers_from_disk``/``tracks_from_disk`` the distinct ones
  they read from the files. Work past the stops is reported apart: ``speculative_replays`` and
  ``model_runs`` (every model run of every worker);
* **files**: the parent does not write the answers and tracks files while workers read them;
  :meth:`close` merges the workers' scratch files into them (one writer per file);
* **failure**: an error in a worker, a worker that dies, or Ctrl-C in the parent ends every
  worker; the first two raise :class:`WorkerError`.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import TracebackType

from homesec_detector.settings import DetectorSettings
from homesec_detector.trainset import TrainingEvent
from homesec_detector.tune_cache import ModelAnswers
from homesec_detector.tune_outcomes import EventOutcomes
from homesec_detector.tune_replay import Bound, EventOutcome, FramesGone, Stopped, Tally
from homesec_detector.tune_tracks import MotionTracks
from homesec_detector.tune_worker import (
    Cancel,
    Configure,
    Done,
    Failed,
    Quit,
    Reply,
    Task,
    WorkerJob,
    serve,
)

MAX_DEFAULT_JOBS = 4
"""The default ``--jobs`` is the usable CPUs, at most this (a Pi 4's cores; each worker holds
its own models, ~28 MB)."""
QUIT_SECONDS = 60.0
"""How long :meth:`ReplayPool.close` lets a worker finish its replay before ending it."""


class WorkerError(RuntimeError):
    """A replay worker failed or died."""


def _failure(reply: Failed) -> Exception:
    """What a worker's failure raises here: :class:`FramesGone` for an event whose files went
    away (the run goes on without it), else :class:`WorkerError`."""
    if reply.gone is not None:
        return FramesGone(reply.gone, reply.message)
    return WorkerError(f"a replay worker failed:\n{reply.message}")


WORKER_MEMORY_BYTES = 200 * 2**20
"""What one worker may hold on a few hundred events (130-185 MB measured on 280:
docs/performance.md): the default leaves the machine's running services their memory."""


def available_memory_bytes(
    meminfo: Path = Path("/proc/meminfo"), cgroup: Path = Path("/sys/fs/cgroup")
) -> int | None:
    """``MemAvailable`` from /proc/meminfo (Linux), or less where this process's cgroup (v2:
    a container's ``mem_limit``) leaves less; None where neither can be read."""
    available = None
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            left = max(0, int(limit) - int((cgroup / "memory.current").read_text()))
            available = left if available is None else min(available, left)
    except (OSError, ValueError):
        pass
    return available


def default_jobs(available: int | None = None) -> int:
    """The usable CPUs, capped at :data:`MAX_DEFAULT_JOBS` and by memory: one worker per
    :data:`WORKER_MEMORY_BYTES` in half of what is available (the stack beside ``tune`` on a
    512 MB Pi must not be pushed to the OOM killer), at least 1 (in-process)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    jobs = max(1, min(MAX_DEFAULT_JOBS, usable or 1))
    available = available_memory_bytes() if available is None else available
    if available is not None:
        jobs = min(jobs, max(1, available // 2 // WORKER_MEMORY_BYTES))
    return jobs


class ReplayPool:
    """``jobs`` replay workers over ``events`` (see the module doc); a context manager."""

    def __init__(
        self,
        events: Sequence[TrainingEvent],
        base: DetectorSettings,
        fps: float,
        *,
        jobs: int,
        max_frames: int | None = None,
        check_ms: float,
        frame_memory: int,
        answers: ModelAnswers | None = None,
        tracks: MotionTracks | None = None,
        outcomes: EventOutcomes | None = None,
        window: int | None = None,
    ) -> None:
        """``frame_memory``: the frame memory of every worker together; ``window``: positions
        dispatched ahead of the first unconsumed one (default twice ``jobs``)."""
        if jobs < 1:
            raise ValueError("jobs must be at least 1")
        self.events = events
        self.answers = answers
        self.tracks = tracks
        self.outcome_store = outcomes
        self.window = window or 2 * jobs
        self.replays = 0
        self.speculative_replays = 0
        self.model_runs = 0
        self._new_answers: set[str] = set()
        self._old_answers: set[str] = set()
        self._old_tracks: set[str] = set()
        self._touched: set[str] = set()
        self._generation = 0
        self._configured: list[int] = [0] * jobs
        self._cpu: dict[int, float] = {}
        self._keys = [e.key for e in events]
        self._max_frames = max_frames
        self._paths: dict[str, list[Path]] = {}
        near = answers.path.parent if answers is not None else None
        self._scratch = Path(tempfile.mkdtemp(prefix="homesec-tune-jobs-", dir=near))
        self._conns: list[Connection] = []
        self._procs: list[BaseProcess] = []
        context = multiprocessing.get_context("forkserver" if sys.platform == "linux" else None)
        if sys.platform == "linux":
            context.set_forkserver_preload(["homesec_detector.tune_worker"])
        try:
            for n in range(jobs):
                folder = self._scratch / str(n)
                folder.mkdir()
                job = WorkerJob(
                    events,
                    base,
                    fps,
                    max_frames,
                    check_ms,
                    frame_memory // jobs,
                    folder,
                    answers.path if answers is not None else None,
                    answers.identity if answers is not None else "",
                    tracks.path if tracks is not None else None,
                )
                mine, theirs = context.Pipe()
                proc = context.Process(
                    target=serve,
                    args=(theirs, job),
                    name=f"homesec-tune-{n}",
                    daemon=True,
                )
                proc.start()
                theirs.close()
                self._conns.append(mine)
                self._procs.append(proc)
        except BaseException:
            self._end()
            raise

    @property
    def jobs(self) -> int:
        return len(self._procs)

    @property
    def pids(self) -> list[int]:
        """The workers' process ids."""
        return [p.pid for p in self._procs if p.pid is not None]

    @property
    def cpu_seconds(self) -> list[float]:
        """Each worker's CPU time, as of its last reply (the load it took, whatever else ran
        beside it)."""
        return [round(self._cpu.get(n, 0.0), 3) for n in range(len(self._procs))]

    @property
    def model_checks(self) -> int:
        return len(self._new_answers)

    @property
    def answers_from_disk(self) -> int:
        return len(self._old_answers)

    @property
    def tracks_from_disk(self) -> int:
        return len(self._old_tracks)

    def outcomes(
        self,
        events: Sequence[TrainingEvent],
        settings: DetectorSettings,
        progress: Callable[[], None] | None = None,
        bound: Bound | None = None,
    ) -> list[EventOutcome] | Stopped:
        """:meth:`Replayer.outcomes <homesec_detector.tune_replay.Replayer.outcomes>` over the
        workers (``events``: the pool's own)."""
        if [e.key for e in events] != self._keys:
            raise ValueError("a pool replays the events it was made with")
        self._generation += 1
        generation = self._generation
        tally = Tally(events, bound)
        order = tally.order
        known, keys = self._known(events, settings)
        # the positions the workers replay (the others' outcomes were read back)
        pending = [p for p, i in enumerate(order) if i not in known]
        done: dict[int, Done] = {}
        found: dict[int, EventOutcome] = {}
        sent = 0
        for position, index in enumerate(order):
            self.replays += 1
            if index in known:
                outcome = found[index] = known[index]
            else:
                while sent < len(pending) and pending[sent] - position < self.window:
                    self._send(generation, pending[sent], order[pending[sent]], settings)
                    sent += 1
                while position not in done:
                    self._receive(generation, done)
                reply = done.pop(position)
                self._new_answers |= reply.usage.new_answers
                self._old_answers |= reply.usage.old_answers
                self._old_tracks |= reply.usage.old_tracks
                outcome = found[index] = reply.outcome
                if self.outcome_store is not None:
                    self.outcome_store.put(keys[index], outcome)
            if progress is not None:
                progress()
            stopped = tally.add(outcome)
            if stopped is not None:
                self.speculative_replays += len(done)
                if sent and pending[sent - 1] > position:
                    self._cancel(generation + 1)
                return stopped
        return [found[i] for i in range(len(events))]

    def _known(
        self, events: Sequence[TrainingEvent], settings: DetectorSettings
    ) -> tuple[dict[int, EventOutcome], dict[int, str]]:
        """The outcomes file's outcomes under ``settings`` (by event index), and every event's
        key there (what the workers replay is kept under it)."""
        known: dict[int, EventOutcome] = {}
        keys: dict[int, str] = {}
        store = self.outcome_store
        if store is None:
            return known, keys
        replayed = store.settings_key(settings)
        for index, event in enumerate(events):
            paths = self._paths.get(event.key)
            if paths is None:
                paths = self._paths[event.key] = event.frame_paths(self._max_frames)
            try:
                digest = store.event_digest(event, paths)
            except FileNotFoundError as exc:
                raise FramesGone(event.key, str(exc)) from exc
            keys[index] = store.key(event, replayed, digest)
            outcome = store.get(keys[index], event)
            if outcome is not None:
                known[index] = outcome
                if self.tracks is not None:
                    self._touched.add(self.tracks.key(settings.motion, digest))
        return known, keys

    def _send(self, generation: int, position: int, index: int, settings: DetectorSettings) -> None:
        n = index % len(self._conns)
        try:
            if self._configured[n] != generation:
                self._conns[n].send(Configure(generation, settings))
                self._configured[n] = generation
            self._conns[n].send(Task(generation, position, index))
        except OSError:
            raise self._gone(n) from None

    def _cancel(self, generation: int) -> None:
        """Tell every worker to drop its queued tasks of generations before ``generation``."""
        for n, conn in enumerate(self._conns):
            try:
                conn.send(Cancel(generation))
            except OSError:
                raise self._gone(n) from None

    def _receive(self, generation: int, done: dict[int, Done]) -> None:
        """Wait for replies; this generation's go into ``done`` (consumed in order)."""
        for n, reply in self._replies():
            if isinstance(reply, Failed):
                raise _failure(reply)
            if not isinstance(reply, Done):
                continue
            self._cpu[n] = reply.cpu_seconds
            self.model_runs += reply.usage.model_runs
            self._touched |= reply.usage.old_tracks
            if reply.generation == generation:
                done[reply.position] = reply
            else:
                self.speculative_replays += 1

    def _replies(self) -> list[tuple[int, Reply]]:
        """The replies waiting, by worker (blocks until one comes); :class:`WorkerError` if a
        worker is gone."""
        ready = wait(self._conns)
        replies: list[tuple[int, Reply]] = []
        for n, conn in enumerate(self._conns):
            while conn in ready and conn.poll():
                try:
                    reply = conn.recv()
                except (EOFError, OSError):
                    raise self._gone(n, replies) from None
                replies.append((n, reply))
        return replies

    def _gone(self, n: int, replies: Sequence[tuple[int, Reply]] = ()) -> Exception:
        """The error for worker ``n``, whose pipe broke (it exited, or is about to): the
        failure it reported before it went (among ``replies`` or still in the pipe), or its
        exit code."""
        failed = [r for k, r in replies if k == n and isinstance(r, Failed)]
        conn = self._conns[n]
        try:
            while not failed and conn.poll():
                reply = conn.recv()
                if isinstance(reply, Failed):
                    failed.append(reply)
        except (EOFError, OSError):
            pass
        if failed:
            return _failure(failed[0])
        proc = self._procs[n]
        proc.join(QUIT_SECONDS)
        return WorkerError(f"replay worker {proc.name} exited (exit code {proc.exitcode})")

    def close(self) -> None:
        """Let the workers finish their replay, then merge their answers and tracks into the
        files (speculative ones included: they are right)."""
        try:
            for conn in self._conns:
                try:
                    conn.send(Quit())
                except OSError:
                    pass  # it ended already (after an event's files went away): drained below
            deadline = time.monotonic() + QUIT_SECONDS
            for n, conn in enumerate(self._conns):
                while time.monotonic() < deadline:  # drained: a worker may be sending a reply
                    if not wait([conn], deadline - time.monotonic()):
                        break
                    try:
                        reply = conn.recv()
                    except (EOFError, OSError):
                        break  # it closed its end (or ended): done
                    if isinstance(reply, Failed) and reply.gone is None:
                        raise _failure(reply)
                    if isinstance(reply, Done):
                        self._cpu[n] = reply.cpu_seconds
                        self.speculative_replays += 1
                        self.model_runs += reply.usage.model_runs
                        self._touched |= reply.usage.old_tracks
                self._procs[n].join(max(0.0, deadline - time.monotonic()))
            failed = [p for p in self._procs if p.exitcode != 0]
            if failed:
                raise WorkerError(f"replay worker {failed[0].name} exited ({failed[0].exitcode})")
            for n in range(len(self._procs)):
                folder = self._scratch / str(n)
                if self.answers is not None and (folder / "answers.sqlite").is_file():
                    self.answers.merge(folder / "answers.sqlite")
                if self.tracks is not None and (folder / "tracks.sqlite").is_file():
                    self.tracks.merge(folder / "tracks.sqlite")
            if self.tracks is not None:
                self.tracks.touch(self._touched)
        finally:
            self._end()

    def _end(self) -> None:
        """End every worker still running and remove the scratch files."""
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self._procs:
            proc.join(QUIT_SECONDS)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self._conns:
            conn.close()
        shutil.rmtree(self._scratch, ignore_errors=True)

    def __enter__(self) -> ReplayPool:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None or issubclass(kind, FramesGone):
            self.close()  # the workers' answers and tracks are kept for the run without it
        else:
            self._end()
