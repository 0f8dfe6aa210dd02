"""What every built service image holds: only its service, no development tools, no build tools,
an unprivileged user, and the licence notices of what it redistributes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from engine import IMAGE_TAG, SERVICES, Compose, in_image, run

from homesec.services import BY_NAME, CATALOGUE

DEV_TOOLS = ("pytest", "moto", "ruff", "mypy", "hypothesis", "jsonschema", "yaml", "pip")
BUILD_TOOLS = ("uv", "pip", "pip3", "gcc", "cc", "g++", "make")

PROBE = """
import importlib.metadata as md, importlib.util as u, json, sys
print(json.dumps({
    "found": [m for m in sys.argv[1:] if u.find_spec(m)],
    "dists": sorted({d.metadata["Name"].lower() for d in md.distributions()}),
}))
"""

# builds and waits: longer than the suite's 300 s default (the first run builds every image)
pytestmark = pytest.mark.timeout(1200)


def image(service: str) -> str:
    return f"homesec/{service}:{IMAGE_TAG}"


@pytest.mark.parametrize("service", SERVICES)
def test_engine_image_holds_only_its_service(service: str, built: Compose) -> None:
    others = [i.module for i in CATALOGUE if i.name != service]
    out = in_image(image(service), f"python -c '{PROBE}' {' '.join(others + list(DEV_TOOLS))}")
    probe = json.loads(out)
    assert probe["found"] == [], f"{service} image also holds {probe['found']}"
    assert f"homesec-{service}" in probe["dists"]
    tools = in_image(image(service), f"for t in {' '.join(BUILD_TOOLS)}; do command -v $t; done; :")
    assert tools.split() == [], f"{service} image has build tools: {tools.split()}"
    caches = in_image(image(service), "ls -d /root/.cache /src /tmp/* 2>/dev/null; :", user="0")
    assert caches.split() == [], f"{service} image keeps build leftovers: {caches.split()}"


@pytest.mark.parametrize("service", SERVICES)
def test_engine_image_runs_unprivileged(service: str, built: Compose) -> None:
    config = json.loads(run(["docker", "image", "inspect", image(service)]).stdout)[0]["Config"]
    assert config["User"] == "homesec"
    assert config["Entrypoint"] == ["python", "-m", BY_NAME[service].module]
    ids = in_image(image(service), "id -u; id -g; stat -c '%u %a' /data /data/media /app")
    assert ids.split()[:2] == ["10001", "10001"]
    assert ids.split()[2:] == ["10001", "755"] * 3, ids


@pytest.mark.parametrize("service", SERVICES)
def test_engine_image_carries_licence_notices(service: str, built: Compose) -> None:
    doc = "/usr/share/doc/homesec"
    own = in_image(image(service), f"cat {doc}/LICENSE")
    assert own.startswith("MIT License") and "homesec contributors" in own
    notices = in_image(image(service), f"cat {doc}/THIRD_PARTY_NOTICES.txt")
    dists = json.loads(in_image(image(service), f"python -c '{PROBE}'"))["dists"]
    third = [d for d in dists if not d.startswith("homesec")]
    assert third, "no third-party distributions found"
    headings = {line.split()[0].lower() for line in notices.splitlines() if line[:1].isalnum()}
    missing = [d for d in third if d not in headings and d.replace("_", "-") not in headings]
    assert not missing, f"{service}: no notice for {missing}"
    assert notices.count("--- ") >= len(third) - 3, "most wheels carry a licence file"
    if service in ("detector", "camera"):
        assert "FastestDet" in notices or "xuehao.ma" in notices
        assert "BSD 3-Clause License" in notices
    # test data never goes into an image
    assert "bgslibrary" not in notices.lower()
    assert "coco_fastestdet" not in notices


SHARED = {
    # package directory in site-packages → the images that must read it from one layer
    "pydantic_core": SERVICES,
    "paho": SERVICES,
    "prometheus_client": SERVICES,
    "cv2": ("camera", "detector"),
    "numpy": ("camera", "detector"),
}


def layer_holding(service: str, package: str) -> str:
    """The overlay2 layer directory the image's ``package`` is read from (the topmost holding it)."""
    driver = json.loads(run(["docker", "image", "inspect", "-f", "{{json .GraphDriver}}",
                             image(service)]).stdout)  # fmt: skip
    if driver["Name"] != "overlay2":
        pytest.skip(f"storage driver {driver['Name']}: layers not inspectable")
    data = driver["Data"]
    dirs = [data["UpperDir"], *data.get("LowerDir", "").split(":")]
    for layer in filter(None, dirs):
        site = Path(layer) / "opt" / "venv" / "lib"
        try:
            if any(site.glob(f"python3*/site-packages/{package}")):
                return layer
        except PermissionError:
            pytest.skip(f"{layer} not readable: run as root on the engine's host")
    raise AssertionError(f"{service}: {package} in no layer")


def test_engine_images_share_the_dependency_layers(built: Compose) -> None:
    """Containers share a library's page-cache pages only when they map the same file of the
    same lower layer (docs/performance.md, memory under the engine): every image reads the core
    library's dependencies from one layer (common-base), the camera and the detector NumPy and
    OpenCV from another (vision-base), and no image's own layer carries a copy."""
    for package, services in SHARED.items():
        layers = {s: layer_holding(s, package) for s in services}
        assert len(set(layers.values())) == 1, f"{package} read from separate layers: {layers}"
