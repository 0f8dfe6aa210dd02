"""System state (armed, notifications, auto-arm, training) over retained MQTT topics.

* :class:`SystemStateOwner` — the ONE writer. At start it restores the newer of its local copy
  and the retained value of each setting, whatever the start order of it and the broker
  (:mod:`homesec.restore`); it applies ``system/<setting>/set`` commands (QoS 1, persistent
  session: commands sent while it was down are applied when it returns) and republishes the
  retained state. The detector service hosts it.
* :class:`SystemStateView` — a read-only mirror for every other service.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from homesec.bus import Ack, Bus, Received
from homesec.contract import (
    SYSTEM_SET,
    SYSTEM_STATE,
    ServiceState,
    SetCommand,
    SystemSetting,
    SystemValue,
)
from homesec.restore import LocalCopy, RetainedRestore, key_of, newest

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
    """The single writer of ``system/<setting>``: restores, applies ``/set`` commands and
    republishes.

    Restore (:mod:`homesec.restore`): the local copy (``state_path``) is in force from the
    start; once the broker granted the subscriptions and the retained values had
    ``restore_wait_seconds`` to arrive, each setting takes the newer of its local copy and its
    retained value, and the defaults only when neither exists. Nothing is published before
    that. Commands that arrive first are held (not acknowledged) and applied after it, in order.
    Every applied value is written to the local copy before it is published."""

    def __init__(
        self,
        bus: Bus,
        defaults: Mapping[SystemSetting, bool] = DEFAULTS,
        restore_wait_seconds: float = 1.0,
        state_path: Path | None = None,
    ) -> None:
        self._bus = bus
        self._lock = threading.RLock()
        self._local = LocalCopy(state_path, SystemValue) if state_path is not None else None
        saved = self._local.load() if self._local is not None else {}
        self._defaults = {s: defaults.get(s, DEFAULTS[s]) for s in SystemSetting}
        self._values: dict[SystemSetting, SystemValue] = {
            s: saved.get(s.value) or SystemValue(value=self._defaults[s], changed_by="default")
            for s in SystemSetting
        }
        self._listeners: list[ChangeListener] = []
        self._held: list[tuple[SetCommand, SystemSetting, Ack]] = []
        self._restored = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._local_failing = False
        self._restore = RetainedRestore(
            bus,
            SYSTEM_STATE,
            key_of("setting"),
            window_seconds=restore_wait_seconds,
            after=self._on_state_after_restore,
        )
        bus.subscribe(SYSTEM_SET, self._on_set)

    def on_change(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def get(self, setting: SystemSetting) -> bool:
        with self._lock:
            return self._values[setting].value

    def snapshot(self) -> dict[SystemSetting, SystemValue]:
        with self._lock:
            return dict(self._values)

    @property
    def restored(self) -> bool:
        return self._restored.is_set()

    def wait_restored(self, timeout: float | None = None) -> bool:
        return self._restored.wait(timeout)

    def start(self) -> None:
        """Restore in the background (the bus may connect much later)."""
        self._thread = threading.Thread(target=self._run_restore, name="state-restore", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def set(self, setting: SystemSetting, value: bool, source: str) -> SystemValue:
        """Apply a change (same path as a ``/set`` command): local copy, then publish."""
        with self._lock:
            current = self._values[setting]
            if current.value == value and current.changed_by != "default":
                new = current
            else:
                new = SystemValue(value=value, changed_by=source)
                self._values[setting] = new
            changed = current.value != value
            self._save_locked()
        self._bus.publish(SYSTEM_STATE, new, setting=setting.value)
        log.info(
            "system setting applied",
            extra={"setting": setting.value, "value": value, "source": source, "changed": changed},
        )
        if changed:
            self._notify(setting, new)
        return new

    # ---- restore ---------------------------------------------------------------------------

    def _run_restore(self) -> None:
        retained = self._restore.wait(self._stop)
        if retained is None:
            return
        sources: dict[str, str] = {}
        changed: list[tuple[SystemSetting, SystemValue]] = []
        with self._lock:
            for setting in SystemSetting:
                current = self._values[setting]  # the local copy, or a set() made since
                found = newest(
                    [
                        ("local", None if current.changed_by == "default" else current),
                        ("retained", retained.get(setting.value)),
                    ],
                    lambda v: v.changed_at,
                )
                if found is None:
                    source = "default"
                    value = SystemValue(value=self._defaults[setting], changed_by="default")
                else:
                    source, value = found
                sources[setting.value] = source
                if value.value != self._values[setting].value:
                    changed.append((setting, value))
                self._values[setting] = value
            values = dict(self._values)
            self._save_locked()
            self._restored.set()
            held, self._held = self._held, []
        for setting, value in values.items():
            if retained.get(setting.value) != value:
                self._bus.publish(SYSTEM_STATE, value, setting=setting.value)
        log.info("system state restored", extra={"from": sources})
        for setting, value in changed:
            self._notify(setting, value)
        for cmd, setting, ack in held:
            self.set(setting, cmd.value, cmd.source)
            ack()

    def _on_state_after_restore(self, key: str, msg: Received[SystemValue]) -> None:
        """One writer: a value on our topic that is not ours (someone published to the state
        topic itself) is overwritten with ours."""
        try:
            setting = SystemSetting(key)
        except ValueError:
            return
        with self._lock:
            ours = self._values[setting]
        if msg.payload != ours:
            log.warning(
                "foreign value on a state topic replaced by the owner's",
                extra={"topic": msg.topic, "seen": msg.payload.value, "ours": ours.value},
            )
            self._bus.publish(SYSTEM_STATE, ours, setting=setting.value)

    def _on_set(self, msg: Received[SetCommand]) -> None:
        try:
            setting = SystemSetting(msg.params["setting"])
        except ValueError:
            log.warning("set command for unknown setting skipped", extra={"topic": msg.topic})
            self._bus.metrics.invalid_messages.labels(SYSTEM_SET.name).inc()
            return
        with self._lock:
            if not self._restored.is_set():
                # newer than anything restored: applied right after the restore, acknowledged
                # only then (a crash before it leaves the command on the broker)
                self._held.append((msg.payload, setting, msg.hold()))
                return
        self.set(setting, msg.payload.value, msg.payload.source)

    # ---- helpers ---------------------------------------------------------------------------

    def _save_locked(self) -> None:
        if self._local is None:
            return
        try:
            self._local.save({s.value: v for s, v in self._values.items()})
        except OSError as exc:
            # Fail secure: the change still applies and is published; the owner is told.
            if not self._local_failing:
                self._local_failing = True
                log.error(
                    "local copy of the system state cannot be written",
                    extra={"path": str(self._local.path), "error": str(exc)},
                )
                self._bus.set_status(
                    ServiceState.DEGRADED,
                    f"system state cannot be saved locally ({exc.strerror}); a restart "
                    "relies on the broker's retained copy",
                )
            return
        if self._local_failing:
            self._local_failing = False
            self._bus.set_status(ServiceState.OK)

    def _notify(self, setting: SystemSetting, value: SystemValue) -> None:
        for listener in self._listeners:
            try:
                listener(setting, value)
            except Exception:
                log.exception("state change listener failed")
