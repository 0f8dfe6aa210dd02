"""The ``homesec`` command: ``run``, ``eval``, ``tune``, ``docs``, ``version``."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from homesec import __version__


def _cmd_run(args: argparse.Namespace) -> int:
    from homesec.logs import configure_logging
    from homesec.runner import read_plan, run

    configure_logging("runner", "INFO", "text")
    overrides = {}
    if args.services:
        overrides["services"] = args.services.split(",")
    return run(read_plan(overrides))


def _cmd_docs(args: argparse.Namespace) -> int:
    from homesec import apidocs

    docs_dir = Path(args.dir)
    if args.check:
        stale = apidocs.stale(docs_dir)
        if stale:
            print(f"out of date: {', '.join(stale)} (run: homesec docs --write)", file=sys.stderr)
            return 1
        print("MQTT API docs are current")
        return 0
    for path in apidocs.write(docs_dir):
        print(f"wrote {path}")
    return 0


def _delegate(module: str, argv: list[str]) -> int:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        print(f"homesec: {module} is not installed ({exc})", file=sys.stderr)
        return 2
    result: int = mod.main(argv)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="homesec", description="homesec home security system")
    sub = parser.add_subparsers(dest="command", required=True)

    run_p = sub.add_parser("run", help="run the whole system locally (Mosquitto + every service)")
    run_p.add_argument("--services", help="comma-separated subset, e.g. camera,detector")
    run_p.set_defaults(func=_cmd_run)

    docs_p = sub.add_parser("docs", help="generate docs/mqtt-api.md and docs/asyncapi.json")
    docs_p.add_argument("--dir", default="docs")
    group = docs_p.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", default=True)
    group.add_argument("--check", action="store_true")
    docs_p.set_defaults(func=_cmd_docs)

    sub.add_parser(
        "eval", help="replay footage through the detector (see homesec eval --help)", add_help=False
    )
    sub.add_parser(
        "tune",
        help="tune the detector on the labelled training set (see homesec tune --help)",
        add_help=False,
    )
    sub.add_parser("version", help="print the version")

    if argv[:1] == ["eval"]:
        return _delegate("homesec_detector.evaluate", argv[1:])
    if argv[:1] == ["tune"]:
        return _delegate("homesec_detector.tune", argv[1:])
    args = parser.parse_args(argv)
    if args.command == "version":
        print(__version__)
        return 0
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
