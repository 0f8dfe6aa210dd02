"""PTZ command planning, presets file and simulated head, without a broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from homesec.contract import PtzCommand
from homesec_ptz.backends import SimulatedBackend
from homesec_ptz.planner import Outcome, clamp, plan, step_towards
from homesec_ptz.settings import Position, PtzSettings
from homesec_ptz.store import PresetStore, presets_path

HOME = Position(pan=40, tilt=10)
HERE = Position(pan=0, tilt=0)


def test_absolute_move_in_range() -> None:
    result = plan(PtzCommand(pan=30, tilt=20), HERE, {}, HOME)
    assert result.outcome is Outcome.APPLIED
    assert result.target == Position(pan=30, tilt=20)
    assert result.error is None


def test_absolute_single_axis_keeps_the_other() -> None:
    result = plan(PtzCommand(tilt=-15), Position(pan=25, tilt=5), {}, HOME)
    assert result.target == Position(pan=25, tilt=-15)


def test_clamping_reports_what_was_asked() -> None:
    result = plan(PtzCommand(pan=120, tilt=-95.5), HERE, {}, HOME)
    assert result.outcome is Outcome.CLAMPED
    assert result.target == Position(pan=90, tilt=-90)
    assert result.error is not None and "120" in result.error
    assert clamp(90.0) == (90.0, False)
    assert clamp(-90.01) == (-90.0, True)


def test_relative_moves_add_to_the_target_and_clamp() -> None:
    result = plan(PtzCommand(pan_by=-10), Position(pan=30, tilt=20), {}, HOME)
    assert result.target == Position(pan=20, tilt=20)
    result = plan(PtzCommand(tilt_by=80), Position(pan=30, tilt=20), {}, HOME)
    assert result.outcome is Outcome.CLAMPED
    assert result.target == Position(pan=30, tilt=90)


def test_preset_home_and_unknown_preset() -> None:
    presets = {"door": Position(pan=-30, tilt=5)}
    assert plan(PtzCommand(preset="door"), HERE, presets, HOME).target == presets["door"]
    assert plan(PtzCommand(home=True), HERE, presets, HOME).target == HOME
    unknown = plan(PtzCommand(preset="garage"), HERE, presets, HOME)
    assert unknown.outcome is Outcome.REJECTED
    assert unknown.target is None
    assert unknown.error is not None and "garage" in unknown.error and "door" in unknown.error
    saved = plan(PtzCommand(save_preset="garage"), HERE, presets, HOME)
    assert saved.save_as == "garage" and saved.target is None


def test_contract_rejects_mixed_or_empty_forms() -> None:
    for bad in ({}, {"pan": 1, "pan_by": 2}, {"preset": "a", "home": True}, {"home": False}):
        with pytest.raises(ValidationError):
            PtzCommand.model_validate(bad)


def test_step_towards_moves_each_axis_at_most_max_step() -> None:
    nxt = step_towards(Position(pan=0, tilt=0), Position(pan=30, tilt=-2), 5)
    assert nxt == Position(pan=5, tilt=-2)
    assert step_towards(nxt, Position(pan=30, tilt=-2), 100) == Position(pan=30, tilt=-2)


def test_preset_store_persists_and_merges_with_settings(tmp_path: Path) -> None:
    path = presets_path(tmp_path, "front")
    assert path == (tmp_path / "ptz" / "front" / "presets.json").resolve()
    store = PresetStore(path, {"door": Position(pan=1, tilt=2), "yard": Position(pan=3, tilt=4)})
    store.save_preset("door", Position(pan=-20, tilt=15))
    store.save_position(Position(pan=12, tilt=13))
    again = PresetStore(path, {"door": Position(pan=1, tilt=2), "yard": Position(pan=3, tilt=4)})
    assert again.presets == {"door": Position(pan=-20, tilt=15), "yard": Position(pan=3, tilt=4)}
    assert again.last_position == Position(pan=12, tilt=13)
    assert json.loads(path.read_text())["presets"]["door"] == {"pan": -20.0, "tilt": 15.0}


def test_corrupt_presets_file_falls_back_to_settings(tmp_path: Path) -> None:
    path = presets_path(tmp_path, "front")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    store = PresetStore(path, {"door": Position(pan=1, tilt=2)})
    assert store.presets == {"door": Position(pan=1, tilt=2)}
    assert store.last_position is None


def test_settings_accept_presets_as_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMESEC_PTZ_PRESETS", '{"door": [30, 20], "yard": {"pan": -5, "tilt": 0}}')
    settings = PtzSettings()
    assert settings.presets["door"] == Position(pan=30, tilt=20)
    assert settings.home == Position(pan=40, tilt=10)
    monkeypatch.setenv("HOMESEC_PTZ_PRESETS", '{"door": [300, 20]}')
    with pytest.raises(ValidationError):
        PtzSettings()


def test_simulated_slew_travels_over_time() -> None:
    now = [100.0]
    head = SimulatedBackend(0, 0, slew_degrees_per_second=10, clock=lambda: now[0])
    head.move(30, -10)
    assert head.position() == (0, 0) and head.settling()
    now[0] += 1.5
    assert head.position() == (15, -10)
    now[0] += 10
    assert head.position() == (30, -10) and not head.settling()
