"""Camera settings (``HOMESEC_CAMERA_*``). Defaults run the demo scene with no camera."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from homesec.contract import ID_PATTERN
from homesec.settings import ServiceSettings, settings_config

SourceKind = Literal["demo", "opencv", "picamera2"]


class CameraSettings(ServiceSettings):
    """One camera: where frames come from, how they are shaped and how often they go out."""

    model_config = settings_config("HOMESEC_CAMERA_")

    metrics_port: int = Field(9101, ge=0, le=65535, description="0 disables /metrics")
    camera_id: str = Field(
        "front", pattern=ID_PATTERN, description="Camera id used in every per-camera topic"
    )
    source: SourceKind = Field(
        "demo", description="demo (no camera needed), opencv (USB/V4L2/RTSP/HTTP/file), picamera2"
    )
    device: str = Field(
        "0",
        min_length=1,
        max_length=1000,
        description="opencv: device index (0), /dev/videoN, rtsp://... or http://... URL, or a "
        "video file path",
    )
    loop: bool = Field(False, description="opencv with a video file: restart at end of file")
    fps: float = Field(10.0, gt=0, le=60, description="Frames published per second")
    width: int = Field(640, ge=16, le=4096, description="Published frame width (pixels)")
    height: int = Field(480, ge=16, le=4096, description="Published frame height (pixels)")
    jpeg_quality: int = Field(80, ge=1, le=100, description="JPEG quality of published frames")
    rotate: Literal[0, 90, 180, 270] = Field(
        0, description="Clockwise rotation applied after flips (90/270 swap width and height)"
    )
    hflip: bool = Field(False, description="Mirror left-right (the original camera: true)")
    vflip: bool = Field(False, description="Mirror top-bottom (the original camera: true)")
    snapshot_interval_seconds: float = Field(
        10.0, gt=0, le=3600, description="Refresh period of the retained snapshot topic"
    )
    status_interval_seconds: float = Field(
        10.0, gt=0, le=3600, description="Period of the retained status (fps, source, size)"
    )
    reconnect_min_seconds: float = Field(
        1.0, gt=0, le=600, description="First wait before reopening a failed source"
    )
    reconnect_max_seconds: float = Field(
        30.0, gt=0, le=3600, description="Longest wait between reopen attempts (doubling)"
    )
    read_timeout_seconds: float = Field(
        5.0, gt=0, le=120, description="opencv live sources: a read blocked this long fails"
    )
    demo_seed: int = Field(7, ge=0, description="demo: seed of the generated room and noise")
    demo_period_seconds: float = Field(
        50.0, ge=4, le=3600, description="demo: length of one timeline cycle (default 50 s)"
    )
    demo_noise: float = Field(
        2.0, ge=0, le=20, description="demo: sensor noise standard deviation (grey levels)"
    )

    @field_validator("rotate", mode="before")
    @classmethod
    def _rotate_from_text(cls, value: object) -> object:
        """Environment variables are text: accept "180" as 180."""
        if isinstance(value, str) and value.strip().isdigit():
            return int(value.strip())
        return value

    @field_validator("device")
    @classmethod
    def _no_control_chars(cls, value: str) -> str:
        if any(ord(ch) < 32 for ch in value):
            raise ValueError("device must not contain control characters")
        return value.strip()

    @model_validator(mode="after")
    def _backoff_order(self) -> CameraSettings:
        if self.reconnect_max_seconds < self.reconnect_min_seconds:
            raise ValueError("reconnect_max_seconds must be >= reconnect_min_seconds")
        return self

    @property
    def output_size(self) -> tuple[int, int]:
        """(width, height) of published frames after rotation."""
        if self.rotate in (90, 270):
            return self.height, self.width
        return self.width, self.height
