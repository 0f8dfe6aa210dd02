"""Turn a root file system tarball into an image archive that ``docker load`` takes, with the
architecture set (``docker import --platform`` leaves it at the host's on Docker 20.10, and
BuildKit then looks for a foreign-platform base in a registry). Standard library only.

    python3 rootfs_image.py LAYER_TAR ARCH TAG OUT_TAR [--env K=V]... [--label K=V]... [--cmd JSON]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import tarfile
import time
from pathlib import Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pairs(items: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("layer", type=Path)
    parser.add_argument("arch")
    parser.add_argument("tag")
    parser.add_argument("out", type=Path)
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--label", action="append", default=[])
    parser.add_argument("--cmd", default='["/bin/bash"]')
    args = parser.parse_args()

    diff_id = sha256_file(args.layer)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    config = {
        "architecture": args.arch,
        "os": "linux",
        "created": created,
        "config": {"Env": args.env, "Cmd": json.loads(args.cmd), "Labels": pairs(args.label)},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created": created, "created_by": "docker/local-base.sh (debootstrap)"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [args.tag], "Layers": [f"{diff_id}/layer.tar"]}]
    with tarfile.open(args.out, "w") as out:
        out.add(args.layer, arcname=f"{diff_id}/layer.tar")
        for name, data in (
            (config_name, config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
