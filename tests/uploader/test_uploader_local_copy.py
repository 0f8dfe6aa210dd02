"""S3 with a local copy of the training set (``HOMESEC_UPLOADER_LOCAL_COPY``), so the detector's
nightly ``homesec tune`` reads the set from disk under Docker too.

Against moto's S3 server: what the bucket held before the copy was turned on is fetched into the
folder (label documents last), every new upload lands in both with the same bytes, a relabel
moves the objects in both, an object the folder lost is fetched back rather than uploaded from
local media that is gone, the folder reads as a training set whose frames decode, and what the
bucket loses outside homesec (a lifecycle rule) leaves the folder at the next daily sync, unless
the bucket shares nothing with the folder (a wrong bucket or prefix: nothing removed).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from uploader_support import (
    BUCKET,
    EVENT_FILES,
    STARTED_AT,
    Clock,
    S3Server,
    bucket_objects,
    direct,
    files,
    key,
    label,
    make_event,
    sample,
    send,
    stop,
    uploader_settings,
    versions,
)

from homesec.settings import BrokerSettings
from homesec_detector.trainset import load_events
from homesec_uploader.ledger import LABEL_DOC
from homesec_uploader.s3_store import S3Store
from homesec_uploader.stores import (
    DestinationError,
    LocalStore,
    MirroredKeys,
    MirroredStore,
    Stored,
    make_store,
)

ALL_FILES = [*EVENT_FILES, LABEL_DOC]


class Recording(MirroredStore):
    """Records the last path part of every object it fetches into the folder, in order."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.fetched: list[str] = []

    def _fill(self, key: str, found: Stored) -> bool:
        fetched = super()._fill(key, found)
        if fetched:
            self.fetched.append(key.rsplit("/", 1)[-1])
        return fetched


def test_the_local_copy_holds_the_buckets_set_old_and_new_through_a_relabel(
    s3: S3Server, broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    # an event uploaded before the copy was turned on: only the bucket has it
    plain = uploader_settings(broker_settings, tmp_path, s3)
    make_event(plain.media_dir, "front", "ev-before")
    uploader = direct(make_bus, plain)
    send(make_bus, uploader, label("ev-before"))
    assert uploader.run_once().uploaded == 8
    stop(uploader)
    assert not plain.training_dir.exists()

    settings = uploader_settings(broker_settings, tmp_path, s3, local_copy=True)
    assert isinstance(make_store(settings), MirroredStore)
    store = Recording(
        S3Store(settings),
        LocalStore(settings),
        settings.key_prefix,
        MirroredKeys(settings.local_copy_keys_path),
    )
    order = store.fetched
    uploader = direct(make_bus, settings, store=store)
    first = uploader.run_once()
    assert first.uploaded == 0
    assert files(settings.training_dir) == bucket_objects(s3.client())  # fetched, byte for byte
    assert order[-1] == LABEL_DOC and order.count(LABEL_DOC) == 1
    assert (
        uploader.status().destination == f"s3://{BUCKET}/training (a copy in {tmp_path}/training)"
    )

    # a new upload lands in both; nothing of the old event is fetched again
    make_event(settings.media_dir, "front", "ev-after")
    send(make_bus, uploader, label("ev-after"))
    order.clear()
    assert uploader.run_once().uploaded == 8
    assert order == []  # written to both as uploaded: nothing fetched
    assert files(settings.training_dir) == bucket_objects(s3.client())
    assert not (settings.media_dir / "front" / "ev-after").exists()  # local media cleaned up

    # a relabel after the media is gone: copied and deleted in both
    send(make_bus, uploader, label("ev-after", verdict="unoccupied"))
    result = uploader.run_once()
    assert (result.copied, result.deleted, result.failed) == (7, 8, 0)
    assert order == []  # copied within the folder too, not fetched
    stored = bucket_objects(s3.client())
    assert set(stored) == {key("ev-before", rel) for rel in ALL_FILES} | {
        key("ev-after", rel, "unoccupied") for rel in ALL_FILES
    }
    assert files(settings.training_dir) == stored
    stop(uploader)

    # the folder lost a file (a disk error, an owner's mistake): a restart's backfill fetches
    # it back instead of leaving a hole in an event the detector reads as complete
    lost = key("ev-before", EVENT_FILES[-1])
    (settings.training_dir / lost).unlink()
    uploader = direct(make_bus, settings)
    assert uploader.run_once().uploaded == 0
    assert files(settings.training_dir) == stored
    assert versions(s3.client(), BUCKET)[lost] == 1  # fetched, not uploaded again
    stop(uploader)

    # the copy is a training set as the detector reads it: both events, frames that decode
    events, skipped = load_events(settings.training_dir / "training")
    assert skipped == [] and sorted(e.key.split("/")[0] for e in events) == [
        "occupied",
        "unoccupied",
    ]
    for event in events:
        for path in event.frame_paths(None):
            image = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
            assert image is not None and image.size > 0
        doc = json.loads((event.folder / LABEL_DOC).read_text())
        assert doc["label"]["label"] == event.label.value


def test_a_failed_local_write_is_retried_and_fetched_not_uploaded_twice(
    s3: S3Server, broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    settings = uploader_settings(broker_settings, tmp_path, s3, local_copy=True)

    class FullDisk(LocalStore):
        fail = 1

        def put(self, k: str, data: bytes, content_type: str, metadata: dict[str, str]) -> Any:
            if self.fail:
                self.fail -= 1
                raise DestinationError(f"local folder {self.root}: No space left on device")
            return super().put(k, data, content_type, metadata)

    store = MirroredStore(
        S3Store(settings),
        FullDisk(settings),
        settings.key_prefix,
        MirroredKeys(settings.local_copy_keys_path),
    )
    make_event(settings.media_dir, "front", "ev-full")
    clock = Clock(2e9)
    uploader = direct(make_bus, settings, clock, store=store)
    send(make_bus, uploader, label("ev-full"))
    first = uploader.run_once()
    assert first.retry_later == 1 and first.uploaded == 6  # the label document waits
    assert "No space left on device" in first.errors[0]
    clock.now += 60
    second = uploader.run_once()
    assert (second.already_present, second.uploaded, second.failed) == (1, 1, 0)
    assert files(settings.training_dir) == bucket_objects(s3.client())
    assert set(versions(s3.client(), BUCKET).values()) == {1}  # each object put once
    stop(uploader)


class RecordingDeletes(LocalStore):
    """Records the keys the local copy deletes, in order."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.deleted: list[str] = []

    def delete(self, k: str) -> None:
        self.deleted.append(k)
        super().delete(k)


def test_what_the_bucket_loses_outside_homesec_leaves_the_local_copy_at_the_next_sync(
    s3: S3Server,
    broker_settings: BrokerSettings,
    make_bus: Any,
    tmp_path: Path,
    caplog: Any,
) -> None:
    settings = uploader_settings(
        broker_settings, tmp_path, s3, local_copy=True, local_copy_sync_seconds=3600.0
    )
    local = RecordingDeletes(settings)
    keys = MirroredKeys(settings.local_copy_keys_path)
    store = MirroredStore(S3Store(settings), local, settings.key_prefix, keys)
    clock = Clock(2e9)
    uploader = direct(make_bus, settings, clock, store=store)
    for event_id in ("ev-old", "ev-kept"):
        make_event(settings.media_dir, "front", event_id)
    send(make_bus, uploader, label("ev-old"), label("ev-kept"))
    assert uploader.run_once().uploaded == 16
    assert files(settings.training_dir) == bucket_objects(s3.client())

    # a lifecycle rule expires the old event in the bucket (delete markers: versioned bucket)
    client = s3.client()
    for rel in ALL_FILES:
        client.delete_object(Bucket=BUCKET, Key=key("ev-old", rel))
    # an event the folder held before the switch to S3 (local mode): never the bucket's
    era = settings.training_dir / key("ev-local-era", "x").rsplit("/", 1)[0]
    shutil.copytree(settings.training_dir / key("ev-kept", "x").rsplit("/", 1)[0], era)
    for path in era.rglob("*"):
        os.utime(path, (STARTED_AT, STARTED_AT))
    # a file the copy wrote after the sync listed the bucket (a put racing it) is kept
    newer = key("ev-kept", "frames/000099.jpg")
    (settings.training_dir / newer).write_bytes(b"put during the listing")
    keys.add([newer])
    later = time.time() + 3600
    os.utime(settings.training_dir / newer, (later, later))

    clock.now += 60  # within the sync interval: the folder is left alone
    uploader.run_once()
    assert (settings.training_dir / key("ev-old", LABEL_DOC)).exists()

    clock.now += 3600  # the next sync is due
    uploader.run_once()
    assert local.deleted[0] == key("ev-old", LABEL_DOC)  # the event stops being complete first
    assert sorted(local.deleted) == sorted(key("ev-old", rel) for rel in ALL_FILES)
    assert not (settings.training_dir / key("ev-old", LABEL_DOC)).parent.exists()
    assert sample(uploader, "homesec_uploader_local_copy_removed_objects_total") == 8
    held = files(settings.training_dir)
    assert held.pop(newer) == b"put during the listing"
    era_files = {k: v for k, v in held.items() if "/ev-local-era/" in k}
    assert len(era_files) == len(ALL_FILES)
    assert {k: v for k, v in held.items() if k not in era_files} == bucket_objects(s3.client())
    events, _ = load_events(settings.training_dir / "training")
    assert sorted(e.event_id for e in events) == ["ev-kept", "ev-local-era"]
    stop(uploader)

    # a wrong bucket (another, holding nothing of the set): the folder keeps everything
    client.create_bucket(Bucket="another-bucket")
    wrong = settings.model_copy(update={"bucket": "another-bucket"})
    before = files(settings.training_dir)
    local.deleted.clear()
    uploader = direct(
        make_bus,
        wrong,
        store=MirroredStore(
            S3Store(wrong), local, wrong.key_prefix, MirroredKeys(wrong.local_copy_keys_path)
        ),
    )
    with caplog.at_level(logging.WARNING, logger="homesec.uploader"):
        uploader.run_once()
    assert local.deleted == []
    assert files(settings.training_dir) == before
    assert any("the bucket holds none of the folder's objects" in r.message for r in caplog.records)
    stop(uploader)
