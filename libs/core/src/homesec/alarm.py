"""The alarm state machine: pure logic, no broker, no clock of its own.

The caller (the state owner, :mod:`homesec.state`) passes the time of every step, so tests and
restarts are exact. States (Home Assistant's names) and what moves them:

===============  ==========================  ===================================  ===============
from             command                     detection on an armed camera         timer (``until``)
===============  ==========================  ===================================  ===============
disarmed         ARM_m → arming(m)/armed_m   -                                    -
                 TRIGGER → triggered(panic)
arming(m)        ARM_m' → arming(m')         -                                    → armed_m
                 DISARM → disarmed
                 TRIGGER → triggered(m)
armed_m          ARM_m' → arming(m')/armed_m' entry camera → pending(m),          -
                 DISARM → disarmed           other camera → triggered(m)
                 TRIGGER → triggered(m)
pending(m)       DISARM → disarmed           non-entry camera → triggered(m)      → triggered(m)
                 ACK → armed_m
                 TRIGGER → triggered(m)
triggered(m)     DISARM → disarmed           -                                    → armed_m
                 ACK → armed_m                                                    (panic: disarmed)
===============  ==========================  ===================================  ===============

``arming(m)`` is skipped when mode ``m`` has no exit delay, ``pending`` when the camera has no
entry delay, and ``triggered`` lasts until a command when ``trigger_seconds`` is 0. Arming is
refused while pending or triggered (it would silence the alarm without the disarm code); ACK
is refused where there is nothing to acknowledge. Repeating the state's own command (ARM_m
while armed_m or arming(m), DISARM while disarmed, TRIGGER while triggered) changes nothing and
is accepted, so a redelivered command does no harm.

A camera alerts (Slack alerts, detections count) only while the state is armed, pending or
triggered and the mode selects the camera (and, with zones for it, the person or motion stands
in one: :func:`zone_check`). During the exit delay nothing alerts.

After a restart :meth:`AlarmMachine.resume` continues a timed state by the wall clock: the
rest of its delay when there is some left; an exit delay that ran out while homesec was down
is armed, an entry delay that ran out triggers now (nobody disarmed in time, and whoever came
in may have cut the power), a trigger time that ran out is armed again. Nothing resumes as
disarmed unless it was disarmed (or a panic from disarmed ran out).

The legacy ``system/armed`` switch is :func:`legacy_armed`: true in every state but disarmed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, Field, field_validator

from homesec.contract import (
    ARM_ACTIONS,
    ARMED_STATES,
    AlarmAction,
    AlarmMode,
    AlarmState,
    AlarmStatus,
    Identifier,
)

TIMED_STATES = (AlarmState.ARMING, AlarmState.PENDING, AlarmState.TRIGGERED)

Point = tuple[float, float]
BoxXYWH = tuple[int, int, int, int]
ZoneCheck = Callable[[BoxXYWH | None], bool]
"""Whether a box (full-frame pixels) stands in one of the zones; an unknown box does not."""


class ModeSettings(BaseModel):
    """One armed mode: which cameras alert, and the delays."""

    cameras: list[Identifier] | None = Field(
        None, description="Cameras that alert in this mode (JSON list); unset: every camera"
    )
    exit_delay_seconds: float = Field(
        0.0, ge=0, le=3600, description="Arming → armed after this long (0: armed at once)"
    )
    entry_delay_seconds: float = Field(
        0.0,
        ge=0,
        le=3600,
        description="A detection on an entry camera is pending this long before it triggers",
    )
    entry_cameras: list[Identifier] = Field(
        default_factory=list,
        description="Cameras with the entry delay (the front door); others trigger at once",
    )

    zones: dict[Identifier, list[list[Point]]] = Field(
        default_factory=dict,
        description="Per camera, polygons in relative coordinates (0-1): the camera alerts in "
        "this mode only for a person (else the motion) standing in one, e.g. "
        '{"front": [[[0,0.5],[1,0.5],[1,1],[0,1]]]}',
    )

    @field_validator("zones")
    @classmethod
    def _polygons(cls, zones: dict[str, list[list[Point]]]) -> dict[str, list[list[Point]]]:
        for camera, polygons in zones.items():
            if not polygons:
                raise ValueError(f"{camera}: give at least one zone polygon (or leave it out)")
            for polygon in polygons:
                if len(polygon) < 3:
                    raise ValueError(f"{camera}: a zone polygon needs at least 3 points")
                if not all(0 <= x <= 1 and 0 <= y <= 1 for x, y in polygon):
                    raise ValueError(f"{camera}: zone coordinates are fractions of the frame")
        return zones

    def selects(self, camera: str) -> bool:
        return self.cameras is None or camera in self.cameras


class AlarmSettings(BaseModel):
    """The alarm's modes, trigger time and legacy mapping (codes: :mod:`homesec.codes`)."""

    away: ModeSettings = Field(default_factory=ModeSettings)
    home: ModeSettings = Field(default_factory=ModeSettings)
    night: ModeSettings = Field(default_factory=ModeSettings)
    trigger_seconds: float = Field(
        120.0,
        ge=0,
        le=86400,
        description="Triggered → armed again after this long (0: until disarmed or acknowledged)",
    )
    legacy_mode: AlarmMode = Field(
        AlarmMode.AWAY, description="The mode `system/armed` ON (and Slack's plain `arm`) arms"
    )

    def mode(self, mode: AlarmMode) -> ModeSettings:
        return {AlarmMode.AWAY: self.away, AlarmMode.HOME: self.home, AlarmMode.NIGHT: self.night}[
            mode
        ]


@dataclass(frozen=True)
class Outcome:
    """What a step did: the new status (``changed`` when it differs), or why it was refused."""

    status: AlarmStatus
    changed: bool
    error: str | None = None

    @property
    def accepted(self) -> bool:
        return self.error is None


def legacy_armed(state: AlarmState) -> bool:
    """The legacy ``system/armed`` value: fail secure, every state but disarmed is armed."""
    return state is not AlarmState.DISARMED


def from_legacy(armed: bool, settings: AlarmSettings, changed_at: float, by: str) -> AlarmStatus:
    """The alarm an old install's ``system/armed`` value stands for (first start after update)."""
    if not armed:
        return AlarmStatus(state=AlarmState.DISARMED, changed_at=changed_at, changed_by=by)
    mode = settings.legacy_mode
    return AlarmStatus(state=ARMED_STATES[mode], mode=mode, changed_at=changed_at, changed_by=by)


def camera_alerts(status: AlarmStatus, settings: AlarmSettings, camera: str) -> bool:
    """Whether a motion on ``camera`` counts now (alerts the owner, moves the alarm)."""
    if status.mode is None or status.state in (AlarmState.DISARMED, AlarmState.ARMING):
        return False
    return settings.mode(status.mode).selects(camera)


def inside(point: Point, polygon: list[Point]) -> bool:
    """Whether ``point`` lies inside ``polygon`` (even-odd rule; both in the same units)."""
    x, y = point
    found = False
    j = len(polygon) - 1
    for i, (xi, yi) in enumerate(polygon):
        xj, yj = polygon[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            found = not found
        j = i
    return found


def zone_check(
    status: AlarmStatus, settings: AlarmSettings, camera: str, width: int, height: int
) -> ZoneCheck | None:
    """The zone test of the current mode for ``camera`` on a ``width`` x ``height`` frame, or
    None when the mode has no zones for it (the whole frame counts). A box counts by its
    bottom-centre point: where a person stands, not how tall they are."""
    if status.mode is None:
        return None
    polygons = settings.mode(status.mode).zones.get(camera)
    if not polygons or width <= 0 or height <= 0:
        return None

    def check(box: BoxXYWH | None) -> bool:
        if box is None:
            return False
        x, y, w, h = box
        point = ((x + w / 2) / width, (y + h) / height)
        return any(inside(point, polygon) for polygon in polygons)

    return check


class AlarmMachine:
    """The transitions of the table above over one :class:`AlarmStatus`."""

    def __init__(self, settings: AlarmSettings, status: AlarmStatus) -> None:
        self.settings = settings
        self.status = status

    # ---- inputs ----------------------------------------------------------------------------

    def command(self, action: AlarmAction, by: str, now: float) -> Outcome:
        state = self.status.state
        if action in ARM_ACTIONS:
            return self._arm(ARM_ACTIONS[action], by, now)
        if action is AlarmAction.DISARM:
            if state is AlarmState.DISARMED:
                return self._same()
            return self._go(AlarmState.DISARMED, None, by, now)
        if action is AlarmAction.TRIGGER:
            if state is AlarmState.TRIGGERED:
                return self._same()
            return self._trigger(by, now, self.status.camera, self.status.event_id)
        assert action is AlarmAction.ACK
        if state not in (AlarmState.PENDING, AlarmState.TRIGGERED):
            return self._refuse(f"nothing to acknowledge while {state.value}")
        if self.status.mode is None:  # a panic from disarmed goes back there
            return self._go(AlarmState.DISARMED, None, by, now)
        return self._go(ARMED_STATES[self.status.mode], self.status.mode, by, now)

    def detection(self, camera: str, event_id: str | None, now: float) -> Outcome:
        """A confirmed detection (person where required) on ``camera``."""
        status = self.status
        if not camera_alerts(status, self.settings, camera) or status.mode is None:
            return self._same()
        by = f"camera:{camera}"
        mode = self.settings.mode(status.mode)
        entry = camera in mode.entry_cameras and mode.entry_delay_seconds > 0
        if status.state in ARMED_STATES.values():
            if entry:
                return self._go(
                    AlarmState.PENDING,
                    status.mode,
                    by,
                    now,
                    until=now + mode.entry_delay_seconds,
                    camera=camera,
                    event_id=event_id,
                )
            return self._trigger(by, now, camera, event_id)
        if status.state is AlarmState.PENDING and not entry:
            return self._trigger(by, now, camera, event_id)
        return self._same()  # pending on an entry camera, or already triggered

    def tick(self, now: float) -> Outcome:
        """Let the clock run: end a timed state whose ``until`` has passed."""
        status = self.status
        if status.state not in TIMED_STATES or status.until is None or now < status.until:
            return self._same()
        at = status.until
        if status.state is AlarmState.ARMING:
            assert status.mode is not None
            return self._go(ARMED_STATES[status.mode], status.mode, "exit delay", at)
        if status.state is AlarmState.PENDING:
            return self._trigger("entry delay", at, status.camera, status.event_id)
        if status.mode is None:
            return self._go(AlarmState.DISARMED, None, "trigger time", at)
        return self._go(ARMED_STATES[status.mode], status.mode, "trigger time", at)

    def resume(self, now: float) -> Outcome:
        """After a restart: a timed state whose time ran out while homesec was down goes on
        by the wall clock. An exit delay or a trigger time that ran out is armed (as of when
        it ran out); an entry delay that ran out triggers NOW, for the full trigger time:
        nobody disarmed in time, and whoever came in may have cut the power."""
        status = self.status
        if status.state is AlarmState.PENDING and status.until is not None and now >= status.until:
            return self._trigger("entry delay", now, status.camera, status.event_id)
        return self.tick(now)

    # ---- helpers ---------------------------------------------------------------------------

    def _arm(self, mode: AlarmMode, by: str, now: float) -> Outcome:
        status = self.status
        if status.state in (AlarmState.PENDING, AlarmState.TRIGGERED):
            return self._refuse(f"the alarm is {status.state.value}: disarm or acknowledge first")
        if status.mode is mode and status.state in (ARMED_STATES[mode], AlarmState.ARMING):
            return self._same()
        delay = self.settings.mode(mode).exit_delay_seconds
        if delay > 0:
            return self._go(AlarmState.ARMING, mode, by, now, until=now + delay)
        return self._go(ARMED_STATES[mode], mode, by, now)

    def _trigger(self, by: str, now: float, camera: str | None, event_id: str | None) -> Outcome:
        seconds = self.settings.trigger_seconds
        mode = self.status.mode
        return self._go(
            AlarmState.TRIGGERED,
            mode,
            by,
            now,
            until=now + seconds if seconds > 0 else None,
            camera=camera,
            event_id=event_id,
        )

    def _go(
        self,
        state: AlarmState,
        mode: AlarmMode | None,
        by: str,
        now: float,
        *,
        until: float | None = None,
        camera: str | None = None,
        event_id: str | None = None,
    ) -> Outcome:
        self.status = AlarmStatus(
            state=state,
            mode=mode,
            changed_at=now,
            changed_by=by[:100],
            until=until,
            camera=camera,
            event_id=event_id,
        )
        return Outcome(self.status, True)

    def _same(self) -> Outcome:
        return Outcome(self.status, False)

    def _refuse(self, error: str) -> Outcome:
        return Outcome(self.status, False, error)
