"""The interface every pan-tilt backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod


class PtzBackend(ABC):
    """Moves a pan-tilt head. Angles are degrees, already clamped to -90..90 by the caller."""

    name: str = "base"

    @abstractmethod
    def move(self, pan: float, tilt: float) -> None:
        """Command both servos to the given angles."""

    @abstractmethod
    def position(self) -> tuple[float, float]:
        """Where the head points now (pan, tilt)."""

    def settling(self) -> bool:
        """True while the head still travels towards the last commanded angles."""
        return False

    def close(self) -> None:
        """Release the hardware (servos off). Nothing to release by default."""
        return None
