"""System state (armed, notifications, auto-arm, training) over retained MQTT topics.

* :class:`SystemStateOwner` — the ONE writer. It restores the retained values at start, applies
  ``system/<setting>/set`` commands (QoS 1, persistent session: commands sent while it was down
  are applied when it returns) and republishes the retained state. The detector service hosts it.
* :class:`SystemStateView` — a read-only mirror for every other service.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from homesec.bus import Bus, Received
from homesec.contract import (
    SYSTEM_SET,
    SYSTEM_STATE,
    SetCommand,
    SystemSetting,
    SystemValue,
)

log = logging.getLogger("homesec.state")

DEFAULTS: Mapping[SystemSetting, bool] = {
    SystemSetting.ARMED: False,
    SystemSetting.NOTIFICATIONS: True,
    SystemSetting.AUTO_ARM: False,
    SystemSetting.TRAINING: True,
}
"""Values before anyone changed anything (the original's ``train: true`` kept)."""

ChangeListener = Callable[[SystemSetting, SystemValue], None]


class SystemStateView:
    """Mirror of the retained system state; thread-safe reads, optional change listeners."""

    def __init__(self, bus: Bus, defaults: Mapping[SystemSetting, bool] = DEFAULTS) -> None:
        self._values: dict[SystemSetting, SystemValue] = {
            key: SystemValue(value=value) for key, value in defaults.items()
        }
        self._known: set[SystemSetting] = set()
        self._lock = threading.Lock()
        self._listeners: list[ChangeListener] = []
        bus.subscribe(SYSTEM_STATE, self._on_state)

    def on_change(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def get(self, setting: SystemSetting) -> bool:
        with self._lock:
            return self._values[setting].value

    def value(self, setting: SystemSetting) -> SystemValue:
        with self._lock:
            return self._values[setting]

    def known(self, setting: SystemSetting) -> bool:
        """True once the retained value has been received (else the default is reported)."""
        with self._lock:
            return setting in self._known

    def snapshot(self) -> dict[SystemSetting, SystemValue]:
        with self._lock:
            return dict(self._values)

    def _on_state(self, msg: Received[SystemValue]) -> None:
        try:
            setting = SystemSetting(msg.params["setting"])
        except ValueError:
            log.warning("unknown system setting", extra={"topic": msg.topic})
            return
        with self._lock:
            changed = self._values[setting].value != msg.payload.value
            self._values[setting] = msg.payload
            self._known.add(setting)
        if changed:
            for listener in self._listeners:
                listener(setting, msg.payload)


class SystemStateOwner:
    """The single writer of ``system/<setting>``: applies ``/set`` commands and republishes."""

    def __init__(
        self,
        bus: Bus,
        defaults: Mapping[SystemSetting, bool] = DEFAULTS,
        restore_wait_seconds: float = 1.0,
    ) -> None:
        self._bus = bus
        self._lock = threading.Lock()
        self._values: dict[SystemSetting, SystemValue] = {
            key: SystemValue(value=value, changed_by="default") for key, value in defaults.items()
        }
        self._authoritative: set[SystemSetting] = set()
        self._listeners: list[ChangeListener] = []
        self._restore_wait = restore_wait_seconds
        self._timer: threading.Timer | None = None
        bus.subscribe(SYSTEM_STATE, self._on_retained)
        bus.subscribe(SYSTEM_SET, self._on_set)

    def on_change(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def get(self, setting: SystemSetting) -> bool:
        with self._lock:
            return self._values[setting].value

    def snapshot(self) -> dict[SystemSetting, SystemValue]:
        with self._lock:
            return dict(self._values)

    def start(self) -> None:
        """After the bus connects: publish defaults for settings nobody has set yet, once the
        retained values had ``restore_wait_seconds`` to arrive."""
        self._timer = threading.Timer(self._restore_wait, self._publish_unknown)
        self._timer.daemon = True
        self._timer.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def set(self, setting: SystemSetting, value: bool, source: str) -> SystemValue:
        """Apply a change locally (same path as a ``/set`` command)."""
        with self._lock:
            current = self._values[setting]
            self._authoritative.add(setting)
            if current.value == value and current.changed_by != "default":
                new = current
            else:
                new = SystemValue(value=value, changed_by=source)
                self._values[setting] = new
            changed = current.value != value
        self._bus.publish(SYSTEM_STATE, new, setting=setting.value)
        log.info(
            "system setting applied",
            extra={"setting": setting.value, "value": value, "source": source, "changed": changed},
        )
        if changed:
            for listener in self._listeners:
                listener(setting, new)
        return new

    def _publish_unknown(self) -> None:
        with self._lock:
            missing = [s for s in self._values if s not in self._authoritative]
            self._authoritative.update(missing)
            values = {s: self._values[s] for s in missing}
        for setting, value in values.items():
            self._bus.publish(SYSTEM_STATE, value, setting=setting.value)

    def _on_retained(self, msg: Received[SystemValue]) -> None:
        # Only the retained value seen at start-up matters: after that we are the writer, and a
        # command applied before the retained copy arrived is newer than it.
        try:
            setting = SystemSetting(msg.params["setting"])
        except ValueError:
            return
        with self._lock:
            if setting in self._authoritative:
                return
            self._values[setting] = msg.payload
            self._authoritative.add(setting)
        for listener in self._listeners:
            listener(setting, msg.payload)

    def _on_set(self, msg: Received[SetCommand]) -> None:
        try:
            setting = SystemSetting(msg.params["setting"])
        except ValueError:
            log.warning("set command for unknown setting skipped", extra={"topic": msg.topic})
            self._bus.metrics.invalid_messages.labels(SYSTEM_SET.name).inc()
            return
        self.set(setting, msg.payload.value, msg.payload.source)
