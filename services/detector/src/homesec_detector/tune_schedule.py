"""The nightly tune: the detector runs ``homesec tune --record`` on the training set once a day.

Why: the weekly report's line "would tune propose a change" then speaks of this week's labels,
not of the last time the owner ran tune by hand; and the run leaves the model's answers and the
motion tracks in ``<data_dir>/tune/``, so the owner's own ``homesec tune`` on the same set is a
warm run (seconds, docs/performance.md) instead of a cold one (minutes on a Pi).

The run is a child process (its memory is given back when it ends) at the lowest CPU priority
and the first process the kernel kills when memory runs out (``homesec tune --low-priority``),
under the detector's own environment (its settings) with the service's data dir. It only records
a result: nothing changes the running detector, whatever the run does. A run that fails, times
out or is killed is logged and counted, and tried again the next night. A training set that
holds no label yet is skipped, not a failure.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

log = logging.getLogger("homesec_detector.tune_schedule")

BASIS_FILE = "tune/result-basis.txt"
"""Under the data dir, beside the recorded result: what its outcomes were replayed under
(:func:`~homesec_detector.tune_identity.run_basis`), written by ``tune --record``."""

DEFAULT_TRAINING_SET = Path("training") / "training"
"""Under the data dir: the uploader's folder in local mode (``local_dir`` <data_dir>/training,
``key_prefix`` training); the same path in the detector's container (docker-compose.yml)."""


class TuneScheduleSettings(BaseModel):
    """When and on what the detector runs ``homesec tune --record`` (docs/training.md)."""

    enabled: bool = Field(True, description="Run homesec tune --record once a day")
    hour: int = Field(3, ge=0, le=23, description="Local hour (TZ) at which the nightly run starts")
    training_set: str | None = Field(
        None,
        min_length=1,
        description="Folder or s3://bucket/prefix; unset: <data_dir>/training/training, the "
        "uploader's local folder",
    )
    jobs: int | None = Field(
        None,
        ge=1,
        le=8,
        description="Worker processes (memory: ~150 MB each); unset: tune's default, the usable "
        "CPUs up to 4 and one per 400 MB of half the memory available when the run starts",
    )
    frame_memory_mb: int = Field(
        64, ge=8, le=4096, description="Frames kept in memory between replays"
    )
    timeout_seconds: float = Field(
        6 * 3600.0, gt=0, description="A run still going after this long is stopped"
    )
    first_run_delay_seconds: float = Field(
        900.0,
        ge=0,
        description="With no result recorded yet, the first run starts this long after the "
        "detector instead of at night",
    )


def next_night(now: float, hour: int) -> float:
    """The next time (epoch seconds) after ``now`` when the local clock shows ``hour``:00."""
    day = time.localtime(now)
    for days_ahead in (0, 1, 2):  # 2: a day that skips the hour (a DST change at that hour)
        at = time.mktime((day.tm_year, day.tm_mon, day.tm_mday + days_ahead, hour, 0, 0, 0, 0, -1))
        if at > now:
            return at
    return now + 86400.0


def tune_command(training_set: str, settings: TuneScheduleSettings) -> list[str]:
    """The child's command line."""
    return [
        sys.executable,
        "-m",
        "homesec.cli",
        "tune",
        training_set,
        "--record",
        "--json",
        "--low-priority",
        *(() if settings.jobs is None else ("--jobs", str(settings.jobs))),
        "--frame-memory",
        str(settings.frame_memory_mb),
    ]


class NightlyTune:
    """Runs the tune child on its own thread: at the configured hour every night, and once
    ``first_run_delay_seconds`` after start when no result is recorded yet."""

    def __init__(
        self,
        settings: TuneScheduleSettings,
        data_dir: Path,
        result_file: Path,
        *,
        on_outcome: Callable[[str, float], None] | None = None,
        clock: Callable[[], float] = time.time,
        basis: Callable[[], str] | None = None,
    ) -> None:
        """``basis``: what a run now would replay under (``tune_identity.run_basis`` of the
        detector's settings); a recorded result of another basis (the replay's code upgraded,
        the settings changed) brings the first run forward as if none were recorded."""
        self.settings = settings
        self.data_dir = data_dir
        self.result_file = result_file
        self.basis_file = data_dir / BASIS_FILE
        self._basis = basis
        self.training_set = settings.training_set or str(data_dir / DEFAULT_TRAINING_SET)
        self._on_outcome = on_outcome
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._child_lock = threading.Lock()

    def start(self) -> None:
        if self.settings.enabled and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="nightly-tune", daemon=True)
            self._thread.start()
            log.info(
                "nightly tune scheduled",
                extra={"hour": self.settings.hour, "training_set": self.training_set},
            )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the schedule and a run in progress (the child is terminated)."""
        self._stop.set()
        with self._child_lock:
            child = self._child
        if child is not None and child.poll() is None:
            child.terminate()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def child_pid(self) -> int | None:
        """The running child's process id (None between runs)."""
        with self._child_lock:
            return None if self._child is None else self._child.pid

    def has_labels(self) -> bool:
        """False for a local set with no complete event yet (``label.json`` is written last);
        an S3 set is left to the run to read."""
        if self.training_set.startswith("s3://"):
            return True
        labels = Path(self.training_set).glob("*/*/*/*/label.json")
        return next(labels, None) is not None

    def first_run_at(self, now: float) -> float:
        """At night when the recorded result is of the current basis; else (none, or its
        outcomes are stale: the owner's next run would replay everything) soon after start."""
        if self.result_file.exists() and self._recorded_basis_is_current():
            return next_night(now, self.settings.hour)
        return now + self.settings.first_run_delay_seconds

    def _recorded_basis_is_current(self) -> bool:
        if self._basis is None:
            return True
        try:
            recorded = self.basis_file.read_text(encoding="utf-8").strip()
        except OSError:
            recorded = ""  # recorded by a version that kept no basis
        current = self._basis()
        if recorded != current:
            log.info("tune result of another code or settings: the first run comes early")
        return recorded == current

    def _run(self) -> None:
        at = self.first_run_at(self._clock())
        while not self._stop.wait(max(0.0, at - self._clock())):
            try:
                self.run_once()
            except Exception:  # a bug here must not end the schedule (nor the detector)
                log.exception("nightly tune failed")
                self._report("failed", 0.0)
            at = next_night(self._clock(), self.settings.hour)

    def run_once(self) -> str:
        """One run; its outcome: ``ok``, ``skipped`` (no training set yet), ``failed``,
        ``timeout`` or ``stopped``."""
        if not self.has_labels():
            log.info(
                "nightly tune skipped: no label yet (with the uploader in S3 mode, "
                "HOMESEC_UPLOADER_LOCAL_COPY=true keeps a copy of the set here)",
                extra={"path": self.training_set},
            )
            self._report("skipped", 0.0)
            return "skipped"
        env = dict(os.environ, HOMESEC_DATA_DIR=str(self.data_dir))
        started = time.monotonic()
        with self._child_lock:
            if self._stop.is_set():
                return "stopped"
            self._child = subprocess.Popen(
                tune_command(self.training_set, self.settings),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        child = self._child
        try:
            out, err = child.communicate(timeout=self.settings.timeout_seconds)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            took = time.monotonic() - started
            log.warning("nightly tune timed out", extra={"seconds": round(took, 1)})
            self._report("timeout", took)
            return "timeout"
        finally:
            with self._child_lock:
                self._child = None
        took = time.monotonic() - started
        if self._stop.is_set():
            return "stopped"
        if child.returncode != 0:
            why = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            log.warning(
                "nightly tune failed",
                extra={"returncode": child.returncode, "error": why[0][:300], "seconds": took},
            )
            self._report("failed", took)
            return "failed"
        try:
            result = json.loads(out)
            figures = {
                "events": result["training_set_events"],
                "proposes_change": bool(result["proposal"]["changes"]),
                "model_runs": result["model_runs"],
                "answers_from_disk": result["answers_from_disk"],
            }
        except (ValueError, KeyError, TypeError):
            figures = {}
        log.info("nightly tune done", extra={"seconds": round(took, 1), **figures})
        self._report("ok", took)
        return "ok"

    def _report(self, outcome: str, seconds: float) -> None:
        if self._on_outcome is not None:
            self._on_outcome(outcome, seconds)
