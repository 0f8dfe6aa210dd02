"""What a replay's outcome depends on besides the event: the code, the libraries, the model and
the settings (``homesec tune``'s kept outcomes, and the nightly schedule's "are they current").

:func:`replay_identity` hashes every module of ``homesec_detector`` and ``homesec`` that the
replay imports, directly or not (followed from :data:`REPLAY_ENTRY` through both packages,
imports inside functions included), OpenCV, NumPy and the model identity. Light on purpose: the
detector service imports it (the schedule) without the replay's modules.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from homesec.settings import ServiceSettings
from homesec_detector.person import BUNDLED_MODEL
from homesec_detector.settings import DetectorSettings

NOT_REPLAYED = frozenset(ServiceSettings.model_fields) | {"tune"}
"""Settings no replay reads (broker, data dir, logs, metrics, the nightly schedule): left out
of the key, so the owner's shell and the detector's service share outcomes."""


REPLAY_ENTRY = "homesec_detector.tune_replay"
"""The module a replay runs from: its imports, followed through both packages, are the code an
outcome depends on."""

ANSWER_ENTRY = "homesec_detector.person_verify"
"""The module a person check's model answer runs from (decode, relight, both models and their
decoders): :func:`model_identity` hashes its closure."""

MOTION_ENTRY = "homesec_detector.motion"
"""The module a motion track runs from: :func:`motion_identity` hashes its closure."""

OWN_PACKAGES = ("homesec", "homesec_detector")


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement of a body, nested ones (functions, classes, branches) included; an
    import is a statement, so the expressions (most of a tree) are not walked."""
    for node in body:
        yield node
        for name in ("body", "orelse", "finalbody"):
            yield from _statements(getattr(node, name, []))
        for part in (*getattr(node, "handlers", ()), *getattr(node, "cases", ())):
            yield from _statements(part.body)


def _imported(module: str, tree: ast.Module) -> set[str]:
    """The modules a module's code imports (anywhere in it, functions included), absolute."""
    found: set[str] = set()
    package = module if module.endswith("__init__") else module.rpartition(".")[0]
    for node in _statements(tree.body):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = importlib.util.resolve_name("." * node.level + base, package)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # a submodule, maybe
    return found


def code_sources(entry: str = REPLAY_ENTRY) -> list[tuple[str, bytes]]:
    """The modules of ``homesec`` and ``homesec_detector`` a replay can run, found by
    following the imports of ``entry`` (and its packages' ``__init__``): (name, source bytes),
    in name order. Code outside them (the service, the bus, the CLI, the search) cannot change
    an event's outcome under given settings, so an upgrade that only touches it keeps them."""
    found: dict[str, bytes] = {}
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in found or name.partition(".")[0] not in OWN_PACKAGES:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            spec = None  # a name imported from a module (its parent is not a package)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue
        source = Path(spec.origin).read_bytes()
        found[name] = source
        key = f"{name}.__init__" if spec.submodule_search_locations is not None else name
        todo.extend(_imported(key, ast.parse(source)))
        todo.extend(name.rsplit(".", n)[0] for n in range(1, name.count(".") + 1))
    return sorted(found.items())


def code_identity(entry: str, *parts: str) -> str:
    """The SHA-1 of :func:`code_sources` of ``entry``, OpenCV's and NumPy's versions and
    ``parts``."""
    digest = hashlib.sha1()
    for name, source in code_sources(entry):
        digest.update(name.encode() + b"\0" + source)
    for part in (cv2.__version__, np.__version__, *parts):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


def replay_identity(settings: DetectorSettings, model: str | None = None) -> str:
    """The code, libraries and model every outcome of a run depends on (``model``: the
    :func:`model_identity` of ``settings``, when the caller computed it already)."""
    return code_identity(REPLAY_ENTRY, model or model_identity(settings))


def motion_identity() -> str:
    """The code and libraries a motion track was computed with."""
    return code_identity(MOTION_ENTRY)


def _file_sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def model_identity(settings: DetectorSettings) -> str:
    """What a person check's model answer depends on besides its inputs: the code that computes
    it, OpenCV and NumPy, the model files and both models' settings."""
    first = settings.person.model_copy(
        update={
            "score_threshold": min(
                settings.person_report_threshold, settings.person.score_threshold
            )
        }
    )
    parts: dict[str, Any] = {
        "first": first.model_dump(mode="json"),
        "first_file": _file_sha1((first.model_path or BUNDLED_MODEL).expanduser()),
    }
    if settings.verifier.enabled:
        parts["verifier"] = settings.verifier.model_dump(mode="json")
        if settings.verifier.model_path is not None:
            parts["verifier_file"] = _file_sha1(settings.verifier.model_path.expanduser())
    return code_identity(ANSWER_ENTRY, json.dumps(parts, sort_keys=True))


def run_basis(settings: DetectorSettings, identity: str | None = None) -> str:
    """What every kept outcome of a run under ``settings`` shares: the replay identity (given,
    when the run computed it already, else computed here) and the settings (a run after either
    changed replays every event again)."""
    parts = f"{identity or replay_identity(settings)}\0{settings_key(settings)}"
    return hashlib.sha1(parts.encode()).hexdigest()


def settings_key(settings: DetectorSettings) -> str:
    """The settings a replay reads, as canonical JSON."""
    return json.dumps(settings.model_dump(mode="json", exclude=set(NOT_REPLAYED)), sort_keys=True)
