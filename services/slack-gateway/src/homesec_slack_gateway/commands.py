"""Slash-command parsing: ``/homesec <subcommand>`` and the original system's commands.

A small explicit parser (a table and a few regular expressions), no eval. The result is an
:class:`Action` plus its arguments; executing it is :mod:`homesec_slack_gateway.handlers`' job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from homesec.contract import PTZ_MAX_DEGREES, PTZ_MIN_DEGREES

MAIN_COMMAND = "/homesec"


class Action(StrEnum):
    ARM = "arm"
    ARM_AWAY = "arm_away"
    ARM_HOME = "arm_home"
    ARM_NIGHT = "arm_night"
    DISARM = "disarm"
    ACK = "ack"
    STATUS = "status"
    SNAPSHOT = "snapshot"
    MUTE = "mute"
    UNMUTE = "unmute"
    AUTO_ON = "auto_on"
    AUTO_OFF = "auto_off"
    TRAIN_ON = "train_on"
    TRAIN_OFF = "train_off"
    ROTATE = "rotate"
    POSITION = "position"
    INITIALIZE = "initialize"
    MISSED = "missed"
    REPORT = "report"
    HELP = "help"


SUBCOMMANDS: dict[str, Action] = {
    "arm": Action.ARM,
    "arm away": Action.ARM_AWAY,
    "arm home": Action.ARM_HOME,
    "arm night": Action.ARM_NIGHT,
    "disarm": Action.DISARM,
    "ack": Action.ACK,
    "status": Action.STATUS,
    "snapshot": Action.SNAPSHOT,
    "mute": Action.MUTE,
    "unmute": Action.UNMUTE,
    "auto on": Action.AUTO_ON,
    "auto off": Action.AUTO_OFF,
    "train on": Action.TRAIN_ON,
    "train off": Action.TRAIN_OFF,
    "position": Action.POSITION,
    "initialize": Action.INITIALIZE,
    "report": Action.REPORT,
    "help": Action.HELP,
    "": Action.HELP,
}
"""``/homesec`` subcommands without arguments (``rotate PAN TILT`` and ``missed [MINUTES]`` are
parsed separately)."""

ALIASES: dict[str, Action] = {
    "/pycam_on": Action.ARM,
    "/pycam_off": Action.DISARM,
    "/notifications_on": Action.UNMUTE,
    "/notifications_off": Action.MUTE,
    "/auto_detect_on": Action.AUTO_ON,
    "/auto_detect_off": Action.AUTO_OFF,
    "/status": Action.STATUS,
    "/last_image": Action.SNAPSHOT,
    "/rotate": Action.ROTATE,
    "/current_position": Action.POSITION,
    "/initialize": Action.INITIALIZE,
}
"""The original system's slash commands, kept so its users keep their habits."""

ALL_COMMANDS: tuple[str, ...] = (MAIN_COMMAND, *ALIASES)

_ANGLE = re.compile(r"^[+-]?\d{1,4}$")

USAGE = """\
*homesec* — `/homesec <command>`:
• `arm` / `disarm` — alerts on motion on or off (`arm` arms the default mode, away)
• `arm away` / `arm home` / `arm night` — arm a mode (each mode has its cameras and delays)
• `ack` — stop a pending or triggered alarm and stay armed
• `status` — the alarm and who changed it, switches, who is home, services, last event, fps
• `snapshot` — post the camera's latest image here
• `mute` / `unmute` — Slack alerts off / on
• `auto on` / `auto off` — presence-based arming on / off
• `train on` / `train off` — Occupied/Unoccupied buttons under alerts
• `rotate PAN TILT` — point the camera (degrees, -90..90), e.g. `rotate 30 -10`
• `position` — where the camera points
• `initialize` — pan 40 tilt 10, armed, notifications and auto-arm on (admins only)
• `missed [MINUTES]` — the system missed someone: keep the camera's last minutes (default: \
all it holds) as an *occupied* sample for `homesec tune`
• `report` — this week's training report (alerts, labels, false alerts, missed alerts)
• `help` — this message
The original commands still work: `/pycam_on`, `/pycam_off`, `/notifications_on`, \
`/notifications_off`, `/auto_detect_on`, `/auto_detect_off`, `/status`, `/last_image`, \
`/rotate PAN TILT`, `/current_position`, `/initialize`."""


class UsageError(ValueError):
    """Input that is not a command; the message explains what was expected."""


@dataclass(frozen=True)
class Parsed:
    """A recognised command."""

    action: Action
    pan: int | None = None
    tilt: int | None = None
    minutes: float | None = None


def parse(command: str, text: str) -> Parsed:
    """Parse a slash command and its text; raises :class:`UsageError` with a helpful reason."""
    command = command.strip().lower()
    words = text.strip().lower().split()
    if command == MAIN_COMMAND:
        if words and words[0] == "rotate":
            return _rotate(words[1:])
        if words and words[0] == "missed":
            return _missed(words[1:])
        key = " ".join(words)
        if key in SUBCOMMANDS:
            return Parsed(SUBCOMMANDS[key])
        raise UsageError(f"Unknown command `{_clip(text)}`.")
    action = ALIASES.get(command)
    if action is None:
        raise UsageError(f"Unknown slash command `{_clip(command)}`.")
    if action is Action.ROTATE:
        return _rotate(words)
    if words:
        raise UsageError(f"`{command}` takes no arguments (got `{_clip(text)}`).")
    return Parsed(action)


def _rotate(args: list[str]) -> Parsed:
    if len(args) != 2 or not all(_ANGLE.fullmatch(a) for a in args):
        raise UsageError("`rotate` needs two whole numbers: PAN TILT, e.g. `rotate 30 -10`.")
    pan, tilt = int(args[0]), int(args[1])
    for name, value in (("pan", pan), ("tilt", tilt)):
        if not PTZ_MIN_DEGREES <= value <= PTZ_MAX_DEGREES:
            raise UsageError(
                f"{name} {value} is out of range: use {PTZ_MIN_DEGREES:.0f}..{PTZ_MAX_DEGREES:.0f}."
            )
    return Parsed(Action.ROTATE, pan=pan, tilt=tilt)


_MINUTES = re.compile(r"^\d{1,2}(\.\d{1,2})?$")


def _missed(args: list[str]) -> Parsed:
    if not args:
        return Parsed(Action.MISSED)
    if len(args) != 1 or not _MINUTES.fullmatch(args[0]) or not 0 < float(args[0]) <= 60:
        raise UsageError("`missed` takes how many minutes to keep (up to 60), e.g. `missed 2`.")
    return Parsed(Action.MISSED, minutes=float(args[0]))


def _clip(text: str, limit: int = 60) -> str:
    cleaned = text.replace("`", "'").strip()
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "…"
