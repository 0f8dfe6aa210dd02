"""Pins on disk: idempotent, aged from the first pinning, identifiers only, errors reported."""

from __future__ import annotations

import os
from pathlib import Path

from homesec.pins import PinKind, Pins


def test_pin_is_idempotent_and_keeps_its_first_time(tmp_path: Path) -> None:
    pins = Pins(tmp_path / "pins")
    assert pins.pin(PinKind.LABEL, "front", "ev1")
    path = tmp_path / "pins" / "label" / "front" / "ev1"
    assert path.is_file() and path.stat().st_size == 0
    os.utime(path, (1000.0, 1000.0))
    assert pins.pin(PinKind.LABEL, "front", "ev1")  # again: untouched
    assert path.stat().st_mtime == 1000.0
    assert pins.is_pinned(PinKind.LABEL, "front", "ev1")
    assert not pins.is_pinned(PinKind.ALERT, "front", "ev1")  # kinds are separate
    assert [(p.kind, p.camera, p.event_id, p.pinned_at) for p in pins.scan()] == [
        (PinKind.LABEL, "front", "ev1", 1000.0)
    ]
    assert pins.release(PinKind.LABEL, "front", "ev1")
    assert pins.release(PinKind.LABEL, "front", "ev1")  # twice is fine
    assert pins.scan() == []


def test_unsafe_names_are_refused_and_ignored(tmp_path: Path) -> None:
    errors: list[int] = []
    pins = Pins(tmp_path / "pins", on_error=lambda: errors.append(1))
    assert not pins.pin(PinKind.ALERT, "../etc", "ev1")
    assert not pins.pin(PinKind.ALERT, "front", "../../x")
    assert not pins.is_pinned(PinKind.ALERT, "front", "..")
    assert errors == [1, 1]
    assert not (tmp_path / "etc").exists() and not (tmp_path / "x").exists()
    # files that are not pins (temporary names, dot files) are not listed
    odd = tmp_path / "pins" / "alert" / "front"
    odd.mkdir(parents=True)
    (odd / ".tmp").write_text("")
    (odd / "ok-1").write_text("")
    (tmp_path / "pins" / "alert" / ".hidden").mkdir()
    assert [p.event_id for p in pins.scan(PinKind.ALERT)] == ["ok-1"]


def test_release_settled_releases_only_what_the_consumer_says(tmp_path: Path) -> None:
    pins = Pins(tmp_path / "pins")
    for event in ("a", "b", "c"):
        pins.pin(PinKind.LABEL, "front", event)
    pins.pin(PinKind.ALERT, "front", "a")
    assert pins.release_settled(PinKind.LABEL, lambda camera, event: event != "b") == 2
    assert sorted((p.kind.value, p.event_id) for p in pins.scan()) == [
        ("alert", "a"),
        ("label", "b"),
    ]


def test_unwritable_pins_folder_is_reported_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "pins"
    blocker.write_text("a file where the pins folder should be")
    errors: list[int] = []
    pins = Pins(blocker, on_error=lambda: errors.append(1))
    assert not pins.pin(PinKind.LABEL, "front", "ev1")
    assert errors == [1]
    assert pins.scan() == []
