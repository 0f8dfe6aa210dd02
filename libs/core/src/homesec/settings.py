"""Configuration shared by every service, read with pydantic-settings.

Sources, highest priority first: environment variables, a ``.env`` file in the working
directory, Docker secrets in ``/run/secrets`` (file named like the variable, lower case),
then the defaults, which run the local demo out of the box.

* ``HOMESEC_BROKER_*``   — the broker block, shared by all services (``BrokerSettings``)
* ``HOMESEC_<SERVICE>_*`` — each service's own settings (a subclass of ``ServiceSettings``)

A bad or missing setting makes :func:`load_settings` print the variable's name and the problem
and exit with status 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from homesec.contract import ID_PATTERN

SECRETS_DIR = "/run/secrets"


def _secrets_dir() -> str | None:
    """Docker's secrets folder when it exists (pydantic-settings warns about a missing one)."""
    configured = os.environ.get("HOMESEC_SECRETS_DIR", SECRETS_DIR)
    return configured if os.path.isdir(configured) else None


def settings_config(env_prefix: str) -> SettingsConfigDict:
    """The pydantic-settings configuration every homesec settings class uses."""
    return SettingsConfigDict(
        env_prefix=env_prefix,
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        secrets_dir=_secrets_dir(),
        extra="ignore",
        case_sensitive=False,
    )


def read_secret_file(path: Path, field: str) -> SecretStr:
    """The secret held in ``path`` (a Docker secret or any file), stripped of surrounding
    whitespace; a clear error naming ``field`` when it cannot be read. The only secrets-file
    reader: every ``*_file`` setting goes through it."""
    try:
        return SecretStr(path.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise ValueError(f"{field}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{field}: {path} is not UTF-8 text") from None


class BrokerSettings(BaseSettings):
    """How to reach the MQTT broker (``HOMESEC_BROKER_*``)."""

    model_config = settings_config("HOMESEC_BROKER_")

    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = Field(
        None, description="File holding the password (Docker secret); used when password is unset"
    )
    tls: bool = False
    tls_ca_file: Path | None = None
    tls_insecure: bool = Field(False, description="Skip certificate host-name checks (testing)")
    topic_prefix: str = Field("homesec", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
    keepalive_seconds: int = Field(30, ge=5, le=3600)
    session_expiry_seconds: int = Field(
        7 * 24 * 3600, ge=60, description="How long the broker keeps a stopped consumer's queue"
    )
    reconnect_min_seconds: float = Field(0.5, gt=0, le=60)
    reconnect_max_seconds: float = Field(30.0, gt=0, le=600)
    max_queued_messages: int = Field(
        1000,
        ge=10,
        description="QoS 1 messages held in memory awaiting the broker (the durable outbox "
        "holds the rest); frames and state are never queued",
    )
    handler_attempts: int = Field(
        5, ge=1, le=100, description="Tries of a failing QoS 1 handler before it is dead-lettered"
    )
    handler_retry_min_seconds: float = Field(0.5, gt=0, le=60)
    handler_retry_max_seconds: float = Field(30.0, gt=0, le=3600)
    connect_timeout_seconds: float = Field(
        0.0, ge=0, description="Give up at start if the broker is unreachable this long (0: wait)"
    )

    @model_validator(mode="after")
    def _password_file_readable(self) -> BrokerSettings:
        if self.password is None and self.password_file is not None:
            secret = read_secret_file(self.password_file, "password_file")
            object.__setattr__(self, "password", secret)
        if self.tls_ca_file is not None and not self.tls_ca_file.is_file():
            raise ValueError(f"tls_ca_file: {self.tls_ca_file} does not exist")
        return self


class ServiceSettings(BaseSettings):
    """Settings every service has. Subclasses set ``model_config = settings_config(...)``."""

    model_config = settings_config("HOMESEC_SERVICE_")

    broker: BrokerSettings = Field(default_factory=lambda: BrokerSettings())
    instance: str | None = Field(
        None,
        pattern=ID_PATTERN,
        description="Extra client-id suffix when several instances of a service share a broker",
    )
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(9100, ge=0, le=65535, description="0 disables the /metrics server")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    data_dir: Path = Field(
        default_factory=lambda: Path(os.environ.get("HOMESEC_DATA_DIR", "var")),
        description="Root folder for media, training data and state (HOMESEC_DATA_DIR)",
    )
    merge_pages: bool = Field(
        True,
        description="Offer the kernel this service's memory for same-page merging (KSM: pages "
        "it holds byte for byte like another service's are kept once; works where the host "
        "runs ksmd, docs/deployment.md)",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @property
    def media_dir(self) -> Path:
        """Where the detector stores event media and the others read it."""
        return self.data_dir / "media"

    @property
    def pins_dir(self) -> Path:
        """Where services pin event folders still owed to Slack or S3 (:mod:`homesec.pins`)."""
        return self.data_dir / "pins"


S = TypeVar("S", bound=BaseSettings)


def env_name(settings_cls: type[BaseSettings], loc: tuple[int | str, ...]) -> str:
    """The environment variable that sets the field at ``loc``."""
    prefix = str(settings_cls.model_config.get("env_prefix", ""))
    parts = [str(p) for p in loc]
    if parts and parts[0] == "broker":
        prefix, parts = str(BrokerSettings.model_config.get("env_prefix", "")), parts[1:]
    return (prefix + "__".join(parts)).upper() if parts else prefix.rstrip("_").upper()


def describe_error(settings_cls: type[BaseSettings], exc: ValidationError) -> str:
    """One line per bad setting, naming its variable."""
    title_cls: type[BaseSettings] = settings_cls
    if exc.title == BrokerSettings.__name__:
        title_cls = BrokerSettings
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        value = "" if "password" in str(loc) else f" (got {str(err.get('input'))[:60]!r})"
        lines.append(f"  {env_name(title_cls, loc)}: {err['msg']}{value}")
    return "\n".join(lines)


_prebuilt: dict[type[BaseSettings], BaseSettings] = {}


def prebuild_settings(settings_cls: type[BaseSettings]) -> bool:
    """Build ``settings_cls`` from the environment now and keep it for the next
    :func:`load_settings` of that class (once).

    For ``homesec run``'s preloader, whose forks inherit the built settings instead of each
    building its own: validating a settings class the first time writes to pydantic's shared
    objects, ~1.5 MB of copied pages per fork (docs/performance.md). False when the settings do
    not validate: the service, building them itself, names the bad setting."""
    try:
        _prebuilt[settings_cls] = settings_cls()
    except Exception:  # reported by the service itself, with its exit status
        return False
    return True


def load_settings(settings_cls: type[S], **overrides: Any) -> S:
    """Read settings or exit with status 2 and a message naming each bad setting (without
    ``overrides``: the ones :func:`prebuild_settings` built, if it built them)."""
    if not overrides:
        built = _prebuilt.pop(settings_cls, None)
        if isinstance(built, settings_cls):
            return built
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        sys.stderr.write(f"homesec: invalid configuration\n{describe_error(settings_cls, exc)}\n")
        raise SystemExit(2) from None
