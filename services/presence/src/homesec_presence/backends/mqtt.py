"""Home Assistant ``device_tracker``-style MQTT trackers: one topic per person whose (retained)
payload is ``home`` or something else (``not_home``, a zone name). An empty (cleared) payload,
and Home Assistant's ``unknown`` and ``unavailable`` (its tracker integration is down), mean
unknown: nobody is counted as gone because HA cannot tell.

This is what ``mqtt_statestream`` publishes (``<base_topic>/device_tracker/<id>/state`` or
``<base_topic>/person/<id>/state``, the bare state, retained, QoS 1) and what the automation in
docs/home-assistant.md publishes. Every update wakes the service, which applies it at once."""

from __future__ import annotations

import logging
import threading

from homesec.bus import Bus
from homesec_presence.backends.base import BackendError, PresenceBackend
from homesec_presence.devices import Watchlist
from homesec_presence.settings import MqttTrackerSettings

log = logging.getLogger("homesec_presence.mqtt")

UNKNOWN_PAYLOADS = frozenset({"", "unknown", "unavailable", "none"})
"""Payloads that tell nothing about where the person is."""


class MqttTrackerBackend(PresenceBackend):
    name = "mqtt"

    def __init__(self, bus: Bus, cfg: MqttTrackerSettings) -> None:
        self._bus = bus
        self._home = {p.strip().lower() for p in cfg.home_payloads}
        self._lock = threading.Lock()
        self._state: dict[str, bool | None] = {}
        self._wake: threading.Event | None = None
        self._people_by_topic: dict[str, list[str]] = {}
        for person, topic in cfg.trackers.items():
            self._people_by_topic.setdefault(topic, []).append(person)
        for topic in self._people_by_topic:
            bus.subscribe_raw(topic, self._on_message)

    def wake_on_change(self, wake: threading.Event) -> None:
        self._wake = wake

    def _on_message(self, topic: str, payload: bytes) -> None:
        word = payload.decode("utf-8", errors="replace").strip().strip('"').lower()
        value: bool | None = None if word in UNKNOWN_PAYLOADS else word in self._home
        with self._lock:
            for person in self._people_by_topic.get(topic, []):
                self._state[person] = value
        log.info("tracker update", extra={"topic": topic, "payload": word[:50]})
        if self._wake is not None:
            self._wake.set()

    def observe(self, watch: Watchlist) -> dict[str, bool | None]:
        if not self._bus.connected:
            raise BackendError("broker disconnected: tracker topics unavailable")
        with self._lock:
            return {name: self._state.get(name) for name in watch.names}
