"""docker-compose.yml and docker/Dockerfile checked without a Docker engine.

* the compose file and the Raspberry Pi override (docker-compose.pi.yml) validate against the
  Compose Specification schema (tests/deploy/compose-spec.json), as written, with
  ``${VAR:-default}`` interpolated, and merged as Compose merges ``-f a -f b``;
* every service has a health check, a restart policy, and (homesec services) waits for a
  healthy broker; only the gateway and Grafana publish ports;
* every built service names a Dockerfile target that exists, runs as a non-root user, installs
  only its own package and has ``ENTRYPOINT ["python", "-m", <module>]`` for a module that exists;
* secrets: every referenced secret is declared, every declared one is used and created by
  docker/make-secrets.sh; each service logs in to the broker as its own ACL user;
* the health-check commands themselves work: ``python -m homesec.healthcheck`` against a real
  /metrics server, and the broker's ``mosquitto_sub`` check against the deployment broker.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from deploy_support import MOSQUITTO_DIR, REPO, SecuredBroker, start_secured_broker

from homesec.broker import free_port
from homesec.metrics import MetricsServer, ServiceMetrics
from homesec.services import BY_NAME

COMPOSE_FILE = REPO / "docker-compose.yml"
PI_FILE = REPO / "docker-compose.pi.yml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
SCHEMA = Path(__file__).with_name("compose-spec.json")
INFRA = {"mosquitto", "prometheus", "grafana"}
PI_TARGETS = {"camera": "camera-pi", "ptz": "ptz-pi"}
PUBLISHED = {"slack-gateway": "3000", "grafana": "3000"}

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(value: Any) -> Any:
    """Compose-style ``${VAR:-default}`` with the defaults (``$$`` is a literal ``$``)."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: m.group(2) or "", value).replace("$$", "$")
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


# sequences Compose merges by the container path (``host:container[:mode]``) or by value
_MERGE_BY_TARGET = {"volumes", "devices"}
_MERGE_BY_VALUE = {"group_add", "device_cgroup_rules", "secrets", "cap_drop", "security_opt"}


def _target(spec: Any) -> Any:
    return spec.split(":")[1] if isinstance(spec, str) and ":" in spec else spec


def merge(base: Any, override: Any, key: str = "") -> Any:
    """``docker compose -f base -f override``: the Compose Specification's merge rules for the
    keys our files use (maps key by key, mounts/devices by container path, sets by value)."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = merge(base[k], v, k) if k in base else v
        return out
    if isinstance(base, list) and isinstance(override, list):
        if key in _MERGE_BY_TARGET:
            replaced = {_target(v) for v in override}
            return [v for v in base if _target(v) not in replaced] + override
        if key in _MERGE_BY_VALUE:
            return base + [v for v in override if v not in base]
    return override


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE_FILE)


@pytest.fixture(scope="module")
def compose_pi(compose: dict[str, Any]) -> dict[str, Any]:
    """The deployment on a Pi: docker-compose.yml with docker-compose.pi.yml merged on top."""
    merged = merge(compose, load(PI_FILE))
    assert isinstance(merged, dict)
    return merged


def homesec_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if name not in INFRA}


@pytest.fixture(scope="module")
def stages() -> dict[str, list[str]]:
    """Dockerfile stage name → its instruction lines (continuations joined)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    result: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"(?i)^FROM\s+\S+(?:\s+AS\s+(\S+))?", line)
        if m:
            current = result.setdefault(m.group(1) or f"_stage{len(result)}", [])
        if current is not None:
            current.append(line)
    return result


def test_deploy_compose_validates_against_compose_spec(
    compose: dict[str, Any], compose_pi: dict[str, Any]
) -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    pi = load(PI_FILE)
    for label, doc in (
        ("as written", compose),
        ("interpolated", interpolate(compose)),
        ("pi override as written", pi),
        ("pi override interpolated", interpolate(pi)),
        ("merged with the pi override", interpolate(compose_pi)),
    ):
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        assert not errors, f"{label}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]
        )
    assert set(compose["services"]) >= {
        "mosquitto", "camera", "detector", "slack-gateway", "presence", "uploader", "ptz",
        "prometheus", "grafana",
    }  # fmt: skip
    assert set(compose_pi["services"]) == set(compose["services"])


def test_deploy_compose_the_schema_catches_mistakes(compose: dict[str, Any]) -> None:
    """The validation above can fail: a misspelt key and a bad restart policy are rejected."""
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    broken = json.loads(json.dumps(compose))
    broken["services"]["detector"]["helthcheck"] = broken["services"]["detector"]["healthcheck"]
    assert list(validator.iter_errors(broken))
    broken = json.loads(json.dumps(compose))
    broken["services"]["detector"]["depends_on"] = {"mosquitto": {"condition": "healthy"}}
    assert list(validator.iter_errors(broken))


@pytest.mark.parametrize("flavour", ["generic", "pi"])
def test_deploy_compose_health_restart_and_broker_dependency(
    flavour: str, compose: dict[str, Any], compose_pi: dict[str, Any]
) -> None:
    compose = compose_pi if flavour == "pi" else compose
    for name, svc in compose["services"].items():
        check = svc.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name}: no health check"
        assert svc.get("restart") == "unless-stopped", f"{name}: restart policy"
    for name, svc in homesec_services(compose).items():
        assert svc["depends_on"]["mosquitto"]["condition"] == "service_healthy", name
        test = svc["healthcheck"]["test"]
        assert test == ["CMD", "python", "-m", "homesec.healthcheck", name], name
    assert importlib.util.find_spec("homesec.healthcheck") is not None


def test_deploy_compose_publishes_only_gateway_and_grafana(compose: dict[str, Any]) -> None:
    published = {
        name: [str(interpolate(p)).rsplit(":", 1)[-1] for p in svc.get("ports", [])]
        for name, svc in compose["services"].items()
        if svc.get("ports")
    }
    assert published == {name: [port] for name, port in PUBLISHED.items()}
    env = compose["services"]["slack-gateway"]["environment"]
    assert env["HOMESEC_SLACK_GATEWAY_PORT"] == PUBLISHED["slack-gateway"]


def test_deploy_compose_runs_everything_without_env_and_pi_override(
    compose: dict[str, Any], compose_pi: dict[str, Any]
) -> None:
    """`docker compose up` with no .env runs every service (demo camera, simulated head); the Pi
    file turns exactly camera and ptz into their hardware builds and keeps the rest of them."""
    services = compose["services"]
    for name, svc in services.items():
        assert "profiles" not in svc, f"{name} must run on a plain `docker compose up`"
    assert "HOMESEC_CAMERA_SOURCE" not in services["camera"]["environment"], (
        "the generic camera must default to the demo scene"
    )
    assert services["ptz"]["environment"]["HOMESEC_PTZ_BACKEND"] == "simulated"
    assert set(load(PI_FILE)["services"]) == set(PI_TARGETS)
    pi = compose_pi["services"]
    for name, target in PI_TARGETS.items():
        assert pi[name]["build"]["target"] == target, name
        assert pi[name]["build"]["dockerfile"] == services[name]["build"]["dockerfile"], name
        assert f"/{target}:" in pi[name]["image"], name
        assert pi[name]["secrets"] == services[name]["secrets"], name
        assert pi[name]["healthcheck"] == services[name]["healthcheck"], name
        for key, value in services[name]["environment"].items():
            if not key.startswith(("HOMESEC_CAMERA_", "HOMESEC_PTZ_")):
                assert pi[name]["environment"][key] == value, f"{name}: {key} lost in the merge"
    for name in set(services) - set(PI_TARGETS):
        assert pi[name] == services[name], f"the Pi file must not change {name}"
    cam = pi["camera"]
    assert "/run/udev:/run/udev:ro" in cam["volumes"]
    assert "/dev:/dev" in cam["volumes"] and "video" in cam["group_add"]
    assert cam["environment"]["HOMESEC_CAMERA_SOURCE"] == "picamera2"
    ptz = pi["ptz"]
    assert "/dev/i2c-1:/dev/i2c-1" in ptz["devices"]
    assert ptz["environment"]["HOMESEC_PTZ_BACKEND"] == "pantilthat"
    assert "ptz-data:/data" in ptz["volumes"]


def test_deploy_compose_merge_follows_compose_rules() -> None:
    """The merge the tests above rely on: maps by key, mounts by container path, sets by value."""
    base = {"volumes": ["a:/data", "b:/logs"], "group_add": ["video"], "env": {"A": "1", "B": "2"}}
    over = {"volumes": ["c:/data"], "group_add": ["video", "i2c"], "env": {"B": "3"}}
    assert merge(base, over) == {
        "volumes": ["b:/logs", "c:/data"],
        "group_add": ["video", "i2c"],
        "env": {"A": "1", "B": "3"},
    }


def test_deploy_compose_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]

    def mounts(name: str) -> dict[str, str]:
        out = {}
        for spec in services[name].get("volumes", []):
            parts = spec.split(":")
            out[parts[1]] = parts[0] + (":ro" if len(parts) > 2 and parts[2] == "ro" else "")
        return out

    assert mounts("detector")["/data/media"] == "media"
    assert mounts("uploader")["/data/media"] == "media"
    assert mounts("slack-gateway")["/data/media"] == "media:ro"
    # pins (homesec.pins): written by detector, gateway and uploader, nobody else
    for name in ("detector", "slack-gateway", "uploader"):
        assert mounts(name)["/data/pins"] == "pins", name
    assert {n for n in services if "pins" in mounts(n).values()} == {
        "detector",
        "slack-gateway",
        "uploader",
    }
    assert mounts("uploader")["/data/training"] == "training"
    # the detector's nightly tune reads the training set, never writes it
    assert mounts("detector")["/data/training"] == "training:ro"
    assert mounts("mosquitto")["/mosquitto/data"] == "broker-data"
    declared = set(compose["volumes"])
    for name in services:
        for source in mounts(name).values():
            source = source.removesuffix(":ro")
            if not source.startswith(("/", ".")):
                assert source in declared, f"{name}: volume {source} not declared"
    for name, svc in homesec_services(compose).items():
        assert svc["environment"]["HOMESEC_DATA_DIR"] == "/data", name


def test_deploy_compose_secrets(compose: dict[str, Any], tmp_path: Path) -> None:
    declared = compose["secrets"]
    used: set[str] = set()
    for name, svc in compose["services"].items():
        for ref in svc.get("secrets", []):
            secret = ref if isinstance(ref, str) else ref["source"]
            assert secret in declared, f"{name}: secret {secret} not declared"
            used.add(secret)
    assert used == set(declared), f"declared but unused: {sorted(set(declared) - used)}"
    for secret in ("slack_bot_token", "slack_signing_secret", "aws_access_key_id"):
        assert secret in used
    # make-secrets.sh creates every file compose needs, and keeps existing ones
    out = tmp_path / "secrets"
    subprocess.run(["sh", str(REPO / "docker" / "make-secrets.sh"), str(out)], check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    for secret, spec in declared.items():
        path = Path(spec["file"])
        assert path.parent == Path("secrets"), f"{secret}: secret files live in ./secrets"
        assert (out / path.name).is_file(), f"make-secrets.sh does not create {path.name}"
    (out / "slack_bot_token").write_text("xoxb-kept")
    subprocess.run(["sh", str(REPO / "docker" / "make-secrets.sh"), str(out)], check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    assert (out / "slack_bot_token").read_text() == "xoxb-kept"
    assert len((out / "mqtt_password_detector").read_text()) >= 24
    assert (out / ".gitignore").read_text() == "*\n", "secrets must be ignored by git"
    assert "secrets" in (REPO / ".dockerignore").read_text().split()


def test_deploy_compose_each_service_is_its_own_broker_user(compose: dict[str, Any]) -> None:
    acl_users = set(re.findall(r"(?m)^user (\S+)$", (MOSQUITTO_DIR / "acl").read_text()))
    script = (MOSQUITTO_DIR / "make-passwords.sh").read_text()
    required = re.search(r'REQUIRED_USERS=\$\{HOMESEC_MQTT_USERS:-"([^"]+)"\}', script)
    assert required, "make-passwords.sh: REQUIRED_USERS not found"
    broker_secrets = set(compose["services"]["mosquitto"]["secrets"])
    for name, svc in homesec_services(compose).items():
        env = svc["environment"]
        user = env["HOMESEC_BROKER_USERNAME"]
        assert user == name, f"{name} logs in as {user}"
        secret = f"mqtt_password_{user.replace('-', '_')}"
        assert env["HOMESEC_BROKER_PASSWORD_FILE"] == f"/run/secrets/{secret}", name
        assert secret in svc["secrets"] and secret in broker_secrets, name
        assert user in acl_users, f"{user} has no ACL section"
        assert user in required.group(1).split(), f"{user} not created by make-passwords.sh"
        assert env["HOMESEC_BROKER_HOST"] == "mosquitto"


@pytest.mark.parametrize("flavour", ["generic", "pi"])
def test_deploy_compose_dockerfile_targets_and_entrypoints(
    flavour: str,
    compose: dict[str, Any],
    compose_pi: dict[str, Any],
    stages: dict[str, list[str]],
) -> None:
    compose = compose_pi if flavour == "pi" else compose
    not_yet: list[str] = []
    for name, svc in homesec_services(compose).items():
        build = svc["build"]
        assert (REPO / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        target = build["target"]
        assert target in stages, f"{name}: Dockerfile has no stage {target}"
        lines = stages[target]
        info = BY_NAME[name]
        entry = [ln for ln in lines if ln.upper().startswith("ENTRYPOINT")]
        assert len(entry) == 1, f"{target}: expected one ENTRYPOINT"
        assert json.loads(entry[0].split(None, 1)[1]) == ["python", "-m", info.module]
        users = [ln.split()[1] for ln in lines if ln.upper().startswith("USER")]
        assert users and users[-1] not in ("root", "0"), f"{target}: runs as root"
        health = [ln for ln in lines if ln.upper().startswith("HEALTHCHECK")]
        assert health and f'"homesec.healthcheck", "{info.name}"' in health[0], target
        # only this service's package is installed into the venv
        copies = [ln for ln in lines if ln.startswith("COPY --from=build-")]
        if copies:
            builder = copies[0].split()[1].removeprefix("--from=")
            installs = " ".join(stages[builder] + stages.get(f"build-{info.name}", []))
            packages = set(re.findall(r"--package (\S+)", installs))
            assert packages == {f"homesec-{info.name}"}, f"{target} installs {packages}"
        else:
            syncs = re.findall(r"--package (\S+)", " ".join(lines))
            assert set(syncs) == {f"homesec-{info.name}"}, f"{target} installs {syncs}"
        assert importlib.util.find_spec(info.module) is not None, f"{info.module} missing"
        if importlib.util.find_spec(f"{info.module}.__main__") is None:
            not_yet.append(f"{info.module}.__main__")
    if not_yet:
        pytest.skip(f"entrypoint modules not written yet: {sorted(set(not_yet))}")


def test_deploy_detector_image_has_the_clip_encoder(stages: dict[str, list[str]]) -> None:
    """The detector loads libopenh264 by soname: the image installs the package that has it."""
    from homesec_detector.openh264 import LIBRARY_NAMES

    text = " ".join(stages["detector"])
    assert "apt-get install" in text and "libopenh264-7" in text
    assert "libopenh264.so.7" in LIBRARY_NAMES  # the soname of bookworm's libopenh264-7


def test_deploy_compose_pi_images_use_debian_packages(
    stages: dict[str, list[str]],
) -> None:
    text = " ".join(stages["camera-pi"])
    assert "python3-picamera2" in text and "--system-site-packages" in text
    assert "--no-install-package numpy" in text
    ptz = " ".join(stages["ptz-pi"])
    assert "python3-smbus" in ptz and "--system-site-packages" in ptz and "--extra pi" in ptz
    base = [ln for ln in DOCKERFILE.read_text().splitlines() if ln.startswith("ARG PYTHON_IMAGE")]
    assert base == ["ARG PYTHON_IMAGE=python:3.11-slim-bookworm"]


# ---- the health-check commands work ---------------------------------------------------------


def run_healthcheck(service: str, port: int) -> subprocess.CompletedProcess[str]:
    info = BY_NAME[service]
    env = {**os.environ, f"{info.env_prefix}METRICS_PORT": str(port)}
    return subprocess.run(
        [sys.executable, "-m", "homesec.healthcheck", service, "--timeout", "5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_deploy_python_healthcheck_against_real_metrics() -> None:
    metrics = ServiceMetrics("detector")
    port = free_port()
    server = MetricsServer(metrics, "127.0.0.1", port)
    server.start()
    try:
        metrics.mqtt_connected.set(1)
        ok = run_healthcheck("detector", port)
        assert ok.returncode == 0, ok.stderr
        metrics.mqtt_connected.set(0)
        down = run_healthcheck("detector", port)
        assert down.returncode == 1 and "not connected" in down.stderr
    finally:
        server.stop()
    gone = run_healthcheck("detector", port)
    assert gone.returncode == 1 and "unreachable" in gone.stderr


@pytest.fixture
def secured_broker(tmp_path: Path) -> Iterator[SecuredBroker]:
    broker = start_secured_broker(tmp_path)
    yield broker
    broker.proc.kill()


def test_deploy_mosquitto_healthcheck_command(
    compose: dict[str, Any], secured_broker: SecuredBroker
) -> None:
    test = compose["services"]["mosquitto"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    command = interpolate(test[1])
    command = command.replace("/run/secrets/", f"{secured_broker.secrets_dir}/")
    assert "-p 1883" in command
    command = command.replace("-p 1883", f"-p {secured_broker.port}")
    ok = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    (secured_broker.secrets_dir / "mqtt_password_admin").write_text("wrong")
    bad = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0


def test_deploy_dockerfile_copies_only_what_exists_and_is_in_the_context(
    stages: dict[str, list[str]],
) -> None:
    """Every ``COPY`` source (without ``--from``) exists and is not excluded by .dockerignore."""
    ignored = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copies = 0
    for name, lines in stages.items():
        for line in lines:
            parts = line.split()
            if parts[0].upper() != "COPY" or any(p.startswith("--from") for p in parts):
                continue
            for source in [p for p in parts[1:-1] if not p.startswith("--")]:
                copies += 1
                assert (REPO / source).exists(), f"{name}: COPY {source}: no such path"
                top = source.split("/")[0]
                assert top not in ignored, f"{name}: COPY {source} is excluded by .dockerignore"
    assert copies >= 10


def test_deploy_shell_scripts_parse() -> None:
    for script in (
        REPO / "mosquitto" / "make-passwords.sh",
        REPO / "docker" / "make-secrets.sh",
    ):
        result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"
        assert os.access(script, os.X_OK), f"{script.name} is not executable"
        assert script.read_text().startswith("#!/bin/sh\n")
