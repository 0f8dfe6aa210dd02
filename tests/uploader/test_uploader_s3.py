"""The uploader against a real S3 endpoint (moto's standalone server on loopback)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from uploader_support import (
    BUCKET,
    DAY,
    EVENT_FILES,
    S3Server,
    key,
    label,
    make_event,
    start_uploader,
    uploader_settings,
    versions,
)

from homesec.bus import Bus
from homesec.contract import (
    SERVICE_STATUS,
    TRAINING_LABELS,
    UPLOAD_REQUEST,
    UPLOADER_STATUS,
    ServiceState,
    ServiceStatus,
    UploaderStatus,
    UploadRequest,
)
from homesec.metrics import ServiceMetrics
from homesec.settings import BrokerSettings
from homesec_uploader.s3_store import S3Store
from homesec_uploader.stores import Stored
from homesec_uploader.uploader import Uploader
from support import Collector, wait_until


def statuses(make_bus: Any) -> Collector[UploaderStatus]:
    collector: Collector[UploaderStatus] = Collector()
    make_bus("observer").subscribe(UPLOADER_STATUS, collector)
    return collector


def request_run(bus: Bus) -> None:
    assert bus.publish_confirmed(UPLOAD_REQUEST, UploadRequest(request_id="t"))


def test_upload_keys_bytes_status_and_rerun(
    s3: S3Server, broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    settings = uploader_settings(broker_settings, tmp_path, s3, delete_after_upload=False)
    folder = make_event(settings.media_dir, "front", "front-20251125-213000-0001")
    seen = statuses(make_bus)
    svc = start_uploader(settings)
    client = make_bus("client")
    try:
        assert client.publish_confirmed(TRAINING_LABELS, label("front-20251125-213000-0001"))
        wait_until(lambda: svc.sample("homesec_uploader_pending_items") == 1)
        request_run(client)
        wait_until(lambda: any(s.uploaded_objects_total == 8 for s in seen.payloads), 20)

        s3c = s3.client()
        expected = {key("front-20251125-213000-0001", rel) for rel in [*EVENT_FILES, "label.json"]}
        assert versions(s3c, BUCKET) == dict.fromkeys(expected, 1)
        for rel in EVENT_FILES:
            obj = s3c.get_object(Bucket=BUCKET, Key=key("front-20251125-213000-0001", rel))
            assert obj["Body"].read() == (folder / rel).read_bytes()
            assert obj["ServerSideEncryption"] == "AES256"
        doc = json.loads(
            s3c.get_object(Bucket=BUCKET, Key=key("front-20251125-213000-0001", "label.json"))[
                "Body"
            ].read()
        )
        assert doc["label"]["label"] == "occupied"
        assert doc["label"]["labelled_by"] == "slack:U024BE7LH"
        assert doc["date"] == DAY
        assert sorted(f["name"] for f in doc["files"]) == EVENT_FILES
        assert doc["errors"] == []

        final = seen.payloads[-1]
        assert final.mode == "s3"
        assert final.destination == f"s3://{BUCKET}/training"
        assert final.pending == 0
        assert final.last_success_at is not None
        assert final.last_error is None
        assert svc.sample("homesec_uploader_uploaded_objects_total") == 8
        total_bytes = sum((folder / rel).stat().st_size for rel in EVENT_FILES)
        assert svc.sample("homesec_uploader_uploaded_bytes_total") == total_bytes + len(
            json.dumps(doc, indent=2, sort_keys=True).encode()
        )
        assert svc.sample("homesec_uploader_labels_received_total", {"label": "occupied"}) == 1
        assert svc.sample("homesec_uploader_last_success_timestamp_seconds") > 0

        # A second run, and the same label delivered again: nothing new is uploaded.
        runs = svc.sample("homesec_uploader_runs_total")
        assert client.publish_confirmed(TRAINING_LABELS, label("front-20251125-213000-0001"))
        request_run(client)
        wait_until(lambda: svc.sample("homesec_uploader_runs_total") > runs)
        assert versions(s3c, BUCKET) == dict.fromkeys(expected, 1)
        assert svc.sample("homesec_uploader_uploaded_objects_total") == 8
        assert svc.sample("homesec_uploader_pending_items") == 0
        assert svc.uploader.status().uploaded_objects_total == 8
    finally:
        svc.stop()


def test_s3_down_then_up_uploads_exactly_once(
    s3: S3Server, broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    settings = uploader_settings(broker_settings, tmp_path, s3)
    make_event(settings.media_dir, "front", "ev-down")
    service_status: Collector[ServiceStatus] = Collector()
    make_bus("observer").subscribe(SERVICE_STATUS, service_status, service="uploader")
    s3.stop()
    svc = start_uploader(settings)
    client = make_bus("client")
    try:
        assert client.publish_confirmed(TRAINING_LABELS, label("ev-down"))
        request_run(client)
        wait_until(
            lambda: svc.sample("homesec_uploader_failures_total", {"reason": "unreachable"}) >= 2,
            20,
        )
        wait_until(
            lambda: any(s.state is ServiceState.DEGRADED for s in service_status.payloads), 10
        )
        status = svc.uploader.status()
        assert status.pending == 1
        assert status.last_error is not None and "unreachable" in status.last_error
        assert svc.sample("homesec_uploader_pending_objects") == 8
        assert svc.sample("homesec_uploader_uploaded_objects_total") == 0

        s3.start()  # same port; the loop retries on its backoff schedule
        wait_until(lambda: svc.uploader.status().pending == 0, 20)
        counts = versions(s3.client(), BUCKET)
        assert len(counts) == 8 and set(counts.values()) == {1}
        assert key("ev-down", "label.json") in counts
        wait_until(lambda: service_status.payloads[-1].state is ServiceState.OK, 10)
        assert svc.uploader.status().last_error is None
    finally:
        svc.stop()


def test_corrupt_and_missing_files_are_recorded_and_the_rest_uploads(
    s3: S3Server, broker_settings: BrokerSettings, tmp_path: Path, make_bus: Any
) -> None:
    settings = uploader_settings(broker_settings, tmp_path, s3, delete_after_upload=False)
    folder = make_event(settings.media_dir, "front", "ev-bad")
    good = (folder / "frames" / "000001.jpg").read_bytes()
    (folder / "frames" / "000001.jpg").write_bytes(good[: len(good) // 2])  # truncated
    (folder / "preroll" / "000001.jpg").write_bytes(b"not a jpeg at all")
    seen = statuses(make_bus)
    svc = start_uploader(settings)
    client = make_bus("client")
    try:
        assert client.publish_confirmed(TRAINING_LABELS, label("ev-bad"))
        wait_until(lambda: svc.sample("homesec_uploader_pending_items") == 1)
        (folder / "snapshot.jpg").unlink()  # vanishes after the label listed it
        request_run(client)
        # the status published at the end of the run carries the error
        wait_until(lambda: any(s.pending == 0 and s.last_error for s in seen.payloads), 20)

        s3c = s3.client()
        stored = set(versions(s3c, BUCKET))
        assert stored == {
            key("ev-bad", rel)
            for rel in (
                "event.json",
                "frames/000000.jpg",
                "preroll/000000.jpg",
                "preroll/000002.jpg",
                "label.json",
            )
        }
        doc = json.loads(
            s3c.get_object(Bucket=BUCKET, Key=key("ev-bad", "label.json"))["Body"].read()
        )
        errors = {e["name"]: e["error"] for e in doc["errors"]}
        assert "truncated JPEG" in errors["frames/000001.jpg"]
        assert "not a JPEG" in errors["preroll/000001.jpg"]
        assert "snapshot.jpg missing" in errors["snapshot.jpg"]
        assert svc.sample("homesec_uploader_failures_total", {"reason": "corrupt_file"}) == 2
        assert svc.sample("homesec_uploader_failures_total", {"reason": "missing_file"}) == 1
        assert svc.uploader.status().last_error is not None
    finally:
        svc.stop()


class _StopAfter:
    """A store that stops the run after ``n`` confirmed PUTs (an interrupted run)."""

    def __init__(self, inner: S3Store, n: int, stop: threading.Event) -> None:
        self.inner, self.n, self.stop = inner, n, stop
        self.mode, self.destination, self.verifies_md5 = "s3", inner.destination, True

    def head(self, key: str) -> Stored | None:
        return self.inner.head(key)

    def put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> Stored:
        stored = self.inner.put(key, data, content_type, metadata)
        self.n -= 1
        if self.n <= 0:
            self.stop.set()
        return stored


def test_interrupted_run_resumes_and_existing_objects_are_not_resent(
    s3: S3Server, broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    settings = uploader_settings(broker_settings, tmp_path, s3)
    folder = make_event(settings.media_dir, "front", "ev-int", preroll=6, frames=6)
    s3c = s3.client()
    # A PUT that reached S3 before a crash could record it: same bytes already in the bucket.
    s3c.put_object(
        Bucket=BUCKET,
        Key=key("ev-int", "snapshot.jpg"),
        Body=(folder / "snapshot.jpg").read_bytes(),
    )
    bus = make_bus("uploader", start=False)
    stop = threading.Event()
    first = Uploader(
        bus, settings, ServiceMetrics("uploader"), _StopAfter(S3Store(settings), 4, stop)
    )
    bus.start()
    assert bus.wait_connected(10)
    client = make_bus("client")
    assert client.publish_confirmed(TRAINING_LABELS, label("ev-int"))
    wait_until(lambda: first.ledger.counts().pending_objects == 15)
    result = first.run_once(stop)
    assert result.interrupted and result.uploaded == 4
    assert first.ledger.counts().pending_objects == 11
    first.close()
    bus.stop()

    metrics = ServiceMetrics("uploader")
    second = Uploader(make_bus("uploader2"), settings, metrics, S3Store(settings))
    try:
        result = second.run_once()
        assert not result.interrupted
        assert result.uploaded + result.already_present == 11
        assert result.already_present == 1  # the snapshot: HEAD matched size and ETag
        counts = versions(s3c, BUCKET)
        assert len(counts) == 15 and set(counts.values()) == {1}
        assert second.status().pending == 0
        assert second.status().uploaded_objects_total == 15
    finally:
        second.close()


def test_missing_bucket_is_reported_retried_and_ends_the_run_early(
    s3: S3Server, broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    settings = uploader_settings(broker_settings, tmp_path, s3, bucket="no-such-bucket")
    make_event(settings.media_dir, "front", "ev-nobucket")
    bus = make_bus("uploader", start=False)
    uploader = Uploader(bus, settings, ServiceMetrics("uploader"), S3Store(settings))
    bus.start()
    assert bus.wait_connected(10)
    client = make_bus("client")
    assert client.publish_confirmed(TRAINING_LABELS, label("ev-nobucket"))
    wait_until(lambda: uploader.status().pending == 1)
    result = uploader.run_once()
    assert result.aborted and result.retry_later == settings.abort_after_failures == 3
    status = uploader.status()
    assert status.pending == 1 and status.last_error is not None
    assert "NoSuchBucket" in status.last_error
    assert uploader.ledger.counts().pending_objects == 8  # nothing lost, all retried later
    assert bus.status.state is ServiceState.DEGRADED
    uploader.close()
