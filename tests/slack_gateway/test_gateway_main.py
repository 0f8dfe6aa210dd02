"""``python -m homesec_slack_gateway`` as a process: Slack's conventional variables, /healthz,
both /metrics endpoints, availability, and a clear exit 2 on bad configuration."""

from __future__ import annotations

from pathlib import Path

import httpx
from gateway_fakes import SIGNING_SECRET, FakeSlack, sign

from homesec.broker import free_port
from homesec.contract import SYSTEM_SET, SetCommand
from homesec.settings import BrokerSettings
from support import Collector, ServiceProcess, assert_module_exits_2_naming, wait_until


def test_runs_as_a_process(
    broker_settings: BrokerSettings, tmp_path: Path, make_bus, slack: FakeSlack
) -> None:
    watcher = make_bus("watcher", start=False)
    sets: Collector[SetCommand] = Collector()
    watcher.subscribe(SYSTEM_SET, sets)
    watcher.start()
    port = free_port()
    with ServiceProcess(
        "slack-gateway",
        broker_settings,
        tmp_path / "data",
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_BOT_TOKEN="xoxb-process",
        HOMESEC_SLACK_GATEWAY_PORT=str(port),
        HOMESEC_SLACK_GATEWAY_HOST="127.0.0.1",
        HOMESEC_SLACK_GATEWAY_SLACK_API_URL=slack.api_url,
        HOMESEC_SLACK_GATEWAY_ALLOWED_USERS="U0OWNER",
    ) as gateway:
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(base + "/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 20)
        body = b"command=%2Fpycam_on&text=&user_id=U0OWNER&channel_id=C1"
        headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
        response = httpx.post(base + "/slack/events", content=body, headers=headers, timeout=10)
        assert response.status_code == 200
        assert sets.wait_for(1)[0].value is True
        std_metrics = gateway.metrics_text()
        assert 'homesec_slack_commands_total{command="arm",outcome="ok"} 1.0' in std_metrics
        assert httpx.get(base + "/metrics/", timeout=5).status_code == 404  # not on the public port
        log = gateway.stop(15)
    assert SIGNING_SECRET not in log and "xoxb-process" not in log


def test_bad_setting_exits_2_naming_the_variable(tmp_path: Path) -> None:
    assert_module_exits_2_naming(
        "homesec_slack_gateway", tmp_path, HOMESEC_SLACK_GATEWAY_ALERT_MIN_INTERVAL_SECONDS="-5"
    )
