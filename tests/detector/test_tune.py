"""``homesec tune`` on a training set made of the evaluation clips, from a folder and from S3.

Three people walk in (occupied), a small far-away figure was labelled *unoccupied* by the owner
on purpose (the false alert to remove) and a light ramp in an empty scene: the proposal must
remove the false alert and keep alerting on every occupied event, under the detector's own code
path (the proposal, applied to a fresh replay without caches, decides the same). Two runs on
one data dir take turns with its kept files.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from homesec.files import FileLock
from homesec_detector import tune
from homesec_detector.settings import DetectorSettings
from homesec_detector.trainset import load_events
from homesec_detector.tune_outcomes import OUTCOMES_FILE
from homesec_detector.tune_replay import Replayer
from homesec_detector.tune_search import Knob, with_knob

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "uploader"))
from uploader_support import S3Server, s3_with_bucket

BUCKET = "training-bucket"
FALSE_ALERT = "unoccupied/front/2026-11-25/front-person-man-green-traffic-14"


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own data dir (tune keeps the model's answers there)."""
    monkeypatch.setenv("HOMESEC_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    server = s3_with_bucket(BUCKET)
    yield server
    server.stop()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert tune.main([*argv, "--json", "--max-frames", "50"]) == 0
    return json.loads(capsys.readouterr().out)


def test_tune_from_a_folder_removes_the_false_alert_keeps_every_occupied_event(
    training_set: Path,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOMESEC_DATA_DIR", str(tmp_path / "data"))
    env_file = tmp_path / ".env"
    env_file.write_text("# mine\nHOMESEC_CAMERA_FPS=10\nHOMESEC_DETECTOR_MOTION__DELTA_THRESH=5\n")
    result = _run(capsys, str(training_set), "--apply", str(env_file), "--record")
    current, proposal = result["current"], result["proposal"]
    assert result["training_set_events"] == 5
    assert current["false_alerts"] == [FALSE_ALERT]
    assert current["alert"]["tp"] == 3 and current["recall"] == 1.0
    assert proposal["changes"] >= 1
    assert proposal["false_alerts"] == [] and proposal["alert"]["fp"] == 0
    assert proposal["alert"]["tp"] == 3 and proposal["missed"] == []
    assert result["removed_false_alerts"] == [FALSE_ALERT]
    # the original's table: rows motion_model, person, actual
    assert {"motion_model": 1, "person": 1, "actual": 0, "count": 1} in current["original_table"]

    # --apply: the proposal is in the env file, the other lines kept
    text = env_file.read_text()
    assert text.startswith("# mine\nHOMESEC_CAMERA_FPS=10\n")
    for name, value in proposal["env"].items():
        assert f"{name}={value}" in text.splitlines()
    assert text.count("HOMESEC_DETECTOR_MOTION__DELTA_THRESH=") == 1

    # --record: the summary the detector publishes for the weekly report
    recorded = json.loads((tmp_path / "data" / tune.RESULT_FILE).read_text())
    assert recorded["proposes_change"] is True and recorded["false_alerts_removed"] == 1

    # the proposal, replayed from scratch (no caches), decides the same: same code path
    events, _ = load_events(training_set)
    settings = DetectorSettings()
    for name, value in proposal["env"].items():
        block, field = name.removeprefix("HOMESEC_DETECTOR_").lower().split("__")
        settings = with_knob(settings, Knob(block, field, json.loads(value)))
    fresh = Replayer(settings, 10.0, max_frames=50).outcomes(events, settings, cached=False)
    assert isinstance(fresh, list)
    assert {o.key for o in fresh if o.alert} == {e.key for e in events if e.occupied}

    # deterministic: a second run proposes exactly the same, every event's outcome read back
    # from the first run's outcomes file (nothing replayed, no model run)
    again = _run(capsys, str(training_set))
    assert again["proposal"]["env"] == proposal["env"] and again["current"] == result["current"]
    assert result["model_checks"] > 0 and again["model_checks"] == 0
    assert result["outcomes_from_disk"] == 0
    assert again["outcomes_from_disk"] == again["replays"] == result["replays"]
    assert again["answers_from_disk"] == again["tracks_from_disk"] == 0
    # without the outcomes (another file): every model answer from the answers file and the
    # motion tracks from the tracks file, which the second run kept although it read none
    third = _run(capsys, str(training_set), "--outcomes", str(tmp_path / "other.sqlite"))
    assert third["proposal"]["env"] == proposal["env"] and third["model_checks"] == 0
    assert third["answers_from_disk"] > 0 and third["outcomes_from_disk"] == 0
    assert result["tracks_from_disk"] == 0 and third["tracks_from_disk"] >= 5
    # without the answers file, every answer is computed again, to the same proposal
    fresh_run = _run(capsys, str(training_set), "--no-answers")
    assert fresh_run["proposal"]["env"] == proposal["env"]
    assert fresh_run["model_checks"] == result["model_checks"]
    assert fresh_run["tracks_from_disk"] == 0


def test_tune_from_s3_reads_the_set_with_the_uploaders_settings(
    training_set: Path,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    s3: S3Server,
) -> None:
    client = s3.client()
    for path in sorted(training_set.rglob("*")):
        if path.is_file():
            key = "training/" + path.relative_to(training_set).as_posix()
            client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
    # an incomplete event (no label.json yet: the uploader writes it last) is not replayed
    client.put_object(
        Bucket=BUCKET, Key="training/occupied/front/2026-11-25/front-x/preroll/000000.jpg", Body=b""
    )
    monkeypatch.setenv("HOMESEC_UPLOADER_BUCKET", BUCKET)
    monkeypatch.setenv("HOMESEC_UPLOADER_ENDPOINT_URL", s3.url)
    monkeypatch.setenv("HOMESEC_UPLOADER_ADDRESSING_STYLE", "path")
    monkeypatch.setenv("HOMESEC_UPLOADER_REGION", "us-east-1")
    result = _run(capsys, f"s3://{BUCKET}/training", "--cache", str(tmp_path / "cache"))
    assert result["training_set_events"] == 5
    assert result["removed_false_alerts"] == [FALSE_ALERT]
    assert result["proposal"]["alert"] == {"tp": 3, "fp": 0, "fn": 0, "tn": 2}


def test_tune_text_output_shows_the_tables_and_the_diff(
    training_set: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tune.main([str(training_set), "--max-frames", "50"]) == 0
    out = capsys.readouterr().out
    assert "motion_model  person  actual  count" in out
    assert "precision 0.750, recall 1.000" in out
    assert "\n+ HOMESEC_DETECTOR_" in out and "false alerts removed: 1" in out


def test_a_second_run_waits_for_the_one_holding_the_kept_files(
    training_set: Path, capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    """The nightly run and the owner's run share the data dir's files: the second one says
    whose run it waits for, waits, then reads back what the first one kept."""
    first = _run(capsys, str(training_set))
    assert first["outcomes_from_disk"] == 0
    # another run holding the kept files (here: this process holding the outcomes file's lock)
    holder = FileLock(tune.lock_file((data_dir / OUTCOMES_FILE).resolve()))
    codes: list[int] = []
    second = threading.Thread(
        target=lambda: codes.append(tune.main([str(training_set), "--json", "--max-frames", "50"]))
    )
    try:
        second.start()
        said, deadline = "", time.monotonic() + 60
        while f"waiting for the tune run of pid {os.getpid()}" not in said:
            assert time.monotonic() < deadline, said
            time.sleep(0.05)
            said += capsys.readouterr().err
        assert "--no-answers runs without the kept files" in said
        time.sleep(0.5)
        assert second.is_alive() and not codes  # it waits, it does not fail
    finally:
        holder.release()
    second.join(120)
    assert codes == [0]
    again = json.loads(capsys.readouterr().out)
    assert again["proposal"] == first["proposal"]
    assert again["outcomes_from_disk"] == again["replays"] and again["model_checks"] == 0
