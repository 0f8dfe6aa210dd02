"""Pan-tilt backends: the Pimoroni Pan-Tilt HAT and a simulated head."""

from __future__ import annotations

from homesec_ptz.backends.base import PtzBackend
from homesec_ptz.backends.pantilthat import PanTiltHatBackend
from homesec_ptz.backends.simulated import SimulatedBackend

__all__ = ["PanTiltHatBackend", "PtzBackend", "SimulatedBackend"]
