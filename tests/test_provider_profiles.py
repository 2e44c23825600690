"""The providers' profiles: their facts, the line shape each one writes and reads, and the
commands (validate, build, split, join, retry) working with each. The fixture files from the
providers' docs and tests are cases in tests/data/validate/cases.json (profile_*.jsonl)."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from helpers import DATA

from jsonl_batch import BatchWriter, get_profile, validate_file
from jsonl_batch.cli import main
from jsonl_batch.rules.profiles import ENDPOINTS, PROFILES, profile_table
from jsonl_batch.rules.requests import Context, read_request, request_line

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
MESSAGES = [{"role": "user", "content": "Hi"}]


def run(*args: str) -> object:
    return CliRunner().invoke(main, list(args))


def lines(data: bytes) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in data.splitlines()]


def test_the_profiles_and_their_sources() -> None:
    assert list(PROFILES) == ["openai", "azure", "vllm", "together", "mistral", "fireworks", "groq"]
    for profile in PROFILES.values():
        assert profile.source, profile.name
        assert set(profile.endpoints) <= set(ENDPOINTS), profile.name
    assert {p.name for p in PROFILES.values() if p.line_shape == "body"} == {
        "together",
        "mistral",
        "fireworks",
    }
    assert "`groq`" in profile_table() and "24h to 7d" in profile_table()


def test_vllm_endpoints_and_rules() -> None:
    vllm = get_profile("vllm")
    fixture = DATA / "validate" / "profile_vllm.jsonl"  # from vLLM's own tests
    urls = {orjson.loads(line)["url"] for line in fixture.read_bytes().splitlines()}
    assert set(vllm.endpoints) == urls - {"/bad_url"}
    assert vllm.empty_file_ok and not vllm.unique_custom_ids and vllm.max_requests is None
    assert validate_file(BytesIO(b""), "vllm").valid
    assert not validate_file(BytesIO(b""), "openai").valid


def test_groq_and_azure() -> None:
    assert get_profile("groq").endpoints == (
        "/v1/chat/completions",
        "/v1/audio/transcriptions",
        "/v1/audio/translations",
    )
    line = {"custom_id": "a", "method": "POST", "url": "/chat/completions"}
    body = {"model": "my-deployment", "messages": MESSAGES}
    report = validate_file(BytesIO(orjson.dumps({**line, "body": body}) + b"\n"), "azure")
    assert report.valid and report.stats.endpoint == "/chat/completions"
    report = validate_file(BytesIO(orjson.dumps({**line, "body": body}) + b"\n"), "openai")
    assert report.flatten() == [[1, "unsupported_endpoint"]]


def test_allowed_parameters_add_to_the_profile() -> None:
    profile = get_profile("openai").replace(allow_params=("a",))
    assert get_profile(profile, allow_params=("b",)).allow_params == ("a", "b")
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "top_k": 3}
    data = orjson.dumps({"custom_id": "a", "method": "POST", "url": CHAT, "body": body}) + b"\n"
    assert validate_file(BytesIO(data)).flatten(["code", "param"]) == [
        ["invalid_body", "body.top_k"]
    ]
    assert validate_file(BytesIO(data), allow_params=("top_k",)).valid
    assert validate_file(BytesIO(data), "vllm").valid  # vLLM takes its own parameters


@pytest.mark.parametrize("name", ["together", "mistral", "fireworks"])
def test_body_shape_lines_are_built_and_their_facts_read(name: str) -> None:
    out = BytesIO()
    with BatchWriter(out, CHAT, profile=name, model="m" if name == "together" else None) as w:
        w.add({"messages": MESSAGES})
    (line,) = lines(out.getvalue())
    assert set(line) == {"custom_id", "body"}
    ctx = Context(get_profile(name), CHAT)
    facts = read_request(line, ctx)
    assert facts[:2] == ("request-1", CHAT)
    assert (facts.custom_id, facts.endpoint) == ("request-1", CHAT)
    assert request_line(get_profile(name), "x", CHAT, {}) == {"custom_id": "x", "body": {}}


def test_a_body_shape_line_with_an_envelope_is_warned_about() -> None:
    line = {"custom_id": "a", "method": "POST", "url": CHAT, "body": {"messages": MESSAGES}}
    report = validate_file(BytesIO(orjson.dumps(line) + b"\n"), "mistral")
    assert report.valid
    assert report.flatten(["code", "param"]) == [
        ["unknown_parameter", "method"],
        ["unknown_parameter", "url"],
    ]


def test_together_custom_ids_at_most_64_characters() -> None:
    line = {"custom_id": "x" * 65, "body": {"model": "m", "messages": MESSAGES}}
    report = validate_file(BytesIO(orjson.dumps(line) + b"\n"), "together")
    assert report.flatten(["code", "param"]) == [["invalid_custom_id", "custom_id"]]
    assert "1 to 64 characters" in report.problems[0].message


def test_cli_build_split_join_retry_with_a_body_shape_profile(tmp_path: Path) -> None:
    source = tmp_path / "q.csv"
    source.write_text("question\nWhat is 2+2?\nName a colour.\nWhy?\n", encoding="utf-8")
    batch = tmp_path / "t.jsonl"
    result = run(
        "build", str(source), "-o", str(batch), "--profile", "together", "--model", "m",
        "--prompt-column", "question",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    built = lines(batch.read_bytes())
    assert [set(line) for line in built] == [{"custom_id", "body"}] * 3

    result = run("validate", str(batch), "--profile", "together")
    assert result.exit_code == 0, result.output
    result = run("validate", str(batch), "--profile", "together", "--endpoint", "/v1/embeddings")
    assert result.exit_code == 2 and "not an endpoint of the together profile" in result.output

    parts = tmp_path / "parts"
    result = run(
        "split", str(batch), "-o", str(parts), "--profile", "together", "--max-requests", "2"
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in parts.iterdir() if p.suffix == ".jsonl") == [
        "t.part-001-of-002.jsonl",
        "t.part-002-of-002.jsonl",
    ]

    answer = {
        "id": "batch_req_1",
        "custom_id": "request-1",
        "response": {
            "status_code": 200,
            "request_id": "r1",
            "body": {
                "object": "chat.completion",
                "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "4"}}],
            },
        },
        "error": None,
    }
    results = tmp_path / "out.jsonl"
    results.write_bytes(orjson.dumps(answer) + b"\n")
    table = tmp_path / "j.jsonl"
    result = run("join", str(batch), "-r", str(results), "-o", str(table))
    assert result.exit_code == 1, result.output  # two requests are missing
    rows = lines(table.read_bytes())
    assert [(r["custom_id"], r["status"]) for r in rows] == [
        ("request-1", "succeeded"),
        ("request-2", "missing"),
        ("request-3", "missing"),
    ]
    retry = tmp_path / "retry.jsonl"
    result = run("retry", str(batch), "-r", str(results), "-o", str(retry), "--profile", "together")
    assert result.exit_code == 0, result.output
    assert retry.read_bytes().splitlines() == batch.read_bytes().splitlines()[1:]


def test_join_and_validation_share_the_request_rule() -> None:
    from jsonl_batch.results import index as indexing
    from jsonl_batch.rules import requests as rules

    assert indexing.not_a_request is rules.not_a_request
    assert rules.not_a_request({"custom_id": "a", "body": {}}) is None  # {custom_id, body}
    assert rules.not_a_request({"custom_id": "a", "url": CHAT}) is None
    assert rules.not_a_request({"custom_id": "a", "response": {}}) is not None  # a result


def test_a_body_shape_file_with_a_line_not_an_object_is_counted_without_a_crash() -> None:
    """The token count read lines through the request core: a ``[1]`` line of a
    ``{custom_id, body}`` profile crashed it (``list.get``)."""
    line = {"custom_id": "a", "body": {"model": "m", "messages": MESSAGES}}
    data = b"[1]\n" + orjson.dumps(line) + b"\n"
    report = validate_file(BytesIO(data), "together", count_tokens=True, workers=1)
    assert report.flatten() == [[1, "invalid_type"]]
    assert report.stats.requests == 1 and report.stats.input_tokens is not None


def _embeddings_file(tmp_path: Path, n: int = 3) -> Path:
    """A Mistral embeddings batch: ``{custom_id, body}`` lines, the endpoint not named."""
    batch = tmp_path / "emb.jsonl"
    batch.write_bytes(
        b"".join(
            orjson.dumps({"custom_id": f"e-{i}", "body": {"input": [f"text {i}"]}}) + b"\n"
            for i in range(n)
        )
    )
    return batch


def test_split_and_retry_take_the_endpoint_of_body_lines(tmp_path: Path) -> None:
    from jsonl_batch import split_file, write_retry

    batch = _embeddings_file(tmp_path)
    guessed = split_file(batch, tmp_path / "chat", "mistral", max_requests=2)
    assert guessed.manifest is None  # read as chat requests: no messages
    assert {p.param for p in guessed.report.problems} == {"body.messages"}
    split = split_file(batch, tmp_path / "emb", "mistral", max_requests=2, endpoint=EMBEDDINGS)
    assert split.manifest is not None
    assert [(p.requests, p.endpoint) for p in split.manifest.parts] == [
        (2, EMBEDDINGS),
        (1, EMBEDDINGS),
    ]
    retry = write_retry(
        [batch], [], tmp_path / "retry.jsonl", profile="mistral", endpoint=EMBEDDINGS
    )
    assert retry.ok and retry.requests == 3
    assert (tmp_path / "retry.jsonl").read_bytes() == batch.read_bytes()
    with pytest.raises(ValueError, match="not an endpoint of the mistral profile"):
        write_retry([batch], [], tmp_path / "r2.jsonl", profile="mistral", endpoint="/v1/x")
    assert not (tmp_path / "r2.jsonl").exists()
    with pytest.raises(ValueError, match="not an endpoint of the mistral profile"):
        split_file(batch, tmp_path / "x", "mistral", endpoint="/v1/x")


def test_cli_split_and_retry_with_endpoint(tmp_path: Path) -> None:
    batch = _embeddings_file(tmp_path)
    parts = tmp_path / "parts"
    args = ("--profile", "mistral", "--max-requests", "2")
    result = run("split", str(batch), "-o", str(parts), *args)
    assert result.exit_code == 1 and "body.messages" in result.output
    result = run("split", str(batch), "-o", str(parts), *args, "--endpoint", EMBEDDINGS)
    assert result.exit_code == 0, result.output
    manifest = orjson.loads((parts / "emb.manifest.json").read_bytes())
    assert {p["endpoint"] for p in manifest["parts"]} == {EMBEDDINGS}
    result = run("split", str(batch), "-o", str(tmp_path / "x"), *args, "--endpoint", "/v1/x")
    assert result.exit_code == 2 and "not an endpoint of the mistral profile" in result.output

    empty = tmp_path / "none.jsonl"
    empty.write_bytes(b"")
    retry = tmp_path / "retry.jsonl"
    base = ("retry", str(batch), "-r", str(empty), "-o", str(retry), "--profile", "mistral")
    result = run(*base)
    assert result.exit_code == 1 and "body.messages" in result.output  # read as chat
    result = run(*base, "--endpoint", EMBEDDINGS, "--force")
    assert result.exit_code == 0, result.output
    assert retry.read_bytes() == batch.read_bytes()
