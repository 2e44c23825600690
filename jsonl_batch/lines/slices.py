"""Copying JSON values out of a raw line, as written: never re-serialized.

``join --include-bodies`` copies request and response bodies into the table. Writing them
back with orjson would change what the user sent (escapes, number formats, spacing) and fails
on bodies nested deeper than 255 levels, which orjson reads (up to 1024) but will not write.
So the bytes are sliced out of the line instead: ``raw_value(raw, "response", "body")``.

A line holding a value exactly as orjson writes it (compact JSON: what the Batch API and
most tools produce) is answered by a search for those bytes; any other line is walked
member by member, with regular expressions stepping over strings (no recursion, any depth).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

_WS = re.compile(rb"[ \t\n\r]*")
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_UP_TO_BRACKET = re.compile(rb'(?:[^"\[\]{}]+|"[^"\\]*(?:\\.[^"\\]*)*")*([\[\]{}])', re.DOTALL)
_SCALAR = re.compile(rb"[^ \t\n\r,\]}]+")
_NUMBER_GOES_ON = frozenset(bytes([c]) for c in b"0123456789.eE+-")
_NOTHING: Any = object()


class _NotCopied:
    def __repr__(self) -> str:
        return "NOT_COPIED"


NOT_COPIED: Any = _NotCopied()
"""Stands for a value ``copy_value`` could not copy (its column gets null, and an anomaly)."""


def copy_value(raw: bytes | None, path: tuple[str | int, ...], value: Any) -> Any:
    """The JSON text of ``value``, parsed from the line ``raw`` at ``path``: the line's own
    bytes (``raw_value``). Only without ``raw`` (or if the path were not found) is ``value``
    written by orjson, and where orjson cannot write it: ``NOT_COPIED``."""
    found = None if raw is None else raw_value(raw, *path, parsed=value)
    if found is not None:
        return found.decode()
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return NOT_COPIED


def raw_value(raw: bytes, *path: str | int, parsed: Any = _NOTHING) -> bytes | None:
    """The bytes of the value at ``path`` (object keys, array indexes) in a JSON text that
    orjson parsed, or ``None`` when the path is not there. Of a key given twice, the last
    counts, as in ``orjson.loads``. ``parsed``, the value orjson read there, if known, lets
    a compact line be answered without walking the value."""
    if parsed is not _NOTHING:
        found = _compact(raw, path, parsed)
        if found is not None:
            return found
    start, end = _skip_ws(raw, 0), len(raw)
    while end > start and raw[end - 1] in b" \t\n\r":
        end -= 1
    for step in path:
        span = _member(raw, start, step)
        if span is None:
            return None
        start, end = span
    return raw[start:end]


def _compact(raw: bytes, path: tuple[str | int, ...], parsed: Any) -> bytes | None:
    """The value's bytes when the line holds them exactly as orjson writes ``parsed``, after
    the path's last key (else ``None``: walk the line). Whichever place matches, the bytes
    are the same: the value's own text."""
    try:
        text = orjson.dumps(parsed)
    except orjson.JSONEncodeError:
        return None
    key = path[-1] if path else None
    needle = orjson.dumps(key) + b":" + text if type(key) is str else text
    at = raw.find(needle)
    if at < 0:
        return None
    end = at + len(needle)
    if raw[end : end + 1] in _NUMBER_GOES_ON and type(parsed) in (int, float):
        return None  # 1.5 is not all of 1.50
    return raw[end - len(text) : end]


def _skip_ws(raw: bytes, pos: int) -> int:
    return _WS.match(raw, pos).end()  # type: ignore[union-attr]  # matches the empty string


def _value_end(raw: bytes, pos: int) -> int:
    """Where the JSON value that starts at ``pos`` ends; brackets are matched one regex
    match each, strings and everything else are stepped over inside the regex."""
    first = raw[pos : pos + 1]
    if first == b'"':
        return _STRING.match(raw, pos).end()  # type: ignore[union-attr]  # valid JSON
    if first not in (b"{", b"["):
        return _SCALAR.match(raw, pos).end()  # type: ignore[union-attr]
    depth = 0
    for m in _UP_TO_BRACKET.finditer(raw, pos):
        depth += 1 if m.group(1) in (b"{", b"[") else -1
        if depth == 0:
            return m.end()
    raise ValueError("unbalanced JSON")  # not reached for a text orjson parsed


def _members(raw: bytes, pos: int, step: str | int) -> tuple[bytes, int] | None:
    """``(opening bracket, first member's position)`` of the container at ``pos`` that
    ``step`` can index (an object for a key, an array for an index); ``None`` if empty."""
    opening = raw[pos : pos + 1]
    if opening != (b"[" if type(step) is int else b"{"):
        return None
    pos = _skip_ws(raw, pos + 1)
    return None if raw[pos : pos + 1] in (b"]", b"}") else (opening, pos)


def _key(raw: bytes, pos: int) -> tuple[bytes, int]:
    """An object key at ``pos`` (unescaped) and the position of its value."""
    end = _value_end(raw, pos)
    key = raw[pos + 1 : end - 1]
    if b"\\" in key:
        key = orjson.loads(raw[pos:end]).encode()
    return key, _skip_ws(raw, _skip_ws(raw, end) + 1)  # past the colon


def _next(raw: bytes, end: int) -> int | None:
    """The next member's position after a value ending at ``end``, or ``None`` at the end."""
    pos = _skip_ws(raw, end)
    return _skip_ws(raw, pos + 1) if raw[pos : pos + 1] == b"," else None


def _member(raw: bytes, pos: int, step: str | int) -> tuple[int, int] | None:
    """The span of member ``step`` of the container at ``pos`` (the last one of a key given
    twice); ``None`` when there is none."""
    found = _members(raw, pos, step)
    if found is None:
        return None
    opening, at = found
    want = step.encode() if type(step) is str else b""
    span = None
    index = 0
    while True:
        if opening == b"{":
            key, at = _key(raw, at)
            match = key == want
        else:
            match = index == step
        index += 1
        end = _value_end(raw, at)
        if match:
            span = at, end
            if opening == b"[":
                return span
        following = _next(raw, end)
        if following is None:
            return span
        at = following
