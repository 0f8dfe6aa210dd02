"""An event whose files go away during a ``homesec tune`` run (the uploader relabelled it, or
removed it with the bucket's copy) is left out and named; the run goes on and proposes what a
run on the set without it proposes, in one process and over two workers."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from tune_support import FRAMES, SAME

from homesec_detector.settings import DetectorSettings
from homesec_detector.trainset import TrainingEvent, load_events
from homesec_detector.tune import KeptFiles, Progress, run_tune

DECIDED = tuple(k for k in SAME if k != "replays")  # the retry replays more, decides the same


class RemovingAt(Progress):
    """A silent progress bar that removes an event's folder at the ``at``-th replay."""

    def __init__(self, folder: Path, at: int) -> None:
        super().__init__(io.StringIO(), enabled=False)
        self.folder, self.at, self.steps = folder, at, 0

    def step(self) -> None:
        super().step()
        self.steps += 1
        if self.steps == self.at:
            shutil.rmtree(self.folder)


def _tune(
    events: list[TrainingEvent],
    folder: Path,
    *,
    jobs: int = 1,
    outcomes: bool = True,
    progress: Progress | None = None,
    answers: Path | None = None,
) -> dict:
    """A tune keeping its files in ``folder`` (``answers``: a model answers file to start
    from, so the replays run without the model)."""
    folder.mkdir(parents=True)
    if answers is not None:
        shutil.copy(answers, folder / "answers.sqlite")
    settings = DetectorSettings()
    kept = KeptFiles.in_folder(folder, settings, fps=10.0, max_frames=FRAMES, outcomes=outcomes)
    try:
        return run_tune(
            events, settings, fps=10.0, max_frames=FRAMES, kept=kept, jobs=jobs, progress=progress
        )
    finally:
        kept.close()


@pytest.fixture(scope="module")
def without_last(training_set: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """A run on the set less its last event, and the answers file it left."""
    events, _ = load_events(training_set)
    folder = tmp_path_factory.mktemp("reference")
    result = _tune(events[:-1], folder / "kept")
    return result, folder / "kept" / "answers.sqlite"


def _copy(training_set: Path, tmp_path: Path) -> list[TrainingEvent]:
    root = tmp_path / "set"
    shutil.copytree(training_set, root)
    return load_events(root)[0]


def test_an_event_removed_during_the_run_is_left_out_and_named(
    training_set: Path, without_last: tuple[dict, Path], tmp_path: Path
) -> None:
    reference, answers = without_last
    events = _copy(training_set, tmp_path)
    victim = events[-1]  # replayed last: removed while the run replays the third event
    progress = RemovingAt(victim.folder, at=3)
    result = _tune(events, tmp_path / "kept", progress=progress, answers=answers)
    assert progress.steps > len(events)  # it went on after the removal
    assert result["skipped"] == [
        f"{victim.key}: its files went away during the run "
        f"([Errno 2] No such file or directory: '{victim.frame_paths()[0]}')"
    ]
    assert result["training_set_events"] == len(events) - 1
    assert {k: result[k] for k in DECIDED} == {k: reference[k] for k in DECIDED}


@pytest.mark.parametrize("outcomes", [True, False], ids=["found-by-the-pool", "by-a-worker"])
def test_over_two_workers_too(
    training_set: Path, without_last: tuple[dict, Path], tmp_path: Path, outcomes: bool
) -> None:
    """Removed after the set was read: the pool's parent finds it reading the frames' digests
    (with the outcomes file), else the worker that replays it; the other workers' answers and
    tracks are kept for the run without it."""
    reference, answers = without_last
    events = _copy(training_set, tmp_path)
    victim = events[-1]
    shutil.rmtree(victim.folder)
    result = _tune(events, tmp_path / "kept", jobs=2, outcomes=outcomes, answers=answers)
    assert len(result["skipped"]) == 1 and result["skipped"][0].startswith(victim.key)
    assert {k: result[k] for k in DECIDED} == {k: reference[k] for k in DECIDED}
    assert result["model_runs"] == 0  # every answer came from the file
