"""``homesec tune --jobs N``: replays spread over worker processes decide as one process does.

On the clip training set: a :class:`ReplayPool` of two workers returns exactly what one
:class:`Replayer` returns for the same candidates and bounds (outcomes, early stops, counts),
a whole tune with two workers proposes the same with the same tables and counts as one process,
the answers and tracks files either leaves are read back by the other with no model run, and a
failing, killed or interrupted run ends every worker.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
from tune_support import FRAMES, SAME, tune_in

from homesec_detector.settings import DetectorSettings
from homesec_detector.trainset import TrainingEvent, load_events
from homesec_detector.tune_cache import ModelAnswers
from homesec_detector.tune_identity import model_identity
from homesec_detector.tune_pool import ReplayPool, WorkerError
from homesec_detector.tune_replay import Bound, EventOutcome, Replayer, Stopped
from homesec_detector.tune_search import Knob, knob_values, replay_order, with_knob
from homesec_detector.tune_tracks import MotionTracks

FRAME_MEMORY = 64 * 2**20


def _stores(folder: Path) -> tuple[ModelAnswers, MotionTracks]:
    settings = DetectorSettings()
    return (
        ModelAnswers(folder / "answers.sqlite", model_identity(settings)),
        MotionTracks(folder / "tracks.sqlite"),
    )


def _pool(events: list[TrainingEvent], folder: Path | None = None) -> ReplayPool:
    answers, tracks = _stores(folder) if folder is not None else (None, None)
    return ReplayPool(
        events,
        DetectorSettings(),
        10.0,
        jobs=2,
        max_frames=FRAMES,
        check_ms=20.0,
        frame_memory=FRAME_MEMORY,
        answers=answers,
        tracks=tracks,
    )


def test_a_pool_returns_what_one_replayer_returns_stops_included(
    events: list[TrainingEvent], tmp_path: Path
) -> None:
    base = DetectorSettings()
    answers, tracks = _stores(tmp_path / "one")
    one = Replayer(base, 10.0, max_frames=FRAMES, check_ms=20.0, answers=answers, tracks=tracks)
    baseline = one.outcomes(events, base)
    assert isinstance(baseline, list)
    must_alert = frozenset(o.key for o in baseline if o.alert and o.occupied)
    fp = sum(o.alert and not o.occupied for o in baseline)
    order = replay_order(baseline, {})
    bounds = [  # a stop first: the full replay after it uses what was replayed past the stop
        Bound(must_alert, (0, -len(must_alert)), order),  # unbeatable: stops at the first event
        Bound(),
        Bound(must_alert, (fp, -len(must_alert)), order),  # the search's first bound
        Bound(must_alert, None, tuple(reversed(order))),
    ]
    deaf = with_knob(base, Knob("evidence", "min_score", 0.99))  # loses every occupied event
    candidates = [base, deaf, *(with_knob(base, k) for k in knob_values(base)[::3])]
    expected: list[list[EventOutcome] | Stopped] = [baseline]
    for settings in candidates:
        for bound in bounds:
            expected.append(one.outcomes(events, settings, bound=bound))
    assert any(isinstance(r, Stopped) and r.lost for r in expected)
    assert any(isinstance(r, Stopped) and not r.lost for r in expected)
    assert sum(isinstance(r, list) for r in expected) > len(candidates)

    with _pool(events, tmp_path / "two") as pool:
        got: list[list[EventOutcome] | Stopped] = [pool.outcomes(events, base)]
        for settings in candidates:
            for bound in bounds:
                got.append(pool.outcomes(events, settings, bound=bound))
        assert got == expected
        assert pool.replays == one.replays
        assert pool.model_checks == one.model_checks > 0
        assert pool.model_runs >= pool.model_checks
        assert pool.speculative_replays > 0  # the stops came with replays in flight
    with _pool(events) as pool, pytest.raises(ValueError):
        pool.outcomes(events[1:], base)


def test_a_tune_with_two_workers_proposes_what_one_process_does(
    events: list[TrainingEvent], tmp_path: Path
) -> None:
    one = tune_in(events, tmp_path / "one", jobs=1, outcomes=False)
    two = tune_in(events, tmp_path / "two", jobs=2, outcomes=False)
    assert one["jobs"] == 1 and two["jobs"] == 2
    assert one["proposal"]["changes"] >= 1 and one["proposal"]["original_table"]
    assert {k: two[k] for k in SAME} == {k: one[k] for k in SAME}
    assert two["model_checks"] == one["model_checks"] > 0
    assert one["speculative_replays"] == 0 and two["model_runs"] >= two["model_checks"]

    # the files two workers left are read back by one process: no model run, same proposal
    # (and the other way round)
    for folder, jobs in ((tmp_path / "two", 1), (tmp_path / "one", 2)):
        again = tune_in(events, folder, jobs, outcomes=False)
        assert {k: again[k] for k in SAME} == {k: one[k] for k in SAME}
        assert again["model_checks"] == 0, (folder, jobs)
        assert again["answers_from_disk"] > 0 and again["tracks_from_disk"] >= len(events)
    answers, _ = _stores(tmp_path / "two")
    assert answers.count() >= one["model_checks"]  # speculative answers are kept too
    answers.close()


def _gone(pids: list[int]) -> bool:
    """Every process of ``pids`` has exited and been reaped (no zombie left behind)."""
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        return False
    return True


def test_an_error_in_a_worker_ends_the_run_with_it(training_set: Path, tmp_path: Path) -> None:
    root = tmp_path / "set"
    shutil.copytree(training_set, root)
    events, _ = load_events(root)
    broken = events[-1].frame_paths(FRAMES)[3]
    broken.unlink()
    broken.mkdir()  # unreadable (a file that went away is left out instead: test_tune_gone)
    with pytest.raises(WorkerError, match="IsADirectoryError"):
        with _pool(events, tmp_path / "files") as pool:
            pids = pool.pids
            pool.outcomes(events, DetectorSettings())
    assert _gone(pids)


def test_a_killed_worker_ends_the_run(events: list[TrainingEvent]) -> None:
    with pytest.raises(WorkerError, match="exited"):
        with _pool(events) as pool:
            pids = pool.pids
            os.kill(pids[1], signal.SIGKILL)
            pool.outcomes(events, DetectorSettings())
    assert _gone(pids)


def test_ctrl_c_ends_every_worker(events: list[TrainingEvent]) -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with _pool(events) as pool:
            pids = pool.pids
            pool.outcomes(events, DetectorSettings(), progress=interrupt)
    assert _gone(pids)


def test_the_default_jobs_leave_a_small_machine_its_memory():
    """On a 512 MB Pi (~300 MB available beside the stack) the default is the in-process run;
    with plenty of memory it is the CPUs (at most 4)."""
    from homesec_detector.tune_pool import MAX_DEFAULT_JOBS, WORKER_MEMORY_BYTES, default_jobs

    assert default_jobs(available=300 * 2**20) == 1
    assert default_jobs(available=0) == 1
    cpus = len(os.sched_getaffinity(0))
    assert default_jobs(available=64 * 2**30) == min(MAX_DEFAULT_JOBS, cpus)
    assert default_jobs(available=4 * WORKER_MEMORY_BYTES) == min(2, MAX_DEFAULT_JOBS, cpus)


def test_available_memory_is_the_containers_when_its_cgroup_leaves_less(tmp_path: Path) -> None:
    """A container's ``mem_limit`` (cgroup v2 ``memory.max``) bounds what the workers may take:
    /proc/meminfo inside a container shows the host's memory."""
    from homesec_detector.tune_pool import available_memory_bytes

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 4000000 kB\nMemAvailable: 3000000 kB\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    assert available_memory_bytes(meminfo, cgroup) == 3000000 * 1024  # no cgroup files
    (cgroup / "memory.max").write_text("max\n")
    (cgroup / "memory.current").write_text(f"{100 * 2**20}\n")
    assert available_memory_bytes(meminfo, cgroup) == 3000000 * 1024  # no limit
    (cgroup / "memory.max").write_text(f"{512 * 2**20}\n")
    assert available_memory_bytes(meminfo, cgroup) == 412 * 2**20  # the limit less what is used
    (cgroup / "memory.current").write_text(f"{600 * 2**20}\n")
    assert available_memory_bytes(meminfo, cgroup) == 0  # over it: nothing to give
    meminfo.unlink()
    (cgroup / "memory.current").write_text(f"{256 * 2**20}\n")
    assert available_memory_bytes(meminfo, cgroup) == 256 * 2**20
    (cgroup / "memory.max").unlink()
    assert available_memory_bytes(meminfo, cgroup) is None
