"""What the tune tests share: a whole tune over files kept in a folder, and what must match."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from homesec_detector.settings import DetectorSettings
from homesec_detector.trainset import TrainingEvent
from homesec_detector.tune import KeptFiles, run_tune

FRAMES = 50
"""Event frames replayed after the pre-roll (the clip set decides well within them)."""

SAME = ("current", "proposal", "removed_false_alerts", "candidates_tried", "replays")
"""What two runs on one set must share, whatever their caches and workers."""


def tune_in(
    events: list[TrainingEvent], folder: Path, jobs: int, *, outcomes: bool = True
) -> dict[str, Any]:
    """``run_tune`` under the default settings keeping its files in ``folder`` (``outcomes``
    False: answers and tracks only, so every replay runs over them)."""
    settings = DetectorSettings()
    kept = KeptFiles.in_folder(folder, settings, fps=10.0, max_frames=FRAMES, outcomes=outcomes)
    try:
        return run_tune(events, settings, fps=10.0, max_frames=FRAMES, kept=kept, jobs=jobs)
    finally:
        kept.close()
