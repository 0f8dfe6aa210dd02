"""Read-only mirror of the retained topics the gateway reports on (status, snapshot, rotate)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from homesec.bus import Bus, Received
from homesec.confirm import OwnerOnline
from homesec.contract import (
    AVAILABILITY,
    PRESENCE,
    PTZ_STATE,
    SERVICE_STATUS,
    SNAPSHOT,
    UPLOADER_STATUS,
    Availability,
    Frame,
    PresenceState,
    PtzState,
    ServiceStatus,
    UploaderStatus,
)


class Mirror:
    """Latest availability, status, presence, PTZ state, snapshot and uploader state."""

    def __init__(self, bus: Bus) -> None:
        self._cond = threading.Condition()
        self.availability: dict[str, str] = {}
        self.status: dict[str, ServiceStatus] = {}
        self.presence: PresenceState | None = None
        self.ptz: dict[str, PtzState] = {}
        self.snapshots: dict[str, tuple[Frame, float]] = {}  # frame, received_at
        self.uploader: UploaderStatus | None = None
        self.detector = OwnerOnline()  # since when the detector is online (homesec.confirm)
        bus.subscribe(AVAILABILITY, self._on_availability)
        bus.subscribe(SERVICE_STATUS, self._on_status)
        bus.subscribe(PRESENCE, self._on_presence)
        bus.subscribe(PTZ_STATE, self._on_ptz)
        bus.subscribe(SNAPSHOT, self._on_snapshot)
        bus.subscribe(UPLOADER_STATUS, self._on_uploader)

    # ---- handlers (network thread) -----------------------------------------------------------

    def _update(self, apply: Callable[[], None]) -> None:
        with self._cond:
            apply()
            self._cond.notify_all()

    def _on_availability(self, msg: Received[Availability]) -> None:
        if msg.params["service"] == "detector":
            self.detector.seen(msg.payload)
        self._update(lambda: self.availability.__setitem__(msg.params["service"], msg.payload.root))

    def _on_status(self, msg: Received[ServiceStatus]) -> None:
        self._update(lambda: self.status.__setitem__(msg.params["service"], msg.payload))

    def _on_presence(self, msg: Received[PresenceState]) -> None:
        self._update(lambda: setattr(self, "presence", msg.payload))

    def _on_ptz(self, msg: Received[PtzState]) -> None:
        self._update(lambda: self.ptz.__setitem__(msg.params["camera"], msg.payload))

    def _on_snapshot(self, msg: Received[Frame]) -> None:
        self._update(
            lambda: self.snapshots.__setitem__(msg.params["camera"], (msg.payload, time.time()))
        )

    def _on_uploader(self, msg: Received[UploaderStatus]) -> None:
        self._update(lambda: setattr(self, "uploader", msg.payload))

    # ---- queries -----------------------------------------------------------------------------

    def latest_snapshot(self, camera: str) -> Frame | None:
        with self._cond:
            entry = self.snapshots.get(camera)
        return entry[0] if entry else None

    def wait_snapshot(self, camera: str, newer_than: float, timeout: float) -> Frame | None:
        """A snapshot received after ``newer_than`` (wall clock), else the latest one, else None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                entry = self.snapshots.get(camera)
                if entry and entry[1] >= newer_than:
                    return entry[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    return entry[0] if entry else None
                self._cond.wait(left)

    def wait_ptz(self, camera: str, request_id: str, timeout: float) -> PtzState | None:
        """The PTZ state that answers ``request_id`` once the head stopped moving, or None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                state = self.ptz.get(camera)
                if state and state.last_request_id == request_id and not state.moving:
                    return state
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def ptz_state(self, camera: str) -> PtzState | None:
        with self._cond:
            return self.ptz.get(camera)

    def copy(
        self,
    ) -> tuple[
        dict[str, str], dict[str, ServiceStatus], PresenceState | None, UploaderStatus | None
    ]:
        with self._cond:
            return dict(self.availability), dict(self.status), self.presence, self.uploader
