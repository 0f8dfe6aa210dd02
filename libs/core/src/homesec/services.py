"""The catalogue of homesec services: module to run and default metrics port."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceInfo:
    name: str
    module: str
    metrics_port: int
    http_port: int | None = None

    @property
    def env_prefix(self) -> str:
        return "HOMESEC_" + self.name.upper().replace("-", "_") + "_"

    def installed(self) -> bool:
        """True when the service's package (with its ``__main__``) is importable."""
        try:
            return importlib.util.find_spec(f"{self.module}.__main__") is not None
        except ModuleNotFoundError:
            return False


CATALOGUE: tuple[ServiceInfo, ...] = (
    ServiceInfo("camera", "homesec_camera", 9101),
    ServiceInfo("detector", "homesec_detector", 9102),
    ServiceInfo("slack-gateway", "homesec_slack_gateway", 9103, http_port=3000),
    ServiceInfo("presence", "homesec_presence", 9104),
    ServiceInfo("uploader", "homesec_uploader", 9105),
    ServiceInfo("ptz", "homesec_ptz", 9106),
)

BY_NAME = {info.name: info for info in CATALOGUE}


def metrics_port(service: str) -> int:
    """Default metrics port of ``service``."""
    return BY_NAME[service].metrics_port
