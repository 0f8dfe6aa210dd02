"""The alert clip travels with the training data: clip.mp4 is uploaded as video/mp4, and a file
that is not an MP4 is recorded as corrupt instead."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
from uploader_support import BUCKET, S3Server, direct, key, label, make_event, uploader_settings

from homesec.contract import TRAINING_LABELS
from homesec.settings import BrokerSettings
from homesec_detector.clip import ClipFrame, encode_clip
from support import wait_until


def clip_of(folder: Path) -> bytes:
    """What the detector makes of the event's frames."""
    frames = sorted((folder / "preroll").iterdir()) + sorted((folder / "frames").iterdir())
    return encode_clip([ClipFrame(p.read_bytes(), n / 10) for n, p in enumerate(frames)]).data


def frames_in(data: bytes, tmp_path: Path) -> int:
    path = tmp_path / "from-s3.mp4"
    path.write_bytes(data)
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    return count


def test_the_clip_is_uploaded_with_the_event(
    s3: S3Server, broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    settings = uploader_settings(broker_settings, tmp_path, s3, delete_after_upload=False)
    folder = make_event(settings.media_dir, "front", "front-clip-1", preroll=3, frames=2)
    (folder / "clip.mp4").write_bytes(clip_of(folder))
    uploader = direct(make_bus, settings)
    client = make_bus("client")
    assert client.publish_confirmed(TRAINING_LABELS, label("front-clip-1"))
    wait_until(lambda: uploader.status().pending == 1)
    result = uploader.run_once()
    assert result.uploaded == 9 and result.failed == 0  # 7 files, the clip and label.json
    obj = s3.client().get_object(Bucket=BUCKET, Key=key("front-clip-1", "clip.mp4"))
    assert obj["ContentType"] == "video/mp4"
    data = obj["Body"].read()
    assert data == (folder / "clip.mp4").read_bytes()
    assert frames_in(data, tmp_path) == 5
    doc = json.loads(
        s3.client().get_object(Bucket=BUCKET, Key=key("front-clip-1", "label.json"))["Body"].read()
    )
    assert "clip.mp4" in [f["name"] for f in doc["files"]]
    uploader.bus.stop(timeout=1)
    uploader.close()


def test_a_clip_that_is_not_an_mp4_is_recorded_as_corrupt(
    s3: S3Server, broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    settings = uploader_settings(broker_settings, tmp_path, s3, delete_after_upload=False)
    folder = make_event(settings.media_dir, "front", "front-clip-2")
    (folder / "clip.mp4").write_bytes(b"\x00" * 100)
    uploader = direct(make_bus, settings)
    client = make_bus("client")
    assert client.publish_confirmed(TRAINING_LABELS, label("front-clip-2"))
    wait_until(lambda: uploader.status().pending == 1)
    result = uploader.run_once()
    assert result.failed == 1 and result.uploaded == 8
    doc = json.loads(
        s3.client().get_object(Bucket=BUCKET, Key=key("front-clip-2", "label.json"))["Body"].read()
    )
    errors = {e["name"]: e["error"] for e in doc["errors"]}
    assert "not an MP4" in errors["clip.mp4"]
    uploader.bus.stop(timeout=1)
    uploader.close()
