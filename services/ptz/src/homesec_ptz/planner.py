"""Pure command logic: which target a :class:`PtzCommand` asks for, clamped to the hardware.

No broker, no hardware: the controller feeds commands in and applies the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from homesec.contract import PTZ_MAX_DEGREES, PTZ_MIN_DEGREES, PtzCommand
from homesec_ptz.settings import Position


class Outcome(StrEnum):
    APPLIED = "applied"
    CLAMPED = "clamped"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Plan:
    """What to do for one command."""

    outcome: Outcome
    target: Position | None = None  # where to move (None: no move)
    save_as: str | None = None  # save ``target`` under this preset name
    error: str | None = None  # why it was rejected or clamped


def clamp(value: float) -> tuple[float, bool]:
    """``value`` limited to -90..90, and whether it had to be limited."""
    limited = min(PTZ_MAX_DEGREES, max(PTZ_MIN_DEGREES, value))
    return limited, limited != value


def plan(
    cmd: PtzCommand, target: Position, presets: Mapping[str, Position], home: Position
) -> Plan:
    """Resolve ``cmd`` against the current ``target`` (relative moves start from where the
    head is going, so two quick ``pan_by`` commands add up)."""
    if cmd.save_preset is not None:
        return Plan(Outcome.APPLIED, target=None, save_as=cmd.save_preset)
    if cmd.preset is not None:
        found = presets.get(cmd.preset)
        if found is None:
            known = ", ".join(sorted(presets)) or "none saved"
            return Plan(Outcome.REJECTED, error=f"unknown preset {cmd.preset!r} ({known})")
        return Plan(Outcome.APPLIED, target=found)
    if cmd.home:
        return Plan(Outcome.APPLIED, target=home)
    if cmd.pan_by is not None or cmd.tilt_by is not None:
        pan = target.pan + (cmd.pan_by or 0.0)
        tilt = target.tilt + (cmd.tilt_by or 0.0)
    else:
        pan = cmd.pan if cmd.pan is not None else target.pan
        tilt = cmd.tilt if cmd.tilt is not None else target.tilt
    pan_c, pan_clamped = clamp(pan)
    tilt_c, tilt_clamped = clamp(tilt)
    if pan_clamped or tilt_clamped:
        return Plan(
            Outcome.CLAMPED,
            target=Position(pan=pan_c, tilt=tilt_c),
            error=f"clamped to the -90..90 range: asked pan {pan:g}, tilt {tilt:g}",
        )
    return Plan(Outcome.APPLIED, target=Position(pan=pan_c, tilt=tilt_c))


def step_towards(current: Position, target: Position, max_step: float) -> Position:
    """One smooth-movement step: each axis moves at most ``max_step`` degrees."""
    return Position(
        pan=_approach(current.pan, target.pan, max_step),
        tilt=_approach(current.tilt, target.tilt, max_step),
    )


def _approach(value: float, goal: float, max_step: float) -> float:
    if abs(goal - value) <= max_step:
        return goal
    return value + max_step if goal > value else value - max_step
