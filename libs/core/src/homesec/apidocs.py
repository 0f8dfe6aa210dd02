"""Generate ``docs/mqtt-api.md`` and ``docs/asyncapi.json`` from :mod:`homesec.contract`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from homesec import __version__
from homesec.contract import CHANNELS, Channel, Codec, example_payload

MD_HEADER = """\
# homesec MQTT API

Generated from `libs/core/src/homesec/contract.py` by `homesec docs --write`; do not edit by hand
(a test fails when this file and the code disagree). A machine-readable AsyncAPI 3 document is
in [asyncapi.json](asyncapi.json).

Every topic starts with the prefix, `homesec` by default (`HOMESEC_BROKER_TOPIC_PREFIX`).
`{camera}` and other `{placeholders}` are identifiers: letters, digits, `_` and `-`, at most 64.

## Delivery rules
Every topic belongs to one delivery class (the *delivery* column), and homesec's services
treat it the same way on both ends:
- **stream** (frames): QoS 0, never retained, never queued. Latest wins: a slow or absent
  consumer drops stale frames.
- **state** (retained, exactly one writer: the *publisher* column): the newest value is what
  counts. Subscribe with **QoS 0**: the broker sends the current value on every (re)connect
  and queues nothing for you while you are away. The writer re-sends its values after every
  reconnect (so a broker that lost its store gets them back) and keeps only the newest value of
  a topic while the broker is unreachable. To change a system switch publish to its `/set`
  topic; the owner applies it and republishes the state. Never publish to a state topic
  yourself.
- **message** (events, commands, labels): QoS 1 on persistent sessions, so what is published
  while a service is down is delivered when it comes back. A service acknowledges a message only
  after handling it; a handler that keeps failing is retried with backoff and then parked on the
  service's `dead_letter` topic (and acknowledged). Handlers are idempotent (events by
  `event_id`, labels by `event_id`, commands by value or `request_id`), so a redelivered message
  does no harm. Publishers store messages in a durable outbox until the broker acknowledged them.
- Payloads are UTF-8 JSON unless the codec says `text` (a bare word) or `jpeg` (raw JPEG bytes
  with metadata in MQTT v5 user properties). Unknown JSON keys are rejected. Invalid messages are
  logged, counted in `homesec_mqtt_invalid_messages_total` and skipped.

## Who owns the system state
The **detector** service is the one writer of `alarm/state`, `system/armed`,
`system/notifications`, `system/auto_arm` and `system/training`. Slack (via the gateway), the
presence service, Home Assistant and Node-RED change them only through their `/set` topics.

## The alarm
`alarm/state` is the alarm: `disarmed`, `arming` (exit delay), `armed_away`, `armed_home`,
`armed_night`, `pending` (entry delay), `triggered`. Each mode selects the cameras that alert;
see [alarm.md](alarm.md) for the transitions, the delays, the code and what a restart resumes.
Commands go to one of three topics, by who sends them:
- `alarm/set` — Home Assistant, Node-RED, any client. With a code configured, `DISARM` and
  `ACK` need it (and `ARM_*` with `HOMESEC_DETECTOR_CODES__ARM_REQUIRED`); wrong codes count
  towards a lockout.
- `alarm/service/set` — the slack-gateway, which authorises each Slack user itself; no code.
- `system/armed/set` — the legacy switch, kept for existing users and services: `ON` arms the
  legacy mode (`HOMESEC_DETECTOR_ALARM__LEGACY_MODE`, default away) when disarmed and does
  nothing when already armed; `OFF` disarms. No code, so the shipped ACL lets only the
  slack-gateway and presence (and admin) write it.

Every command is answered on `alarm/result`. `system/armed` mirrors the alarm, fail secure:
`true` in every state but `disarmed` (also while arming, pending and triggered).

**Make sure a command arrived.** QoS 1 takes a command to the broker, not to the detector: one
published before the detector's first subscription on a fresh broker (a first start, a broker
that lost its persistence file) is dropped. Give the command a `request_id` and wait for its
answer on `alarm/result` (for `alarm/*` and `system/armed/set`) or for the retained state to
show the value (the other switches); send the same command again, with the same `request_id`,
while `{prefix}/detector/availability` is `online` and no answer came. The detector applies a
`request_id` once and answers a copy again without applying it, so a late copy never undoes a
newer command. The slack-gateway and presence do exactly this (`homesec.confirm`).

## Topics

| topic | payload | delivery | QoS | retained | publisher | subscribers |
|---|---|---|---|---|---|---|
"""


def _row(ch: Channel[Any]) -> str:
    return (
        f"| `{{prefix}}/{ch.template}` | {ch.model.__name__} ({ch.codec.value}) | "
        f"{ch.delivery.value} | {ch.qos} | "
        f"{'yes' if ch.retain else 'no'} | {ch.publisher} | {', '.join(ch.subscribers) or '-'} |"
    )


def _fields_table(ch: Channel[Any]) -> list[str]:
    schema = ch.model.model_json_schema()
    props = schema.get("properties", {})
    if not props:
        return []
    required = set(schema.get("required", []))
    lines = ["| field | type | required | description |", "|---|---|---|---|"]
    for name, spec in props.items():
        kind = spec.get("type") or " or ".join(
            str(alt.get("type", alt.get("$ref", "?").split("/")[-1]))
            for alt in spec.get("anyOf", [])
        )
        if not kind and "$ref" in spec:
            kind = spec["$ref"].split("/")[-1]
        if "enum" in spec:
            kind = " / ".join(f"`{v}`" for v in spec["enum"])
        desc = (spec.get("description") or "").replace("|", "\\|")
        lines.append(f"| `{name}` | {kind} | {'yes' if name in required else 'no'} | {desc} |")
    return lines


def render_markdown() -> str:
    out = [MD_HEADER.rstrip("\n")]
    out += [_row(ch) for ch in CHANNELS]
    for ch in CHANNELS:
        out += ["", f"### `{{prefix}}/{ch.template}`", "", ch.description, ""]
        out.append(
            f"Delivery `{ch.delivery.value}` (subscribe with QoS {ch.subscribe_qos}), "
            f"QoS {ch.qos}, {'retained' if ch.retain else 'not retained'}, codec `{ch.codec.value}`, "
            f"model `{ch.model.__name__}`; published by {ch.publisher}."
        )
        for param, meaning in ch.params.items():
            out.append(f"- `{{{param}}}`: {meaning}")
        fields = _fields_table(ch) if ch.codec is Codec.JSON else []
        if fields:
            out += [""] + fields
        lang = "json" if isinstance(ch.example, dict) else "text"
        out += ["", "Example:", "", f"```{lang}", example_payload(ch), "```"]
    return "\n".join(out) + "\n"


def render_asyncapi() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for ch in CHANNELS:
        schema = ch.model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            schemas[name] = sub
        schemas[ch.model.__name__] = schema
        content_type = {
            Codec.JSON: "application/json",
            Codec.TEXT: "text/plain",
            Codec.JPEG: "image/jpeg",
        }[ch.codec]
        messages[ch.name] = {
            "name": ch.name,
            "contentType": content_type,
            "payload": {"$ref": f"#/components/schemas/{ch.model.__name__}"},
            "bindings": {"mqtt": {"bindingVersion": "0.2.0"}},
        }
        address = "{prefix}/" + ch.template
        params = {
            "prefix": {
                "description": "topic prefix (HOMESEC_BROKER_TOPIC_PREFIX)",
                "default": "homesec",
            }
        }
        for param, meaning in ch.params.items():
            params[param] = {"description": meaning}
        for placeholder in [p.strip("{}") for p in ch.template.split("/") if p.startswith("{")]:
            params.setdefault(placeholder, {"description": placeholder})
        channels[ch.name] = {
            "address": address,
            "description": f"{ch.description} (delivery: {ch.delivery.value})",
            "parameters": params,
            "messages": {ch.name: {"$ref": f"#/components/messages/{ch.name}"}},
        }
        operations[f"publish_{ch.name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{ch.name}"},
            "summary": f"published by {ch.publisher}",
            "bindings": {"mqtt": {"qos": ch.qos, "retain": ch.retain, "bindingVersion": "0.2.0"}},
        }
        operations[f"receive_{ch.name}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{ch.name}"},
            "summary": f"{ch.delivery.value}: subscribe with QoS {ch.subscribe_qos}",
            "bindings": {"mqtt": {"qos": ch.subscribe_qos, "bindingVersion": "0.2.0"}},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "homesec MQTT API",
            "version": __version__,
            "description": "Topics and payloads of homesec, generated from homesec.contract.",
        },
        "servers": {
            "local": {"host": "localhost:1883", "protocol": "mqtt", "protocolVersion": "5"},
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render_files() -> dict[str, str]:
    return {
        "mqtt-api.md": render_markdown(),
        "asyncapi.json": json.dumps(render_asyncapi(), indent=2, sort_keys=False) + "\n",
    }


def write(docs_dir: Path) -> list[Path]:
    docs_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_files().items():
        path = docs_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale(docs_dir: Path) -> list[str]:
    """Names of generated docs that differ from the code."""
    out = []
    for name, text in render_files().items():
        path = docs_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            out.append(name)
    return out
