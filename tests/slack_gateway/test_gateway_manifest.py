"""The Slack app manifest declares every command, the scopes used and the Request URL."""

from __future__ import annotations

from pathlib import Path

import yaml

from homesec_slack_gateway.commands import ALL_COMMANDS


def test_manifest_matches_the_gateway(repo: Path) -> None:
    manifest = yaml.safe_load(
        (repo / "services/slack-gateway/slack-app-manifest.yaml").read_text(encoding="utf-8")
    )
    commands = manifest["features"]["slash_commands"]
    assert sorted(c["command"] for c in commands) == sorted(ALL_COMMANDS)
    assert all(c["url"].endswith("/slack/events") for c in commands)
    for removed in ("/top", "/logz"):
        assert removed not in {c["command"] for c in commands}
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"commands", "chat:write", "files:write", "channels:read", "channels:history"} <= scopes
    interactivity = manifest["settings"]["interactivity"]
    assert interactivity["is_enabled"] is True
    assert interactivity["request_url"].endswith("/slack/events")
    assert manifest["settings"]["socket_mode_enabled"] is False
    for command in commands:
        assert len(command["description"]) <= 100
