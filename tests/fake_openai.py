"""A stateful stand-in for the OpenAI Files and Batches APIs, served on 127.0.0.1.

It answers the real SDK with the shapes of ``tests/data/examples/``: ``/v1/files``
(upload, content) and ``/v1/batches`` (create, list with ``after``/``limit``/``has_more``/
``first_id``/``last_id``, retrieve, cancel). Each retrieve moves a batch one step along its
plan (``validating`` -> ... -> a terminal status), so tests never wait on a clock. Azure's
routes (``/openai/...`` with an ``api-key`` header) are served too.

``simulate(...)`` switches it to a clock-driven simulation for jobs (``Sim``): every request
moves a simulated clock forward by ``tick`` seconds (``advance`` moves it too), and batches
go through ``validating``, ``in_progress`` (growing ``request_counts``), ``finalizing`` and
``completed`` on that clock; an enqueued-token cap fails batches with
``token_limit_exceeded``; chosen requests answer HTTP 500 the first times they are run, or
stall until their batch expires with partial results. Files can be listed and deleted.

Use it through the ``fake`` fixture (``conftest.py`` loads this module as a plugin): it sets
``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` and resets the state for every test.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from helpers import EXAMPLES
from pytest_httpserver.httpserver import HTTPServerBase
from werkzeug import Request, Response

KEY = "sk-test-0123456789abcdefSECRET"
T0 = 1711471533
logging.getLogger("werkzeug").setLevel(logging.ERROR)

PLANS = {
    "completed": ["validating", "in_progress", "finalizing", "completed"],
    "failed": ["validating", "failed"],
    "expired": ["validating", "in_progress", "expired"],
    "cancelled": ["validating", "in_progress", "in_progress", "in_progress"],
}
TERMINAL = {"completed", "failed", "expired", "cancelled"}
STAMP = {
    "in_progress": "in_progress_at",
    "finalizing": "finalizing_at",
    "completed": "completed_at",
    "failed": "failed_at",
    "expired": "expired_at",
    "cancelling": "cancelling_at",
    "cancelled": "cancelled_at",
}


def closed_port() -> int:
    """A local port nobody listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def example(name: str) -> Any:
    """A payload from the reference examples (tests/data/examples)."""
    return json.loads((EXAMPLES / name).read_text())


def _error(status: int, message: str, code: str | None = None) -> Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None}}
    body["error"]["code"] = code
    # A tiny server-directed delay keeps the SDK's real retries fast in tests.
    return Response(
        json.dumps(body), status, {"retry-after-ms": "1"}, content_type="application/json"
    )


@dataclass
class Sim:
    """How the simulated server behaves (times in simulated seconds)."""

    tick: float = 10.0
    """How far each request moves the clock."""
    validating: float = 20.0
    rate: float = 1.0
    """Requests answered per second in progress."""
    finalizing: float = 10.0
    window: float = 3600.0
    """A batch not done this long after its creation expires (partial results)."""
    token_cap: int | None = None
    """Estimated input tokens of the batches past validating; over it: token_limit_exceeded."""
    flaky: dict[str, int] = field(default_factory=dict)
    """custom_id -> how many of its first runs answer HTTP 500."""
    stall: dict[str, int] = field(default_factory=dict)
    """custom_id -> how many of its first batches it keeps from finishing (they expire)."""
    reject: set[str] = field(default_factory=set)
    """custom_ids whose batch fails validation (``invalid_request``)."""


def _json(obj: Any) -> Response:
    return Response(json.dumps(obj), 200, content_type="application/json")


class FakeOpenAI(HTTPServerBase):
    """The fake server. Tests steer it with ``plan``, ``fail_ids``, ``faults``, ``delay``."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1", 0, threaded=True)
        self.reset()

    def reset(self) -> None:
        """Forget every file, batch and request; back to the defaults."""
        self.key = KEY
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}  # oldest first; listed newest first
        self.steps: dict[str, list[str]] = {}
        self.plan = "completed"
        self.fail_ids: set[str] = set()
        self.faults: list[tuple[str, int, str]] = []  # (path regex, status, message), one-shot
        self.delay = 0.0
        self.calls: list[tuple[str, str]] = []
        self.requests: list[Request] = []
        self.uploads: list[tuple[str, bytes]] = []
        self.created: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.sim: Sim | None = None
        self.now = 0.0
        self.runs: Counter[str] = Counter()  # custom_id -> batches that ran it (sim)
        self.lock = threading.Lock()
        self.traps: list[tuple[str, str, bool, Callable[[], None]]] = []

    def trap(
        self, method: str, path: str, action: Callable[[], None], *, before: bool = False
    ) -> None:
        """Call ``action`` (once) at the next request matching ``method`` and ``path``: after
        the server did what was asked, before it answers (``before``: instead of doing it).
        Fault tests kill their client there, e.g. right after a batch was created."""
        self.traps.append((method, path, before, action))

    def _sprung(self, request: Request, before: bool) -> bool:
        path = re.sub(r"^/(v1|openai)", "", request.path)
        for i, (method, pattern, when, action) in enumerate(self.traps):
            if when == before and method == request.method and re.fullmatch(pattern, path):
                del self.traps[i]
                action()
                return True
        return False

    def simulate(self, **options: Any) -> Sim:
        """Run batches on the simulated clock (``Sim``'s options); return the settings."""
        self.sim = Sim(**options)
        return self.sim

    def _file_id(self) -> str:
        return f"file-{len(self.files) + len(self.deleted):04d}"

    def advance(self, seconds: float) -> None:
        """Move the simulated clock forward (batches move on at the next request)."""
        self.now += seconds

    @property
    def base_url(self) -> str:
        return self.url_for("/v1")

    # -- steering ---------------------------------------------------------------------------

    def fault(self, path: str, status: int, message: str = "boom", times: int = 1) -> None:
        """Answer the next ``times`` requests whose path matches ``path`` with an error."""
        self.faults.extend([(path, status, message)] * times)

    def seed(self, n: int) -> list[str]:
        """Add ``n`` finished batches (created one second apart); return their ids, newest first."""
        for _ in range(n):
            batch = copy.deepcopy(example("list_batches_response.json")["data"][0])
            batch["id"] = f"batch_{len(self.batches):04d}"
            batch["created_at"] = T0 + len(self.batches)
            batch["metadata"] = {"n": str(len(self.batches))}
            self.batches[batch["id"]] = batch
        return list(reversed(self.batches))

    def add(self, status: str, **fields: Any) -> dict[str, Any]:
        """Add one batch in ``status`` (fields override the example's); return it."""
        batch = copy.deepcopy(example("batch_all_fields.json"))
        batch.update(id=f"batch_{len(self.batches):04d}", status=status, **fields)
        self.batches[batch["id"]] = batch
        return batch

    # -- the HTTP side ----------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:
        with self.lock:
            if self.sim is not None:
                self.now += self.sim.tick
                for batch_id in list(self.batches):
                    self._simulate(self.batches[batch_id])
            if self.traps and self._sprung(request, before=True):
                return _error(503, "the client was stopped before this request")
            response = self._answer(request)
            if self.traps:
                self._sprung(request, before=False)
        if self.delay:  # after the answer is chosen: a late reply changes no state
            time.sleep(self.delay)
        return response

    def _answer(self, request: Request) -> Response:
        path = re.sub(r"^/(v1|openai)", "", request.path)
        self.calls.append((request.method, path))
        self.requests.append(request)
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        given = given or request.headers.get("api-key", "")
        if given != self.key:
            return _error(401, f"Incorrect API key provided: {given[:3]}****{given[-4:]}.")
        for i, (pattern, status, message) in enumerate(self.faults):
            if re.fullmatch(pattern, path):
                del self.faults[i]
                return _error(status, message)
        for method, pattern, handler in self.routes:
            match = re.fullmatch(pattern, path)
            if match and request.method == method:
                return handler(self, request, *match.groups())
        return _error(404, f"Invalid URL ({request.method} {request.path})")

    def upload(self, request: Request) -> Response:
        upload = request.files["file"]
        data = upload.read()
        file_id = self._file_id()
        self.uploads.append((request.form["purpose"], data))
        obj = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()) if self.sim else T0,
            "filename": upload.filename,
            "purpose": request.form["purpose"],
            "status": "processed",
        }
        self.files[file_id] = {"data": data, "purpose": request.form["purpose"], "object": obj}
        return _json(obj)

    def list_files(self, request: Request) -> Response:
        purpose = request.args.get("purpose")
        data = [
            f["object"]
            for f in reversed(self.files.values())
            if "object" in f and (purpose is None or f["purpose"] == purpose)
        ]
        return _json({"object": "list", "data": data, "has_more": False})

    def delete_file(self, request: Request, file_id: str) -> Response:
        if file_id not in self.files:
            return _error(404, f"No such File object: {file_id}")
        del self.files[file_id]
        self.deleted.append(file_id)
        return _json({"id": file_id, "object": "file", "deleted": True})

    def retrieve_file(self, request: Request, file_id: str) -> Response:
        if file_id not in self.files:
            return _error(404, f"No such File object: {file_id}")
        file = self.files[file_id]
        default = {"id": file_id, "object": "file", "purpose": file["purpose"]}
        return _json({**file.get("object", default), "bytes": len(file["data"])})

    def content(self, request: Request, file_id: str) -> Response:
        if file_id not in self.files:
            return _error(404, f"No such File object: {file_id}")
        return Response(self.files[file_id]["data"], 200, content_type="application/octet-stream")

    def create(self, request: Request) -> Response:
        params = request.get_json()
        self.created.append(params)
        if params["input_file_id"] not in self.files:
            return _error(400, f"Invalid input_file_id: {params['input_file_id']}")
        batch = copy.deepcopy(example("create_batch_response.json"))
        lines = self.files[params["input_file_id"]]["data"].splitlines()
        batch.update(
            id=f"batch_{len(self.batches):04d}",
            endpoint=params["endpoint"],
            input_file_id=params["input_file_id"],
            completion_window=params["completion_window"],
            metadata=params.get("metadata"),
            model=json.loads(lines[0]).get("body", {}).get("model"),
            created_at=T0 + len(self.batches),
        )
        self.batches[batch["id"]] = batch
        if self.sim is not None:
            batch["created_at"] = int(time.time())
            batch["expires_at"] = batch["created_at"] + int(self.sim.window)
            batch["_sim"] = {"born": self.now, "ids": [json.loads(x)["custom_id"] for x in lines]}
            batch["request_counts"]["total"] = len(lines)
            return _json(_public(batch))
        self.steps[batch["id"]] = PLANS[self.plan][1:]
        return _json(batch)

    def page(self, limit: int = 20, after: str | None = None) -> dict[str, Any]:
        """The list object ``GET /v1/batches`` answers: newest first, after ``after``."""
        ids = list(reversed(self.batches))
        start = ids.index(after) + 1 if after in ids else 0
        page = ids[start : start + limit]
        return {
            "object": "list",
            "data": [_public(self.batches[i]) for i in page],
            "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None,
            "has_more": start + limit < len(ids),
        }

    def list_batches(self, request: Request) -> Response:
        limit = int(request.args.get("limit", 20))
        if not 1 <= limit <= 100:
            return _error(400, "limit must be between 1 and 100")
        return _json(self.page(limit, request.args.get("after")))

    def retrieve(self, request: Request, batch_id: str) -> Response:
        if batch_id not in self.batches:
            return _error(404, f"No batch found with id '{batch_id}'.")
        steps = self.steps.get(batch_id)
        if steps:
            self._advance(self.batches[batch_id], steps.pop(0))
        return _json(_public(self.batches[batch_id]))

    def cancel(self, request: Request, batch_id: str) -> Response:
        if batch_id not in self.batches:
            return _error(404, f"No batch found with id '{batch_id}'.")
        batch = self.batches[batch_id]
        if batch["status"] in TERMINAL:
            return _error(409, f"Cannot cancel a batch with status '{batch['status']}'.")
        self._advance(batch, "cancelling")
        self.steps[batch_id] = ["cancelled"]
        if "_sim" in batch:
            self._finish(batch, "cancelled")
        return _json(_public(batch))

    routes = (
        ("POST", r"/files", upload),
        ("GET", r"/files", list_files),
        ("DELETE", r"/files/([^/]+)", delete_file),
        ("GET", r"/files/([^/]+)", retrieve_file),
        ("GET", r"/files/([^/]+)/content", content),
        ("POST", r"/batches", create),
        ("GET", r"/batches", list_batches),
        ("GET", r"/batches/([^/]+)", retrieve),
        ("POST", r"/batches/([^/]+)/cancel", cancel),
    )

    # -- status progression -----------------------------------------------------------------

    def _advance(self, batch: dict[str, Any], status: str) -> None:
        batch["status"] = status
        if status in STAMP:
            batch[STAMP[status]] = batch["created_at"] + 60 * (1 + list(STAMP).index(status))
        lines = self.files[batch["input_file_id"]]["data"].splitlines()
        ids = [json.loads(line)["custom_id"] for line in lines]
        counts = batch["request_counts"]
        counts["total"] = counts["total"] or len(ids)
        if status == "in_progress":
            counts["completed"] = len(ids) // 2
        if status == "failed":
            batch["errors"] = example("batch_all_fields.json")["errors"]
        elif status in {"completed", "expired", "cancelled"}:
            done = ids if status == "completed" else ids[: len(ids) // 2]
            self._results(batch, ids, done, status)

    def _results(self, batch: dict[str, Any], ids: list[str], done: list[str], status: str) -> None:
        ok = [self._output_line(c) for c in done if c not in self.fail_ids]
        bad = [self._error_line(c, None) for c in done if c in self.fail_ids]
        bad += [self._error_line(c, f"batch_{status}") for c in ids if c not in done]
        counts = batch["request_counts"]
        counts["completed"], counts["failed"] = len(ok), len(bad)
        for kind, lines in (("output_file_id", ok), ("error_file_id", bad)):
            if lines:
                file_id = self._file_id()
                data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
                self.files[file_id] = {"data": data, "purpose": "batch_output"}
                batch[kind] = file_id
            else:
                batch[kind] = None

    # -- the simulation ---------------------------------------------------------------------

    def _simulate(self, batch: dict[str, Any]) -> None:
        """Move a simulated batch to where the clock says it is."""
        sim, state = self.sim, batch.get("_sim")
        if sim is None or state is None or batch["status"] in TERMINAL | {"cancelling"}:
            return
        age = self.now - state["born"]
        if batch["status"] == "validating":
            if age < sim.validating:
                return
            if sim.reject & set(state["ids"]):
                self._fail(batch, "invalid_request", "rejected by the test")
                return
            if sim.token_cap is not None and self._enqueued() + self._tokens(batch) > sim.token_cap:
                message = "Enqueued token limit reached for gpt-4o-mini."
                self._fail(batch, "token_limit_exceeded", message)
                return
            self._advance(batch, "in_progress")
            state["started"] = self.now
        ids = state["ids"]
        stalled = [c for c in ids if self.runs[c] < sim.stall.get(c, 0)]
        if batch["status"] == "in_progress":
            can = len(ids) - len(stalled)
            done = min(can, int((self.now - state["started"]) * sim.rate))
            batch["request_counts"]["completed"] = done
            if age >= sim.window:
                self._finish(batch, "expired")
            elif done == len(ids):
                self._advance(batch, "finalizing")
                state["finalizing"] = self.now
        elif batch["status"] == "finalizing" and self.now - state["finalizing"] >= sim.finalizing:
            self._finish(batch, "completed")

    def _fail(self, batch: dict[str, Any], code: str, message: str) -> None:
        batch["status"] = "failed"
        batch["failed_at"] = batch["created_at"] + int(self.now - batch["_sim"]["born"])
        error = {"code": code, "message": message, "param": None, "line": None}
        batch["errors"] = {"object": "list", "data": [error]}

    def _finish(self, batch: dict[str, Any], status: str) -> None:
        """End a simulated batch: results for what ran, errors for the rest."""
        sim, state = self.sim, batch["_sim"]
        assert sim is not None
        ids = state["ids"]
        ran = ids[: batch["request_counts"]["completed"]] if status != "completed" else ids
        stalled = {c for c in ids if self.runs[c] < sim.stall.get(c, 0)}
        ran = [c for c in ran if c not in stalled]
        batch["status"] = status
        batch[STAMP[status]] = batch["created_at"] + int(self.now - state["born"])
        ok, bad = [], []
        for c in ran:
            flaky = self.runs[c] < sim.flaky.get(c, 0)
            (bad if flaky else ok).append(_server_error(c) if flaky else self._output_line(c))
        for c in ids:
            if c not in ran:
                bad.append(self._error_line(c, f"batch_{status}"))
            self.runs[c] += 1
        counts = batch["request_counts"]
        counts["completed"], counts["failed"] = len(ok), len(bad)
        for kind, result in (("output_file_id", ok), ("error_file_id", bad)):
            batch[kind] = self._result_file(result) if result else None

    def _result_file(self, lines: list[dict[str, Any]]) -> str:
        file_id = self._file_id()
        data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        self.files[file_id] = {"data": data, "purpose": "batch_output"}
        return file_id

    def _enqueued(self) -> int:
        live = ("in_progress", "finalizing")
        return sum(self._tokens(b) for b in self.batches.values() if b["status"] in live)

    def _tokens(self, batch: dict[str, Any]) -> int:
        from jsonl_batch.tokens.counting import TokenCounter, request_tokens

        counter = TokenCounter()
        lines = self.files[batch["input_file_id"]]["data"].splitlines()
        return sum(request_tokens(counter, json.loads(line)) or 0 for line in lines)

    def submitted(self) -> Counter[tuple[str, str]]:
        """How many batches were created per (run, part) metadata tag."""
        return Counter(
            (b["metadata"]["jsonl_batch_run"], b["metadata"]["jsonl_batch_part"])
            for b in self.batches.values()
            if (b.get("metadata") or {}).get("jsonl_batch_part")
        )

    @staticmethod
    def _output_line(custom_id: str) -> dict[str, Any]:
        line = json.loads((EXAMPLES / "output_line.jsonl").read_text())
        line["custom_id"] = custom_id
        line["response"]["body"]["choices"][0]["message"]["content"] = f"answer to {custom_id}"
        return line

    @staticmethod
    def _error_line(custom_id: str, code: str | None) -> dict[str, Any]:
        http, other = (
            json.loads(x) for x in (EXAMPLES / "error_lines.jsonl").read_text().split("\n")[:2]
        )
        line = other if code else http
        line["custom_id"] = custom_id
        if code:
            line["error"]["code"] = code
        return line


def _public(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch as the API shows it (without the simulation's own state)."""
    return {k: v for k, v in batch.items() if k != "_sim"}


def _server_error(custom_id: str) -> dict[str, Any]:
    """A result line of a request that answered HTTP 500."""
    body = {"error": {"message": "The server had an error.", "type": "server_error"}}
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": {"status_code": 500, "request_id": f"req_{custom_id}", "body": body},
        "error": None,
    }


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeOpenAI]:
    """One fake server for the whole session (stopping a server takes up to half a second)."""
    server = FakeOpenAI()
    server.start()
    yield server
    server.stop()


_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "OPENAI_ADMIN_KEY",
    "OPENAI_API_VERSION",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_AD_TOKEN",
)


@pytest.fixture
def fake(fake_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    """The fake server, reset, with the environment pointing the SDK at it."""
    fake_server.reset()
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_server.base_url)
    return fake_server
