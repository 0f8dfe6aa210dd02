"""Home Assistant MQTT discovery for homesec (published by the detector, the state owner).

Entities, all on one device and all built from :mod:`homesec.contract` channels:

* ``alarm_control_panel`` — arm away / disarm → ``system/armed/set``; state from ``system/armed``
* per camera: ``binary_sensor`` (motion, ``motion/<camera>/state``) and ``camera`` (the retained
  JPEG on ``cam/<camera>/snapshot``)
* ``switch`` for ``notifications``, ``auto_arm`` and ``training`` (``system/<setting>/set``)
* ``binary_sensor`` (occupancy) from ``presence/home`` (``anyone_home``)

Each has ``availability`` on the owning services' availability topics. Documents are published
retained on every (re)connection and again whenever Home Assistant announces ``online`` on
``<discovery_prefix>/status`` (its birth message). Call :meth:`HomeAssistantDiscovery.install`
before ``bus.start()``; :meth:`~HomeAssistantDiscovery.add_camera` announces a camera first seen
at run time (a detector watching every camera), :meth:`~HomeAssistantDiscovery.remove_camera`
deletes one.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

from homesec import __version__
from homesec.bus import Bus
from homesec.contract import (
    AVAILABILITY,
    MOTION_STATE,
    PRESENCE,
    SNAPSHOT,
    SYSTEM_SET,
    SYSTEM_STATE,
    Channel,
    SystemSetting,
    is_identifier,
)

log = logging.getLogger("homesec.homeassistant")

HA_ONLINE = b"online"

ARM_COMMAND_TEMPLATE = (
    '{"value": {{ "false" if action == "DISARM" else "true" }}, "source": "home-assistant"}'
)
"""Maps the panel's actions (``ARM_AWAY`` ..., ``DISARM``) to a :class:`SetCommand` JSON."""

ARMED_VALUE_TEMPLATE = "{{ 'armed_away' if value_json.value else 'disarmed' }}"
SWITCH_VALUE_TEMPLATE = "{{ 'ON' if value_json.value else 'OFF' }}"
OCCUPANCY_VALUE_TEMPLATE = "{{ 'ON' if value_json.anyone_home else 'OFF' }}"

SWITCHES: dict[SystemSetting, tuple[str, str]] = {
    SystemSetting.NOTIFICATIONS: ("Notifications", "mdi:bell"),
    SystemSetting.AUTO_ARM: ("Auto-arm from presence", "mdi:home-account"),
    SystemSetting.TRAINING: ("Training mode", "mdi:school"),
}
"""System switches exposed as HA switches (``armed`` is the alarm panel), with name and icon."""


class HomeAssistantDiscovery:
    """Publishes (and re-publishes) Home Assistant discovery documents over ``bus``."""

    def __init__(
        self,
        bus: Bus,
        cameras: Sequence[str],
        discovery_prefix: str = "homeassistant",
        node_id: str = "homesec",
    ) -> None:
        for camera in cameras:
            if not is_identifier(camera):
                raise ValueError(f"camera id {camera!r} is not an identifier")
        if not is_identifier(node_id):
            raise ValueError(f"node_id {node_id!r} must match [A-Za-z0-9_-]")
        if not discovery_prefix or "+" in discovery_prefix or "#" in discovery_prefix:
            raise ValueError(f"invalid discovery prefix {discovery_prefix!r}")
        self.bus = bus
        self.cameras = tuple(dict.fromkeys(cameras))
        self.discovery_prefix = discovery_prefix.rstrip("/")
        self.node_id = node_id
        self.published = 0
        self._lock = threading.Lock()

    # ---- wiring --------------------------------------------------------------------------------

    @property
    def status_topic(self) -> str:
        """Where Home Assistant announces ``online``/``offline`` (its birth/last-will topic)."""
        return f"{self.discovery_prefix}/status"

    def install(self) -> None:
        """Publish on every connection and on HA's ``online``; call before ``bus.start()``."""
        self.bus.on_connected(lambda _session_present: self.publish_all())
        self.bus.subscribe_raw(self.status_topic, self._on_ha_status)

    def _on_ha_status(self, topic: str, payload: bytes) -> None:
        if payload.strip().lower() == HA_ONLINE:
            log.info("home assistant online; re-publishing discovery")
            self.publish_all()

    def publish_all(self) -> None:
        """Publish every discovery document, retained, QoS 1."""
        docs = self.documents()  # includes cameras added at run time
        for topic, doc in docs.items():
            self.bus.publish_raw(topic, json.dumps(doc, separators=(",", ":")), qos=1, retain=True)
        self.published += 1
        log.info("discovery published", extra={"documents": len(docs), "cameras": self.cameras})

    def add_camera(self, camera: str) -> bool:
        """Announce a camera seen at run time (e.g. the detector's first frame from it).

        Returns False when it was already known. Later (re)connections include it."""
        if not is_identifier(camera):
            raise ValueError(f"camera id {camera!r} is not an identifier")
        with self._lock:
            if camera in self.cameras:
                return False
            self.cameras = (*self.cameras, camera)
        for topic, doc in self._camera_documents(camera).items():
            self.bus.publish_raw(topic, json.dumps(doc, separators=(",", ":")), qos=1, retain=True)
        log.info("discovery published for new camera", extra={"camera": camera})
        return True

    def remove_camera(self, camera: str) -> None:
        """Delete a camera's entities from Home Assistant (empty retained configs)."""
        with self._lock:
            self.cameras = tuple(c for c in self.cameras if c != camera)
        for topic in self._camera_documents(camera):
            self.bus.publish_raw(topic, b"", qos=1, retain=True)

    # ---- documents (pure) ----------------------------------------------------------------------

    def documents(self) -> dict[str, dict[str, Any]]:
        """Discovery topic → config payload for every entity."""
        docs: dict[str, dict[str, Any]] = {}
        docs[self._topic("alarm_control_panel", "alarm")] = self._entity(
            "alarm",
            "Alarm",
            ["detector"],
            command_topic=self._t(SYSTEM_SET, setting=SystemSetting.ARMED.value),
            command_template=ARM_COMMAND_TEMPLATE,
            state_topic=self._t(SYSTEM_STATE, setting=SystemSetting.ARMED.value),
            value_template=ARMED_VALUE_TEMPLATE,
            supported_features=["arm_away"],
            code_arm_required=False,
            code_disarm_required=False,
            qos=1,
            retain=False,
        )
        for setting, (name, icon) in SWITCHES.items():
            docs[self._topic("switch", setting.value)] = self._entity(
                setting.value,
                name,
                ["detector"],
                command_topic=self._t(SYSTEM_SET, setting=setting.value),
                state_topic=self._t(SYSTEM_STATE, setting=setting.value),
                value_template=SWITCH_VALUE_TEMPLATE,
                payload_on="ON",
                payload_off="OFF",
                state_on="ON",
                state_off="OFF",
                icon=icon,
                qos=1,
                retain=False,
            )
        docs[self._topic("binary_sensor", "anyone_home")] = self._entity(
            "anyone_home",
            "Somebody home",
            ["presence"],
            state_topic=self._t(PRESENCE),
            value_template=OCCUPANCY_VALUE_TEMPLATE,
            json_attributes_topic=self._t(PRESENCE),
            payload_on="ON",
            payload_off="OFF",
            device_class="occupancy",
            qos=1,
        )
        for camera in self.cameras:
            docs.update(self._camera_documents(camera))
        return docs

    def _camera_documents(self, camera: str) -> dict[str, dict[str, Any]]:
        return {
            self._topic("binary_sensor", f"motion_{camera}"): self._entity(
                f"motion_{camera}",
                f"Motion {camera}",
                ["detector"],
                state_topic=self._t(MOTION_STATE, camera=camera),
                payload_on="ON",
                payload_off="OFF",
                device_class="motion",
                qos=1,
            ),
            self._topic("camera", f"camera_{camera}"): self._entity(
                f"camera_{camera}",
                f"Camera {camera}",
                ["camera"],
                topic=self._t(SNAPSHOT, camera=camera),
            ),
        }

    def _topic(self, component: str, object_id: str) -> str:
        return f"{self.discovery_prefix}/{component}/{self.node_id}/{object_id}/config"

    def _t(self, channel: Channel[Any], **params: str) -> str:
        return channel.topic(self.bus.prefix, **params)

    def _entity(
        self, object_id: str, name: str, services: list[str], **config: Any
    ) -> dict[str, Any]:
        return {
            "name": name,
            "unique_id": f"{self.node_id}_{object_id}",
            "availability": [
                {
                    "topic": self._t(AVAILABILITY, service=service),
                    "payload_available": "online",
                    "payload_not_available": "offline",
                }
                for service in services
            ],
            "availability_mode": "all",
            "device": self._device(),
            "origin": {"name": "homesec", "sw_version": __version__},
            **config,
        }

    def _device(self) -> dict[str, Any]:
        return {
            "identifiers": [self.node_id],
            "name": "homesec" if self.node_id == "homesec" else f"homesec {self.node_id}",
            "manufacturer": "homesec",
            "model": "homesec home security",
            "sw_version": __version__,
        }
