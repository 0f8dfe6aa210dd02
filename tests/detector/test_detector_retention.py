"""Retention on real folders: age and size cap, pins (alert, label, expired, orphaned), open
events, and the size index that spares a walk of the whole media tree on every pass."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import pytest

from homesec.pins import PinKind, Pins
from homesec_detector.media_writer import BufferedFrame, MediaSettings, MediaWriter
from homesec_detector.retention import ORPHAN_PIN_SECONDS, MediaIndex, Retention

DAY = 86400.0
KB = 1024


def make_event(media: Path, camera: str, name: str, size: int, age_seconds: float) -> Path:
    """An event folder: event.json, a snapshot of ``size`` bytes and two frames."""
    folder = media / camera / name
    (folder / "frames").mkdir(parents=True)
    (folder / "event.json").write_text("{}")
    (folder / "snapshot.jpg").write_bytes(b"x" * size)
    (folder / "frames" / "000000.jpg").write_bytes(b"f" * 100)
    stamp = time.time() - age_seconds
    os.utime(folder / "event.json", (stamp, stamp))
    return folder


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def retention(
    tmp_path: Path,
    index: MediaIndex | None = None,
    *,
    max_total_mb: float = 1.0,
    max_age_days: float = 30.0,
    pin_max_age_days: float = 14.0,
) -> Retention:
    return Retention(
        tmp_path / "media",
        index or MediaIndex(),
        Pins(tmp_path / "pins"),
        max_age_days=max_age_days,
        max_total_mb=max_total_mb,
        pin_max_age_days=pin_max_age_days,
        interval_seconds=60.0,
    )


def age_pin(pins: Pins, kind: PinKind, camera: str, event_id: str, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(pins.path(kind, camera, event_id), (then, then))


def test_retention_prunes_by_age_then_oldest_first_by_size(tmp_path: Path) -> None:
    media = tmp_path / "media"
    ancient = make_event(media, "front", "front-a", 1000, 40 * DAY)
    old = make_event(media, "front", "front-b", 600_000, 3000)
    mid = make_event(media, "back", "back-c", 600_000, 2000)
    new = make_event(media, "front", "front-d", 600_000, 1000)
    r = retention(tmp_path, max_total_mb=1.5)
    report = r.run_once()
    assert report.deleted == 2
    assert not ancient.exists() and not old.exists()
    assert mid.exists() and new.exists()
    assert r.pruned == 2
    assert report.total_bytes == folder_bytes(mid) + folder_bytes(new)


def test_tiny_cap_never_deletes_pinned_events_until_released(tmp_path: Path) -> None:
    """A labelled event not uploaded yet and an alert not posted yet survive any size cap;
    once their pins are released they go like any other old event."""
    media = tmp_path / "media"
    labelled = make_event(media, "front", "front-labelled", 50 * KB, 5000)
    alerted = make_event(media, "front", "front-alerted", 50 * KB, 4000)
    plain = make_event(media, "front", "front-plain", 50 * KB, 3000)
    r = retention(tmp_path, max_total_mb=0.001)  # ~1 kB: everything is over the cap
    assert r.pins.pin(PinKind.LABEL, "front", "front-labelled")
    assert r.pins.pin(PinKind.ALERT, "front", "front-alerted")

    report = r.run_once()
    assert labelled.exists() and alerted.exists() and not plain.exists()
    assert report.deleted == 1 and report.pinned_events == 2
    assert report.pinned_bytes == folder_bytes(labelled) + folder_bytes(alerted)
    assert report.pinned_over_cap
    assert r.run_once().deleted == 0  # and on every later pass

    r.pins.release(PinKind.LABEL, "front", "front-labelled")
    report = r.run_once()
    assert not labelled.exists() and alerted.exists() and report.deleted == 1
    r.pins.release(PinKind.ALERT, "front", "front-alerted")
    report = r.run_once()
    assert not alerted.exists() and report.total_bytes == 0 and not report.pinned_over_cap


def test_a_pin_protects_against_age_too(tmp_path: Path) -> None:
    media = tmp_path / "media"
    old = make_event(media, "front", "front-old", 10, 40 * DAY)
    r = retention(tmp_path, max_total_mb=100, max_age_days=30)
    r.pins.pin(PinKind.LABEL, "front", "front-old")
    assert r.run_once().deleted == 0 and old.exists()


def test_an_expired_pin_stops_protecting_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    media = tmp_path / "media"
    stale = make_event(media, "front", "front-stale", 50 * KB, 20 * DAY)
    fresh = make_event(media, "front", "front-fresh", 50 * KB, 1000)
    r = retention(tmp_path, max_total_mb=0.001, pin_max_age_days=14)
    r.pins.pin(PinKind.ALERT, "front", "front-stale")
    r.pins.pin(PinKind.LABEL, "front", "front-stale")
    r.pins.pin(PinKind.LABEL, "front", "front-fresh")
    age_pin(r.pins, PinKind.ALERT, "front", "front-stale", 15 * DAY)
    age_pin(r.pins, PinKind.LABEL, "front", "front-stale", 15 * DAY)
    with caplog.at_level(logging.WARNING, logger="homesec_detector.retention"):
        report = r.run_once()
    assert not stale.exists() and fresh.exists()
    assert {(p.kind, p.event_id) for p in report.expired_pins} == {
        (PinKind.ALERT, "front-stale"),
        (PinKind.LABEL, "front-stale"),
    }
    assert sum("pin expired" in rec.message for rec in caplog.records) == 2
    # the deleted folder's pins went with it; the fresh pin stays
    assert [(p.kind, p.event_id) for p in r.pins.scan()] == [(PinKind.LABEL, "front-fresh")]


def test_expired_pins_are_reported_once(tmp_path: Path) -> None:
    make_event(tmp_path / "media", "front", "front-x", 10, 1000)
    r = retention(tmp_path, max_total_mb=100)
    r.pins.pin(PinKind.LABEL, "front", "front-x")
    age_pin(r.pins, PinKind.LABEL, "front", "front-x", 15 * DAY)
    assert len(r.run_once().expired_pins) == 1  # under the cap: the folder stays
    assert r.run_once().expired_pins == []
    assert r.pins.is_pinned(PinKind.LABEL, "front", "front-x")


def test_orphan_pins_are_removed_once_old(tmp_path: Path) -> None:
    (tmp_path / "media").mkdir()
    r = retention(tmp_path)
    r.pins.pin(PinKind.LABEL, "front", "gone-old")
    r.pins.pin(PinKind.LABEL, "front", "gone-young")
    age_pin(r.pins, PinKind.LABEL, "front", "gone-old", ORPHAN_PIN_SECONDS + 60)
    r.run_once()
    assert [p.event_id for p in r.pins.scan()] == ["gone-young"]


def frame(seq: int, size: int = 2000) -> BufferedFrame:
    return BufferedFrame(
        seq=seq, captured_at=time.time(), jpeg=b"\xff\xd8" + b"j" * size, width=4, height=3
    )


def test_open_events_are_never_deleted_and_the_index_counts_what_the_writer_wrote(
    tmp_path: Path,
) -> None:
    media = tmp_path / "media"
    old = make_event(media, "front", "front-old", 50 * KB, 5000)
    pins = Pins(tmp_path / "pins")
    writer = MediaWriter(media, MediaSettings(draw_boxes=False), threaded=False, pins=pins)
    r = retention(tmp_path, writer.index, max_total_mb=0.001)
    writer.start_event("front", "front-open", frame(1), [frame(0)] * 3, {"event_id": "e"})
    writer.add_frame("front", "front-open", frame(2))
    open_folder = media / "front" / "front-open"
    report = r.run_once()
    assert not old.exists() and open_folder.exists()
    assert report.open_bytes == folder_bytes(open_folder)  # index == disk
    writer.finish_event("front", "front-open", {"event_id": "e", "type": "end"})
    assert writer.index.entries()[str(open_folder)].size == folder_bytes(open_folder)
    assert r.run_once().deleted == 1 and not open_folder.exists()


def test_an_unoccupied_sample_is_pinned_for_the_uploader_before_it_is_written(
    tmp_path: Path,
) -> None:
    media = tmp_path / "media"
    pins = Pins(tmp_path / "pins")
    order: list[str] = []
    writer = MediaWriter(media, MediaSettings(), threaded=False, pins=pins)
    real_pin = pins.pin

    def spy(kind: PinKind, camera: str, event_id: str) -> bool:
        order.append(f"pin, folder exists: {(media / camera / event_id).exists()}")
        return real_pin(kind, camera, event_id)

    pins.pin = spy  # type: ignore[method-assign]
    writer.save_sample("front", "front-unocc-1", frame(1), [frame(0)], {"type": "sample"})
    assert order == ["pin, folder exists: False"]
    assert pins.is_pinned(PinKind.LABEL, "front", "front-unocc-1")
    r = retention(tmp_path, writer.index, max_total_mb=0.001)
    assert r.run_once().deleted == 0 and (media / "front" / "front-unocc-1").is_dir()


def test_passes_after_the_first_measure_only_what_changed(tmp_path: Path) -> None:
    media = tmp_path / "media"
    folders = [make_event(media, "front", f"front-{i}", 1000, 1000 - i) for i in range(20)]
    r = retention(tmp_path, max_total_mb=100)
    first = r.run_once()
    assert first.measured == 20 and first.total_bytes == sum(map(folder_bytes, folders))
    assert r.run_once().measured == 0  # nothing changed: nothing walked

    # the uploader cleaned up one event's files, an operator deleted another folder, a third
    # appeared from elsewhere (a restored backup): only those are looked at
    (folders[3] / "frames" / "000000.jpg").unlink()
    shutil.rmtree(folders[5])
    extra = make_event(media, "back", "back-1", 3000, 10)
    report = r.run_once()
    assert report.measured == 2
    expected = sum(folder_bytes(f) for f in [*folders, extra] if f.exists())
    assert report.total_bytes == expected


def test_folders_that_are_not_events_are_ignored(tmp_path: Path) -> None:
    media = tmp_path / "media"
    keep = media / "lost+found"
    keep.mkdir(parents=True)
    (keep / "x").write_bytes(b"x" * 5000)
    (media / ".hidden" / "ev").mkdir(parents=True)
    r = retention(tmp_path, max_total_mb=0.001)
    assert r.run_once().total_bytes == 0
    assert (keep / "x").exists() and (media / ".hidden" / "ev").exists()
