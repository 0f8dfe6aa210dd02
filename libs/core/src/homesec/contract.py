"""The MQTT contract: every topic of homesec and the payload model it carries.

This module is the single source of truth for topic names, payloads, QoS and retain flags.
Services never write topic strings by hand: they use a :class:`Channel` from here and let
:class:`homesec.bus.Bus` build, match, encode and decode.

``docs/mqtt-api.md`` and ``docs/asyncapi.json`` are generated from this module
(``homesec docs --write``); a test fails when they are out of date.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

# --------------------------------------------------------------------------------------------
# Identifiers. Anything that becomes part of a topic or a file path is constrained here, once.
# --------------------------------------------------------------------------------------------

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
"""Camera ids, event ids, service names, person names: safe in topics and in file paths."""

Identifier = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
CameraId = Identifier
EventId = Identifier

MAX_JPEG_BYTES = 8 * 1024 * 1024
"""Largest JPEG accepted on a frame or snapshot topic (a 4K frame at quality 95 is ~3 MB)."""

PTZ_MIN_DEGREES = -90.0
PTZ_MAX_DEGREES = 90.0


def is_identifier(value: str) -> bool:
    """True when ``value`` is safe to use as a topic level and a file-name component."""
    return re.fullmatch(ID_PATTERN, value) is not None


def now() -> float:
    """Wall-clock time as Unix seconds; all timestamps in the contract use it."""
    return time.time()


class Codec(StrEnum):
    """How a payload model travels on the wire."""

    JSON = "json"  # UTF-8 JSON object
    TEXT = "text"  # a bare UTF-8 word such as ``online`` or ``ON``
    JPEG = "jpeg"  # raw JPEG bytes; metadata in MQTT v5 user properties


class Delivery(StrEnum):
    """How a channel's messages travel; derived from its QoS and retain flag.

    * ``stream`` — QoS 0, latest-wins, never queued (frames): a slow or absent consumer drops
      stale items.
    * ``state`` — retained, latest-wins, one writer. Published QoS 1 while connected; while
      disconnected only the newest value per topic is kept and sent on reconnect. Consumers
      subscribe with QoS 0, so the broker sends the newest value on (re)connect and queues
      nothing for an offline consumer.
    * ``message`` — events, commands, labels: QoS 1, queued on persistent sessions for an
      offline consumer, acknowledged only once handled, never lost.
    """

    STREAM = "stream"
    STATE = "state"
    MESSAGE = "message"


class Payload(BaseModel):
    """Base for JSON payloads: unknown keys are rejected so typos are caught."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------
# Availability and status
# --------------------------------------------------------------------------------------------


class Availability(RootModel[Literal["online", "offline"]]):
    """``online`` while the service is connected; ``offline`` (also its Last Will) otherwise."""


class ServiceState(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    STOPPING = "stopping"


class ServiceStatus(Payload):
    """Retained health detail of a service, e.g. a camera whose source is failing."""

    service: Identifier
    state: ServiceState = ServiceState.OK
    detail: str = Field("", max_length=500)
    version: str = ""
    since: float = Field(default_factory=now)
    info: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Frames and snapshots
# --------------------------------------------------------------------------------------------


class Frame(BaseModel):
    """One JPEG image of a camera. On the wire the payload is the JPEG itself and the other
    fields are MQTT v5 user properties (``camera``, ``seq``, ``captured_at``, ``width``,
    ``height``), so Node-RED and Home Assistant can show the payload as an image directly."""

    model_config = ConfigDict(frozen=True)

    camera: CameraId
    seq: int = Field(ge=0, description="Sequence number, +1 per captured frame since start")
    captured_at: float = Field(ge=0, description="Capture time, Unix seconds")
    width: int = Field(gt=0, le=16384)
    height: int = Field(gt=0, le=16384)
    jpeg: bytes = Field(repr=False, description="JPEG bytes (the MQTT payload)")


class SnapshotRequest(Payload):
    """Ask the camera to publish its newest frame on the snapshot topic now."""

    request_id: str | None = Field(None, max_length=100)
    requested_by: str | None = Field(None, max_length=100)


# --------------------------------------------------------------------------------------------
# Motion
# --------------------------------------------------------------------------------------------


class Box(Payload):
    """A rectangle in pixels of the full camera frame."""

    x: int = Field(ge=0)
    y: int = Field(ge=0)
    w: int = Field(ge=0)
    h: int = Field(ge=0)


class EventType(StrEnum):
    START = "start"
    UPDATE = "update"
    END = "end"


class PersonMode(StrEnum):
    OFF = "off"
    ANNOTATE = "annotate"
    REQUIRE = "require"


class AlertDecision(Payload):
    """Whether the event should alert the owner, and why (for logs, Slack and tuning)."""

    alert: bool
    reason: str = Field(max_length=300)
    alarm: bool = Field(
        False,
        description="The event counts for the alarm (camera armed in the mode, person "
        "confirmed where required), even when Slack is muted or within the alert gap",
    )


class MotionEvent(Payload):
    """The life of one motion event: ``start``, zero or more ``update``, one ``end``."""

    type: EventType
    event_id: EventId
    camera: CameraId
    started_at: float
    ended_at: float | None = None
    frame_seq: int = Field(
        ge=0, description="Sequence number of the frame that caused this message"
    )
    frame_captured_at: float = Field(ge=0)
    box: Box | None = Field(None, description="Largest motion box so far (full-frame pixels)")
    area: float = Field(0.0, ge=0, description="Largest motion area so far, fraction of the frame")
    motion_score: float = Field(0.0, ge=0, le=1, description="Occupied fraction of the window")
    person_score: float | None = Field(None, ge=0, le=1, description="Best person confidence")
    person_box: Box | None = None
    person_mode: PersonMode = PersonMode.REQUIRE
    decision: AlertDecision
    snapshot: str | None = Field(
        None, max_length=300, description="Snapshot path relative to the media directory"
    )
    media_dir: str | None = Field(
        None, max_length=300, description="Event folder relative to the media directory"
    )


class OnOff(RootModel[Literal["ON", "OFF"]]):
    """Home Assistant style binary state."""


# --------------------------------------------------------------------------------------------
# System state (owned by the detector service; see docs/mqtt-api.md)
# --------------------------------------------------------------------------------------------


class SystemSetting(StrEnum):
    ARMED = "armed"
    NOTIFICATIONS = "notifications"
    AUTO_ARM = "auto_arm"
    TRAINING = "training"


class SystemValue(Payload):
    """Current value of a system setting (retained, one writer: the detector service)."""

    value: bool
    changed_at: float = Field(default_factory=now)
    changed_by: str = Field("default", max_length=100)


_TRUE_WORDS = {"on", "true", "1", "yes", "arm", "armed"}
_FALSE_WORDS = {"off", "false", "0", "no", "disarm", "disarmed"}


class SetCommand(Payload):
    """Request to change a system setting. Besides JSON, a bare ``ON``/``OFF``/``true``/``false``
    payload is accepted, so Home Assistant switches and Node-RED inject nodes work unchanged."""

    value: bool
    source: str = Field(
        "mqtt", max_length=100, description="Who asked: slack:<user>, presence, ..."
    )
    request_id: str | None = Field(None, max_length=100)

    @classmethod
    def from_wire(cls, raw: bytes) -> SetCommand:
        text = raw.decode("utf-8").strip()
        word = text.strip('"').lower()
        if word in _TRUE_WORDS:
            return cls(value=True)
        if word in _FALSE_WORDS:
            return cls(value=False)
        return cls.model_validate_json(text)


# --------------------------------------------------------------------------------------------
# Alarm (owned by the detector service; the state machine is homesec.alarm)
# --------------------------------------------------------------------------------------------


class AlarmMode(StrEnum):
    """An armed mode: each selects which cameras alert and with which delays."""

    AWAY = "away"
    HOME = "home"
    NIGHT = "night"


class AlarmState(StrEnum):
    """The alarm's state; the names are Home Assistant's alarm panel states."""

    DISARMED = "disarmed"
    ARMING = "arming"
    ARMED_AWAY = "armed_away"
    ARMED_HOME = "armed_home"
    ARMED_NIGHT = "armed_night"
    PENDING = "pending"
    TRIGGERED = "triggered"


ARMED_STATES: dict[AlarmMode, AlarmState] = {
    AlarmMode.AWAY: AlarmState.ARMED_AWAY,
    AlarmMode.HOME: AlarmState.ARMED_HOME,
    AlarmMode.NIGHT: AlarmState.ARMED_NIGHT,
}


class AlarmAction(StrEnum):
    """What a command asks for; the names are Home Assistant's alarm panel payloads (plus
    ``ACK``: stop a pending or triggered alarm and stay armed)."""

    ARM_AWAY = "ARM_AWAY"
    ARM_HOME = "ARM_HOME"
    ARM_NIGHT = "ARM_NIGHT"
    DISARM = "DISARM"
    TRIGGER = "TRIGGER"
    ACK = "ACK"


ARM_ACTIONS: dict[AlarmAction, AlarmMode] = {
    AlarmAction.ARM_AWAY: AlarmMode.AWAY,
    AlarmAction.ARM_HOME: AlarmMode.HOME,
    AlarmAction.ARM_NIGHT: AlarmMode.NIGHT,
}


class AlarmStatus(Payload):
    """The alarm (retained, one writer: the detector service)."""

    state: AlarmState
    mode: AlarmMode | None = Field(
        None,
        description="The armed mode in force or being armed (arming, pending and triggered "
        "keep it); null when disarmed or for a panic trigger from disarmed",
    )
    changed_at: float = Field(default_factory=now, description="When `state` last changed")
    changed_by: str = Field("default", max_length=100, description="Who or what changed it")
    until: float | None = Field(
        None,
        description="Unix seconds when this state ends by itself: arming → armed, "
        "pending → triggered, triggered → armed again; null: until a command",
    )
    camera: CameraId | None = Field(None, description="Camera that caused pending/triggered")
    event_id: EventId | None = Field(None, description="Motion event that caused it")


class AlarmCommand(Payload):
    """Ask the alarm to arm, disarm, trigger or acknowledge. Besides JSON, a bare action word
    (``ARM_AWAY``, ``disarm`` ...) is accepted. ``code`` is checked by homesec when a code is
    configured; it is never logged or echoed."""

    action: AlarmAction
    code: SecretStr | None = Field(None, description="The alarm code, when one is configured")
    source: str = Field("mqtt", max_length=100, description="Who asked")
    request_id: str | None = Field(None, max_length=100)

    @field_validator("action", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("code", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @classmethod
    def from_wire(cls, raw: bytes) -> AlarmCommand:
        text = raw.decode("utf-8").strip()
        word = text.strip('"').strip().upper()
        if word in AlarmAction.__members__:
            return cls(action=AlarmAction(word))
        return cls.model_validate_json(text)


class AlarmResult(Payload):
    """The answer to one alarm command: accepted, or refused and why (a wrong code, a
    lockout, an action the current state does not allow)."""

    action: AlarmAction
    accepted: bool
    error: str | None = Field(None, max_length=300)
    state: AlarmState = Field(description="The alarm state after the command")
    source: str = Field("mqtt", max_length=100)
    request_id: str | None = Field(None, max_length=100)
    attempts_left: int | None = Field(
        None, ge=0, description="Wrong codes left before the lockout (after a wrong code)"
    )
    locked_until: float | None = Field(None, description="Unix seconds the lockout ends")
    at: float = Field(default_factory=now)


# --------------------------------------------------------------------------------------------
# Presence
# --------------------------------------------------------------------------------------------


class PersonPresence(Payload):
    name: Identifier
    home: bool
    last_seen: float | None = Field(None, description="Unix seconds a device was last seen")


class PresenceState(Payload):
    """Who is home (retained, one writer: the presence service)."""

    anyone_home: bool
    people: list[PersonPresence] = Field(default_factory=list, max_length=100)
    backend: str = Field("", max_length=50)
    backend_ok: bool = True
    backend_error: str | None = Field(None, max_length=300)
    updated_at: float = Field(default_factory=now)


# --------------------------------------------------------------------------------------------
# Pan / tilt
# --------------------------------------------------------------------------------------------

Degrees = Annotated[float, Field(ge=-1000, le=1000)]
PresetName = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


class PtzCommand(Payload):
    """Move the camera head. Exactly one form per command:
    absolute ``{"pan": 30, "tilt": 20}`` (either or both), relative ``{"pan_by": -10}`` /
    ``{"tilt_by": 5}``, ``{"preset": "door"}``, ``{"home": true}`` or ``{"save_preset": "door"}``.
    Angles outside -90..90 are clamped by the PTZ service."""

    pan: Degrees | None = None
    tilt: Degrees | None = None
    pan_by: Degrees | None = None
    tilt_by: Degrees | None = None
    preset: PresetName | None = None
    save_preset: PresetName | None = None
    home: bool | None = None
    source: str = Field("mqtt", max_length=100)
    request_id: str | None = Field(None, max_length=100)

    @model_validator(mode="after")
    def _exactly_one_form(self) -> PtzCommand:
        forms = [
            self.pan is not None or self.tilt is not None,
            self.pan_by is not None or self.tilt_by is not None,
            self.preset is not None,
            self.save_preset is not None,
            self.home is True,
        ]
        if sum(forms) != 1:
            raise ValueError(
                "give exactly one of: pan/tilt, pan_by/tilt_by, preset, save_preset, home=true"
            )
        return self


class PtzState(Payload):
    """Where the camera head points (retained, one writer: the ptz service)."""

    pan: float = Field(ge=PTZ_MIN_DEGREES, le=PTZ_MAX_DEGREES)
    tilt: float = Field(ge=PTZ_MIN_DEGREES, le=PTZ_MAX_DEGREES)
    target_pan: float = Field(ge=PTZ_MIN_DEGREES, le=PTZ_MAX_DEGREES)
    target_tilt: float = Field(ge=PTZ_MIN_DEGREES, le=PTZ_MAX_DEGREES)
    moving: bool = False
    backend: str = Field("", max_length=50)
    presets: list[PresetName] = Field(default_factory=list, max_length=100)
    last_request_id: str | None = Field(None, max_length=100)
    error: str | None = Field(None, max_length=300)
    updated_at: float = Field(default_factory=now)


# --------------------------------------------------------------------------------------------
# Training data
# --------------------------------------------------------------------------------------------


class Label(StrEnum):
    OCCUPIED = "occupied"
    UNOCCUPIED = "unoccupied"


class TrainingLabel(Payload):
    """The owner's verdict on an event (from Slack's Occupied/Unoccupied buttons)."""

    event_id: EventId
    camera: CameraId
    label: Label
    labelled_by: str = Field(max_length=100)
    labelled_at: float = Field(default_factory=now)
    source: str = Field("slack", max_length=50)


class MissedAlert(Payload):
    """The owner says the system missed someone: save the camera's last ``seconds`` (from the
    detector's ring buffer) as an *occupied* sample the system did not alert on."""

    event_id: EventId | None = Field(
        None, description="Id of the sample to save (default: the detector makes one)"
    )
    seconds: float | None = Field(
        None, gt=0, le=3600, description="How far back (default: the whole buffer)"
    )
    requested_by: str = Field(max_length=100)
    request_id: str | None = Field(None, max_length=100)


class TuneResult(Payload):
    """The last ``homesec tune --record`` run: would the owner's labels change the settings?"""

    at: float = Field(description="When tune ran, Unix seconds")
    events: int = Field(ge=0, description="Labelled events replayed")
    false_alerts: int = Field(ge=0, description="False alerts under the current settings")
    missed: int = Field(ge=0, description="Occupied events the current settings miss")
    proposes_change: bool
    false_alerts_removed: int = Field(ge=0)
    env: dict[str, str] = Field(
        default_factory=dict, description="The proposal as HOMESEC_DETECTOR_* variables"
    )


class UploadRequest(Payload):
    """Ask the uploader to run now instead of waiting for its interval."""

    request_id: str | None = Field(None, max_length=100)
    requested_by: str | None = Field(None, max_length=100)


class UploaderStatus(Payload):
    """Progress of the training-data uploader (retained, one writer: the uploader)."""

    mode: Literal["s3", "local"]
    destination: str = Field(max_length=300)
    pending: int = Field(ge=0)
    uploaded_objects_total: int = Field(ge=0)
    last_success_at: float | None = None
    last_error: str | None = Field(None, max_length=300)
    updated_at: float = Field(default_factory=now)


# --------------------------------------------------------------------------------------------
# Dead letters
# --------------------------------------------------------------------------------------------


class DeadLetter(Payload):
    """A QoS 1 message whose handler kept failing: parked here after the last retry (and then
    acknowledged), so an operator can see it and re-publish ``payload`` to ``topic``."""

    service: Identifier
    topic: str = Field(max_length=500)
    channel: str = Field(max_length=100)
    error: str = Field(max_length=500)
    attempts: int = Field(ge=1)
    first_failed_at: float
    parked_at: float = Field(default_factory=now)
    payload_base64: str = Field(
        max_length=12 * 1024 * 1024, description="The original payload, base64-encoded"
    )


# --------------------------------------------------------------------------------------------
# Channels: topic template + model + delivery class, bound to a prefix by the bus
# --------------------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)

_PARAM_RE = re.compile(r"\{([a-z_]+)\}")


class InvalidPayload(ValueError):
    """A message whose payload does not match its channel's model."""


@dataclass(frozen=True)
class Channel(Generic[M]):
    """A topic family of the contract.

    ``template`` is relative to the topic prefix, with ``{param}`` placeholders for levels such
    as the camera id. ``publisher`` names the one service that writes it (for retained state)."""

    name: str
    template: str
    model: type[M]
    qos: Literal[0, 1]
    retain: bool
    codec: Codec
    description: str
    publisher: str
    subscribers: tuple[str, ...] = ()
    example: dict[str, Any] | str | None = None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def delivery(self) -> Delivery:
        if self.qos == 0:
            return Delivery.STREAM
        return Delivery.STATE if self.retain else Delivery.MESSAGE

    @property
    def subscribe_qos(self) -> Literal[0, 1]:
        """QoS consumers subscribe with: 1 only for messages (queued while away)."""
        return 1 if self.delivery is Delivery.MESSAGE else 0

    def topic(self, prefix: str, **params: str) -> str:
        """The concrete topic; parameters must be identifiers (or ``+`` for a pattern)."""
        names = _PARAM_RE.findall(self.template)
        if set(names) != set(params):
            raise ValueError(f"{self.name}: expected parameters {names}, got {sorted(params)}")
        for key, value in params.items():
            if value != "+" and not is_identifier(value):
                raise ValueError(f"{self.name}: {key}={value!r} is not a valid identifier")
        return f"{prefix}/{self.template.format(**params)}"

    def pattern(self, prefix: str) -> str:
        """The subscription pattern with ``+`` for every parameter."""
        return f"{prefix}/{_PARAM_RE.sub('+', self.template)}"

    def match(self, prefix: str, topic: str) -> dict[str, str] | None:
        """Parameters of ``topic`` if it belongs to this channel, else ``None``."""
        regex = "^" + re.escape(prefix + "/")
        for part in re.split(r"(\{[a-z_]+\})", self.template):
            m = _PARAM_RE.fullmatch(part)
            # ``*``, not ``+``: an MQTT ``+`` also matches an empty level, which must come back
            # as "" (rejected by the bus as not an identifier), not as "no parameters at all".
            regex += f"(?P<{m.group(1)}>[^/]*)" if m else re.escape(part)
        found = re.fullmatch(regex, topic)
        return found.groupdict() if found else None

    # ---- wire format ------------------------------------------------------------------------

    def encode(self, payload: M) -> tuple[bytes, dict[str, str]]:
        """Payload bytes and MQTT v5 user properties for ``payload``."""
        if not isinstance(payload, self.model):
            raise TypeError(f"{self.name} carries {self.model.__name__}, not {type(payload)}")
        if self.codec is Codec.JSON:
            return payload.model_dump_json(exclude_none=False).encode(), {}
        if self.codec is Codec.TEXT:
            assert isinstance(payload, RootModel)
            return str(payload.root).encode(), {}
        assert isinstance(payload, Frame)
        meta = payload.model_dump(exclude={"jpeg"})
        return payload.jpeg, {k: str(v) for k, v in meta.items()}

    def decode(self, raw: bytes, user_properties: dict[str, str] | None = None) -> M:
        """Parse wire bytes into the model; raises :class:`InvalidPayload` with a reason."""
        try:
            if self.codec is Codec.JPEG:
                if len(raw) > MAX_JPEG_BYTES:
                    raise InvalidPayload(f"JPEG of {len(raw)} bytes exceeds {MAX_JPEG_BYTES}")
                if raw[:2] != b"\xff\xd8":
                    raise InvalidPayload("payload is not a JPEG (no SOI marker)")
                return self.model.model_validate({**(user_properties or {}), "jpeg": raw})
            if self.codec is Codec.TEXT:
                return self.model.model_validate(raw.decode("utf-8").strip())
            if self.model is SetCommand:
                return SetCommand.from_wire(raw)  # type: ignore[return-value]
            if self.model is AlarmCommand:
                return AlarmCommand.from_wire(raw)  # type: ignore[return-value]
            return self.model.model_validate_json(raw)
        except InvalidPayload:
            raise
        except ValidationError as exc:
            raise InvalidPayload(_short_validation_error(exc)) from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidPayload(str(exc)[:300]) from None


def _short_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


SERVICES = ("camera", "detector", "slack-gateway", "presence", "uploader", "ptz")
"""The homesec services, in start order."""

_ts = 1764100000.0

AVAILABILITY: Channel[Availability] = Channel(
    name="availability",
    template="{service}/availability",
    model=Availability,
    qos=1,
    retain=True,
    codec=Codec.TEXT,
    description="`online` while the service runs; `offline` on clean stop and as its Last Will.",
    publisher="every service (its own)",
    subscribers=("slack-gateway", "home-assistant"),
    example="online",
    params={"service": "service name: " + ", ".join(SERVICES)},
)

SERVICE_STATUS: Channel[ServiceStatus] = Channel(
    name="service_status",
    template="{service}/status",
    model=ServiceStatus,
    qos=1,
    retain=True,
    codec=Codec.JSON,
    description="Health detail of a service: `ok` or `degraded` with a reason (e.g. camera lost).",
    publisher="every service (its own)",
    subscribers=("slack-gateway",),
    example={
        "service": "camera",
        "state": "degraded",
        "detail": "source failed: end of stream; reconnecting in 4 s",
        "version": "0.1.0",
        "since": _ts,
        "info": {"camera": "front", "fps": 0.0},
    },
    params={"service": "service name"},
)

FRAMES: Channel[Frame] = Channel(
    name="frames",
    template="cam/{camera}/frames",
    model=Frame,
    qos=0,
    retain=False,
    codec=Codec.JPEG,
    description=(
        "Live JPEG frames at the configured fps. Latest-wins: QoS 0, never queued; a slow "
        "consumer drops stale frames. User properties: camera, seq, captured_at, width, height."
    ),
    publisher="camera",
    subscribers=("detector",),
    example="<JPEG bytes>; user properties camera=front seq=1234 captured_at=1764100000.1 width=640 height=480",
    params={"camera": "camera id"},
)

SNAPSHOT: Channel[Frame] = Channel(
    name="snapshot",
    template="cam/{camera}/snapshot",
    model=Frame,
    qos=1,
    retain=True,
    codec=Codec.JPEG,
    description=(
        "The camera's latest frame, retained, refreshed every `snapshot_interval_seconds` and "
        "on request. Point a Home Assistant MQTT camera here."
    ),
    publisher="camera",
    subscribers=("slack-gateway", "home-assistant"),
    example="<JPEG bytes>; same user properties as frames",
    params={"camera": "camera id"},
)

ALERT_SNAPSHOT: Channel[Frame] = Channel(
    name="alert_snapshot",
    template="cam/{camera}/alert/snapshot",
    model=Frame,
    qos=1,
    retain=True,
    codec=Codec.JPEG,
    description=(
        "The snapshot of the camera's last alerting event, retained (published once per "
        "alert, when the event first alerts). Home Assistant's `image` entity shows it."
    ),
    publisher="detector",
    subscribers=("home-assistant", "node-red"),
    example="<JPEG bytes>; same user properties as frames (seq and time of the event's frame)",
    params={"camera": "camera id"},
)

SNAPSHOT_REQUEST: Channel[SnapshotRequest] = Channel(
    name="snapshot_request",
    template="cam/{camera}/snapshot/request",
    model=SnapshotRequest,
    qos=1,
    retain=False,
    codec=Codec.JSON,
    description="Ask the camera to refresh its snapshot topic immediately.",
    publisher="any client",
    subscribers=("camera",),
    example={"request_id": "c0ffee", "requested_by": "slack:U024BE7LH"},
    params={"camera": "camera id"},
)

MOTION_EVENTS: Channel[MotionEvent] = Channel(
    name="motion_events",
    template="motion/events",
    model=MotionEvent,
    qos=1,
    retain=False,
    codec=Codec.JSON,
    description=(
        "Motion event lifecycle for every camera: `start` when the occupancy rule holds, "
        "`update` when the person check or the largest box changes, `end` after the quiet time. "
        "`decision.alert` says whether the owner is alerted and `decision.reason` why."
    ),
    publisher="detector",
    subscribers=("slack-gateway",),
    example={
        "type": "start",
        "event_id": "front-20261125-213000-0001",
        "camera": "front",
        "started_at": _ts,
        "ended_at": None,
        "frame_seq": 1234,
        "frame_captured_at": _ts,
        "box": {"x": 212, "y": 80, "w": 120, "h": 300},
        "area": 0.118,
        "motion_score": 0.63,
        "person_score": 0.84,
        "person_box": {"x": 220, "y": 84, "w": 110, "h": 290},
        "person_mode": "require",
        "decision": {"alert": True, "reason": "armed, person confirmed (0.84)"},
        "snapshot": "front/2026-11-25/front-20261125-213000-0001/snapshot.jpg",
        "media_dir": "front/2026-11-25/front-20261125-213000-0001",
    },
)

MOTION_STATE: Channel[OnOff] = Channel(
    name="motion_state",
    template="motion/{camera}/state",
    model=OnOff,
    qos=1,
    retain=True,
    codec=Codec.TEXT,
    description="`ON` while a motion event is open on the camera, `OFF` after it ends.",
    publisher="detector",
    subscribers=("home-assistant",),
    example="ON",
    params={"camera": "camera id"},
)

SYSTEM_STATE: Channel[SystemValue] = Channel(
    name="system_state",
    template="system/{setting}",
    model=SystemValue,
    qos=1,
    retain=True,
    codec=Codec.JSON,
    description=(
        "Runtime switches: `armed` (the legacy mirror of `alarm/state`: true in every alarm "
        "state but `disarmed`), `notifications` (Slack alerts on/off), "
        "`auto_arm` (presence arms/disarms), `training` (alerts carry label buttons). Retained; "
        "the detector service is the only writer and applies `/set` commands."
    ),
    publisher="detector",
    subscribers=("slack-gateway", "presence", "home-assistant"),
    example={"value": True, "changed_at": _ts, "changed_by": "slack:U024BE7LH"},
    params={"setting": "one of " + ", ".join(s.value for s in SystemSetting)},
)

SYSTEM_SET: Channel[SetCommand] = Channel(
    name="system_set",
    template="system/{setting}/set",
    model=SetCommand,
    qos=1,
    retain=False,
    codec=Codec.JSON,
    description=(
        "Change a runtime switch. JSON as below, or a bare `ON`/`OFF`/`true`/`false`. Never "
        "retain these: the detector applies each once and republishes the state topic. "
        "`armed/set` is the legacy alarm switch (ON arms the legacy mode when disarmed, OFF "
        "disarms; no code: the ACL lets only the slack-gateway and presence write it)."
    ),
    publisher="slack-gateway, presence, any client",
    subscribers=("detector",),
    example={"value": True, "source": "slack:U024BE7LH", "request_id": "4f1c"},
    params={"setting": "one of " + ", ".join(s.value for s in SystemSetting)},
)

ALARM_STATE: Channel[AlarmStatus] = Channel(
    name="alarm_state",
    template="alarm/state",
    model=AlarmStatus,
    qos=1,
    retain=True,
    codec=Codec.JSON,
    description=(
        "The alarm: `disarmed`, `arming` (exit delay), `armed_away`, `armed_home`, "
        "`armed_night`, `pending` (entry delay), `triggered`. Retained; the detector service "
        "is the only writer. `system/armed` mirrors it: `false` only while `disarmed`."
    ),
    publisher="detector",
    subscribers=("slack-gateway", "home-assistant", "node-red"),
    example={
        "state": "pending",
        "mode": "away",
        "changed_at": _ts,
        "changed_by": "camera:front",
        "until": _ts + 30,
        "camera": "front",
        "event_id": "front-20261125-213000-0001",
    },
)

ALARM_SET: Channel[AlarmCommand] = Channel(
    name="alarm_set",
    template="alarm/set",
    model=AlarmCommand,
    qos=1,
    retain=False,
    codec=Codec.JSON,
    description=(
        "Arm, disarm, trigger or acknowledge from Home Assistant, Node-RED or any client. "
        "With a code configured, `DISARM` and `ACK` (and the `ARM_*` actions with "
        "`code_arm_required`) need it; repeated wrong codes lock this topic out for a while. "
        "Each command is answered on `alarm/result`. Never retain these."
    ),
    publisher="home-assistant, node-red, any client",
    subscribers=("detector",),
    example={"action": "DISARM", "code": "1234", "source": "home-assistant", "request_id": "9b1"},
)

ALARM_SERVICE_SET: Channel[AlarmCommand] = Channel(
    name="alarm_service_set",
    template="alarm/service/set",
    model=AlarmCommand,
    qos=1,
    retain=False,
    codec=Codec.JSON,
    description=(
        "The same commands from homesec services that authorise their own users (the "
        "slack-gateway: `ALLOWED_USERS`); no code. The broker ACL lets only those services "
        "write it, like `system/armed/set`."
    ),
    publisher="slack-gateway",
    subscribers=("detector",),
    example={"action": "ARM_HOME", "source": "slack:U024BE7LH", "request_id": "c3d"},
)

ALARM_RESULT: Channel[AlarmResult] = Channel(
    name="alarm_result",
    template="alarm/result",
    model=AlarmResult,
    qos=1,
    retain=False,
    codec=Codec.JSON,
    description=(
        "The answer to every alarm command (`alarm/set`, `alarm/service/set`, "
        "`system/armed/set`): accepted, or refused with the reason. A wrong code says how "
        "many tries are left; a lockout says until when. The code itself never appears. "
        "The gateway and presence send their commands again until this answers them."
    ),
    publisher="detector",
    subscribers=("slack-gateway", "presence", "home-assistant", "node-red"),
    example={
        "action": "DISARM",
        "accepted": False,
        "error": "wrong code",
        "state": "armed_away",
        "source": "home-assistant",
        "request_id": "9b1",
        "attempts_left": 4,
        "locked_until": None,
        "at": _ts,
    },
)

PRESENCE: Channel[PresenceState] = Channel(
    name="presence",
    template="presence/home",
    model=PresenceState,
    qos=1,
    retain=True,
    codec=Codec.JSON,
    description="Who is home according to the presence backend, with each person's last-seen time.",
    publisher="presence",
    subscribers=("slack-gateway", "home-assistant"),
    example={
        "anyone_home": True,
        "people": [{"name": "alice", "home": True, "last_seen": _ts}],
        "backend": "router",
        "backend_ok": True,
        "backend_error": None,
        "updated_at": _ts,
    },
)

PTZ_COMMAND: Channel[PtzCommand] = Channel(
    name="ptz_command",
    template="ptz/{camera}/command",
    model=PtzCommand,
    qos=1,
    retain=False,
    codec=Codec.JSON,
    description="Move the pan-tilt head: absolute, relative, preset, save preset or home.",
    publisher="slack-gateway, any client",
    subscribers=("ptz",),
    example={"pan": 30, "tilt": 20, "source": "slack:U024BE7LH", "request_id": "77aa"},
    params={"camera": "camera id"},
)

PTZ_STATE: Channel[PtzState] = Channel(
    name="ptz_state",
    template="ptz/{camera}/state",
    model=PtzState,
    qos=1,
    retain=True,
    codec=Codec.JSON,
    description="Position of the pan-tilt head (degrees, -90..90).",
    publisher="ptz",
    subscribers=("slack-gateway",),
    example={
        "pan": 30.0,
        "tilt": 20.0,
        "target_pan": 30.0,
        "target_tilt": 20.0,
        "moving": False,
        "backend": "simulated",
        "presets": ["door"],
        "last_request_id": "77aa",
        "error": None,
        "updated_at": _ts,
    },
    params={"camera": "camera id"},
)

TRAINING_LABELS: Channel[TrainingLabel] = Channel(
    name="training_labels",
    template="training/labels",
    model=TrainingLabel,
    qos=1,
    retain=False,
    codec=Codec.JSON,
    description=(
        "An owner's Occupied/Unoccupied verdict on an event (Slack buttons), the detector's "
        "automatic `unoccupied` sample (`source: detector`) or a missed alert saved on the "
        "owner's word (`occupied`, `source: missed`); the uploader stores it, the gateway "
        "counts it for the weekly report."
    ),
    publisher="slack-gateway, detector (automatic unoccupied samples, missed alerts)",
    subscribers=("uploader", "slack-gateway"),
    example={
        "event_id": "front-20261125-213000-0001",
        "camera": "front",
        "label": "occupied",
        "labelled_by": "slack:U024BE7LH",
        "labelled_at": _ts,
        "source": "slack",
    },
)

MISSED_ALERT: Channel[MissedAlert] = Channel(
    name="missed_alert",
    template="cam/{camera}/missed",
    model=MissedAlert,
    qos=1,
    retain=False,
    codec=Codec.JSON,
    description=(
        "The owner's missed alert: the detector saves the camera's last `seconds` (its ring "
        "buffer, `HOMESEC_DETECTOR_MEDIA__MISSED_BUFFER_SECONDS`) as an event folder and "
        "publishes it on `training/labels` as `occupied` with `source: missed`; the uploader "
        "stores it like any label and `homesec tune` counts it as a false negative."
    ),
    publisher="slack-gateway (/homesec missed), any client",
    subscribers=("detector",),
    example={
        "event_id": "front-missed-20261125-213000-0a1b",
        "seconds": 60,
        "requested_by": "slack:U024BE7LH",
        "request_id": "5e6f",
    },
    params={"camera": "camera id"},
)

TUNE_RESULT: Channel[TuneResult] = Channel(
    name="tune_result",
    template="training/tune",
    model=TuneResult,
    qos=1,
    retain=True,
    codec=Codec.JSON,
    description=(
        "The last `homesec tune --record` on the training set (docs/training.md; the "
        "detector's nightly run, or the owner's): false alerts and missed alerts under the "
        "current settings, and whether a change is proposed. Retained; the detector publishes "
        "the file tune leaves in its data dir."
    ),
    publisher="detector",
    subscribers=("slack-gateway",),
    example={
        "at": _ts,
        "events": 212,
        "false_alerts": 3,
        "missed": 1,
        "proposes_change": True,
        "false_alerts_removed": 2,
        "env": {"HOMESEC_DETECTOR_EVIDENCE__CONFIRM_MEDIAN": "0.7"},
    },
)

UPLOAD_REQUEST: Channel[UploadRequest] = Channel(
    name="upload_request",
    template="uploader/run",
    model=UploadRequest,
    qos=1,
    retain=False,
    codec=Codec.JSON,
    description="Run an upload of pending training data now.",
    publisher="any client",
    subscribers=("uploader",),
    example={"request_id": "a1", "requested_by": "node-red"},
)

UPLOADER_STATUS: Channel[UploaderStatus] = Channel(
    name="uploader_status",
    template="uploader/state",
    model=UploaderStatus,
    qos=1,
    retain=True,
    codec=Codec.JSON,
    description="Uploader progress: destination (S3 bucket or local folder), backlog, last success.",
    publisher="uploader",
    subscribers=("slack-gateway",),
    example={
        "mode": "s3",
        "destination": "s3://rpi-security-system/training",
        "pending": 0,
        "uploaded_objects_total": 42,
        "last_success_at": _ts,
        "last_error": None,
        "updated_at": _ts,
    },
)

DEAD_LETTERS: Channel[DeadLetter] = Channel(
    name="dead_letters",
    template="{service}/dead_letter",
    model=DeadLetter,
    qos=1,
    retain=False,
    codec=Codec.JSON,
    description=(
        "A QoS 1 message (event, command, label) whose handler failed on every retry "
        "(`HOMESEC_BROKER_HANDLER_ATTEMPTS`, with backoff): parked here and then acknowledged, "
        "so it stops blocking the service. Re-publish `payload_base64` (decoded) to `topic` "
        "once the cause is fixed; every handler is idempotent."
    ),
    publisher="every service (its own)",
    subscribers=("operators", "node-red"),
    example={
        "service": "uploader",
        "topic": "homesec/training/labels",
        "channel": "training_labels",
        "error": "OSError: [Errno 30] Read-only file system",
        "attempts": 5,
        "first_failed_at": _ts,
        "parked_at": _ts + 15.5,
        "payload_base64": "eyJldmVudF9pZCI6ICJmcm9udC0yMDI2MTEyNS0yMTMwMDAtMDAwMSJ9",
    },
    params={"service": "service name"},
)

CHANNELS: tuple[Channel[Any], ...] = (
    AVAILABILITY,
    SERVICE_STATUS,
    FRAMES,
    SNAPSHOT,
    SNAPSHOT_REQUEST,
    ALERT_SNAPSHOT,
    MOTION_EVENTS,
    MOTION_STATE,
    SYSTEM_STATE,
    SYSTEM_SET,
    ALARM_STATE,
    ALARM_SET,
    ALARM_SERVICE_SET,
    ALARM_RESULT,
    PRESENCE,
    PTZ_COMMAND,
    PTZ_STATE,
    TRAINING_LABELS,
    MISSED_ALERT,
    TUNE_RESULT,
    UPLOAD_REQUEST,
    UPLOADER_STATUS,
    DEAD_LETTERS,
)
"""Every channel of the contract, in documentation order."""


def example_payload(channel: Channel[Any]) -> str:
    """The documented example as it appears on the wire (JSON pretty-printed)."""
    if isinstance(channel.example, dict):
        channel.model.model_validate(channel.example)  # examples must stay valid
        return json.dumps(channel.example, indent=2)
    return str(channel.example)
