"""Split a virtualenv into image layers (run at image build, standard library only).

    python3 venv_layer.py pick REQUIREMENTS NAME...   entries of a `uv export` file for NAMEs
    python3 venv_layer.py diff BASE FULL OUT          what FULL adds to BASE, copied to OUT

docker/Dockerfile builds the service images as python-base + a common dependency layer (the
core library's dependencies: every service) + for the camera and detector a vision layer
(NumPy and OpenCV) + the service's own layer. Containers share a file's page-cache pages only
when they read the same file of the same lower layer, so each layer must hold only what the
layer under it lacks: ``diff`` copies the files of FULL (the service's complete venv, built on
a copy of BASE) that BASE does not have. It fails if FULL lost or changed a file of BASE (the
upper layer would then shadow it): the layers must be built from one uv.lock. Bytecode BASE
already has is kept from BASE (uv recompiles the whole venv; same sources, the same bytecode).

``pick`` writes the requirement entries (with their markers and hashes) of the named
distributions from a ``uv export --format requirements.txt`` file: the exact locked versions,
for ``uv pip install --no-deps --require-hashes``.
"""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import sys
from pathlib import Path


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pick(requirements: Path, names: list[str]) -> int:
    wanted = {normalise(n) for n in names}
    found: set[str] = set()
    keep = False
    out: list[str] = []
    for line in requirements.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue  # blank, header, or a "# via" annotation
        if not line[0].isspace():  # a new entry: "name==version ; marker \"
            match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
            name = normalise(match.group(0)) if match else ""
            keep = name in wanted
            if keep:
                found.add(name)
        if keep:
            out.append(line)
    missing = wanted - found
    if missing:
        print(f"venv_layer: not in {requirements}: {sorted(missing)}", file=sys.stderr)
        return 1
    print("\n".join(out))
    return 0


def same(base: Path, full: Path) -> bool:
    if base.is_symlink() or full.is_symlink():
        return base.is_symlink() and full.is_symlink() and os.readlink(base) == os.readlink(full)
    return filecmp.cmp(base, full, shallow=False)


def diff(base: Path, full: Path, out: Path) -> int:
    added: list[str] = []
    changed: list[str] = []
    size = 0
    for root, dirs, files in os.walk(full):
        rel_root = Path(root).relative_to(full)
        for name in sorted(dirs + files):
            rel = rel_root / name
            src, old = full / rel, base / rel
            if src.is_dir() and not src.is_symlink():
                if not old.is_dir():
                    (out / rel).mkdir(parents=True, exist_ok=True)
                    shutil.copystat(src, out / rel)
                continue
            if os.path.lexists(old):
                if rel.suffix == ".pyc" or same(old, src):
                    continue
                changed.append(str(rel))
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            if src.is_symlink():
                os.symlink(os.readlink(src), out / rel)
            else:
                shutil.copy2(src, out / rel)
                size += src.stat().st_size
            added.append(str(rel))
    removed = [
        str(Path(root).relative_to(base) / name)
        for root, _, files in os.walk(base)
        for name in files
        if not os.path.lexists(full / Path(root).relative_to(base) / name)
    ]
    if changed or removed:
        print(
            f"venv_layer: {full} changes {len(changed)} and removes {len(removed)} files of "
            f"{base} (built from a different lock?): {(changed + removed)[:20]}",
            file=sys.stderr,
        )
        return 1
    out.mkdir(parents=True, exist_ok=True)
    print(f"venv_layer: {len(added)} files ({size / 1e6:.1f} MB) on top of {base}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "pick":
        return pick(Path(argv[1]), argv[2:])
    if len(argv) == 4 and argv[0] == "diff":
        return diff(Path(argv[1]), Path(argv[2]), Path(argv[3]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
