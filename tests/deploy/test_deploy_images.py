"""What each image's virtualenv holds, built the way docker/Dockerfile builds it, without Docker.

The Dockerfile installs one service with ``uv sync --frozen --no-dev --no-editable --package
homesec-<name>``. The workspace venv the other tests use holds every service, so a module that
imports a package only another service declares works there and breaks in the image. Here each
service gets its own venv from that same command; every module of the service must import in it,
and no other service (nor a dev tool) may be in it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from deploy_support import REPO

from homesec.services import CATALOGUE, ServiceInfo

IMPORT_ALL = """
import importlib, pkgutil, sys
package = importlib.import_module(sys.argv[1])
bad = []
for info in pkgutil.walk_packages(package.__path__, sys.argv[1] + "."):
    if info.name.endswith("__main__"):
        continue  # running it would start the service
    try:
        importlib.import_module(info.name)
    except Exception as exc:
        bad.append(f"{info.name}: {exc!r}")
importlib.import_module("homesec.healthcheck")
print("\\n".join(bad))
sys.exit(1 if bad else 0)
"""

FOREIGN = ("pytest", "moto", "ruff", "mypy", "hypothesis")


def find_uv() -> str:
    found = shutil.which("uv") or next(
        (
            p
            for p in (
                REPO / ".tools/bin/uv",
                Path.home() / ".local/bin/uv",
                Path("/usr/local/bin/uv"),
            )
            if p.exists()
        ),
        None,
    )
    if found is None:
        pytest.skip("uv not found: image contents NOT checked (install uv: pip install uv)")
    return str(found)


def build_venv(info: ServiceInfo, venv: Path) -> None:
    command = [
        find_uv(), "sync", "--frozen", "--no-dev", "--no-editable", "--quiet",
        "--package", f"homesec-{info.name}",
    ]  # fmt: skip
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run(
        [*command, "--offline"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:  # a wheel not in the local cache yet: let uv download it
        result = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600
        )
    assert result.returncode == 0, f"uv sync for {info.name} failed:\n{result.stderr[-2000:]}"


@pytest.mark.parametrize("info", CATALOGUE, ids=[i.name for i in CATALOGUE])
def test_deploy_image_venv_holds_only_its_service(info: ServiceInfo, tmp_path: Path) -> None:
    if not info.installed():
        pytest.skip(f"{info.module} not written yet")
    venv = tmp_path / "venv"
    build_venv(info, venv)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOMESEC_", "VIRTUAL_ENV"))}
    env["HOMESEC_BROKER_PORT"] = "1"  # nothing may connect anywhere while importing
    result = subprocess.run(
        [str(python), "-c", IMPORT_ALL, info.module],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (
        f"modules of {info.module} that do not import with only its declared dependencies:\n"
        f"{result.stdout}{result.stderr[-1500:]}"
    )
    others = [i.module for i in CATALOGUE if i is not info] + list(FOREIGN)
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util as u, sys\n"
         "print(' '.join(m for m in sys.argv[1:] if u.find_spec(m)))", *others],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == [], f"{info.name} image would also contain {probe.stdout}"
