"""Every result shape real servers write, in join and retry (sources: tests/data/README.md),
blank lines in inputs and results, and gzip / zstd files."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest
import zstandard
from click.testing import CliRunner
from helpers import DATA, jsonl, request

from jsonl_batch import join, validate_file
from jsonl_batch.cli import main
from jsonl_batch.results.retry import write_retry
from jsonl_batch.tokens.stats import file_stats

S = DATA / "shapes"
RESULTS = [S / "vllm_run_batch.jsonl", S / "vllm_legacy.jsonl", S / "llama_stack.jsonl"]


def by_id(result: Any) -> dict[str, dict[str, Any]]:
    return {r["custom_id"]: r for r in result.table.to_pylist()}


def test_each_server_shape_is_a_result() -> None:
    result = join([S / "requests.jsonl"], RESULTS, include_bodies=True)
    rows = by_id(result)
    statuses = [r["status"] for r in rows.values()]
    assert statuses == ["failed", "failed", "succeeded", "succeeded", "failed"]
    string = rows["vllm-string"]  # vLLM: "error" a string, status 400, body null
    assert (string["status_code"], string["error_code"]) == (400, "http_400")
    assert string["error_message"].startswith("URL /v1/completions was used")
    wrapped = rows["vllm-error-response"]  # vLLM's ErrorResponse: the error inside "error"
    assert wrapped["error_code"] == "BadRequestError"
    assert wrapped["error_message"].startswith("This model's maximum context length")
    legacy = rows["vllm-legacy"]  # vLLM before 0.5: "response" is the completion
    assert legacy["content"] == "Hello! How can I help?"
    assert (legacy["status_code"], legacy["prompt_tokens"], legacy["finish_reason"]) == (
        None,
        12,
        "stop",
    )
    assert orjson.loads(legacy["response_body"])["object"] == "chat.completion"
    text = rows["llama-body-text"]  # llama-stack: "body" is JSON text
    assert (text["content"], text["total_tokens"], text["model"]) == ("Four.", 12, "llama3.2:3b")
    error = rows["llama-error"]  # llama-stack: an error with only type and message
    assert (error["error_code"], error["error_message"]) == (
        "request_failed",
        "Model 'nope' not found",
    )


def test_blank_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    result = join([S / "requests.jsonl"], RESULTS)
    s = result.summary
    assert s.requests == 5 and s.invalid_lines == 2  # a trailing blank line in each
    blank = [(a.file, a.line) for a in s.anomalies]
    assert blank == [(str(S / "requests.jsonl"), 6), (str(S / "llama_stack.jsonl"), 3)]
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(b"\n" + jsonl(request("a")) + b"  \r\n" + jsonl(request("b")) + b"\n")
    out = tmp_path / "out.jsonl"
    out.write_bytes(jsonl({"custom_id": "a", "response": {"status_code": 200, "body": {}}}))
    table = join([inp], [out]).table
    assert table.column("line").to_pylist() == [2, 4]
    result = CliRunner().invoke(
        main, ["join", str(inp), "-r", str(out), "-o", str(tmp_path / "t.csv")]
    )
    assert result.exit_code == 1, result.output  # b is missing: never exit 2
    assert "lines that are not results (3)" in result.output


def test_retry_keeps_the_failed_shapes(tmp_path: Path) -> None:
    target = tmp_path / "retry.jsonl"
    result = write_retry([S / "requests.jsonl"], RESULTS, target)
    assert result.requests == 3
    kept = [orjson.loads(line)["custom_id"] for line in target.read_bytes().splitlines()]
    assert kept == ["vllm-string", "vllm-error-response", "llama-error"]


def compress(path: Path, kind: str, folder: Path) -> Path:
    data = path.read_bytes()
    packer = gzip.compress if kind == "gz" else zstandard.ZstdCompressor().compress
    packed = packer(data)
    target = folder / f"{path.name}.{kind}"
    target.write_bytes(packed)
    return target


@pytest.mark.parametrize("kind", ["gz", "zst"])
def test_compressed_files_read_as_their_contents(tmp_path: Path, kind: str) -> None:
    J = DATA / "join"
    plain_in = J / "chat.input.jsonl"
    plain_out = [J / "chat.output.jsonl", J / "chat.errors.jsonl"]
    packed_in = compress(plain_in, kind, tmp_path)
    packed_out = [compress(p, kind, tmp_path) for p in plain_out]
    expected, found = join([plain_in], plain_out), join([packed_in], packed_out)
    assert found.table.drop_columns(["input_file"]).equals(
        expected.table.drop_columns(["input_file"])
    )
    assert validate_file(packed_in).to_dict()["stats"] == validate_file(plain_in).to_dict()["stats"]
    assert file_stats(packed_in).total.to_dict() == file_stats(plain_in).total.to_dict()
    target = tmp_path / "retry.jsonl"
    assert write_retry([packed_in], packed_out, target).requests == 5
    runner = CliRunner()
    result = runner.invoke(main, ["split", str(packed_in), "--max-requests", "2"])
    assert result.exit_code == 2 and "decompress it first" in result.output


def test_corrupt_compressed_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(gzip.compress(jsonl(request("a")) * 50)[:40])
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "not valid gzip data" in result.output and "Traceback" not in result.output
