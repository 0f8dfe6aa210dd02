"""Uploader settings (``HOMESEC_UPLOADER_*``); see the service README for every variable."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from homesec.settings import ServiceSettings, read_secret_file, settings_config

KEY_PREFIX_PATTERN = r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$"


class UploaderSettings(ServiceSettings):
    """Where training data goes and how hard the uploader tries."""

    model_config = settings_config("HOMESEC_UPLOADER_")

    metrics_port: int = Field(9105, ge=0, le=65535)
    interval_seconds: float = Field(300.0, gt=0, description="Time between upload runs")

    # ---- destination ---------------------------------------------------------------------
    bucket: str | None = Field(
        None,
        min_length=3,
        max_length=63,
        pattern=r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$",
        description="S3 bucket; unset keeps the training set in local_dir (local mode)",
    )
    key_prefix: str = Field("training", pattern=KEY_PREFIX_PATTERN)
    endpoint_url: str | None = Field(
        None, pattern=r"^https?://", description="S3-compatible endpoint (MinIO); unset for AWS"
    )
    region: str | None = Field(None, pattern=r"^[a-z0-9-]+$")
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    server_side_encryption: Literal["AES256", "aws:kms", "none"] = Field(
        "AES256", description="SSE header on every object; 'none' for MinIO without a KMS"
    )
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None
    aws_access_key_id_file: Path | None = None
    aws_secret_access_key_file: Path | None = None
    connect_timeout_seconds: float = Field(5.0, gt=0)
    read_timeout_seconds: float = Field(30.0, gt=0)
    s3_max_attempts: int = Field(3, ge=1, le=10, description="botocore retries per request")

    # ---- local mode ------------------------------------------------------------------------
    local_dir: Path | None = Field(
        None, description="Folder of the local training set (default <data_dir>/training)"
    )
    local_copy: bool = Field(
        False,
        description="In S3 mode, also keep a copy of the training set in local_dir (the "
        "detector's nightly `homesec tune` reads it there; it grows like a local-mode set)",
    )
    local_copy_sync_seconds: float = Field(
        86400.0,
        gt=0,
        description="How often the local copy is checked against the bucket: what it lacks is "
        "fetched, what the bucket no longer holds (a lifecycle rule) is removed",
    )

    # ---- behaviour ------------------------------------------------------------------------------
    media_wait_seconds: float = Field(
        900.0,
        ge=0,
        description="How long a label waits for its event media before what exists is uploaded",
    )
    media_settle_seconds: float = Field(
        5.0,
        ge=0,
        description="An ended event's files are listed once none changed for this long",
    )
    retry_base_seconds: float = Field(30.0, gt=0, description="First retry delay of an object")
    retry_max_seconds: float = Field(3600.0, gt=0, description="Longest retry delay")
    abort_after_failures: int = Field(
        3, ge=1, description="Destination failures in one run after which the run stops"
    )
    delete_after_upload: bool = Field(
        True, description="Delete the event's local media once every file is confirmed uploaded"
    )
    keep_local_days: float = Field(
        1.0, ge=0, description="Days to keep uploaded media locally before deleting it"
    )
    ledger_keep_days: float = Field(
        90.0,
        ge=0,
        description="Days a finished label stays in the ledger before it is pruned (done and its "
        "local media deleted, or relabelled and its old objects deleted); 0 keeps every label "
        "forever. A label redelivered or relabelled after its rows were pruned is taken as new: "
        "an earlier label's objects are then no longer known and stay in the destination",
    )

    @model_validator(mode="after")
    def _read_secret_files(self) -> UploaderSettings:
        """Fill the keys from their files; an empty key or file (the deployment creates empty
        secret files) means unset, so boto3's own credential chain applies."""
        for field, file_field in (
            ("aws_access_key_id", "aws_access_key_id_file"),
            ("aws_secret_access_key", "aws_secret_access_key_file"),
            ("aws_session_token", None),
        ):
            value: SecretStr | None = getattr(self, field)
            path: Path | None = getattr(self, file_field) if file_field else None
            if value is None and path is not None and file_field is not None:
                value = read_secret_file(path, file_field)
            if value is not None and not value.get_secret_value().strip():
                value = None
            object.__setattr__(self, field, value)
        if (self.aws_access_key_id is None) != (self.aws_secret_access_key is None):
            raise ValueError("set both aws_access_key_id and aws_secret_access_key, or neither")
        return self

    @property
    def mode(self) -> Literal["s3", "local"]:
        return "s3" if self.bucket else "local"

    @property
    def training_dir(self) -> Path:
        """The local-mode destination folder."""
        return self.local_dir or self.data_dir / "training"

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / "uploader" / "ledger.sqlite"

    @property
    def local_copy_keys_path(self) -> Path:
        """The keys the local copy holds because the bucket held them (``LOCAL_COPY``)."""
        return self.data_dir / "uploader" / "local-copy.sqlite"

    @property
    def destination(self) -> str:
        """Human-readable destination for the status topic."""
        if self.bucket:
            return f"s3://{self.bucket}/{self.key_prefix}"
        return str((self.training_dir / self.key_prefix).resolve())
