"""``jsonl-batch stats`` and ``file_stats``: shapes, totals, parity, workers, errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from helpers import ROOT, jsonl, request

from jsonl_batch import encodings
from jsonl_batch import stats as stats_module
from jsonl_batch.cli import main
from jsonl_batch.stats import file_stats, summarize

CHAT_SAMPLE = str(ROOT / "samples" / "chat.jsonl")
EMBEDDINGS_SAMPLE = str(ROOT / "samples" / "embeddings.jsonl")


def run(*args: str, stdin: bytes | None = None) -> Any:
    return CliRunner().invoke(main, ["stats", *args], input=stdin)


def test_text_report_of_one_file() -> None:
    result = run(CHAT_SAMPLE)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].endswith("chat.jsonl: 4 requests; /v1/chat/completions; gpt-4o-mini")
    assert lines[1].split() == [
        "input", "tokens", "2,918", "(per", "request:", "mean", "729.5,", "p50", "22,",
        "p95", "2,855,", "max", "2,855)",
    ]  # fmt: skip
    assert lines[2].split() == ["output", "ceiling", "200"]
    assert lines[3] == "  batch cost      $0.0002 input + up to <$0.0001 output = up to $0.0003"
    assert "Requests without an output limit" in lines[4] and lines[4].endswith(": 2.")
    assert lines[-1].startswith("Estimates: tokens counted with tiktoken; batch prices = ")
    assert "as of 2025-08 x 0.5 (https://" in lines[-1]


def test_several_files_get_a_total() -> None:
    result = run(CHAT_SAMPLE, EMBEDDINGS_SAMPLE)
    assert result.exit_code == 0, result.output
    assert "total of 2 files: 7 requests;" in result.output
    assert "embedding inputs             5" in result.output


def test_json_is_the_library_result() -> None:
    result = run(CHAT_SAMPLE, EMBEDDINGS_SAMPLE, "--format", "json")
    assert result.exit_code == 0, result.output
    expected = file_stats(CHAT_SAMPLE, EMBEDDINGS_SAMPLE).to_dict()
    assert orjson.loads(result.output) == orjson.loads(orjson.dumps(expected))
    assert expected["estimate"] is True and expected["prices"]["as_of"] == "2025-08"
    chat, embeddings = expected["files"]
    assert chat["images"] == {"count": 1, "unsized": 0}  # detail low: its size does not matter
    assert (embeddings["embedding_inputs"], embeddings["output_ceiling"]["sum"]) == (5, 0)
    assert expected["total"]["requests"] == 7


def test_stdin_and_skipped_lines() -> None:
    data = jsonl(request("a"), [1, 2], request("b", max_tokens=5)) + b"not json\n"
    result = run("-", "--format", "json", stdin=data)
    assert result.exit_code == 0, result.output
    [found] = orjson.loads(result.output)["files"]
    assert (found["file"], found["lines"], found["requests"], found["skipped_lines"]) == (
        "<stdin>",
        4,
        2,
        2,
    )
    assert found["output_ceiling"] == {"sum": 5, "requests_without": 1}
    assert found["notes"][0] == (
        "Lines skipped, not request objects (jsonl-batch validate says why): 2."
    )


def test_prices_option(tmp_path: Path) -> None:
    prices = tmp_path / "p.json"
    prices.write_bytes(orjson.dumps({"as_of": "2031-01", "models": {"gpt-4o-mini": {"input": 2}}}))
    result = run(CHAT_SAMPLE, "--prices", str(prices), "--format", "json")
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.output)
    assert data["prices"]["file"] == str(prices) and data["prices"]["as_of"] == "2031-01"
    cost = data["files"][0]["cost"]
    assert cost["input"] == pytest.approx(2918 * 1.0 / 1e6)
    assert cost["output_ceiling"] is None and cost["unpriced_models"] == ["gpt-4o-mini"]


def test_bad_prices_file_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "p.json"
    bad.write_text("{}")
    result = run(CHAT_SAMPLE, "--prices", str(bad))
    assert result.exit_code == 2
    assert (
        result.output.strip().startswith("Error: price table") and "Traceback" not in result.output
    )


def test_missing_file_is_reported_and_exits_2(tmp_path: Path) -> None:
    result = run(CHAT_SAMPLE, str(tmp_path / "missing.jsonl"))
    assert result.exit_code == 2
    assert "missing.jsonl: no such file" in result.output
    assert "chat.jsonl: 4 requests" in result.output


def test_missing_tiktoken_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tiktoken", None)
    monkeypatch.setattr(encodings, "_ENCODINGS", {})
    result = run(CHAT_SAMPLE)
    assert result.exit_code == 2
    assert result.output.strip() == (
        "Error: token counting needs tiktoken: pip install 'jsonl-batch[tokens]'"
    )


def test_workers_give_the_same_result(
    write: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    models = ["gpt-4o-mini", "gpt-4o", "mystery"]
    lines = [
        request(f"r-{i}", model=models[i % 3], max_tokens=i, messages=[
            {"role": "user", "content": "word " * (i % 50)}
        ])
        for i in range(600)
    ]  # fmt: skip
    path = write(lines)
    monkeypatch.setattr(stats_module, "PARALLEL_MIN_BYTES", 1)
    monkeypatch.setattr(stats_module, "CHUNK_BYTES", 4096)
    seen: list[int] = []
    parallel = file_stats(path, workers=2, progress=seen.append).to_dict()
    assert len(seen) > 2 and sum(seen) == path.stat().st_size
    sequential = file_stats(path, workers=1).to_dict()
    assert parallel == sequential
    assert parallel["total"]["requests"] == 600


def test_summarize_uses_nearest_rank_percentiles() -> None:
    from array import array

    assert summarize(array("q", range(1, 101))) == {
        "sum": 5050,
        "mean": 50.5,
        "p50": 50,
        "p95": 95,
        "max": 100,
    }
    assert summarize(array("q", [7])) == {"sum": 7, "mean": 7.0, "p50": 7, "p95": 7, "max": 7}
    assert summarize(array("q"))["mean"] is None
