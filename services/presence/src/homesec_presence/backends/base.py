"""The interface every presence backend implements."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod

from homesec_presence.devices import Device, Watchlist


class BackendError(Exception):
    """The backend could not tell who is there (router down, bad login, bad answer...).

    The message is shown in logs, the presence state and the service status: it must never
    contain a secret."""


class PresenceBackend(ABC):
    """Answers "who is seen right now?" for the people of a watchlist."""

    name: str = "base"

    @abstractmethod
    def observe(self, watch: Watchlist) -> dict[str, bool | None]:
        """Each person: seen now (True), not seen (False) or unknown to this backend (None).

        Raises :class:`BackendError` when the backend cannot answer at all."""

    def close(self) -> None:
        """Release connections. Nothing to release by default."""
        return None

    def wake_on_change(self, wake: threading.Event) -> None:
        """Set ``wake`` whenever the backend learns something new, so the service observes at
        once instead of at its next poll (push backends such as MQTT). Polled backends ignore
        it."""
        return None


class DeviceBackend(PresenceBackend):
    """A backend that lists the devices on the network; people are matched by MAC/host name."""

    @abstractmethod
    def devices(self) -> list[Device]:
        """Devices seen now. Raises :class:`BackendError`."""

    def observe(self, watch: Watchlist) -> dict[str, bool | None]:
        return dict(watch.match(self.devices()))
