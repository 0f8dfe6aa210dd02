"""Container health check: is the service's ``/metrics`` up, and is it connected to the broker?

    python -m homesec.healthcheck SERVICE|PORT [--no-mqtt] [--host 127.0.0.1] [--timeout 3]

``SERVICE`` is a name from :mod:`homesec.services` (its port is ``HOMESEC_<SERVICE>_METRICS_PORT``
when set, else the catalogue's default). Exit 0 when healthy, 1 otherwise, with the reason on
stderr — the shape Docker's ``HEALTHCHECK``/compose ``healthcheck`` expects. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request

from homesec.services import BY_NAME

CONNECTED_METRIC = "homesec_mqtt_connected"


def resolve_port(target: str) -> int:
    """A port number as given, or the metrics port of the named service."""
    if target.isdigit():
        return int(target)
    info = BY_NAME.get(target)
    if info is None:
        raise ValueError(f"unknown service {target!r} (known: {', '.join(BY_NAME)})")
    configured = os.environ.get(f"{info.env_prefix}METRICS_PORT")
    return int(configured) if configured else info.metrics_port


def metric_value(text: str, name: str) -> float | None:
    """The value of an unlabelled sample ``name`` in Prometheus text format, if present."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == name:
            try:
                return float(parts[1])
            except ValueError:
                return None
    return None


def check(
    port: int, host: str = "127.0.0.1", require_mqtt: bool = True, timeout: float = 3.0
) -> str:
    """Empty string when healthy, else the reason."""
    url = f"http://{host}:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            if response.status != 200:
                return f"{url} answered HTTP {response.status}"
            body = response.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return f"{url} unreachable: {getattr(exc, 'reason', exc)}"
    if require_mqtt:
        connected = metric_value(body, CONNECTED_METRIC)
        if connected is None:
            return f"{url} has no {CONNECTED_METRIC}"
        if connected < 1:
            return "not connected to the MQTT broker"
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m homesec.healthcheck", description=__doc__)
    parser.add_argument("target", help="service name (camera, detector, ...) or metrics port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--no-mqtt", action="store_true", help="only check that /metrics answers")
    args = parser.parse_args(argv)
    try:
        port = resolve_port(args.target)
    except ValueError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 2
    problem = check(port, args.host, not args.no_mqtt, args.timeout)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
