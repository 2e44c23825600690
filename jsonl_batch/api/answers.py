"""What an API server answers, checked before ``api`` uses it.

A server is trusted with nothing. An answer that is not JSON is one line saying which URL
answered and what; an object missing a field it must have (or holding the wrong kind of
value) is one line naming the field; every answer is redacted (``redact_value``), so a key
the server echoes back is never shown; and a server's id names a file or a URL only if it
is plain (``safe_id``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson

from .client import ApiError, calling, not_json, redact, redact_value

MAX_ID = 128
"""The longest id used in a file name (``<id>.output.jsonl`` stays far below 255 bytes)."""
_PLAIN = re.compile(r"[A-Za-z0-9_-]+")

Check = Mapping[str, tuple[type, bool]]
"""field -> (the JSON kinds it may hold, whether it must be there); ``None`` is allowed
wherever a field may be absent."""

BATCH: Check = {
    "id": (str, True),
    "status": (str, True),
    "endpoint": (str, False),
    "input_file_id": (str, False),
    "output_file_id": (str, False),
    "error_file_id": (str, False),
    "request_counts": (dict, False),
    "metadata": (dict, False),
    "errors": (dict, False),
    "usage": (dict, False),
    "created_at": (int, False),
}
FILE: Check = {"id": (str, True), "bytes": (int, False)}
PAGE: Check = {"data": (list, True), "has_more": (bool, False)}
_KINDS = {str: "a string", int: "a number", dict: "an object", list: "a list", bool: "true/false"}


def safe_id(value: object, what: str = "id") -> str:
    """``value`` if it is a plain id: 1 to ``MAX_ID`` letters, digits, ``_`` or ``-``; else
    ``ApiError``. Every value from a server that names a file or a URL goes through here, so
    that an id like ``../x``, ``/etc/x`` or one holding a NUL cannot leave its folder."""
    if isinstance(value, str) and len(value) <= MAX_ID and _PLAIN.fullmatch(value):
        return value
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise ApiError(
        f"the server sent {what} {shown}, which cannot name a file: ids are 1 to {MAX_ID} "
        "letters, digits, '_' or '-'"
    )


def answer(client: Any, action: str, call: Callable[[], Any]) -> dict[str, Any]:
    """The JSON object a raw-response SDK call (``client.x.with_raw_response.y``) got,
    redacted; ``ApiError("cannot <action>: ...")`` when it is not a JSON object."""
    with calling(client, action):
        raw = call()
    response = raw.http_response
    try:
        value = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise ApiError(redact(f"cannot {action}: {not_json(response)}", client)) from None
    if not isinstance(value, dict):
        url = response.request.url
        message = f"cannot {action}: {url} answered JSON that is not an object"
        raise ApiError(redact(f"{message}; check the API's base URL", client))
    return dict(redact_value(value, client))


def checked(value: dict[str, Any], check: Check, what: str, action: str) -> dict[str, Any]:
    """``value`` if its fields are of the kinds ``check`` says, else ``ApiError`` naming the
    first field that is not."""
    for field, (kind, required) in check.items():
        item = value.get(field)
        if item is None and not required:
            continue
        wrong = not isinstance(item, kind) or (isinstance(item, bool) and kind is not bool)
        if item is None or wrong:
            found = "missing" if field not in value else type(item).__name__
            if field in value:
                found += f", not {_KINDS[kind]}"
            raise ApiError(f"cannot {action}: the server's {what} is malformed ({field}: {found})")
    return value


def batch_answer(client: Any, action: str, call: Callable[[], Any]) -> dict[str, Any]:
    """A batch object, checked (``check_batch``)."""
    return check_batch(answer(client, action, call), action)


def check_batch(batch: dict[str, Any], action: str) -> dict[str, Any]:
    """``batch`` if its fields are of the kinds ``BATCH`` says and ``errors.data`` holds
    objects, else ``ApiError``: what the renderers may rely on."""
    checked(batch, BATCH, "batch", action)
    data = (batch.get("errors") or {}).get("data")
    if data is not None and not (isinstance(data, list) and all(isinstance(e, dict) for e in data)):
        raise ApiError(f"cannot {action}: the server's batch is malformed (errors.data)")
    return batch


def file_answer(client: Any, action: str, call: Callable[[], Any]) -> dict[str, Any]:
    """A File object, checked (``FILE``)."""
    return checked(answer(client, action, call), FILE, "file object", action)


def page_answer(
    client: Any, action: str, call: Callable[[], Any], item: Check, what: str
) -> dict[str, Any]:
    """One page of a list: a list object whose ``data`` are objects checked by ``item``."""
    page = checked(answer(client, action, call), PAGE, "list", action)
    for value in page["data"]:
        if not isinstance(value, dict):
            raise ApiError(f"cannot {action}: the server's list holds a non-object")
        checked(value, item, what, action)
    return page


def pages(
    client: Any,
    action: str,
    fetch: Callable[[str | None], Any],
    item: Check,
    what: str,
    after: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Every item of a cursor-paged list (``fetch(after)`` makes the raw call of one page),
    each once, in order. A server that sends a page again (``has_more`` stays true, nothing
    new on it, or the same cursor) would page forever: that is an ``ApiError``."""
    seen: set[str] = set()
    while True:
        page = page_answer(client, action, functools.partial(fetch, after), item, what)
        fresh = []
        for value in page["data"]:
            if value["id"] not in seen:
                seen.add(value["id"])
                fresh.append(value)
        yield from fresh
        if not page.get("has_more") or not page["data"]:
            return
        cursor = page["data"][-1]["id"]
        if not fresh or cursor == after:
            raise ApiError(
                f"cannot {action}: the server sent a page it had sent before and says there "
                f"are more; stopped after {len(seen):,} distinct ids"
            )
        after = cursor
