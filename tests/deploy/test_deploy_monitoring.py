"""Prometheus and Grafana files checked without an engine, and against the services' real /metrics.

* ``promtool check config`` / ``check rules`` / ``test rules`` (unit tests of every alert);
* every service of the catalogue is scraped on its metrics port under its own job name;
* Grafana: the datasource has the fixed uid every panel uses, the file provider points where
  docker-compose.yml mounts the dashboards, the dashboard JSON parses and every query is valid
  PromQL (checked by promtool as recording rules);
* every metric name used by the dashboard and the alert rules is exported by the service that
  owns it: each service is started as a subprocess (``python -m homesec_<name>``) against a
  private broker and its ``/metrics`` is scraped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from deploy_support import (
    DASHBOARD,
    GRAFANA_DIR,
    PROMETHEUS_DIR,
    REPO,
    all_panels,
    dashboard,
    dashboard_queries,
    exported_names,
    metric_names,
)

from homesec.services import CATALOGUE

DATASOURCE_UID = "homesec-prometheus"


def promtool() -> str:
    found = shutil.which("promtool") or (
        "/usr/bin/promtool" if os.path.exists("/usr/bin/promtool") else None
    )
    if found is None:
        message = (
            "\n" + "!" * 78 + "\n!!! promtool NOT FOUND: Prometheus config/rules NOT CHECKED.\n"
            "!!! Install it: apt-get install prometheus (.ci/run does this).\n" + "!" * 78
        )
        warnings.warn(message, stacklevel=2)
        print(message, file=sys.stderr)
        pytest.skip(message)
    return found


def run_promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> str:
    result = subprocess.run(
        [promtool(), *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


# ---- Prometheus -----------------------------------------------------------------------------


def test_deploy_promtool_check_config() -> None:
    out = run_promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in out and "1 rule files found" in out, out


def test_deploy_promtool_check_rules() -> None:
    run_promtool("check", "rules", "rules/homesec.yml")


def test_deploy_promtool_rule_unit_tests() -> None:
    """Each alert fires on the series it is meant for, and not on the healthy twin."""
    out = run_promtool("test", "rules", "tests/homesec_test.yml")
    assert "SUCCESS" in out
    tested = set(
        re.findall(r"alertname: (\w+)", (PROMETHEUS_DIR / "tests" / "homesec_test.yml").read_text())
    )
    rules = yaml.safe_load((PROMETHEUS_DIR / "rules" / "homesec.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    required = {
        "HomesecServiceDown", "HomesecServiceMissing", "HomesecBrokerDisconnected",
        "HomesecCameraFpsLow", "HomesecDetectorDroppingFrames", "HomesecDetectorSlow",
        "HomesecSlackBacklogGrowing", "HomesecUploaderFailing",
    }  # fmt: skip
    assert required <= alerts
    assert required <= tested, f"alerts without a unit test: {sorted(required - tested)}"


def test_deploy_prometheus_scrapes_every_service() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    for info in CATALOGUE:
        assert jobs.get(info.name) == [f"{info.name}:{info.metrics_port}"], info.name
        assert info.name in compose, f"no compose service named {info.name}"
    rules_text = (PROMETHEUS_DIR / "rules" / "homesec.yml").read_text()
    for info in CATALOGUE:
        assert f'absent(up{{job="{info.name}"}})' in rules_text, f"no absent() for {info.name}"


# ---- Grafana --------------------------------------------------------------------------------


def test_deploy_grafana_provisioning_matches_compose() -> None:
    datasources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = datasources["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "homesec.yml").read_text()
    )
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    grafana = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["grafana"]
    mounts = dict(v.rsplit(":", 2)[:2][::-1] for v in grafana["volumes"])
    assert mounts[provider["options"]["path"]] == "./grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"


def test_deploy_grafana_dashboard_uses_the_provisioned_datasource() -> None:
    dash = dashboard()
    assert dash["uid"] == "homesec-overview" and dash["title"]
    ids = [p["id"] for p in all_panels(dash)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in all_panels(dash):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
    for var in dash["templating"]["list"]:
        assert var["datasource"]["uid"] == DATASOURCE_UID


def test_deploy_grafana_dashboard_has_the_required_panels() -> None:
    queries = "\n".join(dashboard_queries(dashboard()))
    required = {
        "each service's up state": r"\bup\{",
        "camera fps": r"homesec_camera_fps\b",
        "detector latency percentiles": r"histogram_quantile\(0\.95, .*homesec_detector_frame_latency_seconds_bucket",
        "motion events": r"homesec_detector_motion_events_total",
        "alerts": r"homesec_detector_alerts_total",
        "person-filter rejections": r"homesec_detector_person_rejections_total",
        "presence timeline": r"homesec_presence_person_home",
        "uploader backlog": r"homesec_uploader_pending_items",
        "MQTT reconnects": r"homesec_mqtt_reconnects_total",
        "CPU per service": r"process_cpu_seconds_total",
        "memory per service": r"process_resident_memory_bytes",
    }
    missing = [what for what, pattern in required.items() if not re.search(pattern, queries)]
    assert not missing, f"dashboard lacks: {missing}"


def test_deploy_grafana_queries_are_valid_promql(tmp_path: Path) -> None:
    """Every dashboard query, with Grafana's variables filled in, parsed by promtool."""
    rules = [
        {
            "record": f"homesec_dashboard:query_{i}",
            "expr": expr.replace("$__rate_interval", "1m").replace("$job", ".*"),
        }
        for i, expr in enumerate(dashboard_queries(dashboard()))
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = run_promtool("check", "rules", str(path), cwd=tmp_path)
    assert f"{len(rules)} rules found" in out


# ---- every metric name is exported by a running service -------------------------------------


def test_deploy_exported_names_parser() -> None:
    text = (
        "# HELP a_total x\n# TYPE a_total counter\na_total 1.0\n"
        "# HELP h x\n# TYPE h histogram\n"
        "# HELP l_total x\n# TYPE l_total counter\n"
    )
    names, sampled = exported_names(text)
    assert {"a_total", "h_bucket", "h_sum", "h_count", "l_total"} <= names
    assert "h_total" not in names and "h" not in names
    assert sampled == {"a_total"}
    assert metric_names(['sum by (le) (rate(homesec_x_bucket{job=~"$job"}[5m]))']) == {
        "homesec_x_bucket"
    }
