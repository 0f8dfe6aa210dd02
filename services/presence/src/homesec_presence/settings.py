"""Presence settings (``HOMESEC_PRESENCE_*``; nested blocks with ``__``, e.g.
``HOMESEC_PRESENCE_ROUTER__DEVICES_URL``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from homesec.contract import ID_PATTERN, is_identifier
from homesec.settings import ServiceSettings, read_secret_file, settings_config
from homesec_presence.devices import Watchlist
from homesec_presence.jsonpath import parse

MAX_PEOPLE = 100
"""The presence state carries at most this many people."""


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RouterSettings(_Block):
    """A router's web API, described declaratively (see README, "Router backend")."""

    base_url: str = Field("http://192.168.1.1", description="Prefix of relative URLs below")
    login_url: str | None = Field(None, description="Login request URL; unset: no login")
    login_method: Literal["POST", "GET", "PUT"] = "POST"
    login_body: dict[str, Any] | list[Any] = Field(
        default_factory=dict,
        description="Login body; string values may hold ${username} and ${password}",
    )
    login_body_format: Literal["json", "form"] = "json"
    username: str = ""
    password: SecretStr = SecretStr("")
    password_file: Path | None = Field(None, description="File holding the password (secret)")
    session: Literal["cookie", "token"] = "cookie"
    token_path: str = Field("token", description="JSON path of the token in the login response")
    token_header: str = Field("Authorization", description="Header carrying the token; '' none")
    token_prefix: str = "Bearer "
    devices_url: str = "/api/devices"
    devices_method: Literal["GET", "POST"] = "GET"
    devices_body: dict[str, Any] | list[Any] | None = Field(
        None, description="JSON body of the devices request; string values may hold ${token}"
    )
    devices_path: str = Field("devices[*]", description="JSON path to each device")
    mac_field: str = Field("mac", description="Path inside a device to its MAC; @key: the key")
    name_field: str = Field("hostname", description="Path inside a device to its host name")
    expired_path: str | None = Field(
        None, description="JSON path that signals an expired session in a 200 response"
    )
    expired_value: str | None = Field(None, description="Value at expired_path meaning expired")
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(10.0, gt=0, le=120)
    verify_tls: bool = True

    @field_validator("token_path", "devices_path", "expired_path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None:
            parse(value)
        return value

    @field_validator("mac_field", "name_field")
    @classmethod
    def _field_path(cls, value: str) -> str:
        if value != "@key":
            parse(value)
        return value

    @model_validator(mode="after")
    def _read_password_file(self) -> RouterSettings:
        if not self.password.get_secret_value() and self.password_file is not None:
            secret = read_secret_file(self.password_file, "password_file")
            object.__setattr__(self, "password", secret)
        return self


class NeighbourSettings(_Block):
    """The Linux neighbour (ARP/NDP) table of the machine presence runs on."""

    source: Literal["arp_file", "ip_neigh"] = "arp_file"
    arp_path: Path = Path("/proc/net/arp")
    ip_neigh_command: list[str] = Field(default_factory=lambda: ["ip", "neigh", "show"])
    probe: bool = Field(False, description="Ping watched devices before reading the table")
    probe_command: list[str] = Field(
        default_factory=lambda: ["ping", "-c", "1", "-W", "1"],
        description="argv; the target (IP or host name) is appended",
    )
    probe_timeout_seconds: float = Field(3.0, gt=0, le=60)
    command_timeout_seconds: float = Field(5.0, gt=0, le=60)

    @field_validator("ip_neigh_command", "probe_command")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("command must not be empty")
        return value


class MqttTrackerSettings(_Block):
    """Home Assistant ``device_tracker``-style topics: person → topic saying home/not_home."""

    trackers: dict[str, str] = Field(default_factory=dict)
    home_payloads: list[str] = Field(default_factory=lambda: ["home"])

    @field_validator("trackers")
    @classmethod
    def _topics(cls, value: dict[str, str]) -> dict[str, str]:
        for person, topic in value.items():
            if not is_identifier(person):
                raise ValueError(f"person {person!r} must match {ID_PATTERN}")
            if not topic or "+" in topic or "#" in topic:
                raise ValueError(f"{person}: tracker topic {topic!r} must be one concrete topic")
        return value


class PresenceSettings(ServiceSettings):
    """Settings of the presence service."""

    model_config = settings_config("HOMESEC_PRESENCE_")

    metrics_port: int = Field(9104, ge=0, le=65535)
    people: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Person → devices (MAC preferred, host name accepted), JSON: "
        '{"alice": ["aa:bb:cc:dd:ee:ff", "alices-phone"]}',
    )
    backend: Literal["router", "neighbours", "mqtt"] = "neighbours"
    poll_seconds: float = Field(30.0, gt=0, le=3600)
    away_grace_seconds: float = Field(
        600.0, ge=0, le=86400, description="Unseen this long (while the backend works) = away"
    )
    publish_interval_seconds: float = Field(
        60.0, gt=0, le=3600, description="Republish the presence state at least this often"
    )
    restore_wait_seconds: float = Field(
        1.0,
        ge=0,
        le=30,
        description="Restore window: how long the retained state may take to arrive after "
        "the broker granted the subscription (the local copy is in force meanwhile)",
    )
    command_give_up_seconds: float = Field(
        1800.0,
        gt=0,
        description="An arm or disarm request is sent until the detector answers it, for at "
        "most this long (then logged as unconfirmed and counted in homesec_commands_ended_total)",
    )
    router: RouterSettings = Field(default_factory=RouterSettings)
    neighbours: NeighbourSettings = Field(default_factory=NeighbourSettings)
    mqtt: MqttTrackerSettings = Field(default_factory=MqttTrackerSettings)

    @field_validator("people")
    @classmethod
    def _people(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if len(value) > MAX_PEOPLE:
            raise ValueError(f"at most {MAX_PEOPLE} people")
        for person in value:
            if not is_identifier(person):
                raise ValueError(f"person {person!r} must match {ID_PATTERN}")
        Watchlist(value)  # raises on a device that is neither a MAC nor a host name
        return value

    def watchlist(self) -> Watchlist:
        """The people to watch; with the mqtt backend, tracker people count too."""
        people = {name: list(devices) for name, devices in self.people.items()}
        if self.backend == "mqtt":
            for person in self.mqtt.trackers:
                people.setdefault(person, [])
        return Watchlist(people)
