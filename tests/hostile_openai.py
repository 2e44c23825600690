"""A misbehaving stand-in for the OpenAI API on 127.0.0.1: the trust tests' server.

Unlike ``fake_openai`` (a well-behaved API), this one answers whatever a test scripts, down
to the bytes on the socket: HTML instead of JSON, wrongly shaped objects, bodies cut short
(a ``Content-Length`` that lies, a connection closed or reset mid-body, a stalled body),
the same page of batches forever, hostile ids (``../x``, absolute paths, NUL) and the key
echoed back. Scripts are routes: ``hostile.on("GET", r"/batches/b1", json_answer(batch()))``;
a route's answers are used in turn and the last one repeats.

Use it through the ``hostile`` fixture (``conftest.py`` loads this module as a plugin): it
points ``OPENAI_BASE_URL`` at the server, sets ``OPENAI_API_KEY`` and forgets every route.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

KEY = "sk-hostile-0123456789SECRET"

Answer = Callable[["Handler"], None]
"""Writes one answer (or none: a reset) on the handler's socket."""


class Handler(BaseHTTPRequestHandler):
    """Finds the scripted answer of a request and lets it write to the socket."""

    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    @property
    def key(self) -> str:
        """The key the client sent (``Authorization: Bearer ...`` or ``api-key``)."""
        given = self.headers.get("Authorization", "").removeprefix("Bearer ")
        return given or self.headers.get("api-key", "")

    def handle_any(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(size) if size else b""
        path = re.sub(r"^/(v1|openai)", "", self.path.split("?")[0])
        self.server.calls.append((self.command, self.path))
        answer = self.server.answer_for(self.command, path)
        answer(self)

    do_GET = do_POST = do_DELETE = handle_any

    def send(
        self,
        status: int,
        content_type: str,
        data: bytes,
        *,
        length: int | None = None,
        sent: int | None = None,
        close: bool = False,
    ) -> None:
        """Headers then ``data[:sent]``; ``length`` is the declared Content-Length (``-1``: none,
        the body ends when the connection closes)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        declared = len(data) if length is None else length
        if declared >= 0:
            self.send_header("Content-Length", str(declared))
        if close or declared < 0:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data if sent is None else data[:sent])
        self.wfile.flush()


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.routes: list[tuple[str, str, list[Answer]]] = []
        self.calls: list[tuple[str, str]] = []

    def answer_for(self, method: str, path: str) -> Answer:
        for verb, pattern, answers in self.routes:
            if verb == method and re.fullmatch(pattern, path):
                return answers.pop(0) if len(answers) > 1 else answers[0]
        return json_answer({"error": {"message": f"no route for {method} {path}"}}, 404)


class Hostile:
    """The server, as tests see it: ``on`` scripts a route, ``calls`` lists the requests."""

    def __init__(self) -> None:
        self.server = Server()
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def calls(self) -> list[tuple[str, str]]:
        return self.server.calls

    def on(self, method: str, pattern: str, *answers: Answer) -> None:
        """Answer requests ``method pattern`` (a regex of the path after ``/v1``) with
        ``answers`` in turn, the last one for good. Later routes do not shadow earlier ones."""
        self.server.routes.append((method, pattern, list(answers)))

    def reset(self) -> None:
        self.server.routes.clear()
        self.server.calls.clear()


# -- answers ---------------------------------------------------------------------------------


def json_answer(obj: Any, status: int = 200) -> Answer:
    """``obj`` as JSON (``obj`` may be a function of the handler, to echo the request)."""

    def answer(h: Handler) -> None:
        value = obj(h) if callable(obj) else obj
        h.send(status, "application/json", orjson.dumps(value))

    return answer


def html(status: int = 200) -> Answer:
    """A web page, as a wrong base URL (a proxy's login page, a web server) answers."""
    page = b"<!DOCTYPE html><html><head><title>Welcome</title></head><body>Hi</body></html>"
    return lambda h: h.send(status, "text/html; charset=utf-8", page)


def text(data: bytes, content_type: str = "text/plain", status: int = 200) -> Answer:
    """Any bytes with any content type (not JSON, or JSON labelled as text)."""
    return lambda h: h.send(status, content_type, data)


def body(data: bytes, *, sent: int | None = None, length: int | None = None) -> Answer:
    """File content: ``data[:sent]`` is written, ``length`` declared (``None``: the truth,
    ``-1``: no Content-Length), then the connection is closed if the body was cut."""

    def answer(h: Handler) -> None:
        cut = sent is not None and sent < len(data)
        h.send(200, "application/octet-stream", data, length=length, sent=sent, close=cut)

    return answer


def reset(data: bytes = b"", sent: int = 0) -> Answer:
    """Headers and ``data[:sent]`` (or nothing when ``data`` is empty), then a TCP reset."""

    def answer(h: Handler) -> None:
        if data:
            h.send(200, "application/octet-stream", data, sent=sent)
            time.sleep(0.1)  # the client reads the headers before the reset discards them
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.close_connection = True
        h.connection.close()

    return answer


def stall(data: bytes, sent: int, seconds: float) -> Answer:
    """``data[:sent]`` of a declared full body, then silence for ``seconds`` (a read timeout)."""

    def answer(h: Handler) -> None:
        h.send(200, "application/octet-stream", data, sent=sent, close=True)
        time.sleep(seconds)

    return answer


# -- objects ---------------------------------------------------------------------------------


def batch(batch_id: str = "batch_1", status: str = "completed", **fields: Any) -> dict[str, Any]:
    """A batch object as the API returns it (fields override)."""
    return {
        "id": batch_id,
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "errors": None,
        "input_file_id": "file-in",
        "completion_window": "24h",
        "status": status,
        "output_file_id": "file-out",
        "error_file_id": None,
        "created_at": 1711471533,
        "request_counts": {"total": 2, "completed": 2, "failed": 0},
        "metadata": None,
        **fields,
    }


def file_object(file_id: str, size: int | None, **fields: Any) -> dict[str, Any]:
    """A File object (``bytes``: ``size``; ``None`` leaves it out)."""
    obj = {"id": file_id, "object": "file", "created_at": 1711471533, "filename": "out.jsonl"}
    obj.update(purpose="batch_output", status="processed", **fields)
    if size is not None:
        obj["bytes"] = size
    return obj


def page(ids: list[str], has_more: bool) -> dict[str, Any]:
    """A list object of batches with these ids."""
    return {
        "object": "list",
        "data": [batch(i) for i in ids],
        "first_id": ids[0] if ids else None,
        "last_id": ids[-1] if ids else None,
        "has_more": has_more,
    }


def results(n: int) -> bytes:
    """``n`` output lines, about 100 bytes each."""
    return b"".join(
        orjson.dumps({"id": f"b{i}", "custom_id": f"r-{i}", "response": {"status_code": 200}})
        + b"\n"
        for i in range(n)
    )


def serve_file(hostile: Hostile, file_id: str, data: bytes, *answers: Answer) -> None:
    """Script ``file_id``: its File object (the true size) and its content (``answers``,
    by default the whole of ``data``)."""
    path = f"/files/{re.escape(file_id)}"
    hostile.on("GET", path, json_answer(file_object(file_id, len(data))))
    hostile.on("GET", f"{path}/content", *(answers or (body(data),)))


@pytest.fixture(scope="session")
def hostile_server() -> Iterator[Hostile]:
    """One server for the session."""
    hostile = Hostile()
    hostile.thread.start()
    yield hostile
    hostile.server.shutdown()
    hostile.server.server_close()


@pytest.fixture
def hostile(hostile_server: Hostile, monkeypatch: pytest.MonkeyPatch) -> Hostile:
    """The hostile server with no routes, the environment pointing the SDK at it."""
    hostile_server.reset()
    for name in ("OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_ADMIN_KEY", "AZURE_OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", hostile_server.base_url)
    return hostile_server
