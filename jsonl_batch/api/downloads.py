"""Downloading a server's file whole, or not at all (``api.download_results``).

A body cut short looks like success to an HTTP client when the server closes the connection
without a ``Content-Length``. So the size is checked against the ``Content-Length`` the
response declares for a body sent as is, else against the File object's ``bytes`` (asked
only then: one request less per file when the server says the length), and the last line
must be complete (it ends with a newline, or it is whole JSON). A broken
download (connection reset or closed, read timeout, short body) is tried again a few times,
then it is one ``ApiError``; the file is written atomically, so nothing partial is left.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from ..errors import JsonlBatchError
from ..lines.reading import BUFFER_SIZE
from ..outputs.atomic import atomic_output
from .answers import file_answer
from .client import ApiError, calling, redact

ATTEMPTS = 3
"""Tries of a broken download before giving up."""
PAUSE = 1.0
"""Seconds before the second try; each later try waits twice as long."""
MAX_TAIL = 64 << 20
"""An unterminated last line longer than this is not parsed: it counts as cut."""


class Broken(JsonlBatchError):
    """One try of a download ended early or wrong (the message says how)."""

    code = "broken_download"


def download_file(
    client: Any,
    file_id: str,
    path: str | os.PathLike[str],
    *,
    force: bool = False,
    inputs: Iterable[object] = (),
    attempts: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Stream file ``file_id`` into ``path`` (atomically; ``force``/``inputs`` as for
    ``atomic_output``) and return its size. Raises ``ApiError`` when every try broke."""
    tries = attempts or ATTEMPTS
    known: list[int | None] = []  # the File object's ``bytes``, asked once, when needed

    def file_size() -> int | None:
        if not known:
            known.append(expected_size(client, file_id))
        return known[0]

    for attempt in range(1, tries + 1):
        try:
            with atomic_output(path, force=force, inputs=inputs) as out:
                return _stream(client, file_id, out, file_size)
        except Broken as exc:
            if attempt == tries:
                times = f"{tries} tries" if tries > 1 else "1 try"
                message = f"cannot download {file_id}: {exc} ({times})"
                raise ApiError(redact(message, client)) from None
            sleep(PAUSE * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def expected_size(client: Any, file_id: str) -> int | None:
    """The File object's ``bytes``; ``None`` when the server does not say (or cannot show
    File objects: HTTP 404, 405, 501, the content is then asked for all the same)."""
    try:
        info = file_answer(
            client, f"download {file_id}", lambda: client.files.with_raw_response.retrieve(file_id)
        )
    except ApiError as exc:
        if exc.status in (404, 405, 501):
            return None
        raise
    size = info.get("bytes")
    return size if isinstance(size, int) and size >= 0 else None


def _stream(client: Any, file_id: str, out: Any, file_size: Callable[[], int | None]) -> int:
    size = 0
    tail: list[bytes] = []  # the bytes after the last newline (up to MAX_TAIL of them)
    tail_size = 0
    with (
        calling(client, f"download {file_id}"),
        client.files.with_streaming_response.content(file_id) as response,
    ):
        broken = _transport_errors(response.http_response)
        expected = declared_size(response.http_response)
        try:
            for chunk in response.iter_bytes(BUFFER_SIZE):
                out.write(chunk)
                size += len(chunk)
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    tail, tail_size = [chunk[cut + 1 :]], len(chunk) - cut - 1
                else:
                    if tail_size <= MAX_TAIL:
                        tail.append(chunk)
                    tail_size += len(chunk)
        except broken as exc:
            why = str(exc) or type(exc).__name__
            raise Broken(f"the connection broke after {size:,} bytes ({why})") from None
    if expected is None:
        expected = file_size()
    of = f" of {expected:,}" if expected is not None else ""
    if expected is not None and size != expected:
        raise Broken(f"the body ended after {size:,}{of} bytes")
    if tail_size and (tail_size > MAX_TAIL or not _whole(b"".join(tail))):
        raise Broken(f"the body ended inside a line after {size:,}{of} bytes")
    return size


def declared_size(http_response: Any) -> int | None:
    """The body's size as the response declares it: the ``Content-Length`` of a body sent as
    is (no ``Content-Encoding``: a compressed body is longer once decoded); else ``None``."""
    headers = http_response.headers
    if headers.get("content-encoding", "identity").strip().lower() != "identity":
        return None
    value = headers.get("content-length", "")
    return int(value) if value.isdigit() else None


def _whole(line: bytes) -> bool:
    """Whether an unterminated last line is complete JSON."""
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


def _transport_errors(http_response: Any) -> tuple[type[BaseException], ...]:
    """The HTTP library's errors of a connection that broke while a body was read (the SDK
    uses ``httpx`` or ``httpx2``: the library of the response at hand)."""
    library = importlib.import_module(type(http_response).__module__.split(".")[0])
    error = getattr(library, "TransportError", None)
    return (error,) if isinstance(error, type) else ()
