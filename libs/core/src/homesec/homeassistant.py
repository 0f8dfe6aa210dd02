"""Home Assistant MQTT discovery for homesec (published by the detector, the state owner).

Entities, all on one device and all built from :mod:`homesec.contract` channels:

* ``alarm_control_panel`` — arm home/away/night, disarm, trigger → ``alarm/set`` (JSON with
  the code, see :data:`ALARM_COMMAND_TEMPLATE`); state from ``alarm/state``; with a code
  configured Home Assistant asks for it (``REMOTE_CODE``: homesec checks it, HA never knows it)
* ``sensor`` "Alarm changed by" (Home Assistant blocks ``changed_by`` as an MQTT attribute, so
  it is a sensor of its own and the panel's ``last_changed_by`` attribute)
* per camera: ``binary_sensor`` (motion), ``camera`` (the retained live snapshot), ``event``
  (every motion event: type, reason, person score), ``image`` (the last alert's snapshot on
  ``cam/<camera>/alert/snapshot``) and a ``button`` that asks the camera for a fresh snapshot
* per pan-tilt head (announced once its ``ptz/<camera>/state`` is seen): ``number`` pan and
  tilt, and a ``select`` of its presets (re-announced when the presets change)
* ``switch`` for ``notifications``, ``auto_arm`` and ``training`` (JSON commands naming
  Home Assistant as the source)
* ``binary_sensor`` (occupancy) "Somebody home", and one ``binary_sensor`` (presence) per person
  (announced once ``presence/home`` names them)
* diagnostic ``sensor`` per service from ``<service>/status``, and the uploader's backlog

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
from homesec.bus import Bus, Received
from homesec.codes import CodeSettings
from homesec.contract import (
    ALARM_SET,
    ALARM_STATE,
    ALERT_SNAPSHOT,
    AVAILABILITY,
    MOTION_EVENTS,
    MOTION_STATE,
    PRESENCE,
    PTZ_COMMAND,
    PTZ_MAX_DEGREES,
    PTZ_MIN_DEGREES,
    PTZ_STATE,
    SERVICE_STATUS,
    SERVICES,
    SNAPSHOT,
    SNAPSHOT_REQUEST,
    SYSTEM_SET,
    SYSTEM_STATE,
    UPLOADER_STATUS,
    Channel,
    EventType,
    PresenceState,
    PtzState,
    ServiceState,
    SystemSetting,
    is_identifier,
)

log = logging.getLogger("homesec.homeassistant")

HA_ONLINE = b"online"

ALARM_COMMAND_TEMPLATE = (
    "{{ {'action': action, 'code': code, 'source': 'home-assistant'} | tojson }}"
)
"""The panel's action (``ARM_AWAY`` ..., ``DISARM``, ``TRIGGER``) and the code typed (null when
none) as an :class:`~homesec.contract.AlarmCommand`."""
ALARM_VALUE_TEMPLATE = "{{ value_json.state }}"
ALARM_ATTRIBUTES_TEMPLATE = (
    "{{ {'last_changed_by': value_json.changed_by, 'changed_at': value_json.changed_at, "
    "'mode': value_json.mode, 'until': value_json.until, 'camera': value_json.camera, "
    "'event_id': value_json.event_id} | tojson }}"
)
ALARM_FEATURES = ["arm_home", "arm_away", "arm_night", "trigger"]
SWITCH_VALUE_TEMPLATE = "{{ 'ON' if value_json.value else 'OFF' }}"
SWITCH_COMMAND_TEMPLATE = (
    '{"value": {{ "true" if value == "ON" else "false" }}, "source": "home-assistant"}'
)
OCCUPANCY_VALUE_TEMPLATE = "{{ 'ON' if value_json.anyone_home else 'OFF' }}"
SNAPSHOT_PRESS = '{"requested_by": "home-assistant"}'
EVENT_TYPES = [t.value for t in EventType]

SWITCHES: dict[SystemSetting, tuple[str, str]] = {
    SystemSetting.NOTIFICATIONS: ("Notifications", "mdi:bell"),
    SystemSetting.AUTO_ARM: ("Auto-arm from presence", "mdi:home-account"),
    SystemSetting.TRAINING: ("Training mode", "mdi:school"),
}
"""System switches exposed as HA switches (``armed`` is the alarm panel), with name and icon."""


def event_value_template(camera: str) -> str:
    """One camera's motion events as HA event payloads (other cameras render empty: ignored)."""
    return (
        f"{{% if value_json.camera == '{camera}' %}}"
        "{{ {'event_type': value_json.type, 'event_id': value_json.event_id, "
        "'alert': value_json.decision.alert, 'reason': value_json.decision.reason, "
        "'person_score': value_json.person_score, 'motion_score': value_json.motion_score, "
        "'snapshot': value_json.snapshot} | tojson }}{% endif %}"
    )


def person_value_template(name: str) -> str:
    return (
        f"{{% set p = value_json.people | selectattr('name', 'equalto', '{name}') | list %}}"
        "{{ 'ON' if p and p[0].home else 'OFF' }}"
    )


def preset_command_template() -> str:
    return (
        '{% if value == \'home\' %}{"home": true, "source": "home-assistant"}'
        '{% else %}{"preset": "{{ value }}", "source": "home-assistant"}{% endif %}'
    )


class HomeAssistantDiscovery:
    """Publishes (and re-publishes) Home Assistant discovery documents over ``bus``."""

    def __init__(
        self,
        bus: Bus,
        cameras: Sequence[str],
        discovery_prefix: str = "homeassistant",
        node_id: str = "homesec",
        codes: CodeSettings | None = None,
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
        self.codes = codes or CodeSettings()
        self.people: tuple[str, ...] = ()
        self.ptz: dict[str, tuple[str, ...]] = {}
        """Pan-tilt heads seen (camera → presets)."""
        self.published = 0
        self._lock = threading.Lock()

    # ---- wiring --------------------------------------------------------------------------------

    @property
    def status_topic(self) -> str:
        """Where Home Assistant announces ``online``/``offline`` (its birth/last-will topic)."""
        return f"{self.discovery_prefix}/status"

    def install(self) -> None:
        """Publish on every connection and on HA's ``online``; follow the people and pan-tilt
        heads that appear. Call before ``bus.start()``."""
        self.bus.on_connected(lambda _session_present: self.publish_all())
        self.bus.subscribe_raw(self.status_topic, self._on_ha_status)
        self.bus.subscribe(PRESENCE, self._on_presence)
        self.bus.subscribe(PTZ_STATE, self._on_ptz)

    def _on_ha_status(self, topic: str, payload: bytes) -> None:
        if payload.strip().lower() == HA_ONLINE:
            log.info("home assistant online; re-publishing discovery")
            self.publish_all()

    def _on_presence(self, msg: Received[PresenceState]) -> None:
        names = tuple(sorted({p.name for p in msg.payload.people}))
        with self._lock:
            new = [n for n in names if n not in self.people]
            self.people = tuple(sorted({*self.people, *names}))
        for name in new:
            self._publish(self._person_documents(name))

    def _on_ptz(self, msg: Received[PtzState]) -> None:
        camera = msg.params.get("camera", "")
        if not is_identifier(camera):
            return
        presets = tuple(msg.payload.presets)
        with self._lock:
            if self.ptz.get(camera) == presets:
                return
            self.ptz[camera] = presets
        self._publish(self._ptz_documents(camera, presets))

    def publish_all(self) -> None:
        """Publish every discovery document, retained, QoS 1."""
        docs = self.documents()  # includes cameras, people and heads added at run time
        self._publish(docs)
        self.published += 1
        log.info("discovery published", extra={"documents": len(docs), "cameras": self.cameras})

    def _publish(self, docs: dict[str, dict[str, Any]]) -> None:
        for topic, doc in docs.items():
            self.bus.publish_raw(topic, json.dumps(doc, separators=(",", ":")), qos=1, retain=True)

    def add_camera(self, camera: str) -> bool:
        """Announce a camera seen at run time (e.g. the detector's first frame from it).

        Returns False when it was already known. Later (re)connections include it."""
        if not is_identifier(camera):
            raise ValueError(f"camera id {camera!r} is not an identifier")
        with self._lock:
            if camera in self.cameras:
                return False
            self.cameras = (*self.cameras, camera)
        self._publish(self._camera_documents(camera))
        log.info("discovery published for new camera", extra={"camera": camera})
        return True

    def remove_camera(self, camera: str) -> None:
        """Delete a camera's entities from Home Assistant (empty retained configs)."""
        with self._lock:
            self.cameras = tuple(c for c in self.cameras if c != camera)
            presets = self.ptz.pop(camera, None)
        topics = list(self._camera_documents(camera))
        if presets is not None:
            topics += list(self._ptz_documents(camera, presets))
        for topic in topics:
            self.bus.publish_raw(topic, b"", qos=1, retain=True)

    # ---- documents (pure) ----------------------------------------------------------------------

    def documents(self) -> dict[str, dict[str, Any]]:
        """Discovery topic → config payload for every entity."""
        docs: dict[str, dict[str, Any]] = {}
        docs[self._topic("alarm_control_panel", "alarm")] = self._alarm()
        docs[self._topic("sensor", "alarm_changed_by")] = self._entity(
            "alarm_changed_by",
            "Alarm changed by",
            ["detector"],
            state_topic=self._t(ALARM_STATE),
            value_template="{{ value_json.changed_by }}",
            icon="mdi:account-lock",
        )
        for setting, (name, icon) in SWITCHES.items():
            docs[self._topic("switch", setting.value)] = self._entity(
                setting.value,
                name,
                ["detector"],
                command_topic=self._t(SYSTEM_SET, setting=setting.value),
                command_template=SWITCH_COMMAND_TEMPLATE,
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
        for service in SERVICES:
            docs[self._topic("sensor", f"status_{service.replace('-', '_')}")] = self._entity(
                f"status_{service.replace('-', '_')}",
                f"{service} status",
                [service],
                state_topic=self._t(SERVICE_STATUS, service=service),
                value_template="{{ value_json.state }}",
                json_attributes_topic=self._t(SERVICE_STATUS, service=service),
                device_class="enum",
                options=[s.value for s in ServiceState],
                entity_category="diagnostic",
            )
        docs[self._topic("sensor", "uploader_backlog")] = self._entity(
            "uploader_backlog",
            "Uploader backlog",
            ["uploader"],
            state_topic=self._t(UPLOADER_STATUS),
            value_template="{{ value_json.pending }}",
            json_attributes_topic=self._t(UPLOADER_STATUS),
            state_class="measurement",
            icon="mdi:cloud-upload",
            entity_category="diagnostic",
        )
        with self._lock:
            cameras, people, heads = self.cameras, self.people, dict(self.ptz)
        for camera in cameras:
            docs.update(self._camera_documents(camera))
        for name in people:
            docs.update(self._person_documents(name))
        for camera, presets in heads.items():
            docs.update(self._ptz_documents(camera, presets))
        return docs

    def _alarm(self) -> dict[str, Any]:
        codes = self.codes
        code: dict[str, Any] = {
            "code_arm_required": codes.enabled and codes.arm_required,
            "code_disarm_required": codes.enabled,
            "code_trigger_required": False,
        }
        if codes.enabled:
            # HA only asks for it; homesec checks it (the code itself is never published)
            code["code"] = "REMOTE_CODE" if codes.numeric else "REMOTE_CODE_TEXT"
        return self._entity(
            "alarm",
            "Alarm",
            ["detector"],
            command_topic=self._t(ALARM_SET),
            command_template=ALARM_COMMAND_TEMPLATE,
            state_topic=self._t(ALARM_STATE),
            value_template=ALARM_VALUE_TEMPLATE,
            json_attributes_topic=self._t(ALARM_STATE),
            json_attributes_template=ALARM_ATTRIBUTES_TEMPLATE,
            supported_features=ALARM_FEATURES,
            qos=1,
            retain=False,
            **code,
        )

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
            self._topic("event", f"events_{camera}"): self._entity(
                f"events_{camera}",
                f"Motion events {camera}",
                ["detector"],
                state_topic=self._t(MOTION_EVENTS),
                value_template=event_value_template(camera),
                event_types=EVENT_TYPES,
                device_class="motion",
                qos=1,
            ),
            self._topic("image", f"last_alert_{camera}"): self._entity(
                f"last_alert_{camera}",
                f"Last alert {camera}",
                ["detector"],
                image_topic=self._t(ALERT_SNAPSHOT, camera=camera),
                content_type="image/jpeg",
            ),
            self._topic("button", f"snapshot_{camera}"): self._entity(
                f"snapshot_{camera}",
                f"Refresh snapshot {camera}",
                ["camera"],
                command_topic=self._t(SNAPSHOT_REQUEST, camera=camera),
                payload_press=SNAPSHOT_PRESS,
                icon="mdi:camera",
                qos=1,
                retain=False,
            ),
        }

    def _ptz_documents(self, camera: str, presets: Sequence[str]) -> dict[str, dict[str, Any]]:
        docs: dict[str, dict[str, Any]] = {}
        for axis in ("pan", "tilt"):
            docs[self._topic("number", f"{axis}_{camera}")] = self._entity(
                f"{axis}_{camera}",
                f"{axis.capitalize()} {camera}",
                ["ptz"],
                command_topic=self._t(PTZ_COMMAND, camera=camera),
                command_template=f'{{"{axis}": {{{{ value }}}}, "source": "home-assistant"}}',
                state_topic=self._t(PTZ_STATE, camera=camera),
                value_template=f"{{{{ value_json.{axis} }}}}",
                min=PTZ_MIN_DEGREES,
                max=PTZ_MAX_DEGREES,
                step=1,
                unit_of_measurement="°",
                mode="slider",
                icon="mdi:pan-horizontal" if axis == "pan" else "mdi:pan-vertical",
                qos=1,
                retain=False,
            )
        docs[self._topic("select", f"preset_{camera}")] = self._entity(
            f"preset_{camera}",
            f"Preset {camera}",
            ["ptz"],
            command_topic=self._t(PTZ_COMMAND, camera=camera),
            command_template=preset_command_template(),
            options=["home", *[p for p in presets if p != "home"]],
            icon="mdi:camera-marker",
            optimistic=True,
            qos=1,
            retain=False,
        )
        return docs

    def _person_documents(self, name: str) -> dict[str, dict[str, Any]]:
        return {
            self._topic("binary_sensor", f"home_{name}"): self._entity(
                f"home_{name}",
                f"{name} home",
                ["presence"],
                state_topic=self._t(PRESENCE),
                value_template=person_value_template(name),
                payload_on="ON",
                payload_off="OFF",
                device_class="presence",
                qos=1,
            )
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
