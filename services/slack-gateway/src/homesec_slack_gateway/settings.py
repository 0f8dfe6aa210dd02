"""Settings of the Slack gateway (``HOMESEC_SLACK_GATEWAY_*`` plus Slack's own variables)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from homesec.contract import ID_PATTERN
from homesec.settings import ServiceSettings, settings_config
from homesec_slack_gateway.channel import CHANNEL_ID_PATTERN, CHANNEL_NAME_PATTERN

PREFIX = "HOMESEC_SLACK_GATEWAY_"


def _secret(name: str, description: str) -> SecretStr | None:
    return Field(
        None,
        validation_alias=AliasChoices(f"{PREFIX}{name}".lower(), name.lower()),
        description=description,
    )


class SlackGatewaySettings(ServiceSettings):
    """Everything the gateway needs; the defaults run the local demo (no Slack tokens)."""

    model_config = settings_config(PREFIX)

    metrics_port: int = Field(9103, ge=0, le=65535)

    # ---- Slack credentials (SLACK_* or HOMESEC_SLACK_GATEWAY_SLACK_*) -------------------------
    slack_bot_token: SecretStr | None = _secret(
        "SLACK_BOT_TOKEN", "Bot token xoxb-...: posts alerts, uploads snapshots, updates messages"
    )
    slack_signing_secret: SecretStr | None = _secret(
        "SLACK_SIGNING_SECRET", "Signing secret: without it the HTTP endpoint refuses everything"
    )
    slack_app_token: SecretStr | None = _secret(
        "SLACK_APP_TOKEN", "App-level token xapp-... (connections:write) for Socket Mode"
    )
    slack_api_url: str = Field(
        "https://slack.com/api/", description="Slack Web API base URL (tests point it elsewhere)"
    )

    # ---- transport -------------------------------------------------------------------------
    socket_mode: bool = Field(False, description="Receive commands over Socket Mode, not HTTP")
    host: str = "0.0.0.0"
    port: int = Field(
        3000, ge=0, le=65535, description="HTTP port of POST /slack/events (0: any free port)"
    )
    max_body_bytes: int = Field(
        64 * 1024, ge=1024, le=10 * 1024 * 1024, description="Larger request bodies get 413"
    )
    signature_max_age_seconds: int = Field(300, ge=1, le=3600, description="Replay window")

    # ---- behaviour -------------------------------------------------------------------------
    alert_channel: str = Field(
        "",
        pattern=rf"^({CHANNEL_ID_PATTERN}|{CHANNEL_NAME_PATTERN})?$",
        description="Alert channel: its ID (C0...) or its name (#alerts, looked up once); "
        "empty: alerts stay queued and an error is logged",
    )
    default_camera: str = Field("front", pattern=ID_PATTERN)
    alert_min_interval_seconds: float = Field(
        10.0, ge=0, description="Per camera: alerts closer than this are not posted"
    )
    allowed_users: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Slack user ids allowed to use commands and buttons; '*': everyone in the "
        "workspace; empty: nobody (only help answers)",
    )
    admin_users: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Slack user ids (also allowed users) who may run initialize; '*': all of them",
    )
    snapshot_wait_seconds: float = Field(
        2.0, ge=0, le=20, description="How long to wait for a fresh snapshot before using the last"
    )
    ptz_wait_seconds: float = Field(
        5.0, ge=0, le=25, description="How long rotate waits for the PTZ state to confirm"
    )
    command_late_seconds: float = Field(
        10.0,
        gt=0,
        le=600,
        description="Arm, disarm and the switches are sent until the detector answers; after "
        "this long without an answer the owner is told in Slack (and told again when it comes)",
    )
    command_give_up_seconds: float = Field(
        600.0,
        gt=0,
        le=1500,
        description="Stop sending an unanswered command after this long and tell the owner "
        "(at most 25 min: Slack's response_url lasts 30)",
    )
    alert_clips: bool = Field(
        True,
        description="Post each alert's clip (the detector's clip.mp4) as the next message once "
        "it exists; the alert itself never waits for it",
    )
    clip_wait_seconds: float = Field(
        60.0, ge=0, le=3600, description="An alert's clip not there this long after it: none"
    )
    clip_poll_seconds: float = Field(
        1.0, gt=0, le=60, description="How often waiting clips are looked for"
    )
    clip_max_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="A larger clip.mp4 is not posted"
    )
    digest_hour: int = Field(
        9, ge=0, le=23, description="Hour of the day (local time) of the hard-negative digest"
    )
    digest_max: int = Field(
        5, ge=0, le=20, description="Hard negatives shown per daily digest (0: no digest)"
    )
    candidate_keep_days: float = Field(
        7.0,
        gt=0,
        description="Hard negatives older than this are not offered (keep it at the detector's "
        "HOMESEC_DETECTOR_MEDIA__CANDIDATE_KEEP_DAYS, which pins their media that long)",
    )
    report_weekday: int = Field(
        0, ge=-1, le=6, description="Day of the weekly training report (0 Monday; -1: none)"
    )
    report_hour: int = Field(9, ge=0, le=23, description="Hour (local time) of the weekly report")
    training_poll_seconds: float = Field(
        60.0, gt=0, le=3600, description="How often the report gauges and schedules are checked"
    )
    initialize_pan: float = Field(40.0, ge=-90, le=90)
    initialize_tilt: float = Field(10.0, ge=-90, le=90)

    # ---- delivery --------------------------------------------------------------------------
    retry_initial_seconds: float = Field(1.0, gt=0, le=60, description="First retry delay")
    retry_max_seconds: float = Field(60.0, gt=0, le=3600, description="Longest retry delay")
    rate_limit_retries: int = Field(3, ge=0, le=20, description="429 retries inside one call")
    slack_timeout_seconds: int = Field(15, ge=1, le=120)

    @field_validator("allowed_users", "admin_users", mode="before")
    @classmethod
    def _split_users(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @property
    def state_dir(self) -> Path:
        """Where the durable alert/label queue lives."""
        return self.data_dir / "slack-gateway"

    @staticmethod
    def reveal(secret: SecretStr | None) -> str | None:
        """The secret's value, or None when unset or blank."""
        if secret is None:
            return None
        value = secret.get_secret_value().strip()
        return value or None
