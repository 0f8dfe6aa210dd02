"""The nightly tune inside the running detector (real Mosquitto, a real ``homesec tune`` child).

The run records its result, which the detector publishes on ``training/tune`` for the weekly
report; the answers it leaves make the owner's own run warm (no model run); it runs at the
lowest priority, first in line for the OOM killer; a failed, timed-out or interrupted run is
counted and changes nothing in the running detector.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from homesec.contract import TUNE_RESULT, SystemSetting, TuneResult
from homesec.settings import BrokerSettings, load_settings
from homesec_detector import tune
from homesec_detector.service import DetectorService
from homesec_detector.settings import DetectorSettings
from homesec_detector.trainset import TrainingEvent
from homesec_detector.tune_identity import run_basis
from homesec_detector.tune_result import RESULT_FILE
from homesec_detector.tune_schedule import (
    BASIS_FILE,
    DEFAULT_TRAINING_SET,
    NightlyTune,
    TuneScheduleSettings,
    next_night,
    tune_command,
)
from support import Collector, bus_metric, wait_until


@pytest.fixture
def local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/London")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _local(text: str) -> float:
    return time.mktime(time.strptime(text, "%Y-%m-%d %H:%M:%S"))


def _shown(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at))


@pytest.mark.usefixtures("local_time")
def test_the_next_night_is_the_next_time_the_local_clock_shows_the_hour() -> None:
    assert _shown(next_night(_local("2026-12-03 02:59:59"), 3)) == "2026-12-03 03:00"
    assert _shown(next_night(_local("2026-12-03 03:00:00"), 3)) == "2026-12-04 03:00"
    assert _shown(next_night(_local("2026-12-31 23:30:00"), 3)) == "2027-01-01 03:00"
    # the clocks go forward at 01:00 on 2027-03-28: 23 hours from 00:00 to 00:00
    after = next_night(_local("2027-03-27 12:00:00"), 3)
    assert _shown(after) == "2027-03-28 03:00"
    assert after - _local("2027-03-27 12:00:00") == 14 * 3600.0
    # an hour that does not exist that night (01:00-02:00 is skipped) still comes, once
    skipped = next_night(_local("2027-03-28 00:30:00"), 1)
    assert 0 < skipped - _local("2027-03-28 00:30:00") <= 3600.0


def test_the_workers_are_tunes_own_default_unless_set() -> None:
    """Unset: the CLI's default (CPUs and memory at run time); set: exactly that many."""
    default = tune_command("/set", TuneScheduleSettings())
    assert "--jobs" not in default
    assert default[-3:] == ["--low-priority", "--frame-memory", "64"]
    two = tune_command("/set", TuneScheduleSettings(jobs=2))
    assert two[two.index("--jobs") + 1] == "2"
    with pytest.raises(ValueError, match="jobs"):
        TuneScheduleSettings(jobs=0)


def test_the_first_run_waits_for_the_night_once_a_result_is_recorded(tmp_path: Path) -> None:
    settings = TuneScheduleSettings(hour=3, first_run_delay_seconds=600)
    nightly = NightlyTune(settings, tmp_path, tmp_path / RESULT_FILE)
    now = time.time()
    assert nightly.first_run_at(now) == now + 600
    (tmp_path / RESULT_FILE).parent.mkdir(parents=True)
    (tmp_path / RESULT_FILE).write_text("{}")
    assert nightly.first_run_at(now) == next_night(now, 3)
    assert nightly.training_set == str(tmp_path / DEFAULT_TRAINING_SET)

    # with the basis known: a result of another code or settings brings the first run forward
    basis = ["code-and-settings-1"]
    aware = NightlyTune(settings, tmp_path, tmp_path / RESULT_FILE, basis=lambda: basis[0])
    assert aware.first_run_at(now) == now + 600  # recorded by a version that kept no basis
    (tmp_path / BASIS_FILE).write_text("code-and-settings-1")
    assert aware.first_run_at(now) == next_night(now, 3)
    basis[0] = "code-and-settings-2"  # an upgrade of the replay's code, or new settings
    assert aware.first_run_at(now) == now + 600


def test_a_recorded_run_leaves_the_basis_the_service_computes(
    training_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tune --record`` writes the basis of its settings; the service, under the same
    environment, computes the same one (so the next start waits for the night), and another
    setting gives another."""
    monkeypatch.setenv("HOMESEC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HOMESEC_DETECTOR_MOTION__DELTA_THRESH", "9")
    argv = [str(training_set), "--record", "--json", "--jobs", "1", "--max-frames", "30"]
    assert tune.main(argv) == 0
    settings = load_settings(DetectorSettings)
    recorded = (tmp_path / "data" / BASIS_FILE).read_text()
    assert recorded == run_basis(settings)
    nightly = NightlyTune(
        settings.tune,
        settings.data_dir,
        settings.data_dir / RESULT_FILE,
        basis=lambda: run_basis(settings),
    )
    now = time.time()
    assert nightly.first_run_at(now) == next_night(now, settings.tune.hour)
    monkeypatch.setenv("HOMESEC_DETECTOR_MOTION__DELTA_THRESH", "10")
    assert run_basis(load_settings(DetectorSettings)) != recorded


def test_a_set_without_a_label_is_skipped_not_failed(tmp_path: Path) -> None:
    outcomes: list[str] = []
    root = tmp_path / "training"
    settings = TuneScheduleSettings(training_set=str(root))
    nightly = NightlyTune(
        settings, tmp_path, tmp_path / RESULT_FILE, on_outcome=lambda o, s: outcomes.append(o)
    )
    assert nightly.run_once() == "skipped"  # no folder yet
    (root / "occupied" / "front" / "2026-12-03" / "front-1").mkdir(parents=True)
    assert nightly.run_once() == "skipped"  # an event still being uploaded
    assert outcomes == ["skipped", "skipped"]


@pytest.fixture
def start_detector(
    broker_settings: BrokerSettings,
    run_detector: Callable[[DetectorSettings], DetectorService],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., DetectorService]:
    for name in [n for n in os.environ if n.startswith("HOMESEC_")]:
        monkeypatch.delenv(name)  # the child reads the detector's settings from its environment

    def start(**schedule: Any) -> DetectorService:
        settings = DetectorSettings(
            broker=broker_settings,
            metrics_port=0,
            data_dir=tmp_path / "data",
            ha_discovery=False,
            default_armed=True,
            tune=TuneScheduleSettings(first_run_delay_seconds=0, **schedule),
        )
        return run_detector(settings)

    return start


def test_the_nightly_run_publishes_its_result_and_leaves_the_owners_run_warm(
    start_detector: Callable[..., DetectorService],
    make_bus: Any,
    training_set: Path,
    events: list[TrainingEvent],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = training_set
    client = make_bus("client", start=False)
    results: Collector[TuneResult] = Collector()
    client.subscribe(TUNE_RESULT, results)
    client.start()
    assert client.wait_connected(10)

    service = start_detector(training_set=str(root))
    pid = wait_until(lambda: service.nightly_tune.child_pid, 10)
    assert pid is not None

    def nice() -> int:  # field 19 of /proc/PID/stat, the 17th after the command's ")"
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])

    wait_until(lambda: nice() == 19, 20)  # set by the child as it starts
    assert Path(f"/proc/{pid}/oom_score_adj").read_text().strip() == "1000"

    result = results.wait_for(1, timeout=240)[0]
    assert result.events == len(events)
    assert result.false_alerts >= 1 and result.proposes_change  # the set's false alert
    assert bus_metric(service.bus, "homesec_detector_tune_runs_total", outcome="ok") == 1
    assert bus_metric(service.bus, "homesec_detector_tune_last_run_seconds") > 0
    assert bus_metric(service.bus, "homesec_detector_tune_last_success_timestamp_seconds") > 0
    assert service.state.get(SystemSetting.ARMED)  # the run changed nothing in the detector

    # the owner's run on the same set right after: every event's outcome from the nightly run
    monkeypatch.setenv("HOMESEC_DATA_DIR", str(tmp_path / "data"))
    assert tune.main([str(root), "--json", "--jobs", "1"]) == 0
    owners = json.loads(capsys.readouterr().out)
    assert owners["model_runs"] == 0
    assert owners["outcomes_from_disk"] == owners["replays"] > 0  # nothing replayed again
    assert owners["proposal"]["env"] == result.env


def test_a_failed_run_is_counted_and_a_stop_ends_a_run_in_progress(
    start_detector: Callable[..., DetectorService],
    training_set: Path,
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken"  # a label with no frame: tune finds no complete event
    (broken / "occupied" / "front" / "2026-12-03" / "front-1").mkdir(parents=True)
    (broken / "occupied" / "front" / "2026-12-03" / "front-1" / "label.json").write_text("{}")
    service = start_detector(training_set=str(broken))
    wait_until(
        lambda: bus_metric(service.bus, "homesec_detector_tune_runs_total", outcome="failed"), 60
    )
    assert not (tmp_path / "data" / RESULT_FILE).exists()
    assert service.state.get(SystemSetting.ARMED)
    service.close()

    root = training_set
    service = start_detector(training_set=str(root))
    pid = wait_until(lambda: service.nightly_tune.child_pid, 10)
    started = time.monotonic()
    service.close()
    assert time.monotonic() - started < 10
    assert service.nightly_tune.child_pid is None
    assert not Path(f"/proc/{pid}").exists()  # terminated and reaped
    assert bus_metric(service.bus, "homesec_detector_tune_runs_total", outcome="ok") == 0
    assert bus_metric(service.bus, "homesec_detector_tune_runs_total", outcome="failed") == 0
    assert not (tmp_path / "data" / RESULT_FILE).exists()


def test_a_run_past_its_time_is_stopped_and_counted(
    start_detector: Callable[..., DetectorService], training_set: Path
) -> None:
    root = training_set
    service = start_detector(training_set=str(root), timeout_seconds=1.0)
    wait_until(
        lambda: bus_metric(service.bus, "homesec_detector_tune_runs_total", outcome="timeout"), 30
    )
    assert service.nightly_tune.child_pid is None
    assert 1.0 <= bus_metric(service.bus, "homesec_detector_tune_last_run_seconds") < 10
