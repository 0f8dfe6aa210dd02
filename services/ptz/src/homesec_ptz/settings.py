"""PTZ settings (``HOMESEC_PTZ_*``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from homesec.contract import PTZ_MAX_DEGREES, PTZ_MIN_DEGREES, CameraId, PresetName
from homesec.settings import ServiceSettings, settings_config


class Position(BaseModel):
    """A pan/tilt pair in degrees (-90..90). Also accepted as a two-item list ``[pan, tilt]``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pan: float = Field(ge=PTZ_MIN_DEGREES, le=PTZ_MAX_DEGREES)
    tilt: float = Field(ge=PTZ_MIN_DEGREES, le=PTZ_MAX_DEGREES)

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and len(value) == 2:
            return {"pan": value[0], "tilt": value[1]}
        return value


class PtzSettings(ServiceSettings):
    """Settings of the ptz service."""

    model_config = settings_config("HOMESEC_PTZ_")

    metrics_port: int = Field(9106, ge=0, le=65535)
    camera_id: CameraId = Field("front", description="Camera whose head this service moves")
    backend: Literal["simulated", "pantilthat"] = "simulated"
    step_degrees_per_second: float = Field(
        0.0, ge=0, le=1000, description="Smooth movement speed; 0 jumps straight to the target"
    )
    state_interval_seconds: float = Field(
        0.2, gt=0, le=10, description="How often the state is published during a smooth move"
    )
    home_pan: float = Field(40.0, ge=PTZ_MIN_DEGREES, le=PTZ_MAX_DEGREES)
    home_tilt: float = Field(10.0, ge=PTZ_MIN_DEGREES, le=PTZ_MAX_DEGREES)
    presets: dict[PresetName, Position] = Field(
        default_factory=dict, description='Initial presets, JSON: {"door": [30, 20]}'
    )
    restore_wait_seconds: float = Field(
        1.0,
        ge=0,
        le=30,
        description="Restore window: how long the retained state may take to arrive after "
        "the broker granted the subscription (the local copy is in force meanwhile)",
    )
    simulated_slew_degrees_per_second: float = Field(
        0.0, ge=0, le=1000, description="Simulated servo travel speed (0: instant)"
    )

    @property
    def home(self) -> Position:
        return Position(pan=self.home_pan, tilt=self.home_tilt)
