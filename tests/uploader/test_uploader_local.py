"""Local mode (no S3 settings), retention, waiting for media, relabelling, restarts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from uploader_support import (
    DAY,
    STARTED_AT,
    Clock,
    age,
    direct,
    label,
    make_event,
    start_uploader,
    uploader_settings,
    write_event_json,
)

from homesec.contract import TRAINING_LABELS, UPLOAD_REQUEST, UploadRequest
from homesec.settings import BrokerSettings
from homesec_uploader.settings import UploaderSettings
from homesec_uploader.stores import LocalStore, Stored
from support import wait_until


def snapshot_tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_local_mode_layout_status_and_cleanup(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    settings = uploader_settings(broker_settings, tmp_path)  # no bucket: local mode
    folder = make_event(settings.media_dir, "front", "ev-local")
    original = snapshot_tree(folder)
    svc = start_uploader(settings)
    client = make_bus("client")
    try:
        assert client.publish_confirmed(TRAINING_LABELS, label("ev-local", verdict="unoccupied"))
        wait_until(lambda: svc.uploader.status().pending == 1)
        assert client.publish_confirmed(UPLOAD_REQUEST, UploadRequest())
        wait_until(lambda: svc.uploader.status().pending == 0, 20)
        status = svc.uploader.status()
        assert status.uploaded_objects_total == 8
        root = tmp_path / "training" / "training"
        assert status.mode == "local"
        assert status.destination == str(root.resolve())
        assert status.pending == 0
        target = root / "unoccupied" / "front" / DAY / "ev-local"
        copied = snapshot_tree(target)
        assert set(copied) == {*original, "label.json"}
        for rel, data in original.items():
            assert copied[rel] == data
        doc = json.loads(copied["label.json"])
        assert doc["label"]["label"] == "unoccupied"
        assert doc["key_prefix"] == f"training/unoccupied/front/{DAY}/ev-local/"
        # keep_local_days=0: the event's media is deleted once every file is confirmed.
        wait_until(lambda: not folder.exists(), 10)
        assert (settings.media_dir / "front").is_dir()  # only the event folder goes
    finally:
        svc.stop()


def test_retention_waits_keep_local_days_and_can_be_off(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    clock = Clock(2e9)
    settings = uploader_settings(broker_settings, tmp_path, keep_local_days=2.0)
    folder = make_event(settings.media_dir, "front", "ev-keep")
    kept = make_event(settings.media_dir, "front", "ev-never")
    uploader = direct(make_bus, settings, clock)
    client = make_bus("client")
    assert client.publish_confirmed(TRAINING_LABELS, label("ev-keep"))
    wait_until(lambda: uploader.status().pending == 1)
    assert uploader.run_once().uploaded == 8
    clock.now += 86400
    assert uploader.run_once().cleaned_labels == 0
    assert (folder / "snapshot.jpg").is_file()
    clock.now += 86400 + 1
    assert uploader.run_once().cleaned_labels == 1
    assert not folder.exists()
    uploader.bus.stop(timeout=1)
    uploader.close()

    off = uploader_settings(broker_settings, tmp_path, delete_after_upload=False)
    second = direct(make_bus, off, clock, name="uploader2")
    assert client.publish_confirmed(TRAINING_LABELS, label("ev-never"))
    wait_until(lambda: second.status().pending == 1)
    assert second.run_once().uploaded == 8
    clock.now += 30 * 86400
    assert second.run_once().cleaned_labels == 0
    assert (kept / "snapshot.jpg").is_file()
    second.bus.stop(timeout=1)
    second.close()


def test_label_waits_for_media_then_uploads_what_exists_after_the_timeout(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    clock = Clock(2e9)
    settings = uploader_settings(broker_settings, tmp_path, media_wait_seconds=600)
    folder = make_event(settings.media_dir, "front", "ev-open", ended=False)
    uploader = direct(make_bus, settings, clock)
    client = make_bus("client")
    assert client.publish_confirmed(TRAINING_LABELS, label("ev-open"))
    assert client.publish_confirmed(TRAINING_LABELS, label("ev-nothing"))  # no folder at all
    wait_until(lambda: uploader.status().pending == 2)

    result = uploader.run_once()  # the detector is still writing: nothing listed yet
    assert result.uploaded == 0 and uploader.status().pending == 2
    write_event_json(folder, "front", "ev-open", started_at=STARTED_AT, ended=True)
    result = uploader.run_once()
    assert result.uploaded == 8 and uploader.status().pending == 1

    clock.now += 601
    result = uploader.run_once()
    assert result.uploaded == 1  # label.json only, with the reason
    assert uploader.status().pending == 0
    day = "2025-11-25"  # from the label time: there is no event.json
    doc = json.loads(
        (tmp_path / f"training/training/occupied/front/{day}/ev-nothing/label.json").read_text()
    )
    errors = {e["name"]: e["error"] for e in doc["errors"]}
    assert "event media incomplete after 600 s" in errors["event"]
    assert "date taken from the label time" in errors["event"]
    assert errors["event.json"] == "event.json missing in the event folder"
    assert errors["snapshot.jpg"] == "snapshot.jpg missing in the event folder"
    failures = uploader.registry.get_sample_value(
        "homesec_uploader_failures_total", {"reason": "media_timeout"}
    )
    assert failures == 1
    uploader.bus.stop(timeout=1)
    uploader.close()


def test_relabel_before_upload_supersedes_the_first_label(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    settings = uploader_settings(broker_settings, tmp_path)
    uploader = direct(make_bus, settings)
    client = make_bus("client")
    assert client.publish_confirmed(TRAINING_LABELS, label("ev-re", verdict="occupied"))
    assert client.publish_confirmed(TRAINING_LABELS, label("ev-re", verdict="unoccupied"))
    wait_until(lambda: len(uploader.ledger.labels()) == 2)
    make_event(settings.media_dir, "front", "ev-re")
    assert uploader.run_once().uploaded == 8
    root = tmp_path / "training" / "training"
    assert (root / f"unoccupied/front/{DAY}/ev-re/label.json").is_file()
    assert not (root / "occupied").exists()
    assert [row.state for row in uploader.ledger.labels()] == ["superseded", "done"]
    uploader.bus.stop(timeout=1)
    uploader.close()


def test_label_published_while_the_uploader_is_down_is_uploaded_after_restart(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    settings = uploader_settings(broker_settings, tmp_path)
    make_event(settings.media_dir, "front", "ev-offline")
    first = start_uploader(settings)  # creates the persistent session
    first.stop()
    client = make_bus("client")
    assert client.publish_confirmed(TRAINING_LABELS, label("ev-offline"))

    second = start_uploader(settings)
    try:
        wait_until(lambda: second.uploader.status().pending == 1, 10)
        assert client.publish_confirmed(UPLOAD_REQUEST, UploadRequest())
        target = tmp_path / f"training/training/occupied/front/{DAY}/ev-offline/label.json"
        wait_until(target.is_file, 20)
        assert second.sample("homesec_uploader_labels_received_total", {"label": "occupied"}) == 1
    finally:
        second.stop()


def test_invalid_label_is_rejected_by_the_contract_and_nothing_is_recorded(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    settings = uploader_settings(broker_settings, tmp_path)
    svc = start_uploader(settings)
    client = make_bus("client")
    try:
        bad = {
            "event_id": "../../etc",
            "camera": "front",
            "label": "occupied",
            "labelled_by": "x",
        }
        client.publish_raw(client.topic(TRAINING_LABELS), json.dumps(bad), qos=1)
        assert client.publish_confirmed(TRAINING_LABELS, label("ev-ok"))
        wait_until(lambda: svc.uploader.status().pending == 1)
        invalid = svc.rt.metrics.registry.get_sample_value(
            "homesec_mqtt_invalid_messages_total", {"topic_class": "training_labels"}
        )
        assert invalid == 1
        assert [row.event_id for row in svc.uploader.ledger.labels()] == ["ev-ok"]
    finally:
        svc.stop()


class _BuggyOnce(LocalStore):
    """A destination whose first PUT hits an unexpected bug (not a DestinationError)."""

    def __init__(self, settings: UploaderSettings) -> None:
        super().__init__(settings)
        self.crashed = False

    def put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> Stored:
        if not self.crashed:
            self.crashed = True
            raise RuntimeError("unexpected bug")
        return super().put(key, data, content_type, metadata)


def test_a_crashing_run_is_logged_and_the_loop_carries_on(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    settings = uploader_settings(broker_settings, tmp_path)
    make_event(settings.media_dir, "front", "ev-bug")
    svc = start_uploader(settings, _BuggyOnce(settings))
    client = make_bus("client")
    try:
        assert client.publish_confirmed(TRAINING_LABELS, label("ev-bug"))
        assert client.publish_confirmed(UPLOAD_REQUEST, UploadRequest())
        wait_until(lambda: svc.uploader.status().uploaded_objects_total == 8, 20)
        assert svc.sample("homesec_uploader_failures_total", {"reason": "internal"}) == 1
    finally:
        svc.stop()


def test_files_are_listed_once_the_ended_event_has_settled(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    settings = uploader_settings(broker_settings, tmp_path, media_settle_seconds=30)
    folder = make_event(settings.media_dir, "front", "ev-fresh")  # written just now
    uploader = direct(make_bus, settings)
    client = make_bus("client")
    assert client.publish_confirmed(TRAINING_LABELS, label("ev-fresh"))
    wait_until(lambda: uploader.status().pending == 1)
    assert uploader.run_once().uploaded == 0  # the detector may still be writing
    assert uploader.ledger.labels()[0].state == "waiting"
    age(folder, 60)
    assert uploader.run_once().uploaded == 8
    uploader.bus.stop(timeout=1)
    uploader.close()


def test_detector_unoccupied_sample_is_uploaded_with_its_capture_date(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    settings = uploader_settings(broker_settings, tmp_path)
    folder = make_event(settings.media_dir, "front", "front-unocc-1", frames=0)
    sample = {  # what the detector writes for an automatic 'unoccupied' sample
        "event_id": "front-unocc-1",
        "camera": "front",
        "type": "sample",
        "label": "unoccupied",
        "captured_at": STARTED_AT + 86400,
        "frame_seq": 7,
        "detector": {"preroll_frames": 3},
    }
    (folder / "event.json").write_text(json.dumps(sample))
    preroll = (folder / "preroll/000002.jpg").read_bytes()
    uploader = direct(make_bus, settings)
    client = make_bus("client")
    auto = label("front-unocc-1", verdict="unoccupied").model_copy(
        update={"labelled_by": "detector:auto", "source": "detector"}
    )
    assert client.publish_confirmed(TRAINING_LABELS, auto)
    wait_until(lambda: uploader.status().pending == 1)
    assert uploader.run_once().uploaded == 6  # event.json, snapshot, 3 pre-roll, label.json
    target = tmp_path / "training/training/unoccupied/front/2025-11-26/front-unocc-1"
    doc = json.loads((target / "label.json").read_text())
    assert doc["errors"] == [] and doc["label"]["source"] == "detector"
    assert (target / "preroll/000002.jpg").read_bytes() == preroll
    assert not folder.exists()  # keep_local_days=0: deleted once confirmed
    uploader.bus.stop(timeout=1)
    uploader.close()


def test_a_symlink_leaving_the_media_folder_is_not_uploaded(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    settings = uploader_settings(broker_settings, tmp_path, delete_after_upload=False)
    folder = make_event(settings.media_dir, "front", "ev-link", frames=1)
    secret = tmp_path / "outside.jpg"
    secret.write_bytes((folder / "frames/000000.jpg").read_bytes())
    (folder / "frames/000000.jpg").unlink()
    (folder / "frames/000000.jpg").symlink_to(secret)
    uploader = direct(make_bus, settings)
    client = make_bus("client")
    assert client.publish_confirmed(TRAINING_LABELS, label("ev-link"))
    wait_until(lambda: uploader.status().pending == 1)
    result = uploader.run_once()
    assert result.failed == 1 and result.uploaded == 6
    target = tmp_path / f"training/training/occupied/front/{DAY}/ev-link"
    assert not (target / "frames/000000.jpg").exists()
    errors = {
        e["name"]: e["error"] for e in json.loads((target / "label.json").read_text())["errors"]
    }
    assert "leaves the media folder" in errors["frames/000000.jpg"]
    unsafe = uploader.registry.get_sample_value(
        "homesec_uploader_failures_total", {"reason": "unsafe_path"}
    )
    assert unsafe == 1
    uploader.bus.stop(timeout=1)
    uploader.close()
