"""A server is trusted with nothing: the API layer against the misbehaving ``hostile`` server
(ids that would leave their folder, keys echoed back, bodies cut short, pages repeated
forever, HTML instead of JSON), through the real SDK, in the library and the CLI."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result
from hostile_openai import (
    KEY,
    Hostile,
    batch,
    body,
    file_object,
    html,
    json_answer,
    page,
    reset,
    results,
    serve_file,
    stall,
    text,
)

from jsonl_batch.api import batches as api
from jsonl_batch.api import client as api_client
from jsonl_batch.api import downloads as downloading
from jsonl_batch.cli import main


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """No pause between the tries of a download, nor between polls."""
    monkeypatch.setattr(downloading, "PAUSE", 0.0)
    monkeypatch.setattr(api, "MIN_INTERVAL", 0.0)


def run(*args: str) -> Result:
    result = CliRunner().invoke(main, ["batches", *args, "--max-retries", "0"])
    assert "Traceback" not in result.output and "internal error" not in result.output
    return result


def failed(result: Result, message: str) -> None:
    """Exit 2 with one line on stderr holding ``message``, nothing on stdout."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr, result.stderr


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# -- ids from a server never leave their folder ----------------------------------------------


HOSTILE_IDS = ["../escaped", "../../escaped", "a/b", "a\x00b", "a\\b", "..", "x" * 129, ""]


@pytest.mark.parametrize("bad", [*HOSTILE_IDS, "ABSOLUTE"])
def test_a_batch_id_that_is_not_plain_names_no_file(
    hostile: Hostile, tmp_path: Path, bad: str
) -> None:
    victim = tmp_path / "victim.output.jsonl"
    victim.write_text("mine")
    if bad == "ABSOLUTE":
        bad = str(tmp_path / "victim")
    out = tmp_path / "deep" / "out"
    hostile.on("GET", "/batches/batch_1", json_answer(batch(bad)))
    serve_file(hostile, "file-out", results(3))
    result = run("download", "batch_1", "-o", str(out), "--force")
    failed(result, "cannot name a file")
    assert files_under(tmp_path) == ["victim.output.jsonl"] and victim.read_text() == "mine"
    assert ("GET", "/v1/files/file-out/content") not in hostile.calls


@pytest.mark.parametrize("bad", ["../../files", "file-1/../../x", "file-1?x=1", "file 1"])
def test_a_file_id_that_is_not_plain_is_never_asked_for(
    hostile: Hostile, tmp_path: Path, bad: str
) -> None:
    hostile.on("GET", "/batches/batch_1", json_answer(batch(error_file_id=bad)))
    serve_file(hostile, "file-out", results(3))
    failed(run("download", "batch_1", "-o", str(tmp_path)), "the error_file_id")
    assert files_under(tmp_path) == []
    assert [c for c in hostile.calls if "/files" in c[1]] == []


def test_a_batch_object_given_to_download_is_checked_too(hostile: Hostile, tmp_path: Path) -> None:
    """``batches run`` hands ``download_results`` the batch it polled, not an id."""
    serve_file(hostile, "file-out", results(3))
    with pytest.raises(api.ApiError, match="cannot name a file"):
        api.download_results(api.make_client(), batch("../escaped"), tmp_path / "out")
    assert files_under(tmp_path) == [] and hostile.calls == []


def test_a_base_url_the_http_library_refuses_is_one_line(hostile: Hostile) -> None:
    failed(run("list", "--base-url", "http://[::1"), "cannot make the API client: ")


def test_result_paths_check_the_id(tmp_path: Path) -> None:
    assert api.result_paths("batch_A-1", tmp_path)[0] == tmp_path / "batch_A-1.output.jsonl"
    for bad in HOSTILE_IDS:
        with pytest.raises(api.ApiError, match="cannot name a file"):
            api.result_paths(bad, tmp_path)


# -- the key is never shown ------------------------------------------------------------------


@pytest.mark.parametrize("key", [f"{KEY}\r", f"{KEY}\n", f"{KEY}\r\n", f" {KEY}", f"\t{KEY} "])
def test_a_key_with_spaces_around_it_is_refused_unsent(
    hostile: Hostile, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", key)
    hostile.on("GET", "/batches/batch_1", json_answer(batch()))
    result = run("get", "batch_1")
    failed(result, "the API key in OPENAI_API_KEY has spaces or a line break around it")
    assert "SECRET" not in result.output and hostile.calls == []


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("OPENAI_API_KEY", "sk-clé-0123456789"),
        ("OPENAI_API_KEY", "sk-a\x01b"),
        ("OPENAI_ORG_ID", "org-é"),
    ],
)
def test_a_header_value_http_cannot_carry_is_one_line(
    hostile: Hostile, monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    result = run("list")
    failed(result, f"in {var} holds characters a request header cannot carry")
    assert value not in result.output and hostile.calls == []


LONG_KEY = "0123456789abcdefKEY"  # no sk- prefix: only its value can find it
SHORT_KEY = "k3y"


@pytest.mark.parametrize("key", [LONG_KEY, SHORT_KEY, "EMPTY"])
def test_every_form_of_the_key_is_redacted(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", key + "\r")
    forms = [
        f"Illegal header value b'Bearer {key}\\r'",  # a bytes repr, as h11 says it
        f"header {key!r} and {(key + chr(13))!r}",  # Python's repr, escaped
        f"json {orjson.dumps(key + chr(13)).decode()}",
        f"url ?key={key}%0D and ?key={key}",
        f"raw {key}\r end",
    ]
    for form in forms:
        assert key not in api_client.redact(form), form
    keep = "HTTP 401 for ok3y and EMPTYING and k3yboard"  # a short key inside a word stays
    assert api_client.redact(keep) == keep


@pytest.mark.parametrize("key", [KEY, SHORT_KEY, LONG_KEY])
@pytest.mark.parametrize("fmt", ["table", "json", "jsonl"])
def test_a_key_the_server_echoes_in_a_batch_is_never_shown(
    hostile: Hostile, monkeypatch: pytest.MonkeyPatch, key: str, fmt: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", key)

    def echo(h: Any) -> dict[str, Any]:
        errors = {"data": [{"code": "x", "line": 1, "message": f"bad {h.key}", "param": h.key}]}
        return batch(metadata={"key": h.key, h.key: "v"}, errors=errors, status="failed")

    hostile.on("GET", "/batches/batch_1", json_answer(echo))
    hostile.on("GET", "/batches", json_answer(lambda h: {**page([], False), "data": [echo(h)]}))
    for args in (["get", "batch_1"], ["list"], ["wait", "batch_1", "--interval", "0"]):
        result = run(*args, "--format", fmt) if args[0] != "wait" else run(*args)
        assert result.exit_code in (0, 1), result.output
        assert "***" in result.stdout
        assert key not in result.output.replace("k3yboard", ""), args
    assert key not in str(api.get_batch(api.make_client(), "batch_1"))


def test_a_key_the_server_echoes_in_an_error_is_never_shown(
    hostile: Hostile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SHORT_KEY)
    hostile.on("GET", "/batches", json_answer(lambda h: {"error": {"message": h.key}}, 401))
    result = run("list")
    failed(result, "authentication failed (HTTP 401): ***")
    assert SHORT_KEY not in result.output


def test_a_bug_whose_message_holds_the_key_does_not_show_it(
    hostile: Hostile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", LONG_KEY)

    def bug(*args: object) -> None:
        raise RuntimeError(f"Bearer {LONG_KEY!r}")

    monkeypatch.setattr(api, "get_batch", bug)
    result = CliRunner().invoke(main, ["batches", "get", "batch_1"])
    assert result.exit_code == 2 and "internal error (RuntimeError: Bearer '***')" in result.stderr
    assert LONG_KEY not in result.output


# -- downloads are whole or absent -----------------------------------------------------------


DATA = results(40)
CUTS = {
    "closed, no length": body(DATA, sent=1000, length=-1),
    "length lies": body(DATA, sent=1000),
    "reset mid-body": reset(DATA, 1000),
    "longer than said": body(DATA + DATA[:50], length=-1),
}


@pytest.mark.parametrize("cut", CUTS)
def test_a_broken_download_is_tried_again_then_fails_leaving_nothing(
    hostile: Hostile, tmp_path: Path, cut: str
) -> None:
    hostile.on("GET", "/batches/batch_1", json_answer(batch()))
    serve_file(hostile, "file-out", DATA, CUTS[cut])
    result = run("download", "batch_1", "-o", str(tmp_path))
    failed(result, "cannot download file-out: ")
    assert files_under(tmp_path) == []
    if "cannot connect" in result.stderr:  # the reset came before the headers were read
        assert cut == "reset mid-body"
        return
    assert "(3 tries)" in result.stderr
    assert hostile.calls.count(("GET", "/v1/files/file-out/content")) == downloading.ATTEMPTS


def test_a_stalled_download_times_out_and_is_tried_again(hostile: Hostile, tmp_path: Path) -> None:
    hostile.on("GET", "/batches/batch_1", json_answer(batch()))
    serve_file(hostile, "file-out", DATA, stall(DATA, 500, 1.0), body(DATA))
    args = ["download", "batch_1", "-o", str(tmp_path), "--request-timeout", "0.3"]
    assert run(*args).exit_code == 0
    assert (tmp_path / "batch_1.output.jsonl").read_bytes() == DATA


def test_a_download_cut_once_is_whole_on_the_next_try(hostile: Hostile, tmp_path: Path) -> None:
    hostile.on("GET", "/batches/batch_1", json_answer(batch()))
    serve_file(hostile, "file-out", DATA, body(DATA, sent=1000, length=-1), body(DATA))
    got = api.download_results(api.make_client(max_retries=0), "batch_1", tmp_path)
    assert got.output is not None and got.output.read_bytes() == DATA
    assert files_under(tmp_path) == ["batch_1.output.jsonl"]


def test_without_a_size_the_last_line_must_be_whole(hostile: Hostile, tmp_path: Path) -> None:
    """A server whose File objects say no ``bytes``: a body ending mid-line is still cut."""
    hostile.on("GET", "/batches/batch_1", json_answer(batch(error_file_id="file-err")))
    hostile.on("GET", "/files/file-out", json_answer(file_object("file-out", None)))
    hostile.on("GET", "/files/file-out/content", body(DATA, sent=len(DATA) - 7, length=-1))
    hostile.on("GET", "/files/file-err", json_answer({"error": {"message": "nope"}}, 404))
    hostile.on("GET", "/files/file-err/content", body(b'{"id": "unterminated"}'))
    with pytest.raises(api.ApiError, match=r"file-out: the body ended inside a line after"):
        api.download_results(api.make_client(max_retries=0), "batch_1", tmp_path)
    hostile.on("GET", "/files/file-out/content", body(DATA))
    hostile.server.routes.insert(0, hostile.server.routes.pop())  # the whole body first
    got = api.download_results(api.make_client(max_retries=0), "batch_1", tmp_path, force=True)
    assert got.errors is not None and got.errors.read_bytes() == b'{"id": "unterminated"}'


def test_a_declared_length_spares_the_file_object(hostile: Hostile, tmp_path: Path) -> None:
    """With a ``Content-Length`` the size is checked against it: no ``GET /files/{id}``;
    a body ended by closing the connection is checked against the File object's size."""
    hostile.on("GET", "/batches/batch_1", json_answer(batch(error_file_id="file-err")))
    serve_file(hostile, "file-out", DATA)
    serve_file(hostile, "file-err", DATA, body(DATA, length=-1))
    got = api.download_results(api.make_client(max_retries=0), "batch_1", tmp_path)
    assert got.output is not None and got.output.read_bytes() == DATA
    assert got.errors is not None and got.errors.read_bytes() == DATA
    asked = [c for c in hostile.calls if c[1].startswith("/v1/files/")]
    assert asked == [
        ("GET", "/v1/files/file-out/content"),
        ("GET", "/v1/files/file-err/content"),
        ("GET", "/v1/files/file-err"),
    ]


def test_the_declared_length_of_a_body_sent_as_is() -> None:
    from types import SimpleNamespace

    def declared(**headers: str) -> int | None:  # the HTTP library's headers, lower-cased
        return downloading.declared_size(SimpleNamespace(headers=headers))

    assert declared(**{"content-length": "12"}) == 12
    assert declared(**{"transfer-encoding": "chunked"}) is None
    assert declared(**{"content-length": "12", "content-encoding": "gzip"}) is None  # decoded
    assert declared(**{"content-length": "12", "content-encoding": "identity"}) == 12
    assert declared(**{"content-length": "-1"}) is None


# -- lists end, polls pause ------------------------------------------------------------------


def test_list_all_stops_when_the_server_repeats_a_page(hostile: Hostile) -> None:
    hostile.on("GET", "/batches", json_answer(page(["batch_1", "batch_2"], True)))
    failed(run("list", "--all", "--limit", "2"), "the server sent a page it had sent before")
    assert len(hostile.calls) == 2


def test_list_all_stops_on_a_cycle_of_pages(hostile: Hostile) -> None:
    a, b = page(["batch_1", "batch_2"], True), page(["batch_3"], True)
    hostile.on("GET", "/batches", *[json_answer(p) for p in (a, b, a, b, a)])
    with pytest.raises(api.ApiError, match="sent before"):
        api.list_batches(api.make_client(), all=True)
    assert len(hostile.calls) == 3


def test_overlapping_pages_give_each_batch_once(hostile: Hostile) -> None:
    first, second = page(["batch_1", "batch_2"], True), page(["batch_2", "batch_3"], False)
    hostile.on("GET", "/batches", json_answer(first), json_answer(second))
    got = api.list_batches(api.make_client(), all=True)
    assert [b["id"] for b in got.data] == ["batch_1", "batch_2", "batch_3"]


def test_wait_never_polls_faster_than_the_floor(
    hostile: Hostile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "MIN_INTERVAL", 1.0)
    running = json_answer(batch(status="in_progress"))
    hostile.on("GET", "/batches/batch_1", running, running, running, json_answer(batch()))
    pauses: list[float] = []
    done = api.wait_for_batch(api.make_client(), "batch_1", interval=0, sleep=pauses.append)
    assert done["status"] == "completed"
    assert len(pauses) == 3 and min(pauses) >= 1.0


# -- ordinary faults are ordinary errors -----------------------------------------------------


ANSWERS = {
    "html": (html(), "answered an HTML page, not JSON; check the API's base URL"),
    "html 404": (html(404), "not found (HTTP 404); http://127.0.0.1:"),
    "text": (text(b"hello"), "answered text/plain (5 bytes), not JSON"),
    "empty": (text(b"", "application/json"), "answered nothing, not JSON"),
    "array": (json_answer([1, 2]), "answered JSON that is not an object"),
    "no status": (json_answer({"id": "batch_1"}), "batch is malformed (status: missing)"),
    "counts": (
        json_answer(batch(request_counts="many")),
        "batch is malformed (request_counts: str, not an object)",
    ),
    "errors": (json_answer(batch(errors={"data": ["x"]})), "batch is malformed (errors.data)"),
    "id": (json_answer(batch(7)), "batch is malformed (id: int, not a string)"),
}


@pytest.mark.parametrize("kind", ANSWERS)
@pytest.mark.parametrize("command", ["get", "download", "wait", "cancel"])
def test_a_wrong_answer_is_one_line_and_exit_2(
    hostile: Hostile, tmp_path: Path, kind: str, command: str
) -> None:
    answer, message = ANSWERS[kind]
    method = "POST" if command == "cancel" else "GET"
    hostile.on(method, r"/batches/batch_1(/cancel)?", answer)
    args = ["-o", str(tmp_path)] if command == "download" else []
    failed(run(command, "batch_1", *args), message)
    if "http" in message or "JSON" in message:
        assert "/v1/batches/batch_1" in run(command, "batch_1", *args).stderr


@pytest.mark.parametrize("kind", ["html", "text", "array"])
def test_a_wrong_list_answer_is_one_line(hostile: Hostile, kind: str) -> None:
    hostile.on("GET", "/batches", ANSWERS[kind][0])
    failed(run("list"), ANSWERS[kind][1])
    failed(run("list", "--all"), "/v1/batches?limit=")
    hostile.on("GET", "/files", ANSWERS[kind][0])
    with pytest.raises(api.ApiError, match="cannot list files: "):
        list(api.iter_files(api.make_client()))


# -- Ctrl-C while the SDK loads --------------------------------------------------------------


def test_ctrl_c_during_the_sdk_import_stays_an_interrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python wraps an exception raised while a class is made (``__set_name__``) in a
    ``RuntimeError``: an interrupt there must not become an error of ours."""
    package = tmp_path / "openai"
    package.mkdir()
    (package / "__init__.py").write_text(
        "class Lazy:\n"
        "    def __set_name__(self, owner, name):\n"
        "        raise KeyboardInterrupt\n"
        "class Namespace:\n"
        "    data = Lazy()\n"
    )
    for name in [n for n in sys.modules if n == "openai" or n.startswith("openai.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        api_client.load_sdk()
    (package / "__init__.py").write_text("import openai_part_that_is_missing\n")
    with pytest.raises(api.MissingSdk, match="install it with"):
        api_client.load_sdk()


@pytest.mark.parametrize(
    ("upload", "create", "message"),
    [
        (html(), None, "cannot upload requests.jsonl: http://127.0.0.1:"),
        (json_answer({"object": "file"}), None, "file object is malformed (id: missing)"),
        (json_answer(file_object("file-1", 10)), text(b"ok"), "cannot create the batch: "),
        (json_answer(file_object("file-1", 10)), json_answer({"id": "b"}), "(status: missing)"),
    ],
)
def test_create_with_a_wrong_answer_is_one_line(
    hostile: Hostile, tmp_path: Path, upload: Any, create: Any, message: str
) -> None:
    path = tmp_path / "requests.jsonl"
    line = {"custom_id": "r-1", "method": "POST", "url": "/v1/chat/completions"}
    line["body"] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
    path.write_bytes(orjson.dumps(line) + b"\n")
    hostile.on("POST", "/files", upload)
    if create:
        hostile.on("POST", "/batches", create)
    failed(run("create", str(path)), message)
