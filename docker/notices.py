"""Write the licence notices an image redistributes (run at image build, standard library only).

    python3 notices.py VENV HOMESEC_LICENSE OUT_DIR

OUT_DIR gets ``LICENSE`` (homesec's own, MIT) and ``THIRD_PARTY_NOTICES.txt``: for every
distribution installed in VENV its name, version, declared licence and the full text of each
licence file its ``*.dist-info`` carries; then the licence files of data bundled inside homesec's
own packages (e.g. the detector's FastestDet model, BSD-3-Clause).
"""

from __future__ import annotations

import shutil
import sys
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path

LICENCE_NAMES = ("LICEN", "COPYING", "NOTICE", "AUTHORS")


def is_licence(path: Path) -> bool:
    return path.is_file() and path.name.upper().startswith(LICENCE_NAMES)


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        raise SystemExit(f"notices: no site-packages under {venv}")
    return found[0]


def declared_licence(message: Message) -> str:
    expression = str(message.get("License-Expression", "")).strip()
    if expression:
        return expression
    text = str(message.get("License", "")).strip()
    if text and len(text) < 200 and "\n" not in text:
        return text
    classifiers = message.get_all("Classifier") or []
    names = [str(c).split("::")[-1].strip() for c in classifiers if "License" in str(c)]
    return ", ".join(names) or ("see below" if text else "not declared")


def distribution_notice(dist_info: Path) -> str:
    with (dist_info / "METADATA").open(encoding="utf-8", errors="replace") as handle:
        message = HeaderParser().parse(handle)
    name, version = message.get("Name", dist_info.name), message.get("Version", "?")
    files = sorted(p for p in dist_info.rglob("*") if is_licence(p))
    parts = [
        "=" * 78,
        f"{name} {version}",
        f"Licence: {declared_licence(message)}",
    ]
    home = message.get("Home-page") or next(
        (u.split(",", 1)[1].strip() for u in message.get_all("Project-URL") or [] if "," in u),
        "",
    )
    if home:
        parts.append(f"Home: {home}")
    long_text = str(message.get("License", ""))
    if not files and "\n" in long_text:
        parts += ["", long_text.strip()]
    for path in files:
        parts += ["", f"--- {path.relative_to(dist_info)} ---", path.read_text(errors="replace")]
    return "\n".join(parts).rstrip() + "\n"


def bundled_notices(site: Path) -> list[str]:
    """Licence files of data shipped inside homesec's own packages (models, assets)."""
    out = []
    for package in sorted(site.glob("homesec*")):
        if not package.is_dir() or package.name.endswith(".dist-info"):
            continue
        for path in sorted(p for p in package.rglob("*") if is_licence(p)):
            rel = path.relative_to(site)
            out.append(f"{'=' * 78}\nBundled with {rel.parent}: {rel}\n\n{path.read_text()}")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    venv, own, out_dir = Path(argv[0]), Path(argv[1]), Path(argv[2])
    site = site_packages(venv)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(own, out_dir / "LICENSE")
    dists = sorted(site.glob("*.dist-info"), key=lambda p: p.name.lower())
    third = [d for d in dists if not d.name.lower().startswith("homesec")]
    header = (
        "Third-party software in this image, with its licences.\n"
        "homesec itself is MIT-licensed: /usr/share/doc/homesec/LICENSE.\n"
        f"Python distributions in {venv}: {len(third)}.\n"
        "The base image's own packages carry their notices in /usr/share/doc/*/copyright "
        "(Debian) or with the Python installation.\n"
    )
    body = [distribution_notice(d) for d in third] + bundled_notices(site)
    (out_dir / "THIRD_PARTY_NOTICES.txt").write_text(header + "\n" + "\n".join(body))
    print(f"notices: {len(third)} distributions, {len(body) - len(third)} bundled data licences")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
