"""docs/node-red-flow.json uses only documented topics, sends valid payloads, is wired correctly,
is allowed by the broker ACL of the ``nodered`` user, follows the alarm's states, and lets
Node-RED give each instance its own client id."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from deploy_support import REPO, acl_allows

from homesec.contract import (
    ALARM_RESULT,
    ALARM_SET,
    ALARM_STATE,
    CHANNELS,
    MOTION_EVENTS,
    SNAPSHOT,
    SNAPSHOT_REQUEST,
    AlarmAction,
    AlarmState,
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
    # the things the example is for
    assert {
        ALARM_SET.name,
        ALARM_STATE.name,
        ALARM_RESULT.name,
        MOTION_EVENTS.name,
        SNAPSHOT.name,
        SNAPSHOT_REQUEST.name,
    } <= used
    actions = {
        ALARM_SET.decode(n["payload"].encode()).action
        for n in flow
        if n["type"] == "inject" and n["wires"][0] == ["out_alarm_set"]
    }
    assert actions == set(AlarmAction) - {AlarmAction.TRIGGER}


def test_deploy_nodered_flow_follows_the_alarm_states(flow: list[dict[str, Any]]) -> None:
    by_id = {n["id"]: n for n in flow}
    (source,) = [n for n in flow if n["type"] == "mqtt in" and n["topic"] == "homesec/alarm/state"]
    switch = by_id[source["wires"][0][0]]
    assert switch["type"] == "switch" and switch["property"] == "payload.state"
    named = [r["v"] for r in switch["rules"] if r["t"] == "eq"]
    assert {"triggered", "pending", "arming"} <= set(named) <= {s.value for s in AlarmState}
    assert switch["rules"][-1]["t"] == "else" and switch["outputs"] == len(switch["rules"])
    assert all(out for out in switch["wires"]), "every state leads somewhere"


def test_deploy_nodered_client_id_is_unique_per_instance(flow: list[dict[str, Any]]) -> None:
    """A fixed client id makes two imports (or two Node-REDs) kick each other off the broker;
    an empty one makes Node-RED generate its own."""
    brokers = [n for n in flow if n["type"] == "mqtt-broker"]
    assert len(brokers) == 1
    assert brokers[0]["clientid"] == "" and brokers[0]["cleansession"] is True
    assert brokers[0]["port"] == "1883"  # docs/node-red.md names it


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
