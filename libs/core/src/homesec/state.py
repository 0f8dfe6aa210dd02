"""System state (the alarm, notifications, auto-arm, training) over retained MQTT topics.

* :class:`SystemStateOwner` — the ONE writer. At start it restores the newer of its local copy
  and the retained value of each setting and of the alarm, whatever the start order of it and
  the broker (:mod:`homesec.restore`); it applies ``system/<setting>/set`` commands and the
  alarm's commands (QoS 1, persistent session: commands sent while it was down are applied when
  it returns) and republishes the retained state. The detector service hosts it.
  ``system/armed`` is the legacy mirror of the alarm (:mod:`homesec.alarm_owner`): true in
  every alarm state but ``disarmed``; ``system/armed/set`` ON arms the legacy mode when
  disarmed, OFF disarms.
* :class:`SystemStateView` — a read-only mirror for every other service.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from homesec.alarm import AlarmSettings, legacy_armed
from homesec.alarm_owner import AlarmOwner
from homesec.bus import Ack, Bus, Received
from homesec.codes import CodeSettings
from homesec.confirm import RecentRequests
from homesec.contract import (
    ALARM_STATE,
    SYSTEM_SET,
    SYSTEM_STATE,
    AlarmAction,
    AlarmCommand,
    AlarmStatus,
    ServiceState,
    SetCommand,
    SystemSetting,
    SystemValue,
)
from homesec.restore import LocalCopy, RetainedRestore, key_of, newest, wait_together

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
    """Mirror of the retained system state; thread-safe reads, optional change listeners.
    With ``alarm=True`` it mirrors ``alarm/state`` too (the subscriber needs the ACL's read
    right on it)."""

    def __init__(
        self, bus: Bus, defaults: Mapping[SystemSetting, bool] = DEFAULTS, *, alarm: bool = False
    ) -> None:
        self._values: dict[SystemSetting, SystemValue] = {
            key: SystemValue(value=value) for key, value in defaults.items()
        }
        self._known: set[SystemSetting] = set()
        self._alarm: AlarmStatus | None = None
        self._lock = threading.Lock()
        self._listeners: list[ChangeListener] = []
        bus.subscribe(SYSTEM_STATE, self._on_state)
        if alarm:
            bus.subscribe(ALARM_STATE, self._on_alarm)

    def alarm(self) -> AlarmStatus | None:
        """The retained alarm status; None until it arrived (or without ``alarm=True``)."""
        with self._lock:
            return self._alarm

    def _on_alarm(self, msg: Received[AlarmStatus]) -> None:
        with self._lock:
            self._alarm = msg.payload

    def on_change(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def get(self, setting: SystemSetting) -> bool:
        with self._lock:
            return self._values[setting].value

    def value(self, setting: SystemSetting) -> SystemValue:
        with self._lock:
            return self._values[setting]

    def retained(self, setting: SystemSetting) -> SystemValue | None:
        """The retained value received from the owner; None until one arrived."""
        with self._lock:
            return self._values[setting] if setting in self._known else None

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
        *,
        alarm: AlarmSettings | None = None,
        codes: CodeSettings | None = None,
        clock: Callable[[], float] = time.time,
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
        self._local_failing: set[str] = set()
        self._mirrored: SystemValue | None = None
        self._requests: RecentRequests[None] = RecentRequests()
        self._restore = RetainedRestore(
            bus,
            SYSTEM_STATE,
            key_of("setting"),
            window_seconds=restore_wait_seconds,
            after=self._on_state_after_restore,
        )
        self.alarm = AlarmOwner(
            bus,
            alarm or AlarmSettings(),
            codes or CodeSettings(),
            lock=self._lock,
            mirror=self._mirror_locked,
            published=self._publish_mirror,
            clock=clock,
            restore_wait_seconds=restore_wait_seconds,
            state_path=state_path.with_name("alarm.json") if state_path is not None else None,
            legacy=self._values[SystemSetting.ARMED],  # the local copy, else the default
        )
        self.alarm.save_error = lambda exc: self._report_save("alarm", exc)
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
        self.alarm.stop()

    def camera_alerts(self, camera: str) -> bool:
        """Whether motion on ``camera`` alerts in the alarm's current state and mode."""
        return self.alarm.camera_alerts(camera)

    def detection(self, camera: str, event_id: str | None) -> AlarmStatus:
        """A motion event that counts for the alarm (see :meth:`AlarmOwner.detection`)."""
        return self.alarm.detection(camera, event_id)

    def set(
        self, setting: SystemSetting, value: bool, source: str, request_id: str | None = None
    ) -> SystemValue:
        """Apply a change (same path as a ``/set`` command): local copy, then publish.
        ``armed`` goes through the alarm: ON arms its legacy mode when disarmed, OFF disarms.
        A ``request_id`` applied before is not applied again: the value in force is published
        again (its sender sends until answered: homesec.confirm)."""
        if not self._requests.first_time(request_id):
            with self._lock:
                current = self._values[setting]
            log.info(
                "repeated set command answered again, not applied",
                extra={"setting": setting.value, "source": source},
            )
            self._bus.publish(SYSTEM_STATE, current, setting=setting.value)
            if setting is SystemSetting.ARMED:  # its answer is the alarm's (alarm/result)
                self.alarm.answer_again(request_id)
            return current
        if setting is SystemSetting.ARMED:
            return self._set_armed(value, source, request_id)
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
        both = wait_together([self._restore, self.alarm.restore], self._stop)
        if both is None:
            return
        retained: dict[str, SystemValue] = both[0]
        alarm_retained: dict[str, AlarmStatus] = both[1]
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
            # the alarm next (it may correct the legacy armed value it mirrors)
            armed_before = self._values[SystemSetting.ARMED]
            alarm_source, alarm_seen = self.alarm.restore_locked(alarm_retained, armed_before)
            self._mirrored = None
            armed = self._values[SystemSetting.ARMED]
            if armed is not armed_before:
                changed = [c for c in changed if c[0] is not SystemSetting.ARMED]
                if armed.value != armed_before.value:
                    changed.append((SystemSetting.ARMED, armed))
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
        self.alarm.after_restore(alarm_seen, alarm_source)
        for cmd, setting, ack in held:
            self.set(setting, cmd.value, cmd.source, cmd.request_id)
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
        self.set(setting, msg.payload.value, msg.payload.source, msg.payload.request_id)

    # ---- the alarm's legacy mirror -----------------------------------------------------------

    def _set_armed(self, value: bool, source: str, request_id: str | None) -> SystemValue:
        """``system/armed/set``: a trusted command (only the gateway and presence may send it,
        see mosquitto/acl). ON while armed in any mode changes nothing."""
        if not value:
            self.alarm.command(
                AlarmCommand(action=AlarmAction.DISARM, source=source, request_id=request_id),
                checked=False,
            )
        elif not legacy_armed(self.alarm.status.state):
            action = AlarmAction("ARM_" + self.alarm.settings.legacy_mode.name)
            self.alarm.command(
                AlarmCommand(action=action, source=source, request_id=request_id), checked=False
            )
        with self._lock:
            current = self._values[SystemSetting.ARMED]
        self._bus.publish(SYSTEM_STATE, current, setting=SystemSetting.ARMED.value)
        return current

    def _mirror_locked(self, status: AlarmStatus) -> None:
        """Keep ``system/armed`` in step with the alarm (called under the lock)."""
        value = legacy_armed(status.state)
        current = self._values[SystemSetting.ARMED]
        if current.value == value and (
            current.changed_by != "default" or status.changed_by == "default"
        ):
            return
        new = SystemValue(value=value, changed_at=status.changed_at, changed_by=status.changed_by)
        self._values[SystemSetting.ARMED] = new
        self._save_locked()
        self._mirrored = new

    def _publish_mirror(self) -> None:
        with self._lock:
            new, self._mirrored = self._mirrored, None
        if new is None:
            return
        self._bus.publish(SYSTEM_STATE, new, setting=SystemSetting.ARMED.value)
        log.info(
            "system setting applied",
            extra={"setting": "armed", "value": new.value, "source": new.changed_by},
        )
        self._notify(SystemSetting.ARMED, new)

    # ---- helpers ---------------------------------------------------------------------------

    def _save_locked(self) -> None:
        if self._local is None:
            return
        try:
            self._local.save({s.value: v for s, v in self._values.items()})
        except OSError as exc:
            self._report_save("system", exc)
            return
        self._report_save("system", None)

    def _report_save(self, what: str, exc: OSError | None) -> None:
        """Fail secure: a change that cannot be saved still applies and is published; the
        owner is told (degraded status) until saving works again."""
        if exc is None:
            if what in self._local_failing:
                self._local_failing.discard(what)
                if not self._local_failing:
                    self._bus.set_status(ServiceState.OK)
            return
        if what in self._local_failing:
            return
        self._local_failing.add(what)
        log.error(
            "local copy of the system state cannot be written",
            extra={"copy": what, "error": str(exc)},
        )
        self._bus.set_status(
            ServiceState.DEGRADED,
            f"{what} state cannot be saved locally ({exc.strerror}); a restart "
            "relies on the broker's retained copy",
        )

    def _notify(self, setting: SystemSetting, value: SystemValue) -> None:
        for listener in self._listeners:
            try:
                listener(setting, value)
            except Exception:
                log.exception("state change listener failed")
