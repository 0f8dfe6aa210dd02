"""One replay worker of ``homesec tune --jobs N`` (:mod:`homesec_detector.tune_pool`).

A worker is a process with its own :class:`~homesec_detector.tune_replay.Replayer` (its own
models, loaded on first use, its share of the frame memory, its motion tracks in memory) that
replays the events the pool sends it, one at a time, in the order they come. The answers and
tracks files of earlier runs are only read here (read-only connections); what a worker computes
goes into its own scratch files, which the pool merges into the real ones when the run ends (one
writer per file). Each replay reports what it used (:class:`Usage`), so the pool counts the
replays it consumed exactly as one process would, whichever worker did them and whatever it had
computed before speculatively.
"""

from __future__ import annotations

import signal
import traceback
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from time import process_time

import cv2

from homesec_detector.motion import MotionResult, MotionSettings
from homesec_detector.person_decoders import Detection
from homesec_detector.settings import DetectorSettings
from homesec_detector.trainset import TrainingEvent
from homesec_detector.tune_cache import ModelAnswers
from homesec_detector.tune_frames import FrameCache
from homesec_detector.tune_replay import EventOutcome, FramesGone, Replayer
from homesec_detector.tune_tracks import MotionTracks


@dataclass(frozen=True)
class Usage:
    """What one replay used: the pool's counts are unions of these over consumed replays."""

    new_answers: frozenset[str]
    """Answer keys it needed that the answers file did not hold when the run began."""
    old_answers: frozenset[str]
    """Answer keys it read from that file."""
    old_tracks: frozenset[str]
    """Its motion track's key, when the track came from the tracks file of an earlier run."""
    model_runs: int
    """Model answers this replay computed itself (it may have needed fewer: speculation)."""


@dataclass(frozen=True)
class Configure:
    """From now on (generation ``generation``), replay under ``settings``."""

    generation: int
    settings: DetectorSettings


@dataclass(frozen=True)
class Task:
    """Replay ``events[index]``: position ``position`` of generation ``generation``'s order."""

    generation: int
    position: int
    index: int


@dataclass(frozen=True)
class Cancel:
    """Drop the tasks of generations before ``generation`` (their call has returned)."""

    generation: int


@dataclass(frozen=True)
class Quit:
    """Close the scratch files and exit (tasks still queued are dropped)."""


@dataclass(frozen=True)
class Done:
    generation: int
    position: int
    outcome: EventOutcome
    usage: Usage
    cpu_seconds: float
    """The worker's CPU time so far (``time.process_time``)."""


@dataclass(frozen=True)
class Skipped:
    """A task of a generation that a newer one replaced (its call already returned)."""

    generation: int
    position: int


@dataclass(frozen=True)
class Failed:
    message: str
    gone: str | None = None
    """The event whose files went away (:class:`~homesec_detector.tune_replay.FramesGone`)."""


Message = Configure | Task | Cancel | Quit
Reply = Done | Skipped | Failed


class LayeredAnswers:
    """The answers file read-only, under this worker's own answers (kept in memory and in its
    scratch file); records which keys the current replay used."""

    def __init__(self, main: ModelAnswers | None, scratch: ModelAnswers | None) -> None:
        self.main = main
        self.scratch = scratch
        self.mine: dict[str, list[Detection]] = {}
        self.read: dict[str, list[Detection]] = {}
        self.new: set[str] = set()
        self.old: set[str] = set()

    def begin(self) -> None:
        """A new replay: forget what the last one used."""
        self.new, self.old = set(), set()

    def get(self, key: str) -> list[Detection] | None:
        found = self.mine.get(key)
        if found is not None:
            self.new.add(key)
            return found
        found = self.read.get(key)
        if found is None and self.main is not None:
            found = self.main.get(key)
            if found is not None:
                self.read[key] = found
        if found is not None:
            self.old.add(key)
        return found

    def put(self, key: str, found: list[Detection]) -> None:
        self.mine[key] = found
        self.new.add(key)
        if self.scratch is not None:
            self.scratch.put(key, found)


class LayeredTracks:
    """The tracks file read-only, under this worker's scratch tracks file."""

    def __init__(self, main: MotionTracks, scratch: MotionTracks) -> None:
        self.main = main
        self.scratch = scratch
        self.old: set[str] = set()
        """Keys read from the tracks file (every key is looked up there before it is kept)."""

    def key(self, settings: MotionSettings, frames_digest: str) -> str:
        return self.scratch.key(settings, frames_digest)

    def get(self, key: str) -> list[MotionResult | None] | None:
        found = self.scratch.get(key)
        if found is not None:
            return found
        found = self.main.get(key)
        if found is not None:
            self.old.add(key)
        return found

    def put(self, key: str, results: Sequence[MotionResult | None]) -> None:
        self.scratch.put(key, results)


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker needs, sent to it when it starts (nothing here is open yet)."""

    events: Sequence[TrainingEvent]
    base: DetectorSettings
    fps: float
    max_frames: int | None
    check_ms: float
    frame_memory: int
    scratch: Path
    """This worker's folder for its scratch files."""
    answers: Path | None = None
    identity: str = ""
    tracks: Path | None = None


class Worker:
    """A worker's replayer and stores (opened in the worker process)."""

    def __init__(self, job: WorkerJob) -> None:
        self.job = job
        self.answers = LayeredAnswers(
            ModelAnswers(job.answers, job.identity, readonly=True) if job.answers else None,
            ModelAnswers(job.scratch / "answers.sqlite", job.identity) if job.answers else None,
        )
        self.tracks: LayeredTracks | None = None
        if job.tracks is not None:
            self.tracks = LayeredTracks(
                MotionTracks(job.tracks, readonly=True),
                MotionTracks(job.scratch / "tracks.sqlite"),
            )
        self.replayer = Replayer(
            job.base,
            job.fps,
            max_frames=job.max_frames,
            check_ms=job.check_ms,
            answers=self.answers,
            tracks=self.tracks,
            frame_cache=FrameCache(job.frame_memory),
        )

    def replay(self, index: int, settings: DetectorSettings) -> tuple[EventOutcome, Usage]:
        event = self.job.events[index]
        replayer = self.replayer
        replayer.person_cache.clear()  # every lookup goes through the stores, which record it
        self.answers.begin()
        before = replayer.model_checks
        outcome = replayer.outcome(event, settings)
        old_tracks: frozenset[str] = frozenset()
        if self.tracks is not None:
            track = replayer.motion_cache[settings.motion.model_dump_json()][event.key]
            if track.key in self.tracks.old:
                old_tracks = frozenset((track.key,))
        usage = Usage(
            frozenset(self.answers.new),
            frozenset(self.answers.old),
            old_tracks,
            replayer.model_checks - before,
        )
        return outcome, usage

    def close(self) -> None:
        """Commit the scratch files (the pool merges them) and close every file."""
        stores: list[ModelAnswers | MotionTracks | None] = [self.answers.main, self.answers.scratch]
        if self.tracks is not None:
            stores += [self.tracks.main, self.tracks.scratch]
        for store in stores:
            if store is not None:
                store.close()


def serve(conn: Connection, job: WorkerJob) -> None:
    """A worker process's loop: tasks in, replies out, until :class:`Quit` or the pool goes.
    Ctrl-C is the pool's to handle (it ends the workers); an error is replied, then the
    worker exits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)  # one core per worker: the pool is the parallelism
    worker: Worker | None = None
    inbox: deque[Message] = deque()
    latest = 0
    settings: DetectorSettings | None = None
    try:
        worker = Worker(job)
        while True:
            if not inbox:
                inbox.append(conn.recv())
            while conn.poll():
                inbox.append(conn.recv())
            if any(isinstance(m, Quit) for m in inbox):
                break
            latest = max(
                [latest, *(m.generation for m in inbox if isinstance(m, Configure | Cancel))]
            )
            message = inbox.popleft()
            if isinstance(message, Configure):
                settings = message.settings
            elif isinstance(message, Task):
                if message.generation < latest or settings is None:
                    conn.send(Skipped(message.generation, message.position))
                    continue
                outcome, usage = worker.replay(message.index, settings)
                done = Done(message.generation, message.position, outcome, usage, process_time())
                conn.send(done)
        worker.close()
    except EOFError:
        pass  # the pool is gone
    except FramesGone as exc:
        try:
            if worker is not None:
                worker.close()  # its answers and tracks so far stay usable
            conn.send(Failed(exc.error, gone=exc.key))
        except OSError:
            pass
    except BaseException:
        try:
            conn.send(Failed(traceback.format_exc()))
        except OSError:
            pass
    finally:
        conn.close()
