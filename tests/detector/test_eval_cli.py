"""``homesec eval``: output formats, labels table, sources (video, GIF, folder)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from homesec import cli

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def write_sequence(folder: Path, photo: str = "coco_fastestdet_2.jpg") -> int:
    """Background frames then a photo sliding in, as numbered image files."""
    cap = cv2.VideoCapture(str(ASSETS / "video" / "road_640x360.avi"))
    ok, base = cap.read()
    cap.release()
    assert ok
    base = cv2.resize(base, (640, 480))
    image = cv2.imread(str(ASSETS / "images" / photo))
    image = cv2.resize(image, (400, int(image.shape[0] * 400 / image.shape[1])))
    folder.mkdir()
    n = 0
    for _ in range(10):
        cv2.imwrite(str(folder / f"f{n:04d}.png"), base)  # PNG: re-encoded as JPEG by eval
        n += 1
    for i in range(35):
        canvas = base.copy()
        canvas[40 : 40 + image.shape[0], 20 + 4 * i : 420 + 4 * i] = image[: 480 - 40]
        cv2.imwrite(str(folder / f"f{n:04d}.jpg"), canvas)
        n += 1
    return n


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(["eval", *argv])
    return code, capsys.readouterr().out


def test_json_lines_per_frame_then_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    n = write_sequence(tmp_path / "seq")
    code, out = run(capsys, str(tmp_path / "seq"), "--json", "--fps", "10")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    rows, summary = lines[:-1], lines[-1]["summary"]
    assert len(rows) == n == summary["frames"]
    assert rows[0] == {
        "frame": 0,
        "motion": False,
        "person_score": None,
        "event_id": None,
        "alert": False,
    }
    assert list(rows[0]) == ["frame", "motion", "person_score", "event_id", "alert"]
    alerts = [r for r in rows if r["alert"]]
    assert alerts and alerts[0]["event_id"].startswith("eval-")
    assert all(r["event_id"] == alerts[0]["event_id"] for r in alerts)
    assert max(r["person_score"] or 0 for r in rows) >= 0.5
    assert summary["events"] == 1 and summary["alerts"] == 1 and summary["fps"] == 10


def test_labels_give_the_original_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n = write_sequence(tmp_path / "seq")
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "frame,label\n"
        + "".join(f"{i},{'occupied' if i >= 10 else 'unoccupied'}\n" for i in range(n))
    )
    code, out = run(capsys, str(tmp_path / "seq"), "--json", "--labels", str(labels))
    assert code == 0
    table = json.loads(out.splitlines()[-1])["summary"]["labels"]
    assert table["labelled_frames"] == n
    motion = table["motion"]
    assert motion["tn"] == 10 and motion["fp"] == 0  # no event before the photo appears
    assert motion["tp"] > 0 and motion["tp"] + motion["fn"] == n - 10
    assert sum(row["count"] for row in table["original_table"]) == n
    assert table["alert"]["fp"] == 0 and table["alert"]["tp"] > 0
    code, text = run(capsys, str(tmp_path / "seq"), "--labels", str(labels))
    assert "motion_model  person  actual  count" in text


def test_text_output_on_the_traffic_clip(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, str(ASSETS / "video" / "traffic_320x240.avi"), "--baseline")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["frame", "motion", "person_score", "event_id", "alert"]
    assert len([line for line in lines if line[:6].strip().isdigit()]) == 748
    assert "motion_frames" in out and "original recipe" in out
    summary = {
        line.split()[0]: line.split()[1]
        for line in lines
        if line.startswith("  ") and len(line.split()) == 2
    }
    assert int(summary["events"]) >= 1 and int(summary["motion_frames"]) > 600


def test_gif_and_disarmed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_sequence(tmp_path / "seq", "coco_fastestdet_0.jpg")
    animation = cv2.Animation()
    animation.frames = [cv2.imread(str(p)) for p in sorted((tmp_path / "seq").iterdir())]
    animation.durations = [100] * len(animation.frames)
    assert cv2.imwriteanimation(str(tmp_path / "walk.gif"), animation)
    code, out = run(capsys, str(tmp_path / "walk.gif"), "--json")
    summary = json.loads(out.splitlines()[-1])["summary"]
    assert code == 0 and summary["fps"] == 10 and summary["alerts"] == 1
    code, out = run(capsys, str(tmp_path / "walk.gif"), "--json", "--disarmed")
    summary = json.loads(out.splitlines()[-1])["summary"]
    assert summary["events"] == 1 and summary["alerts"] == 0
    assert summary["event_list"][0]["reason"] == "disarmed"


def test_score_all_runs_the_model_on_every_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.jpg").write_bytes(
            (ASSETS / "images" / f"coco_fastestdet_{i}.jpg").read_bytes()
        )
    code, out = run(capsys, str(folder), "--json", "--score-all")
    rows = [json.loads(line) for line in out.splitlines()[:-1]]
    scores = [r["person_score"] for r in rows]
    assert code == 0 and None not in scores
    assert all(s >= 0.5 for s in scores[:4])  # four photos with people
    assert scores[4] < 0.5  # the cats


def test_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["eval", str(tmp_path / "missing.avi")]) == 2
    (tmp_path / "empty").mkdir()
    assert cli.main(["eval", str(tmp_path / "empty")]) == 2
    bad = tmp_path / "labels.csv"
    bad.write_text("0,maybe\n")
    assert cli.main(["eval", str(ASSETS / "video" / "road_640x360.avi"), "--labels", str(bad)]) == 2
    assert "unknown label" in capsys.readouterr().err


def test_media_option_writes_event_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_sequence(tmp_path / "seq")
    media = tmp_path / "media"
    code, out = run(capsys, str(tmp_path / "seq"), "--json", "--media", str(media))
    assert code == 0
    event_id = json.loads(out.splitlines()[-1])["summary"]["event_list"][0]["event_id"]
    folder = media / "eval" / event_id
    assert (folder / "snapshot.jpg").is_file() and (folder / "event.json").is_file()
    assert len(list((folder / "preroll").iterdir())) >= 10  # every frame before the start
