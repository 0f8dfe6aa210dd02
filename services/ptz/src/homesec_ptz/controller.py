"""The ptz service: ``ptz/<camera>/command`` in, the head moved, ``ptz/<camera>/state`` out.

Bus handlers only queue; one worker thread owns the head, so commands apply in order and a
smooth move is re-targeted (not queued behind) when a new command arrives. A command is
acknowledged to the broker only once applied, and one carrying a ``request_id`` already applied
(a redelivery) is skipped. The position is restored at start by :mod:`homesec.restore`: the newer
of the presets file's last position and the retained state, whatever the start order.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque

from prometheus_client import Counter, Gauge

from homesec.bus import Ack, Bus, Received
from homesec.contract import (
    PTZ_COMMAND,
    PTZ_MAX_DEGREES,
    PTZ_MIN_DEGREES,
    PTZ_STATE,
    PtzCommand,
    PtzState,
    ServiceState,
)
from homesec.metrics import ServiceMetrics
from homesec.restore import RetainedRestore, key_of, newest
from homesec_ptz.backends import PanTiltHatBackend, PtzBackend, SimulatedBackend
from homesec_ptz.planner import Outcome, plan, step_towards
from homesec_ptz.settings import Position, PtzSettings
from homesec_ptz.store import PresetStore, presets_path

log = logging.getLogger("homesec_ptz")

RECENT_REQUEST_IDS = 256
"""Request ids remembered to skip a redelivered command (a relative move must not apply twice)."""


class PtzMetrics:
    def __init__(self, metrics: ServiceMetrics) -> None:
        r = metrics.registry
        self.commands = Counter(
            "homesec_ptz_commands",
            "PTZ commands handled, by outcome (applied, clamped, rejected)",
            ["camera", "outcome"],
            registry=r,
        )
        self.pan = Gauge("homesec_ptz_pan_degrees", "Current pan angle", ["camera"], registry=r)
        self.tilt = Gauge("homesec_ptz_tilt_degrees", "Current tilt angle", ["camera"], registry=r)
        self.moving = Gauge("homesec_ptz_moving", "1 while the head moves", ["camera"], registry=r)


def make_backend(settings: PtzSettings) -> PtzBackend:
    if settings.backend == "pantilthat":
        return PanTiltHatBackend()
    home = settings.home
    return SimulatedBackend(
        pan=home.pan,
        tilt=home.tilt,
        slew_degrees_per_second=settings.simulated_slew_degrees_per_second,
    )


class PtzController:
    """Owns one camera's head. Construct before ``bus.start()`` (it subscribes)."""

    def __init__(
        self,
        bus: Bus,
        settings: PtzSettings,
        metrics: ServiceMetrics,
        backend: PtzBackend | None = None,
    ) -> None:
        self._bus = bus
        self._settings = settings
        self.camera = settings.camera_id
        self.backend = backend if backend is not None else make_backend(settings)
        self.store = PresetStore(presets_path(settings.data_dir, self.camera), settings.presets)
        self._metrics = PtzMetrics(metrics)
        for outcome in Outcome:  # export every series at 0
            self._metrics.commands.labels(self.camera, outcome.value)
        self._commands: queue.Queue[tuple[PtzCommand, Ack]] = queue.Queue()
        self._applied_ids: deque[str] = deque(maxlen=RECENT_REQUEST_IDS)
        self._republish = threading.Event()
        self._target = settings.home
        self._sent = settings.home
        self._backend_failed = False
        self._stepping = False
        self._last_step = 0.0
        self._last_publish = 0.0
        self._last_moving = False
        self._last_request_id: str | None = None
        self._error: str | None = None
        self._restore = RetainedRestore(
            bus,
            PTZ_STATE,
            key_of("camera"),
            window_seconds=settings.restore_wait_seconds,
            camera=self.camera,
        )
        bus.subscribe(PTZ_COMMAND, self._on_command, camera=self.camera)
        bus.on_connected(lambda _session: self._republish.set())

    # ---- bus handlers (network thread): just hand over -------------------------------------

    def _on_command(self, msg: Received[PtzCommand]) -> None:
        self._commands.put((msg.payload, msg.hold()))  # acknowledged once applied

    # ---- worker ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Restore the last position, then apply commands until ``stop`` is set."""
        try:
            if not self._restore_position(stop):
                return
            while not stop.is_set():
                timeout = self._settings.state_interval_seconds if self._moving() else 0.5
                try:
                    item: tuple[PtzCommand, Ack] | None = self._commands.get(timeout=timeout)
                except queue.Empty:
                    item = None
                try:
                    if item is not None:
                        cmd, ack = item
                        try:
                            self.handle(cmd)
                        finally:
                            ack()
                    if self._stepping:
                        self._step()
                    self._publish_if_due()
                except Exception:  # a bug in one command must not stop the head for good
                    log.exception("ptz worker error", extra={"camera": self.camera})
                    self._stepping = False
        finally:
            self.backend.close()

    def _restore_position(self, stop: threading.Event) -> bool:
        """Move to the newer of the retained state and the presets file's last position
        (home on a fresh install); False when stopped before the broker answered."""
        retained = self._restore.wait(stop)
        if retained is None:
            return False
        state = retained.get(self.camera)
        saved = self.store.last_position
        found = newest(
            [
                (
                    "retained",
                    (Position(pan=state.target_pan, tilt=state.target_tilt), state.updated_at)
                    if state
                    else None,
                ),
                ("presets file", (saved, self.store.last_position_at) if saved else None),
            ],
            lambda candidate: candidate[1],
        )
        if found is None:
            start, source = self._settings.home, "home"
        else:
            source, (start, _) = found
        if state is not None and state.last_request_id:
            self._last_request_id = state.last_request_id
            self._applied_ids.append(state.last_request_id)
        log.info(
            "restoring position",
            extra={"camera": self.camera, "pan": start.pan, "tilt": start.tilt, "from": source},
        )
        self._target = start
        self._send(start)
        self._publish()
        return True

    def handle(self, cmd: PtzCommand) -> None:
        """Apply one command (worker thread); a request id applied before is skipped."""
        if cmd.request_id is not None:
            if cmd.request_id in self._applied_ids:
                log.info(
                    "ptz command already applied; skipped",
                    extra={"camera": self.camera, "request_id": cmd.request_id},
                )
                return
            self._applied_ids.append(cmd.request_id)
        result = plan(cmd, self._target, self.store.presets, self._settings.home)
        self._metrics.commands.labels(self.camera, result.outcome.value).inc()
        self._last_request_id = cmd.request_id
        self._error = result.error
        extra = {
            "camera": self.camera,
            "outcome": result.outcome.value,
            "source": cmd.source,
            "request_id": cmd.request_id,
        }
        if result.outcome is Outcome.REJECTED:
            log.warning("ptz command rejected", extra={**extra, "reason": result.error})
            self._publish()
            return
        if result.save_as is not None:
            self.store.save_preset(result.save_as, self._target)
            log.info("preset saved", extra={**extra, "preset": result.save_as})
            self._publish()
            return
        assert result.target is not None
        if result.outcome is Outcome.CLAMPED:
            log.warning("ptz command clamped", extra={**extra, "reason": result.error})
        log.info("moving", extra={**extra, "pan": result.target.pan, "tilt": result.target.tilt})
        self._target = result.target
        self.store.save_position(self._target)
        if self._settings.step_degrees_per_second > 0:
            if not self._stepping:
                self._last_step = time.monotonic()
            self._stepping = True
            self._step()
        else:
            self._send(self._target)
        self._publish()

    def _step(self) -> None:
        now = time.monotonic()
        max_step = self._settings.step_degrees_per_second * max(0.0, now - self._last_step)
        self._last_step = now
        nxt = step_towards(self._sent, self._target, max_step)
        self._send(nxt)
        if nxt == self._target:
            self._stepping = False
            self._publish()

    def _send(self, position: Position) -> None:
        """Move the hardware; a failing backend (I2C error...) is reported, not fatal."""
        try:
            self.backend.move(position.pan, position.tilt)
        except (OSError, ValueError, RuntimeError) as exc:
            self._stepping = False
            self._error = f"backend failed: {type(exc).__name__}: {exc}"[:300]
            log.error(
                "pan-tilt backend failed", extra={"camera": self.camera, "error": self._error}
            )
            self._bus.set_status(ServiceState.DEGRADED, self._error, camera=self.camera)
            self._backend_failed = True
            return
        self._sent = position
        if self._backend_failed:
            self._backend_failed = False
            self._bus.set_status(ServiceState.OK, "", camera=self.camera)

    def _moving(self) -> bool:
        return self._stepping or self.backend.settling()

    def _publish_if_due(self) -> None:
        due = time.monotonic() - self._last_publish >= self._settings.state_interval_seconds
        if self._republish.is_set() or (self._moving() and due):
            self._publish()
        elif self._last_moving and not self._moving():
            self._publish()  # the move just finished

    def _position(self) -> tuple[float, float]:
        try:
            return self.backend.position()
        except (OSError, ValueError, RuntimeError):
            return self._sent.pan, self._sent.tilt

    def state(self) -> PtzState:
        pan, tilt = self._position()
        return PtzState(
            pan=_limit(pan),
            tilt=_limit(tilt),
            target_pan=self._target.pan,
            target_tilt=self._target.tilt,
            moving=self._moving(),
            backend=self.backend.name,
            presets=sorted(self.store.presets)[:100],
            last_request_id=self._last_request_id,
            error=self._error,
        )

    def _publish(self) -> None:
        self._republish.clear()
        state = self.state()
        self._last_publish = time.monotonic()
        self._last_moving = state.moving
        self._bus.publish(PTZ_STATE, state, camera=self.camera)
        self._metrics.pan.labels(self.camera).set(state.pan)
        self._metrics.tilt.labels(self.camera).set(state.tilt)
        self._metrics.moving.labels(self.camera).set(1 if state.moving else 0)


def _limit(value: float) -> float:
    return min(PTZ_MAX_DEGREES, max(PTZ_MIN_DEGREES, value))
