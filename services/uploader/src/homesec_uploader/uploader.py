"""Training labels → durable ledger → S3 (or a local folder), idempotent and resumable.

The MQTT handlers only write the ledger (sqlite, fast), pin the event folder for the uploader
(:mod:`homesec.pins`, so the detector's retention keeps it) and wake the loop; every upload, copy
and delete happens on the thread that calls :meth:`Uploader.run` (the service's main thread).
Each run ends by reconciling the pins with the ledger: every event with a waiting or pending
label is pinned, and a pin of an event whose labels are all settled is released.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from homesec import __version__
from homesec.backoff import backoff_delay
from homesec.bus import Bus, Received
from homesec.contract import (
    TRAINING_LABELS,
    UPLOAD_REQUEST,
    UPLOADER_STATUS,
    ServiceState,
    TrainingLabel,
    UploaderStatus,
    UploadRequest,
)
from homesec.media import EVENT_META, FRAMES_DIR, PREROLL_DIR, SNAPSHOT, UnsafePath, event_dir
from homesec.metrics import ServiceMetrics
from homesec.pins import PinKind, Pins
from homesec_uploader.event_media import (
    CorruptFile,
    EventMedia,
    check_content,
    content_type,
    inspect_event,
    media_path,
    utc_day,
)
from homesec_uploader.ledger import (
    LABEL_DOC,
    LabelRow,
    LabelState,
    Ledger,
    NewObject,
    ObjectRow,
    ObjectState,
)
from homesec_uploader.metrics import UploaderMetrics
from homesec_uploader.settings import UploaderSettings
from homesec_uploader.stores import DestinationError, MirroredStore, Store, Stored, md5_hex

log = logging.getLogger("homesec.uploader")

_DAY = 86400.0


@dataclass
class RunResult:
    """What one upload run did."""

    uploaded: int = 0
    uploaded_bytes: int = 0
    copied: int = 0  # objects of a relabelled event copied from the earlier label's keys
    deleted: int = 0  # objects of a superseded label deleted from the destination
    already_present: int = 0
    failed: int = 0  # objects failed for good (missing/corrupt media)
    retry_later: int = 0  # destination errors
    completed_labels: int = 0
    cleaned_labels: int = 0
    pruned_labels: int = 0
    unreachable: bool = False  # the destination could not be reached
    aborted: bool = False  # destination unreachable / too many failures
    interrupted: bool = False  # stop requested mid-run
    errors: list[str] = field(default_factory=list)


def object_key(prefix: str, row: LabelRow | TrainingLabel, day: str, rel: str) -> str:
    """``<prefix>/<label>/<camera>/<YYYY-MM-DD>/<event_id>/<file>``."""
    label = row.label if isinstance(row.label, str) else row.label.value
    return f"{prefix}/{label}/{row.camera}/{day}/{row.event_id}/{rel}"


def _metadata(row: LabelRow) -> dict[str, str]:
    return {"event-id": row.event_id, "camera": row.camera, "label": row.label}


class Uploader:
    """Owns the ledger, the destination and the upload loop."""

    def __init__(
        self,
        bus: Bus,
        settings: UploaderSettings,
        metrics: ServiceMetrics,
        store: Store,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bus = bus
        self.settings = settings
        self.store = store
        self.clock = clock
        self.registry = metrics.registry
        self.metrics = UploaderMetrics(metrics.registry)
        self.ledger = Ledger(settings.ledger_path)
        self.pins = Pins(settings.pins_dir, on_error=self.metrics.pin_errors.inc)
        self._wake = threading.Event()
        self._status_lock = threading.Lock()
        self._degraded_reason: str | None = None
        self._next_sync = 0.0 if isinstance(store, MirroredStore) else float("inf")
        last = self.ledger.get_meta("last_success_at")
        if last is not None:
            self.metrics.last_success.set(float(last))
        bus.subscribe(TRAINING_LABELS, self._on_label)
        bus.subscribe(UPLOAD_REQUEST, self._on_request)
        bus.on_connected(lambda _session: self.publish_status())
        self._refresh_gauges()

    def close(self) -> None:
        self.ledger.close()
        if isinstance(self.store, MirroredStore):
            self.store.close()

    # ---- MQTT handlers (network thread: ledger writes only) -----------------------------------

    def _on_label(self, msg: Received[TrainingLabel]) -> None:
        label = msg.payload
        now = self.clock()
        label_id, created, superseded = self.ledger.add_label(
            label, now, partial(self._key_of, label)
        )
        if self.ledger.owes(label.camera, label.event_id):  # kept by retention until uploaded
            self.pins.pin(PinKind.LABEL, label.camera, label.event_id)
        self.metrics.labels_received.labels(label.label.value).inc()
        what = "label recorded" if created else "label already recorded"
        log.info(
            "event relabelled" if superseded else what,
            extra={
                "camera": label.camera,
                "event_id": label.event_id,
                "label": label.label.value,
                "label_id": label_id,
                "superseded": superseded,
            },
        )
        if created:
            row = self.ledger.label(label_id)
            if row.state is LabelState.WAITING:  # a relabel takes over the earlier listing
                self._list_objects(row, now)
            self._refresh_gauges()
            self.publish_status()

    def _key_of(self, label: TrainingLabel, day: str, rel: str) -> str:
        return object_key(self.settings.key_prefix, label, day, rel)

    def _on_request(self, msg: Received[UploadRequest]) -> None:
        log.info(
            "upload requested",
            extra={
                "request_id": msg.payload.request_id,
                "requested_by": msg.payload.requested_by,
            },
        )
        self._wake.set()

    def request_run(self) -> None:
        """Run as soon as the loop is free (what an upload request does)."""
        self._wake.set()

    # ---- the loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Upload every ``interval_seconds``, on request, and when a retry falls due."""
        while not stop.is_set():
            self._wake.clear()
            started = self.clock()
            next_run = started + self.settings.interval_seconds
            try:
                self.run_once(stop)
                retry_at = self.ledger.next_retry_at()
                if retry_at is not None:
                    next_run = min(next_run, max(retry_at, self.clock() + 0.05))
            except Exception as exc:  # a bug or a broken ledger disk must not end the loop
                log.exception("upload run crashed")
                self.metrics.failures.labels("internal").inc()
                self.bus.set_status(ServiceState.DEGRADED, f"upload run crashed: {exc}"[:500])
                next_run = min(next_run, self.clock() + self.settings.retry_max_seconds)
            while not stop.is_set() and not self._wake.is_set():
                remaining = next_run - self.clock()
                if remaining <= 0:
                    break
                self._wake.wait(min(remaining, 0.5))

    def run_once(self, stop: threading.Event | None = None) -> RunResult:
        """One pass: list media of waiting labels, upload (or copy) and delete what is due,
        clean up local media, prune the ledger, report."""
        result = RunResult()
        self.metrics.runs.inc()
        if self.clock() >= self._next_sync:
            self._sync_local_copy(stop)
        now = self.clock()
        for row in self.ledger.labels(LabelState.WAITING):
            self._list_objects(row, now)
        consecutive = 0
        tried: set[tuple[int, str, bool]] = set()  # each step at most once per run
        while not result.aborted and not result.interrupted:
            # deletes first: an earlier label's label.json goes before anything else happens
            work = [
                (obj, delete)
                for delete, batch in (
                    (True, self.ledger.due_deletes(now)),
                    (False, self.ledger.due_objects(now)),
                )
                for obj in batch
                if (obj.label_id, obj.rel, delete) not in tried
            ]
            if not work:
                break
            labels: dict[int, LabelRow] = {}  # per batch: a relabel may change a row
            for obj, delete in work:
                if stop is not None and stop.is_set():
                    result.interrupted = True
                    break
                tried.add((obj.label_id, obj.rel, delete))
                if delete:
                    ok = self._delete_one(obj, result)
                else:
                    if obj.label_id not in labels:
                        labels[obj.label_id] = self.ledger.label(obj.label_id)
                    ok = self._upload_one(labels[obj.label_id], obj, result)
                consecutive = 0 if ok else consecutive + 1
                if not ok and (
                    result.unreachable or consecutive >= self.settings.abort_after_failures
                ):
                    result.aborted = True
                    break
        done = self.ledger.complete_labels(self.clock())
        result.completed_labels = len(done)
        for label_id in done:
            row = self.ledger.label(label_id)
            log.info(
                "label uploaded",
                extra={"label_id": label_id, "event_id": row.event_id, "label": row.label},
            )
        result.cleaned_labels = self._cleanup()
        result.pruned_labels = self._prune()
        self._sync_pins()
        self._finish_run(result)
        return result

    def _sync_local_copy(self, stop: threading.Event | None) -> None:
        """Bring the local copy up to date with the bucket (at the first run after a start,
        then every ``local_copy_sync_seconds``; a failure is logged and tried again by the
        next run)."""
        assert isinstance(self.store, MirroredStore)
        try:
            synced = self.store.sync(lambda: stop is not None and stop.is_set())
        except DestinationError as exc:
            log.warning(
                "local copy of the bucket not brought up to date", extra={"error": str(exc)}
            )
            return
        self.metrics.local_copy_fetched.inc(synced.fetched)
        self.metrics.local_copy_removed.inc(synced.removed)
        if synced.refused:
            log.warning(
                "local copy: the bucket holds none of the folder's objects, so nothing was "
                "removed from the folder; check HOMESEC_UPLOADER_BUCKET and "
                "HOMESEC_UPLOADER_KEY_PREFIX",
                extra={"kept": synced.refused, "folder": str(self.store.local.root)},
            )
        if stop is None or not stop.is_set():
            self._next_sync = self.clock() + self.settings.local_copy_sync_seconds
            log.info(
                "local copy of the bucket up to date",
                extra={"fetched": synced.fetched, "removed": synced.removed},
            )

    def _sync_pins(self) -> None:
        """Pin every event still owed to the destination; release the pins of events whose
        labels are all settled (a pin of an event the ledger does not know yet stays: its label
        may still be on its way from the gateway)."""
        owed = self.ledger.owed_events()
        for camera, event_id in sorted(owed):
            self.pins.pin(PinKind.LABEL, camera, event_id)
        self.pins.release_settled(
            PinKind.LABEL,
            lambda camera, event_id: (
                (camera, event_id) not in owed and self.ledger.knows_event(camera, event_id)
            ),
        )
        self.metrics.pinned_events.set(len(owed))

    # ---- listing an event's objects ----------------------------------------------------------

    def _list_objects(self, row: LabelRow, now: float) -> None:
        """Record a waiting label's objects once its media is complete (or waited long enough)."""
        media: EventMedia | None = None
        problem: str | None = None
        try:
            media = inspect_event(self.settings.media_dir, row.camera, row.event_id)
            problem = media.problem
        except (UnsafePath, OSError) as exc:
            problem = f"cannot read event media: {exc}"
        timed_out = now - row.received_at >= self.settings.media_wait_seconds
        settled = (
            media is not None
            and time.time() - media.newest_mtime >= self.settings.media_settle_seconds
        )
        if media is not None and media.ended and settled:
            files, day, error = media.files, media.day, None
        elif timed_out:
            files = media.files if media is not None else []
            day = (media.day if media is not None else None) or utc_day(row.payload.labelled_at)
            error = (
                f"event media incomplete after {self.settings.media_wait_seconds:g} s: "
                f"{problem or 'event never ended'}; uploading what exists"
            )
            if media is None or media.day is None:
                error += "; date taken from the label time"
            self.metrics.failures.labels("media_timeout").inc()
            log.warning(
                "event media incomplete",
                extra={"event_id": row.event_id, "camera": row.camera, "error": error},
            )
        else:
            return  # the detector may still be writing; look again next run
        assert day is not None
        objects = [
            NewObject(rel, object_key(self.settings.key_prefix, row, day, rel)) for rel in files
        ]
        for required in (EVENT_META, SNAPSHOT):
            if required not in files:
                objects.append(
                    NewObject(
                        required,
                        object_key(self.settings.key_prefix, row, day, required),
                        error=f"{required} missing in the event folder",
                    )
                )
                self.metrics.failures.labels("missing_file").inc()
        objects.append(
            NewObject(LABEL_DOC, object_key(self.settings.key_prefix, row, day, LABEL_DOC))
        )
        self.ledger.set_objects(row.id, day, objects, error, now)

    # ---- one object -----------------------------------------------------------------------------

    def _upload_one(self, row: LabelRow, obj: ObjectRow, result: RunResult) -> bool:
        """Upload one object, or copy it from its ``source_key`` while that key exists (a
        relabelled event); False on a destination error (retried later with backoff)."""
        self.ledger.note_attempt(obj.label_id, obj.rel)  # counted before any request is made
        try:
            source = None if obj.source_key is None else self.store.head(obj.source_key)
            if source is not None:
                self._copy(row, obj, source, result)
            else:
                data = self._read(row, obj, result)
                if data is None:
                    return True  # a local problem, recorded: retrying cannot fix it
                self._put(row, obj, data, result)
        except DestinationError as exc:
            self._retry(obj, exc, result)
            return False
        self._degraded_reason = None
        return True

    def _read(self, row: LabelRow, obj: ObjectRow, result: RunResult) -> bytes | None:
        """The object's bytes; None when it failed for good (recorded as failed)."""
        try:
            return self._content(row, obj)
        except (FileNotFoundError, NotADirectoryError):
            gone = f" and {obj.source_key} is gone" if obj.source_key else ""
            self._fail(obj, f"{obj.rel} missing in the event folder{gone}", "missing_file", result)
        except CorruptFile as exc:
            self._fail(obj, f"corrupt file: {exc}", "corrupt_file", result)
        except UnsafePath as exc:
            self._fail(obj, f"{obj.rel} refused: {exc}", "unsafe_path", result)
        except OSError as exc:
            self._fail(obj, f"{obj.rel} unreadable: {exc}", "missing_file", result)
        return None

    def _put(self, row: LabelRow, obj: ObjectRow, data: bytes, result: RunResult) -> None:
        md5 = md5_hex(data)
        existing = self.store.head(obj.key)
        if existing is not None and existing.size == len(data) and existing.etag == md5:
            self.ledger.mark_uploaded(obj.label_id, obj.rel, len(data), md5, self.clock())
            self.metrics.already_present.inc()
            result.already_present += 1
            return
        stored = self.store.put(obj.key, data, content_type(obj.rel), _metadata(row))
        if self.store.verifies_md5 and stored.etag != md5:
            raise DestinationError(f"ETag {stored.etag} of {obj.key} is not the MD5 {md5}")
        self.ledger.mark_uploaded(obj.label_id, obj.rel, stored.size, stored.etag, self.clock())
        self.metrics.uploaded_objects.inc()
        self.metrics.uploaded_bytes.inc(stored.size)
        result.uploaded += 1
        result.uploaded_bytes += stored.size

    def _copy(self, row: LabelRow, obj: ObjectRow, source: Stored, result: RunResult) -> None:
        """Copy within the destination (HEAD first: a copy that already happened is not redone)."""
        assert obj.source_key is not None
        if self.store.head(obj.key) == source:
            self.ledger.mark_uploaded(obj.label_id, obj.rel, source.size, source.etag, self.clock())
            self.metrics.already_present.inc()
            result.already_present += 1
            return
        etag = self.store.copy(obj.source_key, obj.key, content_type(obj.rel), _metadata(row))
        if self.store.verifies_md5 and etag != source.etag:
            raise DestinationError(f"ETag {etag} of {obj.key} is not {source.etag} of the source")
        self.ledger.mark_uploaded(obj.label_id, obj.rel, source.size, etag, self.clock())
        self.metrics.copied_objects.inc()
        result.copied += 1

    def _delete_one(self, obj: ObjectRow, result: RunResult) -> bool:
        """Delete an object of a superseded label; False on a destination error (retried)."""
        self.ledger.note_attempt(obj.label_id, obj.rel)
        try:
            self.store.delete(obj.key)
        except DestinationError as exc:
            self._retry(obj, exc, result, "delete")
            return False
        self.ledger.mark_deleted(obj.label_id, obj.rel, self.clock())
        self.metrics.objects_deleted.inc()
        result.deleted += 1
        self._degraded_reason = None
        return True

    def _content(self, row: LabelRow, obj: ObjectRow) -> bytes:
        if obj.rel == LABEL_DOC:
            return self._label_doc(row)
        data = media_path(self.settings.media_dir, row.camera, row.event_id, obj.rel).read_bytes()
        check_content(obj.rel, data)
        return data

    def _label_doc(self, row: LabelRow) -> bytes:
        """label.json: the label plus what was uploaded. Built only from settled ledger state, so
        a retry after a crash produces the same bytes (and the same ETag)."""
        objects = [o for o in self.ledger.objects(row.id) if o.rel != LABEL_DOC]
        doc = {
            "label": row.payload.model_dump(mode="json"),
            "date": row.day,
            "key_prefix": object_key(self.settings.key_prefix, row, row.day or "", ""),
            "received_at": row.received_at,
            "files": [
                {"name": o.rel, "bytes": o.size, "etag": o.etag}
                for o in objects
                if o.state is ObjectState.UPLOADED
            ],
            "errors": ([{"name": "event", "error": row.error}] if row.error else [])
            + [{"name": o.rel, "error": o.error} for o in objects if o.state is ObjectState.FAILED],
            "uploader": {"service": "homesec-uploader", "version": __version__},
        }
        return json.dumps(doc, indent=2, sort_keys=True).encode()

    def _fail(self, obj: ObjectRow, error: str, reason: str, result: RunResult) -> None:
        self.ledger.mark_failed(obj.label_id, obj.rel, error)
        self.metrics.failures.labels(reason).inc()
        result.failed += 1
        result.errors.append(error)
        log.warning("object not uploadable", extra={"key": obj.key, "error": error})

    def _retry(
        self, obj: ObjectRow, exc: DestinationError, result: RunResult, what: str = "upload"
    ) -> None:
        attempts = obj.attempts + 1
        delay = backoff_delay(
            attempts, self.settings.retry_base_seconds, self.settings.retry_max_seconds
        )
        self.ledger.mark_retry(obj.label_id, obj.rel, str(exc), self.clock() + delay)
        self.metrics.failures.labels("unreachable" if exc.unreachable else "destination").inc()
        result.retry_later += 1
        result.errors.append(str(exc))
        self._degraded_reason = str(exc)
        result.unreachable = result.unreachable or exc.unreachable
        log.warning(
            f"{what} failed; will retry",
            extra={"key": obj.key, "error": str(exc), "retry_in_seconds": round(delay, 3)},
        )

    # ---- retention ----------------------------------------------------------------------------

    def _cleanup(self) -> int:
        """Delete local media of fully uploaded labels once ``keep_local_days`` have passed."""
        if not self.settings.delete_after_upload:
            return 0
        before = self.clock() - self.settings.keep_local_days * _DAY
        cleaned = 0
        for row in self.ledger.cleanup_due(before):
            for obj in self.ledger.objects(row.id):
                if obj.state is not ObjectState.UPLOADED or obj.rel == LABEL_DOC:
                    continue  # a failed (corrupt) file stays for inspection
                try:
                    path = media_path(self.settings.media_dir, row.camera, row.event_id, obj.rel)
                    path.unlink(missing_ok=True)
                except (OSError, UnsafePath) as exc:
                    log.warning("cleanup failed", extra={"key": obj.key, "error": str(exc)})
            folder = event_dir(self.settings.media_dir, row.camera, row.event_id)
            for empty in (folder / PREROLL_DIR, folder / FRAMES_DIR, folder):
                try:
                    empty.rmdir()  # only when empty: unknown or failed files stay
                except OSError:
                    pass
            self.ledger.mark_cleaned(row.id, self.clock())
            cleaned += 1
            log.info("local media deleted", extra={"event_id": row.event_id, "camera": row.camera})
        return cleaned

    def _prune(self) -> int:
        """Forget finished labels older than ``ledger_keep_days`` (0: never)."""
        if self.settings.ledger_keep_days <= 0:
            return 0
        before = self.clock() - self.settings.ledger_keep_days * _DAY
        pruned = self.ledger.prune(before, uncleaned_done=not self.settings.delete_after_upload)
        if pruned:
            self.metrics.pruned_labels.inc(pruned)
            log.info("ledger pruned", extra={"labels": pruned})
        return pruned

    # ---- status -----------------------------------------------------------------------------

    def _finish_run(self, result: RunResult) -> None:
        now = self.clock()
        if result.retry_later == 0 and not result.interrupted:
            self.ledger.set_meta("last_success_at", repr(now))
            self.metrics.last_success.set(now)
        if result.errors:
            self.ledger.set_meta("last_error", result.errors[-1][:300])
        elif result.uploaded or result.already_present or result.copied or result.deleted:
            self.ledger.set_meta("last_error", None)
        if result.retry_later:
            reason = self._degraded_reason or "destination error"
            self.bus.set_status(ServiceState.DEGRADED, f"uploads failing: {reason}"[:500])
        elif self.bus.status.state is not ServiceState.OK:
            self.bus.set_status(ServiceState.OK)
        self._refresh_gauges()
        self.publish_status()
        log.info(
            "upload run finished",
            extra={
                "uploaded": result.uploaded,
                "bytes": result.uploaded_bytes,
                "copied": result.copied,
                "deleted": result.deleted,
                "already_present": result.already_present,
                "failed": result.failed,
                "retry_later": result.retry_later,
                "completed_labels": result.completed_labels,
                "pruned_labels": result.pruned_labels,
                "aborted": result.aborted,
                "interrupted": result.interrupted,
            },
        )

    def _refresh_gauges(self) -> None:
        counts = self.ledger.counts()
        self.metrics.pending_items.set(counts.pending_items)
        self.metrics.pending_objects.set(counts.pending_objects)
        self.metrics.pending_deletes.set(counts.pending_deletes)

    def status(self) -> UploaderStatus:
        counts = self.ledger.counts()
        last = self.ledger.get_meta("last_success_at")
        return UploaderStatus(
            mode="s3" if self.store.mode == "s3" else "local",
            destination=self.store.destination[:300],
            pending=counts.pending_items,
            uploaded_objects_total=counts.uploaded_objects,
            last_success_at=None if last is None else float(last),
            last_error=self.ledger.get_meta("last_error"),
        )

    def publish_status(self) -> None:
        with self._status_lock:
            self.bus.publish(UPLOADER_STATUS, self.status())
