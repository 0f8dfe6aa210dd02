"""The uploader pins what it still has to upload, and the detector's retention keeps it: real
Mosquitto, moto's S3 server, the detector's `Retention` on the same media and pins folders."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from uploader_support import (
    BUCKET,
    EVENT_FILES,
    S3Server,
    direct,
    key,
    label,
    make_event,
    uploader_settings,
    versions,
)

from homesec.contract import TRAINING_LABELS
from homesec.pins import PinKind, Pins
from homesec.settings import BrokerSettings
from homesec_detector.retention import MediaIndex, Retention
from homesec_uploader.ledger import Ledger, NewObject
from homesec_uploader.settings import UploaderSettings
from support import wait_until


def tiny_retention(settings: UploaderSettings) -> Retention:
    """The detector's retention with a ~1 kB cap: every unpinned folder is over it."""
    return Retention(
        settings.media_dir,
        MediaIndex(),
        Pins(settings.pins_dir),
        max_age_days=30,
        max_total_mb=0.001,
        pin_max_age_days=14,
        interval_seconds=60,
    )


def test_a_labelled_event_survives_a_tiny_cap_and_its_upload_succeeds(
    s3: S3Server, broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    settings = uploader_settings(broker_settings, tmp_path, s3, delete_after_upload=False)
    labelled = make_event(settings.media_dir, "front", "ev-labelled")
    unlabelled = make_event(settings.media_dir, "front", "ev-unlabelled")
    uploader = direct(make_bus, settings)
    client = make_bus("client")
    retention = tiny_retention(settings)
    try:
        assert client.publish_confirmed(TRAINING_LABELS, label("ev-labelled"))
        # recorded, then pinned by the uploader's label handler
        wait_until(lambda: uploader.pins.is_pinned(PinKind.LABEL, "front", "ev-labelled"), 10)
        assert [row.event_id for row in uploader.ledger.labels()] == ["ev-labelled"]

        report = retention.run_once()  # before the upload ran
        assert not unlabelled.exists(), "the cap applies: the unpinned event is deleted"
        assert labelled.exists() and report.pinned_events == 1

        result = uploader.run_once()
        assert (result.uploaded, result.failed, result.completed_labels) == (8, 0, 1)
        expected = {key("ev-labelled", rel) for rel in [*EVENT_FILES, "label.json"]}
        assert versions(s3.client(), BUCKET) == dict.fromkeys(expected, 1)
        assert not uploader.pins.is_pinned(PinKind.LABEL, "front", "ev-labelled")  # released

        assert retention.run_once().deleted == 1  # now it may go
        assert not labelled.exists()
    finally:
        uploader.close()


def test_pins_follow_the_ledger(
    broker_settings: BrokerSettings, make_bus: Any, tmp_path: Path
) -> None:
    """Labels recorded before pins existed are pinned at the first run; a pin of an event the
    ledger does not know yet (its label still at the gateway) stays; a pin of a settled event
    (a late duplicate click) is released."""
    settings = uploader_settings(broker_settings, tmp_path)  # local mode
    make_event(settings.media_dir, "front", "ev-old", ended=False)  # still being recorded
    for event in ("ev-done", "ev-coming"):
        make_event(settings.media_dir, "front", event)
    ledger = Ledger(settings.ledger_path)  # the previous version's ledger: labels, no pins
    ledger.add_label(label("ev-old"), 2e9, lambda day, rel: f"x/{rel}")  # direct()'s clock
    done, _, _ = ledger.add_label(label("ev-done"), time.time(), lambda day, rel: f"x/{rel}")
    ledger.set_objects(done, "2025-11-25", [NewObject("label.json", "x/l", "gone")], None, 0)
    ledger.complete_labels(1.0)
    ledger.close()
    pins = Pins(settings.pins_dir)
    pins.pin(PinKind.LABEL, "front", "ev-done")  # the gateway pinned a second click
    pins.pin(PinKind.LABEL, "front", "ev-coming")  # the gateway pinned; label not here yet
    pins.pin(PinKind.ALERT, "front", "ev-done")  # not the uploader's kind: left alone

    uploader = direct(make_bus, settings)
    try:
        uploader.run_once()
        assert sorted((p.kind.value, p.event_id) for p in pins.scan()) == [
            ("alert", "ev-done"),
            ("label", "ev-coming"),
            ("label", "ev-old"),
        ]
        assert uploader.registry.get_sample_value("homesec_uploader_pinned_events") == 1
    finally:
        uploader.close()
