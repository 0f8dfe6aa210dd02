"""A tiny JSON path walker for router responses: dotted keys, ``[N]``, ``[*]`` and ``*``.

``data.devices[*].mac``, ``result[1].ubus_rpc_session``, ``result[1].clients.*``. A leading
``$`` or ``$.`` is allowed. Missing keys yield nothing (no exception): routers omit fields.
"""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r"\[(\*|-?\d+)\]|([^.\[\]]+)")


class JsonPathError(ValueError):
    """The path itself is malformed."""


def parse(path: str) -> list[str | int]:
    """Split a path into keys (str), indexes (int) and ``*``."""
    text = path.strip()
    if text.startswith("$"):
        text = text[1:].lstrip(".")
    tokens: list[str | int] = []
    pos = 0
    while pos < len(text):
        if text[pos] == ".":
            pos += 1
            continue
        m = _TOKEN.match(text, pos)
        if m is None:
            raise JsonPathError(f"cannot parse {path!r} at position {pos}")
        index, key = m.groups()
        if index is not None:
            tokens.append("*" if index == "*" else int(index))
        else:
            tokens.append(key)
        pos = m.end()
    return tokens


def find(doc: Any, path: str) -> list[tuple[str | int | None, Any]]:
    """All ``(key, value)`` pairs ``path`` reaches in ``doc``; ``key`` is the last dict key or
    list index on the way (``None`` for the document itself)."""
    current: list[tuple[str | int | None, Any]] = [(None, doc)]
    for token in parse(path):
        nxt: list[tuple[str | int | None, Any]] = []
        for _, node in current:
            if token == "*":
                if isinstance(node, list):
                    nxt.extend(enumerate(node))
                elif isinstance(node, dict):
                    nxt.extend(node.items())
            elif isinstance(token, int):
                if isinstance(node, list) and -len(node) <= token < len(node):
                    nxt.append((token, node[token]))
            elif isinstance(node, dict) and token in node:
                nxt.append((token, node[token]))
        current = nxt
    return current


def first(doc: Any, path: str) -> Any:
    """The first value ``path`` reaches, or ``None``."""
    found = find(doc, path)
    return found[0][1] if found else None
