"""The evaluation set's outcomes with the shipped defaults (issue 12's "done when"), computed.

The set is generated from the shipped assets (``homesec_detector.evalset``) and run through the
detector's own pipeline once per test session (~40 s on a loaded 2-core machine).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from homesec import cli
from homesec_detector.evalset import build_clips, walk_in
from homesec_detector.report import ClipResult, run_report, totals
from homesec_detector.settings import DetectorSettings

ASSETS = Path(__file__).resolve().parents[1] / "assets"


@pytest.fixture(scope="module")
def results() -> list[ClipResult]:
    return run_report(build_clips(ASSETS), DetectorSettings(metrics_port=0))


def kinds(results: list[ClipResult], *names: str) -> list[ClipResult]:
    return [r for r in results if r.kind in names]


def test_the_set_covers_every_kind_of_clip(results: list[ClipResult]) -> None:
    counts = {k: len(kinds(results, k)) for k in ("person", "pet", "traffic", "empty")}
    assert counts["person"] >= 20 and counts["pet"] >= 6
    assert counts["traffic"] >= 3 and counts["empty"] >= 10
    assert sum(1 for r in results if r.twin) >= 8  # light changes during the entry
    assert any(r.name.endswith("-real") for r in kinds(results, "person"))  # real footage


def test_every_person_clip_alerts(results: list[ClipResult]) -> None:
    missed = [r.name for r in kinds(results, "person") if not r.alerts]
    assert not missed
    assert all(r.false_alerts == 0 for r in results)


def test_no_alert_on_traffic_pets_or_empty_scenes(results: list[ClipResult]) -> None:
    alerted = [(r.name, r.alerts) for r in kinds(results, "traffic", "pet", "empty") if r.alerts]
    assert not alerted
    assert all(r.events for r in kinds(results, "traffic"))  # motion was seen, not ignored


def test_median_first_alert_within_0_8_s_of_the_person_being_visible(
    results: list[ClipResult],
) -> None:
    t = totals(results)
    assert t["median_delay_s"] is not None and t["median_delay_s"] <= 0.8
    people = kinds(results, "person")
    assert all(r.visible is not None for r in people)
    assert t["median_recall"] >= 0.8


def test_light_change_during_the_entry_is_no_slower(results: list[ClipResult]) -> None:
    t = totals(results)
    assert t["light_clips"] >= 8
    assert t["light_slower_than_twin"] == []
    assert t["light_slower_than_lit_twin"] == []


def test_the_original_table_counts_every_clip(results: list[ClipResult]) -> None:
    table = totals(results)["original_table"]
    assert sum(row["count"] for row in table) == len(results)
    alerted_negatives = [r for r in table if r["person"] == 1 and r["actual"] == 0]
    assert not alerted_negatives


def test_clips_are_generated_deterministically() -> None:
    from homesec_detector.evalset import Assets, _static

    a = Assets(ASSETS)
    scene = a.backgrounds()["road"]
    one = walk_in("x", _static(scene), a.sprite("batter"), 0.3, seed=3)
    two = walk_in("x", _static(scene), a.sprite("batter"), 0.3, seed=3)
    assert one.frames == two.frames and one.person_boxes == two.person_boxes
    assert one.person_boxes[0] is None and any(one.person_boxes)  # enters after the lead-in


def test_report_cli_prints_a_row_per_clip_and_the_totals(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = cli.main(["eval", "--report", "--assets", str(ASSETS), "--only", "traffic-bgs"])
    out = capsys.readouterr().out
    assert code == 0
    assert "traffic-bgs-highway" in out and "person clips alerted" in out
    assert "original's table" in out
    code = cli.main(
        ["eval", "--report", "--assets", str(ASSETS), "--only", "traffic-bgs", "--json"]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["clips"][0]["name"] == "traffic-bgs-highway"
    assert data["totals"]["alerts_on_negatives"] == 0


def test_report_on_a_folder_of_labelled_clips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = next(c for c in build_clips(ASSETS) if c.name == "person-man-green-road-45")
    folder = tmp_path / "clips" / "walk-in"
    folder.mkdir(parents=True)
    for i, data in enumerate(clip.frames):
        (folder / f"{i:04d}.jpg").write_bytes(data)
    labels = "frame,label\n" + "".join(
        f"{i},{int(box is not None)}\n" for i, box in enumerate(clip.person_boxes)
    )
    (tmp_path / "clips" / "walk-in.csv").write_text(labels)
    code = cli.main(["eval", "--report", str(tmp_path / "clips"), "--json", "--fps", "10"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    row = data["clips"][0]
    assert row["kind"] == "person" and row["alerts"] == 1 and row["recall"] > 0.8
