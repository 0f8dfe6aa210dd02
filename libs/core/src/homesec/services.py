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
    runtime_imports: tuple[str, ...] = ()
    """Modules the service imports only once it runs (not when its ``main`` is imported):
    ``homesec run`` imports them before it forks, so the services share them."""
    settings: str = ""
    """``module:Class`` of the settings its ``main`` loads: ``homesec run`` builds them before
    it forks (``homesec.settings.prebuild_settings``)."""

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
    # the demo source (imported when no camera is configured) and NumPy's random generator
    ServiceInfo(
        "camera",
        "homesec_camera",
        9101,
        runtime_imports=("homesec_camera.sources.demo", "numpy.random"),
        settings="homesec_camera.settings:CameraSettings",
    ),
    ServiceInfo(
        "detector", "homesec_detector", 9102, settings="homesec_detector.settings:DetectorSettings"
    ),
    # what uvicorn imports by name when it starts, and FastAPI's pydantic-v1 check
    ServiceInfo(
        "slack-gateway",
        "homesec_slack_gateway",
        9103,
        http_port=3000,
        runtime_imports=(
            "uvicorn.loops.auto",
            "uvicorn.loops.asyncio",
            "uvicorn.protocols.http.auto",
            "uvicorn.protocols.http.h11_impl",
            "uvicorn.protocols.websockets.auto",
            "uvicorn.lifespan.on",
            "uvicorn.lifespan.off",
            "pydantic.v1",
        ),
        settings="homesec_slack_gateway.settings:SlackGatewaySettings",
    ),
    ServiceInfo(
        "presence", "homesec_presence", 9104, settings="homesec_presence.settings:PresenceSettings"
    ),
    ServiceInfo(
        "uploader", "homesec_uploader", 9105, settings="homesec_uploader.settings:UploaderSettings"
    ),
    ServiceInfo("ptz", "homesec_ptz", 9106, settings="homesec_ptz.settings:PtzSettings"),
)

BY_NAME = {info.name: info for info in CATALOGUE}


def metrics_port(service: str) -> int:
    """Default metrics port of ``service``."""
    return BY_NAME[service].metrics_port
