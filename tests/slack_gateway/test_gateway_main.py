"""``python -m homesec_slack_gateway`` as a process: Slack's conventional variables, /healthz,
both /metrics endpoints, availability, and a clear exit 2 on bad configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from gateway_fakes import SIGNING_SECRET, FakeSlack, sign

from homesec.broker import free_port
from homesec.contract import AVAILABILITY, SYSTEM_SET, Availability, SetCommand
from homesec.settings import BrokerSettings
from support import Collector, assert_module_exits_2_naming, wait_until


def _env(broker_settings: BrokerSettings, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOMESEC_", "SLACK_"))}
    env.update(
        HOMESEC_BROKER_HOST=broker_settings.host,
        HOMESEC_BROKER_PORT=str(broker_settings.port),
        HOMESEC_DATA_DIR=str(tmp_path / "data"),
        HOMESEC_SLACK_GATEWAY_LOG_FORMAT="text",
        **extra,
    )
    return env


def test_runs_as_a_process(broker_settings, tmp_path: Path, make_bus, slack: FakeSlack) -> None:
    watcher = make_bus("watcher", start=False)
    sets: Collector[SetCommand] = Collector()
    online: Collector[Availability] = Collector()
    watcher.subscribe(SYSTEM_SET, sets)
    watcher.subscribe(AVAILABILITY, online, service="slack-gateway")
    watcher.start()
    port, metrics_port = free_port(), free_port()
    env = _env(
        broker_settings,
        tmp_path,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_BOT_TOKEN="xoxb-process",
        HOMESEC_SLACK_GATEWAY_PORT=str(port),
        HOMESEC_SLACK_GATEWAY_HOST="127.0.0.1",
        HOMESEC_SLACK_GATEWAY_METRICS_PORT=str(metrics_port),
        HOMESEC_SLACK_GATEWAY_METRICS_HOST="127.0.0.1",
        HOMESEC_SLACK_GATEWAY_SLACK_API_URL=slack.api_url,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "homesec_slack_gateway"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(base + "/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 20)
        wait_until(lambda: any(m.payload.root == "online" for m in online.items), 10)
        body = b"command=%2Fpycam_on&text=&user_id=U0OWNER&channel_id=C1"
        headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
        response = httpx.post(base + "/slack/events", content=body, headers=headers, timeout=10)
        assert response.status_code == 200
        assert sets.wait_for(1)[0].value is True
        std_metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert 'homesec_slack_commands_total{command="arm",outcome="ok"} 1.0' in std_metrics
        assert httpx.get(base + "/metrics/", timeout=5).status_code == 404  # not on the public port
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
    log = out.decode(errors="replace")
    assert SIGNING_SECRET not in log and "xoxb-process" not in log
    wait_until(lambda: online.items[-1].payload.root == "offline", 10)


def test_bad_setting_exits_2_naming_the_variable(tmp_path: Path) -> None:
    assert_module_exits_2_naming(
        "homesec_slack_gateway", tmp_path, HOMESEC_SLACK_GATEWAY_ALERT_MIN_INTERVAL_SECONDS="-5"
    )
