"""The presence service shell: poll the backend, debounce, publish, ask to arm/disarm.

Everything with a decision in it lives in plain classes (:mod:`.tracker`, :mod:`.autoarm`,
the backends); this module only wires them to the bus, the clock and the metrics.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

from prometheus_client import Counter, Gauge

from homesec.bus import Bus
from homesec.confirm import AlarmResults, Confirmer, OwnerOnline, setting_check
from homesec.contract import (
    PRESENCE,
    SYSTEM_SET,
    PresenceState,
    ServiceState,
    SetCommand,
    SystemSetting,
    SystemValue,
)
from homesec.metrics import ServiceMetrics
from homesec.restore import LocalCopy, RetainedRestore, key_of, newest
from homesec.state import SystemStateView
from homesec_presence.autoarm import Action, AutoArmPolicy
from homesec_presence.backends.base import BackendError, PresenceBackend
from homesec_presence.settings import PresenceSettings
from homesec_presence.tracker import PresenceTracker

log = logging.getLogger("homesec_presence")


class PresenceMetrics:
    def __init__(self, metrics: ServiceMetrics) -> None:
        r = metrics.registry
        self.people_home = Gauge(
            "homesec_presence_people_home", "People currently counted as home", registry=r
        )
        self.person_home = Gauge(
            "homesec_presence_person_home",
            "1 while the person counts as home",
            ["person"],
            registry=r,
        )
        self.polls = Counter("homesec_presence_polls", "Backend polls attempted", registry=r)
        self.backend_errors = Counter(
            "homesec_presence_backend_errors", "Failed backend polls", ["backend"], registry=r
        )
        self.backend_up = Gauge(
            "homesec_presence_backend_up", "1 while the last backend poll succeeded", registry=r
        )
        self.arm_requests = Counter(
            "homesec_presence_arm_requests",
            "Arm/disarm requests sent because of presence",
            ["action"],
            registry=r,
        )


def make_backend(settings: PresenceSettings, bus: Bus) -> PresenceBackend:
    if settings.backend == "router":
        from homesec_presence.backends.router import RouterBackend

        return RouterBackend(settings.router)
    if settings.backend == "mqtt":
        from homesec_presence.backends.mqtt import MqttTrackerBackend

        return MqttTrackerBackend(bus, settings.mqtt)
    from homesec_presence.backends.neighbours import NeighbourBackend

    return NeighbourBackend(settings.neighbours)


class PresenceService:
    """Construct before ``bus.start()`` (it subscribes), then :meth:`run`."""

    def __init__(
        self,
        bus: Bus,
        settings: PresenceSettings,
        metrics: ServiceMetrics,
        backend: PresenceBackend | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._bus = bus
        self._settings = settings
        self._clock = clock
        self.watch = settings.watchlist()
        self.backend = backend if backend is not None else make_backend(settings, bus)
        self._changed = threading.Event()  # a push backend learnt something: observe now
        self.backend.wake_on_change(self._changed)
        self.tracker = PresenceTracker(self.watch.names, settings.away_grace_seconds)
        self.policy = AutoArmPolicy()
        self.metrics = PresenceMetrics(metrics)
        self.system = SystemStateView(bus)
        self.system.on_change(self._on_system_change)
        self.results = AlarmResults(bus)
        self.confirmer = Confirmer(
            give_up_seconds=settings.command_give_up_seconds,
            ready=lambda: bus.connected,
            owner=OwnerOnline(bus),
            registry=metrics.registry,
        )
        self.backend_ok = True
        self.backend_error: str | None = None
        self._auto_arm_enabled = threading.Event()
        self._auto_arm_switched_at = 0.0
        self._fresh_after = time.time()  # auto-arm switched on after this is news to us
        self._local = LocalCopy(settings.data_dir / "presence" / "state.json", PresenceState)
        self._local_failing = False
        self._last_published: PresenceState | None = None
        self._last_publish_at = 0.0
        self._restore_state = RetainedRestore(
            bus, PRESENCE, key_of(""), window_seconds=settings.restore_wait_seconds
        )
        for name in self.watch.names:
            self.metrics.person_home.labels(name).set(0)
        self.metrics.backend_errors.labels(self.backend.name)  # export the series at 0
        for action in Action:
            self.metrics.arm_requests.labels(action.value)

    # ---- bus handlers (network thread) -----------------------------------------------------

    def _on_system_change(self, setting: SystemSetting, value: SystemValue) -> None:
        if setting is SystemSetting.AUTO_ARM and value.value:
            self._auto_arm_switched_at = value.changed_at
            self._auto_arm_enabled.set()

    # ---- loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Restore, then poll every ``poll_seconds`` (and at once when a push backend says
        something changed) until ``stop`` is set."""
        self.confirmer.start()
        try:
            if not self._restore(stop):
                return
            next_poll = 0.0
            while not stop.is_set():
                if self._changed.is_set() or time.monotonic() >= next_poll:
                    self._changed.clear()
                    next_poll = time.monotonic() + self._settings.poll_seconds
                    self.poll_once()
                    due = self.tracker.next_due()
                    if due is not None:  # a departure completes before the next poll
                        left = max(0.0, due - self._clock())
                        next_poll = min(next_poll, time.monotonic() + left)
                if self._auto_arm_enabled.is_set():
                    self._auto_arm_enabled.clear()
                    self._on_auto_arm_enabled()
                stop.wait(min(0.1, self._settings.poll_seconds))
        finally:
            self.confirmer.stop()
            self.backend.close()

    def _on_auto_arm_enabled(self) -> None:
        """Apply the current occupancy once when auto-arm is switched on. A switch-on older
        than our last published state (the retained value seen at start-up) is history:
        replaying it would e.g. disarm a house someone armed on purpose while at home."""
        if self._auto_arm_switched_at <= self._fresh_after:
            return
        self._request(self.policy.on_auto_arm_enabled(self.backend_ok), "auto-arm switched on")

    def _restore(self, stop: threading.Event) -> bool:
        """Take the newer of the local copy and the retained state (:mod:`homesec.restore`);
        False when stopped before the broker answered."""
        retained = self._restore_state.wait(stop)
        if retained is None:
            return False
        found = newest(
            [("local", self._local.load().get("")), ("retained", retained.get(""))],
            lambda state: state.updated_at,
        )
        if found is None:
            return True
        source, state = found
        self._fresh_after = state.updated_at
        restored = self.tracker.restore(state)
        self.policy.last = self.tracker.occupancy()
        log.info(
            "presence restored",
            extra={"from": source, "people": restored, "occupancy": self.policy.last},
        )
        return True

    def poll_once(self) -> None:
        """One poll: observe, debounce, publish, and maybe ask to arm/disarm (after the new
        presence state is out, so listeners see who left before the house arms)."""
        self.metrics.polls.inc()
        action: Action | None = None
        try:
            seen = self.backend.observe(self.watch)
        except BackendError as exc:
            self._on_failure(str(exc))
        except Exception as exc:  # a backend bug must not kill the service
            log.exception("presence backend crashed")
            self._on_failure(f"backend crashed: {type(exc).__name__}")
        else:
            # the observation's time is when the answer came (a slow router must not make
            # the absence clock start before the backend was actually answering again)
            action = self._on_success(self._clock(), seen)
        self._publish_if_due(self._clock())
        self._request(action, "house empty" if action is Action.ARM else "someone arrived")

    def _on_failure(self, error: str) -> None:
        self.metrics.backend_errors.labels(self.backend.name).inc()
        self.metrics.backend_up.set(0)
        self.tracker.outage()
        first = self.backend_ok or error != self.backend_error
        self.backend_ok = False
        self.backend_error = error[:300]
        if first:
            log.warning(
                "presence backend failing; states frozen, no arm/disarm",
                extra={"backend": self.backend.name, "error": self.backend_error},
            )
            self._bus.set_status(
                ServiceState.DEGRADED,
                f"{self.backend.name} backend failing: {self.backend_error}"[:500],
                backend=self.backend.name,
            )

    def _on_success(self, now: float, seen: dict[str, bool | None]) -> Action | None:
        self.metrics.backend_up.set(1)
        if not self.backend_ok:
            log.info("presence backend recovered", extra={"backend": self.backend.name})
            self._bus.set_status(ServiceState.OK, "", backend=self.backend.name)
        self.backend_ok = True
        self.backend_error = None
        for change in self.tracker.observe(now, seen):
            log.info(
                "arrived" if change.home else "left",
                extra={"person": change.person, "grace_seconds": self.tracker.grace},
            )
        home = 0
        for person in self.tracker.snapshot():
            self.metrics.person_home.labels(person.name).set(1 if person.home else 0)
            home += person.home
        self.metrics.people_home.set(home)
        return self.policy.on_occupancy(
            self.tracker.occupancy(), self.system.get(SystemSetting.AUTO_ARM), self.backend_ok
        )

    def _request(self, action: Action | None, reason: str) -> None:
        if action is None:
            return
        want = action is Action.ARM
        if self.system.known(SystemSetting.ARMED) and self.system.get(SystemSetting.ARMED) == want:
            log.info("already in the wanted state", extra={"action": action.value})
            return
        self.metrics.arm_requests.labels(action.value).inc()
        log.info("requesting " + action.value, extra={"reason": reason})
        command = SetCommand(value=want, source="presence", request_id=uuid.uuid4().hex[:12])
        request_id = command.request_id or ""
        # sent until the detector answers (a request sent before its first subscription on a
        # fresh broker would be dropped); a newer request replaces it
        self.confirmer.submit(
            SystemSetting.ARMED.value,
            lambda: self._bus.publish(SYSTEM_SET, command, setting=SystemSetting.ARMED.value),
            setting_check(
                lambda: self.system.retained(SystemSetting.ARMED),
                want,
                "presence",
                time.time(),
                lambda: self.results.get(request_id),
            ),
        )

    def state(self, now: float) -> PresenceState:
        return PresenceState(
            anyone_home=self.tracker.occupancy() is True,
            people=self.tracker.snapshot(),
            backend=self.backend.name,
            backend_ok=self.backend_ok,
            backend_error=self.backend_error,
            updated_at=now,
        )

    def _publish_if_due(self, now: float) -> None:
        state = self.state(now)
        last = self._last_published
        changed = last is None or _essence(state) != _essence(last)
        due = time.monotonic() - self._last_publish_at >= self._settings.publish_interval_seconds
        if changed or due:
            self._save(state)
            self._bus.publish(PRESENCE, state)
            self._last_published = state
            self._last_publish_at = time.monotonic()

    def _save(self, state: PresenceState) -> None:
        """Keep the local copy; a failure is logged once (the retained copy still restores)."""
        try:
            self._local.save({"": state})
        except OSError as exc:
            if not self._local_failing:
                log.error(
                    "presence state cannot be saved locally",
                    extra={"path": str(self._local.path), "error": str(exc)},
                )
            self._local_failing = True
        else:
            self._local_failing = False


def _essence(state: PresenceState) -> tuple[object, ...]:
    """What makes a state worth publishing at once (last-seen times ride on the periodic one)."""
    return (
        state.anyone_home,
        tuple((p.name, p.home) for p in state.people),
        state.backend_ok,
        state.backend_error,
    )
