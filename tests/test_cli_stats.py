"""``jsonl-batch stats`` and ``file_stats``: shapes, totals, parity, workers, errors."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from helpers import NO_COUNTER, ROOT, jsonl, request, without_token_counter

from jsonl_batch.cli import main
from jsonl_batch.tokens import stats as stats_module
from jsonl_batch.tokens.stats import file_stats, summarize

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


def test_missing_token_counter_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    without_token_counter(monkeypatch)
    result = run(CHAT_SAMPLE)
    assert result.exit_code == 2
    assert result.output == NO_COUNTER


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


# -- errors are printed once; nothing read, no total -------------------------------------------


def test_an_unreadable_file_is_reported_once(tmp_path: Path) -> None:
    result = run(str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2
    assert result.stderr == f"Error: {tmp_path / 'nope.jsonl'}: no such file\n"
    assert result.stdout == ""  # no "cannot read" line, no price footer for nothing


def test_total_only_of_the_files_that_were_read(tmp_path: Path) -> None:
    result = run(CHAT_SAMPLE, str(tmp_path / "nope.jsonl"), str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"Error: {tmp_path / 'nope.jsonl'}: no such file",
        f"Error: {tmp_path}: is a directory, not a file",
    ]
    assert "nope.jsonl" not in result.stdout and "total of" not in result.stdout
    assert result.stdout.startswith(f"{CHAT_SAMPLE}: 4 requests")
    both = run(CHAT_SAMPLE, str(tmp_path / "nope.jsonl"), EMBEDDINGS_SAMPLE)
    assert "total of 2 files: 7 requests;" in both.stdout


def test_progress_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from jsonl_batch.cli import stats as cli_stats

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    size = Path(CHAT_SAMPLE).stat().st_size
    assert cli_stats._size(CHAT_SAMPLE) == size and cli_stats._size("no-such-file") == 0
    with cli_stats._progress_bar((CHAT_SAMPLE, "no-such-file")) as progress:
        assert progress is not None
        progress(-(-size // 2))  # half, rounded up
        progress(size // 2)
    drawn = terminal.getvalue()
    assert drawn.startswith("\rCounting tokens [###############---------------]  50%\x1b[K")
    assert drawn.endswith("\rCounting tokens [##############################] 100%\x1b[K\n")


def test_size_of_a_fifo_does_not_block(tmp_path: Path) -> None:
    from jsonl_batch.cli import stats as cli_stats

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert cli_stats._size(str(fifo)) == 0


# -- no traceback: deep bodies and malformed files ---------------------------------------------


def deep_line(depth: int, where: str) -> bytes:
    """A request line nested ``depth`` levels deep (orjson reads up to 1024) in ``where``."""
    inner = depth - 6
    if where == "messages":
        messages = "[" * inner + '{"role":"user","content":"hi"}' + "]" * inner
    elif where == "content":
        messages = '[{"role":"user","content":' + "[" * inner + '"x"' + "]" * inner + "}]"
    else:  # tools: parameters nested through properties
        half = inner // 2 - 4
        props = '{"p":{"type":"object","properties":' * half + "{}" + "}}" * half
        messages = (
            '[],"tools":[{"type":"function","function":{"name":"f","parameters":'
            f'{{"type":"object","properties":{props}}}}}}}]'
        )
    line = (
        '{"custom_id":"deep","method":"POST","url":"/v1/chat/completions",'
        f'"body":{{"model":"gpt-4o","messages":{messages}}}}}'
    ).encode()
    orjson.loads(line)  # a line orjson reads: the depth is legal
    return line + b"\n"


@pytest.mark.parametrize("where", ["messages", "content", "tools"])
@pytest.mark.parametrize("depth", [300, 600, 1000])
def test_deep_bodies_are_counted(write: Any, depth: int, where: str) -> None:
    path = write(deep_line(depth, where) + jsonl(request("b")))
    for fmt in ("text", "json"):
        result = run(str(path), "--format", fmt)
        assert result.exit_code == 0, result.output
        assert "internal error" not in result.output and "Usage:" not in result.output
    assert orjson.loads(result.stdout)["files"][0]["requests"] == 2


MALFORMED = {
    "invalid UTF-8": b'{"custom_id":"\xff\xfe"}\n',
    "BOM": b"\xef\xbb\xbf" + jsonl(request("bom")),
    "blank lines": b"\n\r\n   \n",
    "not objects": b'[1, 2]\n"text"\n3\nnull\n',
    "too deep": b"[" * 1025 + b"]" * 1025 + b"\n",
    "huge line": jsonl(request("huge", messages=[{"role": "user", "content": "x " * 2_000_000}])),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_files_are_skipped_lines_not_errors(write: Any, name: str) -> None:
    path = write(MALFORMED[name] + jsonl(request("ok")))
    result = run(str(path), "--format", "json")
    assert result.exit_code == 0, result.output
    assert "internal error" not in result.output and "Usage:" not in result.output
    found = orjson.loads(result.stdout)["files"][0]
    huge = name == "huge line"
    assert (found["requests"], found["skipped_lines"] > 0) == (2 if huge else 1, not huge)
    text = run(str(path))
    assert text.exit_code == 0 and "Traceback" not in text.output
