"""Fault: the uploader's data disk refuses writes (full), then takes them again.

The uploader runs in-process with its data folder (ledger and event media) on a small tmpfs
mounted by the test. While a filler file takes every free byte a training label arrives: the
ledger write fails, the bus does not acknowledge the label and retries it with backoff. Once
the filler is deleted the label is stored exactly once, acknowledged (a restarted uploader does
not get it again), and its event is uploaded.

(A read-only remount, the other way an SD card refuses writes, cannot be staged here: Linux
refuses to remount a file system read-only while the ledger holds a file open for writing.
The ledger write fails the same way, with an ``OSError`` from SQLite, in both cases.)
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_support import tmpfs

from homesec.contract import TRAINING_LABELS, UPLOAD_REQUEST, UploadRequest
from homesec.settings import BrokerSettings
from support import wait_until

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "uploader"))

from uploader_support import label, make_event, start_uploader, uploader_settings


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs; unmounted at teardown."""
    with tmpfs(tmp_path / "disk", "16m", "FULL-DISK LEDGER") as mounted:
        yield mounted


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk``."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
        try:
            while True:
                fh.write(b"\0")
        except OSError:
            pass
    return filler


def test_label_arriving_on_a_full_disk_is_stored_once_when_there_is_room_again(
    disk: Path, broker_settings: BrokerSettings, make_bus
) -> None:
    retrying = broker_settings.model_copy(
        update={
            "handler_retry_min_seconds": 0.2,
            "handler_retry_max_seconds": 0.5,
            "handler_attempts": 40,
        }
    )
    settings = uploader_settings(retrying, disk)  # local mode: the training set on the disk too
    make_event(settings.media_dir, "front", "ev-ro")
    svc = start_uploader(settings)
    client = make_bus("client")
    try:
        filler = fill(disk)
        assert client.publish_confirmed(TRAINING_LABELS, label("ev-ro"))

        def errors() -> float:
            return svc.sample(
                "homesec_mqtt_handler_errors_total", {"topic_class": "training_labels"}
            )

        wait_until(lambda: errors() >= 2, 15)
        assert svc.sample("homesec_uploader_labels_received_total", {"label": "occupied"}) == 0
        filler.unlink()
        wait_until(
            lambda: svc.sample("homesec_uploader_labels_received_total", {"label": "occupied"}),
            15,
        )
        assert len(svc.uploader.ledger.labels()) == 1
        assert client.publish_confirmed(UPLOAD_REQUEST, UploadRequest())
        wait_until(lambda: svc.uploader.status().pending == 0, 20)
        assert svc.uploader.status().uploaded_objects_total == 8
    finally:
        (disk / "filler").unlink(missing_ok=True)
        svc.stop()
    # acknowledged once stored: a restarted uploader is not handed the label again
    again = start_uploader(settings)
    try:
        client.publish_confirmed(UPLOAD_REQUEST, UploadRequest())
        wait_until(lambda: again.sample("homesec_uploader_runs_total") >= 1, 10)
        assert again.sample("homesec_uploader_labels_received_total", {"label": "occupied"}) == 0
        assert len(again.uploader.ledger.labels()) == 1
    finally:
        again.stop()
