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
    assert lines[-1].startswith(
        "Estimates: tokens counted as tiktoken counts them; batch prices = "
    )
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


# -- a file with nothing to count is a problem (exit 1); {custom_id, body} lines -----------------


def body_line(custom_id: str = "b-1", **body: Any) -> dict[str, Any]:
    """A ``{custom_id, body}`` line, the shape of providers that take the endpoint with the job."""
    return {
        "custom_id": custom_id,
        "body": {"messages": [{"role": "user", "content": "Hi"}], **body},
    }


def test_an_empty_file_is_a_problem_exit_1(write: Any) -> None:
    path = write(b"")
    found = file_stats(path).files[0]
    assert [(p.code, p.line, p.message) for p in found.problems] == [
        ("empty_file", None, "The file is empty: it contains no requests.")
    ]
    result = run(str(path))
    assert result.exit_code == 1
    assert "  error: The file is empty: it contains no requests. [empty_file]" in result.stdout
    empty_stdin = run("-", "--format", "json", stdin=b"")
    assert empty_stdin.exit_code == 1
    assert orjson.loads(empty_stdin.stdout)["files"][0]["problems"][0]["code"] == "empty_file"


def test_an_empty_file_is_fine_for_a_profile_that_takes_one(write: Any) -> None:
    path = write(b"")
    assert file_stats(path, profile="vllm").problems == []
    assert run(str(path), "--profile", "vllm").exit_code == 0
    assert (
        run(str(write(b"garbage\n")), "--profile", "vllm").exit_code == 1
    )  # lines, none a request


def test_a_binary_file_is_a_problem_that_names_its_first_line(write: Any) -> None:
    path = write(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8\n" * 3)
    [found] = file_stats(path).problems
    assert found.code == "empty_file" and found.message.startswith(
        "The file contains no requests: none of its 9 lines is one. Line 1: This line is not"
    )
    assert file_stats(write(b"\x00\x01\n", "nul.jsonl")).problems[0].message == (
        "The file contains no requests. Line 1: This line holds a NUL byte: the file is "
        "binary, not JSONL."
    )
    result = run(str(path), "--format", "json")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert orjson.loads(result.stdout)["files"][0]["problems"] == [found.to_dict()]


def test_requests_beside_bad_lines_are_counted_exit_0(write: Any) -> None:
    path = write(b"not json\n" + jsonl(request("a")))
    assert file_stats(path).problems == []
    assert run(str(path)).exit_code == 0


def test_problems_and_io_errors_together_exit_2(write: Any, tmp_path: Path) -> None:
    empty = write(b"", "empty.jsonl")
    assert run(CHAT_SAMPLE, str(empty)).exit_code == 1
    assert run(str(empty), str(tmp_path / "missing.jsonl")).exit_code == 2


def test_body_lines_without_their_profile_say_which_profiles_read_them(write: Any) -> None:
    path = write([body_line("a"), body_line("b")])
    [found] = file_stats(path).problems
    assert "Line 1: This line is {custom_id, body}, with no url" in found.message
    assert "(together, mistral, fireworks)" in found.message and "--" not in found.message
    assert run(str(path)).exit_code == 1


def test_body_lines_are_requests_to_the_profiles_endpoint(write: Any) -> None:
    path = write([body_line("a", model="gpt-4o-mini", max_tokens=7), body_line("b")])
    data = file_stats(path, profile="together").to_dict()["files"][0]
    assert (data["requests"], data["endpoint"], data["problems"]) == (2, "/v1/chat/completions", [])
    # counted as the same requests in OpenAI's shape
    same = write([request("a", max_tokens=7), request("b", model=None)], "same.jsonl")
    openai = file_stats(same).to_dict()["files"][0]
    assert data["input_tokens"] == openai["input_tokens"] and data["output_ceiling"] == {
        "sum": 7,
        "requests_without": 1,
    }
    result = run(str(path), "--profile", "together", "--format", "json")
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout) == orjson.loads(
        orjson.dumps(file_stats(path, profile="together").to_dict())
    )


def test_body_lines_to_another_endpoint_of_the_profile(write: Any) -> None:
    path = write([{"custom_id": "e", "body": {"model": "mistral-embed", "input": ["a b", "c"]}}])
    data = file_stats(path, profile="mistral", endpoint="/v1/embeddings").to_dict()["total"]
    assert (data["endpoint"], data["embedding_inputs"], data["requests"]) == (
        "/v1/embeddings",
        2,
        1,
    )
    assert data["input_tokens"]["sum"] == 3  # "a b" and "c": the texts alone, no overhead
    result = run(str(path), "--profile", "mistral", "--endpoint", "/v1/embeddings")
    assert result.exit_code == 0, result.output
    assert "1 request; /v1/embeddings; mistral-embed" in result.stdout


def test_an_endpoint_the_profile_lacks_is_a_usage_error(write: Any) -> None:
    from jsonl_batch.errors import UsageError

    path = write([body_line("a")])
    with pytest.raises(UsageError, match="not an endpoint of the together profile"):
        file_stats(path, profile="together", endpoint="/v1/embeddings")
    result = run(str(path), "--profile", "together", "--endpoint", "/v1/embeddings")
    assert result.exit_code == 2
    assert "'/v1/embeddings' is not an endpoint of the together profile" in result.output


def test_the_first_skipped_line_is_numbered_across_chunks(
    write: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jsonl_batch.tokens.stats import Tally

    first, second = Tally(lines=5), Tally(lines=4, first_skipped=(3, "why"))
    first.add(second)
    assert first.first_skipped == (8, "why")
    first.add(Tally(lines=2, first_skipped=(1, "later")))
    assert first.first_skipped == (8, "why")
    path = write(b"[1]\n" * 3000)
    monkeypatch.setattr(stats_module, "PARALLEL_MIN_BYTES", 1)
    monkeypatch.setattr(stats_module, "CHUNK_BYTES", 4096)
    parallel = file_stats(path, workers=2).to_dict()
    assert parallel == file_stats(path, workers=1).to_dict()
    assert parallel["files"][0]["problems"][0]["message"].startswith(
        "The file contains no requests: none of its 3,000 lines is one. Line 1: This line is "
        "an array"
    )


def test_the_model_of_bodies_that_name_none(write: Any) -> None:
    path = write([body_line("a"), body_line("b", model="gpt-4o-mini")])
    data = file_stats(path, profile="mistral", model="mistral-medium-latest").to_dict()
    found = data["files"][0]
    assert found["models"] == ["gpt-4o-mini", "mistral-medium-latest"]  # a body's own wins
    assert found["cost"]["unpriced_models"] == [] and found["cost"]["input"] is not None
    unnamed = file_stats(path, profile="mistral").to_dict()["files"][0]
    assert unnamed["cost"]["unpriced_models"] == ["requests without a model"]
    assert unnamed["input_tokens"] == found["input_tokens"]  # both o200k_base
    cl100k = file_stats(path, profile="mistral", model="gpt-4").to_dict()["files"][0]
    assert cl100k["models"] == ["gpt-4", "gpt-4o-mini"]
    result = run(str(path), "--profile", "mistral", "--model", "mistral-medium-latest")
    assert result.exit_code == 0, result.output
    assert "gpt-4o-mini, mistral-medium-latest" in result.stdout and "batch cost" in result.stdout
