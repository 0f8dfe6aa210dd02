"""docs/node-red-flow.json uses only documented topics, sends valid payloads, is wired correctly
and is allowed by the broker ACL of the ``nodered`` user."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from deploy_support import REPO, acl_allows

from homesec.contract import (
    CHANNELS,
    MOTION_EVENTS,
    SNAPSHOT,
    SNAPSHOT_REQUEST,
    SYSTEM_SET,
    Channel,
    Codec,
)

FLOW = REPO / "docs" / "node-red-flow.json"
PREFIX = "homesec"


@pytest.fixture(scope="module")
def flow() -> list[dict[str, Any]]:
    nodes = json.loads(FLOW.read_text())
    assert isinstance(nodes, list)
    return nodes


def channel_for(topic: str) -> Channel[Any]:
    for channel in CHANNELS:
        if channel.match(PREFIX, topic) is not None:
            return channel
    raise AssertionError(f"{topic} is not a documented topic (docs/mqtt-api.md)")


def test_deploy_nodered_flow_is_well_formed(flow: list[dict[str, Any]]) -> None:
    ids = [n["id"] for n in flow]
    assert len(ids) == len(set(ids)), "duplicate node ids"
    by_id = {n["id"]: n for n in flow}
    tabs = {n["id"] for n in flow if n["type"] == "tab"}
    for node in flow:
        if "z" in node:
            assert node["z"] in tabs, f"{node['id']}: unknown tab"
        for outputs in node.get("wires", []):
            for target in outputs:
                assert target in by_id, f"{node['id']} wired to missing {target}"
        if node["type"] in ("mqtt in", "mqtt out"):
            broker = by_id[node["broker"]]
            assert broker["type"] == "mqtt-broker" and broker["protocolVersion"] == "5"
    for node in flow:
        if node["type"] in ("inject", "mqtt in", "http in"):
            assert node["wires"] and node["wires"][0], f"{node['id']} leads nowhere"


def test_deploy_nodered_flow_uses_documented_topics_and_payloads(
    flow: list[dict[str, Any]],
) -> None:
    by_id = {n["id"]: n for n in flow}
    used: set[str] = set()
    for node in flow:
        if node["type"] == "mqtt in":
            channel = channel_for(node["topic"])
            used.add(channel.name)
            expected = "buffer" if channel.codec is Codec.JPEG else "json"
            if channel.codec is not Codec.TEXT:
                assert node["datatype"] == expected, f"{node['topic']}: datatype"
        elif node["type"] == "mqtt out":
            channel = channel_for(node["topic"])
            used.add(channel.name)
            assert "any client" in channel.publisher, f"{node['topic']} is not a command topic"
            assert node["retain"] == "false" and node["qos"] == str(channel.qos)
    for node in flow:
        if node["type"] != "inject":
            continue
        for target in node["wires"][0]:
            out = by_id[target]
            if out["type"] == "mqtt out":
                channel = channel_for(out["topic"])
                assert node["payloadType"] == "json"
                channel.decode(node["payload"].encode())  # raises on an invalid payload
    # the three things the example is for
    assert {SYSTEM_SET.name, MOTION_EVENTS.name, SNAPSHOT.name, SNAPSHOT_REQUEST.name} <= used
    arm = [n for n in flow if n["type"] == "inject" and n["name"] == "Arm"]
    assert arm and SYSTEM_SET.decode(arm[0]["payload"].encode()).value is True


def test_deploy_nodered_flow_is_allowed_by_the_acl(flow: list[dict[str, Any]]) -> None:
    for node in flow:
        if node["type"] == "mqtt out":
            assert acl_allows("nodered", node["topic"], "write"), node["topic"]
        if node["type"] == "mqtt in":
            assert acl_allows("nodered", node["topic"], "read"), node["topic"]
    assert not acl_allows("nodered", "homesec/system/armed", "write")


def test_deploy_nodered_snapshot_endpoint_serves_jpeg(flow: list[dict[str, Any]]) -> None:
    http_in = [n for n in flow if n["type"] == "http in"]
    assert [n["url"] for n in http_in] == ["/homesec/snapshot.jpg"]
    by_id = {n["id"]: n for n in flow}
    func = by_id[http_in[0]["wires"][0][0]]
    assert "image/jpeg" in func["func"] and re.search(r"flow\.get\('snapshot'\)", func["func"])
    assert by_id[func["wires"][0][0]]["type"] == "http response"
    keeper = [n for n in flow if n["type"] == "change" and n["rules"][0].get("pt") == "flow"]
    assert keeper and keeper[0]["rules"][0]["p"] == "snapshot"
