"""The uploader's Prometheus metrics (registered on the service's own registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

FAILURE_REASONS = (
    "unreachable",
    "destination",
    "missing_file",
    "corrupt_file",
    "unsafe_path",
    "media_timeout",
    "internal",
)


class UploaderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.pending_items = Gauge(
            "homesec_uploader_pending_items",
            "Labels not fully uploaded yet (waiting for media or with objects pending)",
            registry=r,
        )
        self.pinned_events = Gauge(
            "homesec_uploader_pinned_events",
            "Event folders pinned for the uploader (kept by the detector's retention)",
            registry=r,
        )
        self.pin_errors = Counter(
            "homesec_uploader_pin_errors",
            "Pins that could not be written or removed",
            registry=r,
        )
        self.pending_objects = Gauge(
            "homesec_uploader_pending_objects", "Objects waiting to be uploaded", registry=r
        )
        self.uploaded_objects = Counter(
            "homesec_uploader_uploaded_objects",
            "Objects uploaded (PUT confirmed) by this process",
            registry=r,
        )
        self.uploaded_bytes = Counter(
            "homesec_uploader_uploaded_bytes", "Bytes uploaded by this process", registry=r
        )
        self.already_present = Counter(
            "homesec_uploader_already_present_objects",
            "Pending objects found already stored with the same size and ETag (not re-sent)",
            registry=r,
        )
        self.copied_objects = Counter(
            "homesec_uploader_copied_objects",
            "Objects of a relabelled event copied within the destination from the earlier "
            "label's keys by this process",
            registry=r,
        )
        self.objects_deleted = Counter(
            "homesec_uploader_objects_deleted",
            "Objects of a superseded (relabelled) label deleted from the destination by this "
            "process",
            registry=r,
        )
        self.local_copy_fetched = Counter(
            "homesec_uploader_local_copy_fetched_objects",
            "Objects fetched from the bucket into the local copy (HOMESEC_UPLOADER_LOCAL_COPY)",
            registry=r,
        )
        self.local_copy_removed = Counter(
            "homesec_uploader_local_copy_removed_objects",
            "Files removed from the local copy because the bucket no longer holds them",
            registry=r,
        )
        self.pending_deletes = Gauge(
            "homesec_uploader_pending_deletes",
            "Objects of superseded labels still to delete from the destination",
            registry=r,
        )
        self.pruned_labels = Counter(
            "homesec_uploader_pruned_labels",
            "Finished labels removed from the ledger after ledger_keep_days",
            registry=r,
        )
        self.failures = Counter(
            "homesec_uploader_failures",
            "Failed object uploads, copies or deletes, or media problems, by reason",
            ["reason"],
            registry=r,
        )
        for reason in FAILURE_REASONS:
            self.failures.labels(reason)
        self.last_success = Gauge(
            "homesec_uploader_last_success_timestamp_seconds",
            "Unix time of the last upload run that finished without a destination error",
            registry=r,
        )
        self.labels_received = Counter(
            "homesec_uploader_labels_received",
            "Training labels received, by label",
            ["label"],
            registry=r,
        )
        self.runs = Counter("homesec_uploader_runs", "Upload runs", registry=r)
