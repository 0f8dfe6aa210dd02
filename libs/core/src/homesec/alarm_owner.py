"""The alarm's one writer: the thin shell around :class:`homesec.alarm.AlarmMachine`.

Hosted by :class:`homesec.state.SystemStateOwner` (the detector service), which restores it
together with the system switches and mirrors it on the legacy ``system/armed``. This shell:

* restores (:mod:`homesec.restore`): the local copy (``<data_dir>/state/alarm.json``) is in
  force from the start; after the restore window the newer of it and the retained
  ``alarm/state`` wins, then :meth:`AlarmMachine.resume` runs the timers that expired while
  homesec was down. Nothing is published before that; commands that arrive first are held
  (not acknowledged) and applied after it, in order;
* applies commands: ``alarm/set`` (code-checked, :mod:`homesec.codes`), ``alarm/service/set``
  (services that authorise their own users) and the legacy ``system/armed/set`` (handed over
  by the state owner, code-checked like ``alarm/set``), answering each on ``alarm/result``;
* applies detections (:meth:`detection`) and runs the timers on its own thread;
* writes every new status to the local copy before publishing it.

Commands are idempotent by value: a redelivered ``ARM_AWAY`` finds the alarm armed away.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from homesec.alarm import (
    AlarmMachine,
    AlarmSettings,
    Outcome,
    ZoneCheck,
    camera_alerts,
    from_legacy,
    legacy_armed,
    zone_check,
)
from homesec.bus import Ack, Bus, Received
from homesec.codes import CodeGuard, CodeSettings, Verdict
from homesec.confirm import RecentRequests
from homesec.contract import (
    ALARM_RESULT,
    ALARM_SERVICE_SET,
    ALARM_SET,
    ALARM_STATE,
    AlarmCommand,
    AlarmResult,
    AlarmStatus,
    SystemValue,
)
from homesec.restore import LocalCopy, RetainedRestore, key_of, newest

log = logging.getLogger("homesec.alarm")

KEY = ""
"""The one key of the alarm's local copy (it has one topic)."""

Mirror = Callable[[AlarmStatus], None]
"""Called under the owner's lock after every change (the legacy ``system/armed`` mirror)."""
Listener = Callable[[AlarmStatus], None]


class AlarmOwner:
    """Construct before ``bus.start()`` (it subscribes); the state owner drives the restore."""

    def __init__(
        self,
        bus: Bus,
        settings: AlarmSettings,
        codes: CodeSettings,
        *,
        lock: threading.RLock,
        mirror: Mirror,
        published: Callable[[], None],
        clock: Callable[[], float],
        restore_wait_seconds: float,
        state_path: Path | None,
        legacy: SystemValue | None = None,
    ) -> None:
        self._bus = bus
        self.settings = settings
        self.codes = codes
        self._guard = CodeGuard(codes)
        self._requests: RecentRequests[AlarmResult] = RecentRequests()
        self._lock = lock
        self._mirror = mirror
        self._after_publish = published
        self._clock = clock
        self._local = LocalCopy(state_path, AlarmStatus) if state_path is not None else None
        saved = self._local.load().get(KEY) if self._local is not None else None
        self._saved = saved is not None
        # before the restore: the local copy, else what the legacy armed value in force means
        # (an older install's local copy, or the default): never less armed than system/armed
        initial = saved or from_legacy(
            legacy is not None and legacy.value, settings, 0.0, "default"
        )
        self.machine = AlarmMachine(settings, initial)
        self._restored = False
        self._held: list[tuple[AlarmCommand, bool, Ack]] = []
        self._listeners: list[Listener] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.save_error: Callable[[OSError | None], None] = lambda _exc: None
        self.restore = RetainedRestore(
            bus, ALARM_STATE, key_of(""), window_seconds=restore_wait_seconds, after=self._foreign
        )
        bus.subscribe(ALARM_SET, lambda msg: self._on_command(msg, checked=True))
        bus.subscribe(ALARM_SERVICE_SET, lambda msg: self._on_command(msg, checked=False))

    # ---- queries ---------------------------------------------------------------------------

    @property
    def status(self) -> AlarmStatus:
        with self._lock:
            return self.machine.status

    def camera_alerts(self, camera: str) -> bool:
        """Whether motion on ``camera`` alerts now (the detector's per-camera ``armed``)."""
        with self._lock:
            return camera_alerts(self.machine.status, self.settings, camera)

    def zone_check(self, camera: str, width: int, height: int) -> ZoneCheck | None:
        """The current mode's zones for ``camera`` as a box test (None: no zones)."""
        with self._lock:
            return zone_check(self.machine.status, self.settings, camera, width, height)

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # ---- restore (driven by the state owner) -------------------------------------------------

    def restore_locked(
        self, retained: dict[str, AlarmStatus], armed: SystemValue | None
    ) -> tuple[str, AlarmStatus | None]:
        """Pick the status to resume (caller holds the lock): the newer of the local copy and
        the retained value; else the legacy ``armed`` (an install from before the alarm);
        a legacy value newer than both and saying otherwise wins too (it was changed by an
        older homesec). Runs the expired timers and saves. Returns the source and the retained
        value (to publish only what differs)."""
        found = newest(
            [
                ("local", self.machine.status if self._saved else None),
                ("retained", retained.get(KEY)),
            ],
            lambda v: v.changed_at,
        )
        legacy = None if armed is None or armed.changed_by == "default" else armed
        if found is None:
            source = "legacy" if legacy is not None else "default"
            value = armed.value if armed is not None else False
            at = armed.changed_at if armed is not None else self._clock()
            by = armed.changed_by if armed is not None else "default"
            status = from_legacy(value, self.settings, at, by)
        else:
            source, status = found
            if (
                legacy is not None
                and legacy.changed_at > status.changed_at
                and legacy.value != legacy_armed(status.state)
            ):
                source = "legacy"
                status = from_legacy(
                    legacy.value, self.settings, legacy.changed_at, legacy.changed_by
                )
        self.machine.status = status
        resumed = self.machine.resume(self._clock())
        if resumed.changed:
            log.info(
                "alarm timers that ran out while down applied",
                extra={"from": status.state.value, "to": resumed.status.state.value},
            )
        self._save_locked()
        self._mirror(self.machine.status)
        self._restored = True
        return source, retained.get(KEY)

    def after_restore(self, retained: AlarmStatus | None, source: str) -> None:
        """Publish (when the broker's copy differs), apply held commands, start the timers."""
        with self._lock:
            status = self.machine.status
            held, self._held = self._held, []
        if retained != status:
            self._bus.publish(ALARM_STATE, status)
        log.info("alarm restored", extra={"from": source, "state": status.state.value})
        self._notify(status)
        for cmd, checked, ack in held:
            self.command(cmd, checked=checked)
            ack()
        self._thread = threading.Thread(target=self._run_timers, name="alarm-timers", daemon=True)
        self._thread.start()

    # ---- inputs ----------------------------------------------------------------------------

    def command(self, cmd: AlarmCommand, *, checked: bool) -> AlarmResult:
        """Apply one command; ``checked``: the code rules apply (not for trusted services).
        A ``request_id`` applied before is answered again, not applied again (its sender
        sends until answered: homesec.confirm)."""
        if not self._requests.first_time(cmd.request_id):
            log.info(
                "repeated alarm command answered again, not applied",
                extra={"action": cmd.action.value, "source": cmd.source},
            )
            earlier = self.answer_again(cmd.request_id)
            if earlier is not None:
                return earlier
        now = self._clock()
        with self._lock:
            verdict = self._guard.check(cmd.action, cmd.code, now) if checked else Verdict(True)
            if verdict.ok:
                outcome = self.machine.command(cmd.action, cmd.source, now)
                self._apply_locked(outcome)
            else:
                outcome = Outcome(self.machine.status, False, verdict.error)
        error = outcome.error
        result = AlarmResult(
            action=cmd.action,
            accepted=error is None,
            error=error,
            state=outcome.status.state,
            source=cmd.source,
            request_id=cmd.request_id,
            attempts_left=verdict.attempts_left,
            locked_until=verdict.locked_until,
            at=now,
        )
        self._requests.answer(cmd.request_id, result)
        self._bus.publish(ALARM_RESULT, result)
        log_extra = {
            "action": cmd.action.value,
            "source": cmd.source,
            "accepted": result.accepted,
            "state": result.state.value,
        }
        if error is None:
            log.info("alarm command applied", extra=log_extra)
        else:
            log.warning("alarm command refused", extra={**log_extra, "error": error})
        if outcome.changed:
            self._published(outcome.status)
        return result

    def answer_again(self, request_id: str | None) -> AlarmResult | None:
        """Publish again the answer given to ``request_id`` (None: not answered here lately)."""
        earlier = self._requests.answered(request_id)
        if earlier is not None:
            self._bus.publish(ALARM_RESULT, earlier)
        return earlier

    def detection(self, camera: str, event_id: str | None) -> AlarmStatus:
        """A motion event that counts for the alarm (``decision.alarm``) on ``camera``."""
        with self._lock:
            if not self._restored:
                return self.machine.status  # the detector waits for the restore anyway
            outcome = self.machine.detection(camera, event_id, self._clock())
            self._apply_locked(outcome)
        if outcome.changed:
            _log_change(outcome.status, camera=camera, event_id=event_id)
            self._published(outcome.status)
        return outcome.status

    def held(self, cmd: AlarmCommand, checked: bool, ack: Ack) -> bool:
        """Hold a command that arrived before the restore; False once restored."""
        with self._lock:
            if self._restored:
                return False
            self._held.append((cmd, checked, ack))
            return True

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    # ---- helpers ---------------------------------------------------------------------------

    def _on_command(self, msg: Received[AlarmCommand], *, checked: bool) -> None:
        if self.held(msg.payload, checked, msg.hold()):
            return
        self.command(msg.payload, checked=checked)

    def _foreign(self, key: str, msg: Received[AlarmStatus]) -> None:
        """One writer: a value on ``alarm/state`` that is not ours is overwritten."""
        ours = self.status
        if msg.payload != ours:
            log.warning("foreign value on alarm/state replaced by the owner's")
            self._bus.publish(ALARM_STATE, ours)

    def _apply_locked(self, outcome: Outcome) -> None:
        if outcome.changed:
            self._save_locked()
            self._mirror(outcome.status)
            self._wake.set()

    def _published(self, status: AlarmStatus) -> None:
        self._bus.publish(ALARM_STATE, status)
        self._after_publish()
        self._notify(status)

    def _run_timers(self) -> None:
        while True:
            with self._lock:
                until = self.machine.status.until
            wait = 1.0 if until is None else max(0.0, min(1.0, until - self._clock()))
            if self._wake.wait(wait):
                self._wake.clear()
            if self._stop.is_set():
                return
            with self._lock:
                outcome = self.machine.tick(self._clock())
                self._apply_locked(outcome)
            if outcome.changed:
                _log_change(outcome.status)
                self._published(outcome.status)

    def _save_locked(self) -> None:
        if self._local is None:
            return
        try:
            self._local.save({KEY: self.machine.status})
        except OSError as exc:
            self.save_error(exc)
        else:
            self._saved = True
            self.save_error(None)

    def _notify(self, status: AlarmStatus) -> None:
        for listener in self._listeners:
            try:
                listener(status)
            except Exception:
                log.exception("alarm listener failed")


def _log_change(status: AlarmStatus, **extra: object) -> None:
    """Pending and triggered are warnings (someone is in); the rest is information."""
    level = logging.WARNING if status.state.value in ("pending", "triggered") else logging.INFO
    log.log(
        level,
        "alarm " + status.state.value,
        extra={"by": status.changed_by, "until": status.until, **extra},
    )
