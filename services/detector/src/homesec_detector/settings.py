"""Detector settings (``HOMESEC_DETECTOR_*``; nested blocks with ``__``, e.g.
``HOMESEC_DETECTOR_MOTION__DELTA_THRESH=8``, ``HOMESEC_DETECTOR_EVENTS__QUIET_SECONDS=5``)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from homesec.alarm import AlarmSettings
from homesec.codes import CodeSettings
from homesec.contract import Identifier, PersonMode, SystemSetting
from homesec.settings import ServiceSettings, settings_config
from homesec_detector.events import EventSettings
from homesec_detector.evidence import EvidenceSettings
from homesec_detector.media_writer import MediaSettings
from homesec_detector.motion import MotionSettings
from homesec_detector.person import PersonModelSettings
from homesec_detector.person_verify import VerifierSettings
from homesec_detector.tune_schedule import TuneScheduleSettings


class DetectorSettings(ServiceSettings):
    """Everything the detector service reads at start."""

    model_config = settings_config("HOMESEC_DETECTOR_")

    metrics_port: int = Field(9102, ge=0, le=65535)
    cameras: list[Identifier] = Field(
        default_factory=list, description="Cameras to watch (JSON list); empty: every camera"
    )
    motion: MotionSettings = Field(default_factory=MotionSettings)
    events: EventSettings = Field(default_factory=EventSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    person: PersonModelSettings = Field(default_factory=PersonModelSettings)
    verifier: VerifierSettings = Field(
        default_factory=VerifierSettings,
        description="The second model, run on the first model's candidates",
    )
    evidence: EvidenceSettings = Field(
        default_factory=EvidenceSettings,
        description="How person checks add up to a confirmed person (docs/detection.md)",
    )
    person_mode: PersonMode = Field(
        PersonMode.REQUIRE,
        description="off: never run the model; annotate: report scores, alert on motion; "
        "require: alert only when a person is confirmed",
    )
    person_cpu_fraction: float = Field(
        0.5, gt=0, le=4, description="Person model time allowed per second (cores)"
    )
    person_report_threshold: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Scores from here up are reported (below person.score_threshold they do "
        "not confirm a person)",
    )
    person_preroll_checks: int = Field(
        10, ge=0, le=1000, description="Unchecked pre-roll frames with motion checked at start"
    )
    person_decode_width: int = Field(
        640, ge=64, description="Frames wider than twice this are decoded reduced for the model"
    )
    person_min_overlap: float = Field(
        0.3,
        ge=0,
        le=1,
        description="A person box must lie this much inside the motion region to count",
    )
    tune: TuneScheduleSettings = Field(
        default_factory=TuneScheduleSettings,
        description="The nightly homesec tune --record on the training set (docs/training.md)",
    )
    alarm: AlarmSettings = Field(
        default_factory=AlarmSettings,
        description="Alarm modes (cameras, exit/entry delays), trigger time (docs/alarm.md)",
    )
    codes: CodeSettings = Field(
        default_factory=CodeSettings,
        description="Optional alarm code for alarm/set (Home Assistant, Node-RED), lockout",
    )
    ha_discovery: bool = Field(
        True,
        description="Publish Home Assistant MQTT discovery documents (alarm panel, switches...)",
    )
    ha_discovery_prefix: str = Field("homeassistant", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
    restore_wait_seconds: float = Field(
        1.0,
        ge=0,
        le=30,
        description="Restore window for the system state: how long retained values may take "
        "to arrive after the broker granted the subscription (the local copy in "
        "<data_dir>/state/system.json is in force meanwhile)",
    )
    default_armed: bool = Field(
        False, description="Used only on a fresh install: no local copy and no retained value"
    )
    default_notifications: bool = True
    default_auto_arm: bool = False
    default_training: bool = True

    def state_defaults(self) -> Mapping[SystemSetting, bool]:
        return {
            SystemSetting.ARMED: self.default_armed,
            SystemSetting.NOTIFICATIONS: self.default_notifications,
            SystemSetting.AUTO_ARM: self.default_auto_arm,
            SystemSetting.TRAINING: self.default_training,
        }
