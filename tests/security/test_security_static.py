"""Static checks of the code and the deployment files behind docs/security.md.

* no dangerous constructs in services/ and libs/ (parsed with `ast`, so comments and strings
  do not count): eval/exec/compile/__import__, pickle/marshal/shelve, yaml.load without a safe
  loader, subprocess with shell=True, os.system/os.popen;
* every final Dockerfile stage runs as a non-root user;
* every homesec service in docker-compose.yml drops all capabilities, sets no-new-privileges, is
  not privileged and does not use the host network; the broker and Prometheus are not published;
* the shared media volume is writable only by the detector (writes it) and the uploader
  (deletes uploaded media); the gateway, the one internet-facing service, mounts it read-only;
  the pins volume (what retention must keep) is shared by detector, gateway and uploader only.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = [REPO / "services", REPO / "libs"]
DOCKERFILE = REPO / "docker" / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"
INFRA = {"mosquitto", "prometheus", "grafana"}

BANNED_CALLS = {"eval", "exec", "compile", "__import__"}
BANNED_MODULES = {"pickle", "cPickle", "marshal", "shelve", "dill", "jsonpickle"}
BANNED_ATTRS = {("os", "system"), ("os", "popen"), ("subprocess", "getoutput")}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader"}


def python_sources() -> list[Path]:
    files = [
        p
        for root in SOURCE_ROOTS
        for p in root.rglob("*.py")
        if ".venv" not in p.parts and "__pycache__" not in p.parts
    ]
    assert len(files) > 50, "the scan found almost nothing: wrong folder?"
    return files


def findings(path: Path) -> list[str]:
    """Each dangerous construct in one file, as 'path:line: what'."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[str] = []
    rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
            for name in names:
                if name.split(".")[0] in BANNED_MODULES:
                    out.append(f"{rel}:{node.lineno}: imports {name}")
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in BANNED_CALLS:
            out.append(f"{rel}:{node.lineno}: calls {func.id}()")
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            if (func.value.id, func.attr) in BANNED_ATTRS:
                out.append(f"{rel}:{node.lineno}: calls {func.value.id}.{func.attr}()")
            if func.value.id == "yaml" and func.attr in ("load", "load_all", "unsafe_load"):
                loader = next((k.value for k in node.keywords if k.arg == "Loader"), None)
                name = getattr(loader, "attr", getattr(loader, "id", None))
                if func.attr == "unsafe_load" or name not in SAFE_YAML_LOADERS:
                    out.append(f"{rel}:{node.lineno}: yaml.{func.attr} without a safe loader")
        for kw in node.keywords:
            if kw.arg == "shell" and not (
                isinstance(kw.value, ast.Constant) and kw.value.value is False
            ):
                out.append(f"{rel}:{node.lineno}: shell= is not False")
    return out


def test_no_eval_pickle_or_shell_in_services_and_libs() -> None:
    found = [f for path in python_sources() for f in findings(path)]
    assert not found, "dangerous constructs:\n  " + "\n  ".join(found)


def test_the_scanner_catches_what_it_looks_for(tmp_path: Path) -> None:
    """The scan is not vacuous: each banned construct in a sample file is reported."""
    sample = tmp_path / "sample.py"
    code = (
        "import pickle\nimport os, subprocess, yaml\nfrom marshal import loads\n"
        "eval('1')\nexec('x=1')\nos.system('id')\nsubprocess.run('id', shell=True)\n"
        "yaml.load('a: 1')\nyaml.load('a: 1', Loader=yaml.SafeLoader)\n"
    )
    sample.write_text(code)
    found = findings(sample)
    text = "\n".join(found)
    for needle in ("imports pickle", "imports marshal", "eval()", "exec()", "os.system()"):
        assert needle in text, needle
    assert "shell= is not False" in text
    assert sum("yaml.load without" in f for f in found) == 1, "the safe loader is allowed"


def dockerfile_stages() -> dict[str, list[str]]:
    stages: dict[str, list[str]] = {}
    current = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        match = re.match(r"(?i)^FROM\s+\S+\s+AS\s+(\S+)", line)
        if match:
            current = match.group(1)
            stages[current] = []
        elif current and line and not line.startswith("#"):
            stages[current].append(line)
    return stages


def test_every_final_image_runs_as_non_root() -> None:
    stages = dockerfile_stages()
    text = DOCKERFILE.read_text()
    # intermediate stages: the base of another stage, or copied from (build-<service>)
    used_as_base = set(re.findall(r"(?im)^FROM\s+(\S+)\s+AS", text))
    used_as_base |= set(re.findall(r"--from=(\S+)", text))
    finals = [name for name in stages if name not in used_as_base]
    assert {"camera", "detector", "slack-gateway", "presence", "uploader", "ptz"} <= set(finals)
    for name in finals:
        users = [ln.split()[1] for ln in stages[name] if ln.upper().startswith("USER ")]
        if not users:  # inherits the USER of its base stage only if the base set one
            pytest.fail(f"stage {name} has no USER line (would run as root)")
        assert users[-1].split(":")[0] not in ("root", "0"), f"{name} runs as root"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def test_compose_services_are_hardened(compose: dict[str, Any]) -> None:
    services = compose["services"]
    homesec = {n: s for n, s in services.items() if n not in INFRA}
    assert len(homesec) >= 6
    for name, svc in homesec.items():
        assert svc.get("cap_drop") == ["ALL"], f"{name}: cap_drop ALL"
        assert "no-new-privileges:true" in svc.get("security_opt", []), name
        assert not svc.get("cap_add"), f"{name} adds capabilities"
        assert not svc.get("privileged"), f"{name} is privileged"
        assert svc.get("network_mode") != "host", f"{name} on the host network"
        assert not svc.get("pid") and not svc.get("ipc"), name
    for name in ("mosquitto", "prometheus"):
        assert not services[name].get("ports"), f"{name} must not be published"


def test_media_volume_writable_only_by_detector_and_uploader(compose: dict[str, Any]) -> None:
    writers, readers = set(), set()
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            text = volume if isinstance(volume, str) else f"{volume.get('source')}:x"
            if text.split(":")[0] != "media":
                continue
            (readers if text.endswith(":ro") else writers).add(name)
    assert writers == {"detector", "uploader"}, writers
    assert "slack-gateway" in readers


def test_pins_volume_is_shared_by_the_three_services_that_pin_and_no_other(
    compose: dict[str, Any],
) -> None:
    """The gateway writes pins (homesec.pins) in a volume of their own, not in the media one."""
    users = {
        name
        for name, svc in compose["services"].items()
        for volume in svc.get("volumes", [])
        if isinstance(volume, str) and volume.split(":")[0] == "pins"
    }
    assert users == {"detector", "slack-gateway", "uploader"}, users
