"""Hypothesis strategies for hostile MQTT payloads and topics, and the contract's own verdict on
them (the oracle the fuzz tests count against)."""

from __future__ import annotations

import json
import math
import os
import unicodedata
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from homesec.contract import Channel, InvalidPayload, is_identifier

SCALE = float(os.environ.get("HOMESEC_FUZZ_SCALE", "1"))
"""Multiplies every example count: ``HOMESEC_FUZZ_SCALE=20 make test`` fuzzes 20x longer."""


def fuzz_settings(examples: int) -> settings:
    """Bounded, deterministic-by-default settings for fuzzing a live system."""
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        derandomize=os.environ.get("HOMESEC_FUZZ_RANDOM", "") == "",
        database=None,
        suppress_health_check=list(HealthCheck),
    )


# ---- JSON ------------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)

SPECIAL_PAYLOADS: tuple[bytes, ...] = (
    b"",
    b" ",
    b"{",
    b"}",
    b"null",
    b"[]",
    b"{}",
    b'""',
    b"0",
    b"-1",
    b"NaN",
    b"Infinity",
    b"1e999",
    b"9" * 5000,
    b'{"value": NaN}',
    b'{"value": Infinity}',
    b'{"pan": NaN}',
    b'{"pan": -Infinity}',
    b'{"pan": 1e999}',
    b'{"pan_by": 1e308}',
    b'{"pan": ' + b"9" * 4000 + b"}",
    b"[" * 20000 + b"]" * 20000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
    b'{"x": "' + b"A" * 300_000 + b'"}',
    b'"' + "\u202e\u0000\ud7ff".encode() + b'"',
    b"\xff\xfe\x00\x01",
    b"\xff\xd8",
    b"\xff\xd8\xff\xe0" + b"\x00" * 100,
    b"ON",
    b"off",
    b'"true"',
    b"online",
    b"OFFLINE",
    b"home",
    b"\xef\xbb\xbfON",
)


def _dump(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def mutated(example: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """The channel's documented example with fields replaced, dropped or added."""
    keys = sorted(example)
    odd_values = json_values | st.sampled_from(
        [math.nan, math.inf, -math.inf, 10**400, -(10**20), 1e308, "x" * 5000, [], {}]
    )

    def build(replace: dict[str, Any], drop: set[str], extra: dict[str, Any]) -> bytes:
        doc = {k: v for k, v in example.items() if k not in drop}
        doc.update(replace)
        doc.update(extra)
        return _dump(doc)

    return st.builds(
        build,
        st.dictionaries(st.sampled_from(keys), odd_values, max_size=3),
        st.sets(st.sampled_from(keys), max_size=2),
        st.dictionaries(st.text(max_size=10), json_values, max_size=2),
    )


def payloads(channel: Channel[Any]) -> st.SearchStrategy[bytes]:
    """Junk, near-misses and a share of valid payloads for ``channel``."""
    options: list[st.SearchStrategy[bytes]] = [
        st.sampled_from(SPECIAL_PAYLOADS),
        st.binary(max_size=3000),
        st.builds(_dump, json_values),
        st.text(max_size=200).map(str.encode),
    ]
    if isinstance(channel.example, dict):
        options.append(mutated(channel.example))
        options.append(st.just(_dump(channel.example)))  # valid
    elif isinstance(channel.example, str) and not channel.example.startswith("<"):
        options.append(st.sampled_from([channel.example.encode()]))
    return st.one_of(*options)


# ---- topics ----------------------------------------------------------------------------------


def broker_accepts_string(text: str) -> bool:
    """Mosquitto refuses (and disconnects) UTF-8 strings (topics, user properties) with control
    characters, surrogates or non-characters; such strings cannot reach a service."""
    for ch in text:
        cp = ord(ch)
        if cp <= 0x1F or 0x7F <= cp <= 0x9F or 0xD800 <= cp <= 0xDFFF:
            return False
        if 0xFDD0 <= cp <= 0xFDEF or (cp & 0xFFFF) in (0xFFFE, 0xFFFF):
            return False
        if unicodedata.category(ch) == "Cn":
            return False
    return True


def broker_accepts_level(level: str) -> bool:
    """A topic level the broker accepts in a PUBLISH: no wildcards, no separator."""
    return not any(ch in "+#/" for ch in level) and broker_accepts_string(level)


def mqtt_text(max_size: int, min_size: int = 0) -> st.SearchStrategy[str]:
    """Any text the broker lets through as a user property."""
    return st.text(min_size=min_size, max_size=max_size).filter(broker_accepts_string)


ODD_LEVELS = (
    "",
    "..",
    "..%2F",
    "..%2F..%2Fetc",
    "%00",
    "front ",
    " front",
    "-front",
    "_front",
    "a" * 64,
    "b" * 65,
    "c" * 300,
    "caméra",
    "\u202efront",
    "前門",
    "😀",
    "$SYS",
    "front.jpg",
    "~",
)

odd_levels = st.sampled_from(ODD_LEVELS) | st.text(max_size=80).filter(broker_accepts_level)


def level(valid: tuple[str, ...]) -> st.SearchStrategy[str]:
    """Mostly one of the ``valid`` topic levels, sometimes an odd one."""
    return st.one_of(st.sampled_from(valid), st.sampled_from(valid), odd_levels)


# ---- the contract's verdict ------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    props: tuple[tuple[str, str], ...] = ()


def rejected(channel: Channel[Any], prefix: str, msg: Message) -> bool:
    """True when the bus must count ``msg`` as invalid on ``channel`` (same rules as the bus:
    the payload fails :meth:`Channel.decode` or a topic level is not an identifier)."""
    params = channel.match(prefix, msg.topic) or {}
    try:
        channel.decode(msg.payload, dict(msg.props))
    except InvalidPayload:
        return True
    return any(not is_identifier(v) for v in params.values())
