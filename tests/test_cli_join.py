"""``jsonl-batch join`` and ``jsonl-batch retry`` through click: exit codes, output, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from helpers import DATA, jsonl, request

from jsonl_batch import join, read_summary
from jsonl_batch.cli import main

J = DATA / "join"
CHAT = [str(J / "chat.input.jsonl"), "--results", str(J / "chat.output.jsonl")]
CHAT += ["--results", str(J / "chat.errors.jsonl")]


def run(*args: str) -> object:
    return CliRunner().invoke(main, list(args))


def test_join_writes_parquet_prints_summary_exit_1(tmp_path: Path) -> None:
    target = tmp_path / "results.parquet"
    result = run("join", *CHAT, "-o", str(target))
    assert result.exit_code == 1, result.output
    assert result.output.startswith("9 requests: 4 succeeded, 4 failed, 1 missing\n")
    assert "rate_limit_exceeded 1" in result.output
    assert "chat.output.jsonl line 5: custom_id 'chat-404' is in no input file" in result.output
    assert f"wrote {target} (parquet, 9 rows)" in result.output
    assert pq.read_table(target).num_rows == 9
    assert read_summary(target)["failed"] == 4


def test_join_exit_0_when_every_request_succeeded(tmp_path: Path) -> None:
    inp = str(J / "completions.input.jsonl")
    out = str(J / "completions.output.jsonl")
    result = run("join", inp, "-r", out, "-o", str(tmp_path / "r.csv"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.csv").read_text().startswith('"custom_id","input_file"')


def test_join_json_summary_equals_the_library(tmp_path: Path) -> None:
    target = tmp_path / "r.jsonl"
    result = run("join", *CHAT, "-o", str(target), "--summary-format", "json")
    data = orjson.loads(result.output)
    library = join([J / "chat.input.jsonl"], [J / "chat.output.jsonl", J / "chat.errors.jsonl"])
    expected = orjson.loads(orjson.dumps(library.summary.to_dict()))
    assert {k: v for k, v in data.items() if k not in ("output", "format")} == expected
    assert data["format"] == "jsonl"


def test_join_format_option_overrides_extension(tmp_path: Path) -> None:
    target = tmp_path / "r.data"
    result = run("join", *CHAT, "-o", str(target), "--format", "csv")
    assert "(csv, 9 rows)" in result.output
    assert target.read_text().startswith('"custom_id"')


def test_join_repeated_results_flags_and_options(tmp_path: Path) -> None:
    args = [str(J / "embeddings.input.jsonl"), "-r", str(J / "embeddings.output.jsonl")]
    target = tmp_path / "e.parquet"
    result = run("join", *args, "--include-embeddings", "--include-bodies", "-o", str(target))
    assert result.exit_code == 0, result.output
    assert "embedding" in pq.read_schema(target).names
    assert "request_body" in pq.read_schema(target).names


def test_join_refuses_to_overwrite_before_working(tmp_path: Path) -> None:
    target = tmp_path / "r.parquet"
    target.write_bytes(b"keep")
    result = run("join", *CHAT, "-o", str(target))
    assert result.exit_code == 2
    assert "already exists; use --force" in result.output
    assert target.read_bytes() == b"keep"
    assert run("join", *CHAT, "-o", str(target), "--force").exit_code == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope.jsonl", "-r", "x.jsonl"], "nope.jsonl: no such file"),
        ([str(J / "chat.input.jsonl"), "-r", "missing.jsonl"], "missing.jsonl: no such file"),
        ([str(J / "chat.output.jsonl"), "-r", str(J / "chat.errors.jsonl")], "is it a result line"),
        ([str(J / "malformed.output.jsonl"), "-r", str(J / "chat.errors.jsonl")], "line 1"),
    ],
)
def test_join_errors_exit_2_in_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    result = run("join", *args, "-o", str(tmp_path / "r.parquet"))
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "r.parquet").exists()


def test_join_needs_results(tmp_path: Path) -> None:
    result = run("join", str(J / "chat.input.jsonl"), "-o", str(tmp_path / "r.parquet"))
    assert result.exit_code == 2
    assert "--results" in result.output


def test_join_malformed_result_file_names_file_and_line(tmp_path: Path) -> None:
    args = [str(J / "chat.input.jsonl"), "-r", str(J / "malformed.output.jsonl")]
    result = run("join", *args, "-o", str(tmp_path / "r.parquet"))
    assert result.exit_code == 1
    assert "lines that are not results (5):" in result.output
    assert "malformed.output.jsonl line 3: This line is blank" in result.output


def test_retry_writes_the_lines_and_validates(tmp_path: Path) -> None:
    target = tmp_path / "retry.jsonl"
    result = run("retry", *CHAT, "-o", str(target), "--only", "retryable")
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first.startswith(f"{target}: 4 requests to retry")
    assert "not selected" in first
    assert f"{target}: valid" in result.output
    assert len(target.read_bytes().splitlines()) == 4


def test_retry_json_and_split(tmp_path: Path) -> None:
    target = tmp_path / "retry.jsonl"
    result = run("retry", *CHAT, "-o", str(target), "--max-requests", "2", "--format", "json")
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.output)
    assert data["requests"] == 5
    assert len(data["manifest"]["parts"]) == 3
    text = run("retry", *CHAT, "-o", str(target), "--max-requests", "2", "--force")
    assert "over the limits, so split" in text.output
    assert "\\n" not in text.output  # the parts on their own lines, not one escaped line
    parts = [line for line in text.output.splitlines() if ".part-" in line]
    assert len(parts) == 3 and all(p.startswith("  retry.part-00") for p in parts), text.output
    invalid = run("retry", *CHAT, "-o", str(tmp_path / "again.jsonl"), "--max-requests", "1")
    assert "\\n" not in invalid.output


def test_retry_nothing_to_do(tmp_path: Path) -> None:
    inp = str(J / "completions.input.jsonl")
    out = str(J / "completions.output.jsonl")
    result = run("retry", inp, "-r", out, "-o", str(tmp_path / "r.jsonl"))
    assert result.exit_code == 0
    assert result.output.strip() == "nothing to retry (2 succeeded)"


def test_retry_exit_1_when_the_retry_file_has_problems(tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(jsonl(request("a", temperature="hot")))
    out = tmp_path / "errors.jsonl"
    out.write_bytes(jsonl({"custom_id": "a", "response": None, "error": {"code": "c"}}))
    result = run("retry", str(inp), "-r", str(out), "-o", str(tmp_path / "r.jsonl"))
    assert result.exit_code == 1
    assert "INVALID" in result.output


def test_commands_have_help_with_an_example() -> None:
    for name in ("join", "retry"):
        result = run(name, "--help")
        assert result.exit_code == 0
        assert f"jsonl-batch {name} requests.jsonl -r output.jsonl -r errors.jsonl" in result.output


# -- no traceback: deep bodies and malformed result files --------------------------------------


def deep_request(depth: int, where: str, custom_id: str = "deep") -> bytes:
    """A request line nested ``depth`` levels deep (orjson reads up to 1024) in ``where``."""
    inner = depth - 6
    if where == "messages":
        messages = "[" * inner + '{"role":"user","content":"hi"}' + "]" * inner
    elif where == "content":
        messages = '[{"role":"user","content":' + "[" * inner + '"x"' + "]" * inner + "}]"
    else:  # tools
        tools = "[" * (inner - 4) + '{"type":"function"}' + "]" * (inner - 4)
        messages = f'[],"tools":{tools}'
    line = (
        f'{{"custom_id":"{custom_id}","method":"POST","url":"/v1/chat/completions",'
        f'"body":{{"model":"gpt-4o","messages":{messages}}}}}'
    ).encode()
    orjson.loads(line)
    return line + b"\n"


def deep_result(depth: int, custom_id: str = "deep") -> bytes:
    inner = depth - 8
    content = "[" * inner + '{"type":"text","text":"ok"}' + "]" * inner
    line = (
        f'{{"id":"r","custom_id":"{custom_id}","response":{{"status_code":200,"body":'
        f'{{"choices":[{{"message":{{"content":{content}}}}}]}}}},"error":null}}'
    ).encode()
    orjson.loads(line)
    return line + b"\n"


def no_traceback(result: Any) -> None:
    assert "internal error" not in result.output and "Traceback" not in result.output
    assert "Usage:" not in result.output


@pytest.mark.parametrize("where", ["messages", "content", "tools"])
@pytest.mark.parametrize("depth", [300, 600, 1000])
def test_join_deep_bodies(tmp_path: Path, depth: int, where: str) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_bytes(deep_request(depth, where) + jsonl(request("b")))
    out.write_bytes(deep_result(depth))
    for n, flags in enumerate(([], ["--include-bodies", "--include-tool-calls"])):
        table = tmp_path / f"t{n}.parquet"
        result = run("join", str(inp), "-r", str(out), "-o", str(table), *flags)
        no_traceback(result)
        assert result.exit_code == 1, result.output  # "b" is missing
        assert "2 requests: 1 succeeded, 0 failed, 1 missing" in result.output
    rows = pq.read_table(table).to_pylist()
    assert orjson.loads(rows[0]["request_body"])["model"] == "gpt-4o"
    assert rows[0]["response_body"].startswith('{"choices":[{"message":{"content":[[[')


MALFORMED_RESULTS = {
    "invalid UTF-8": b'{"custom_id":"a","error":{"code":"\xff"}}\n',
    "invalid UTF-8 id": b'{"custom_id":"\xff","error":{"code":"x"}}\n',
    "BOM": b"\xef\xbb\xbf" + jsonl({"custom_id": "a", "error": {"code": "x"}}),
    "blank lines": b"\n\r\n  \n",
    "not objects": b'[1, 2]\n"text"\n3\nnull\n',
    "too deep": b"[" * 1025 + b"]" * 1025 + b"\n",
    "deep but legal": deep_result(1000, "nobody"),
    "huge line": jsonl({"custom_id": "x", "error": {"code": "c", "message": "m" * 3_000_000}}),
}


@pytest.mark.parametrize("name", MALFORMED_RESULTS)
@pytest.mark.parametrize("flags", [[], ["--include-bodies"]])
def test_join_malformed_result_files(tmp_path: Path, name: str, flags: list[str]) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_bytes(jsonl(request("ok")))
    out.write_bytes(MALFORMED_RESULTS[name] + jsonl(ok_result("ok")))
    result = run("join", str(inp), "-r", str(out), "-o", str(tmp_path / "t.csv"), *flags)
    no_traceback(result)
    assert result.exit_code == 0, result.output  # the one request succeeded
    orphan = name in ("deep but legal", "huge line")  # legal result lines, for no request
    kind = "result lines answering no request" if orphan else "lines that are not results"
    assert kind in result.output
    assert f"{out} line 1: " in result.output


def test_join_malformed_input_is_one_line_exit_2(tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_bytes(b"\xef\xbb\xbf" + jsonl(request("a")))
    out.write_bytes(jsonl(ok_result("a")))
    result = run("join", str(inp), "-r", str(out), "-o", str(tmp_path / "t.parquet"))
    no_traceback(result)
    assert result.exit_code == 2
    assert result.output.startswith(
        f"Error: {inp} line 1: This line starts with a UTF-8 byte-order"
    )


def ok_result(custom_id: str) -> dict[str, Any]:
    body = {"choices": [{"message": {"content": "fine"}, "finish_reason": "stop"}]}
    return {"custom_id": custom_id, "response": {"status_code": 200, "body": body}, "error": None}


def test_one_row_is_singular(tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_bytes(jsonl(request("a")))
    out.write_bytes(jsonl(ok_result("a")))
    result = run("join", str(inp), "-r", str(out), "-o", str(tmp_path / "t.parquet"))
    assert result.exit_code == 0 and "(parquet, 1 row)" in result.output


def test_inputs_without_requests_are_not_success(tmp_path) -> None:
    from click.testing import CliRunner

    from jsonl_batch.cli import main

    empty = tmp_path / "in.jsonl"
    empty.write_bytes(b"")
    out = tmp_path / "out.jsonl"
    out.write_bytes(
        b'{"id":"b1","custom_id":"x","response":{"status_code":200,"request_id":"r",'
        b'"body":{}},"error":null}\n'
    )
    result = CliRunner().invoke(
        main, ["join", str(empty), "--results", str(out), "-o", str(tmp_path / "t.csv")]
    )
    assert result.exit_code == 1, result.output


def test_join_results_of_another_batch_exit_2(tmp_path: Path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_bytes(jsonl(request("a"), request("b")))
    out.write_bytes(jsonl(ok_result("x"), ok_result("y")))
    for command in ("join", "retry"):
        result = run(command, str(inp), "-r", str(out), "-o", str(tmp_path / f"{command}.jsonl"))
        no_traceback(result)
        assert result.exit_code == 2, result.output
        assert "results of another batch" in result.output


def test_results_option_takes_one_file(tmp_path: Path) -> None:
    """``-r out err in``: the error file would be read as requests; say how to write it."""
    data = Path(__file__).parent / "data" / "join"
    out, err, source = (
        str(data / n) for n in ("chat.output.jsonl", "chat.errors.jsonl", "chat.input.jsonl")
    )
    table = str(tmp_path / "t.csv")
    for command in ("join", "retry"):
        for r in (["-r", out], ["--results", out], [f"--results={out}"], [f"-r{out}"]):
            result = CliRunner().invoke(main, [command, *r, err, source, "-o", table])
            assert result.exit_code == 2, result.output
            assert "takes one file" in result.output and f"-r {out} -r {err}" in result.output
            assert "Missing argument" not in result.output
        args = [command, source, "-r", out, "-r", err, "-o", table, "--force"]
        fine = CliRunner().invoke(main, args)
        assert fine.exit_code in (0, 1), fine.output
        after = CliRunner().invoke(main, [command, "-r", out, "-o", table, "--force", source])
        assert after.exit_code in (0, 1), after.output


def test_partitioned_table_to_standard_output_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`-o - --partition-by` is an error, not a folder named "-" in the current folder."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["join", *CHAT, "-o", "-", "--partition-by", "status"])
    assert result.exit_code == 2, result.output
    assert "standard output cannot hold a folder of files" in result.output
    assert not (tmp_path / "-").exists()


def test_a_big_number_and_a_lone_surrogate_are_no_request_and_no_result(tmp_path: Path) -> None:
    # Python's json, read for the number orjson cannot hold, takes "\ud800": Arrow then failed
    big = b'{"big":1e999,'
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(big + jsonl(request("r0"))[1:].replace(b'"r0"', b'"r0\\ud800"'))
    ok = tmp_path / "ok.jsonl"
    ok.write_bytes(jsonl(request("r0"), request("r1")))
    answer = {"custom_id": "r0", "response": {"status_code": 200, "body": {"choices": []}}}
    line = jsonl(answer).replace(b'"choices":[]', b'"choices":[],"content":"ok\\ud800"')
    out = tmp_path / "out.jsonl"
    good = line.replace(b"\\ud800", b"")
    out.write_bytes(big + line[1:] + good.replace(b"r0", b"r1"))
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(good)
    for args in (
        ["join", str(inp), "-r", str(plain), "-o", "-", "--format", "csv"],
        ["retry", str(inp), "-r", str(plain), "-o", str(tmp_path / "r.jsonl")],
    ):
        result = run(*args)
        assert result.exit_code == 2, result.output
        assert "line 1: This line is not parseable as valid JSON" in result.output
        assert "internal error" not in result.output
    result = run("join", str(ok), "-r", str(out), "-o", "-", "--format", "csv")
    assert result.exit_code == 1, result.output
    assert "lines that are not results (1)" in result.output
    assert f'"r0","{ok}",1,"missing"' in result.output
    assert f'"r1","{ok}",2,"succeeded"' in result.output


def test_nothing_to_retry_exits_0_as_join_does_with_a_line_that_is_not_a_result(
    tmp_path: Path,
) -> None:
    inp = str(J / "completions.input.jsonl")
    out = tmp_path / "out.jsonl"
    out.write_bytes((J / "completions.output.jsonl").read_bytes() + b"junk\n")
    joined = run("join", inp, "-r", str(out), "-o", str(tmp_path / "r.csv"))
    assert joined.exit_code == 0, joined.output
    assert "lines that are not results (1)" in joined.output
    retried = run("retry", inp, "-r", str(out), "-o", str(tmp_path / "r.jsonl"))
    assert retried.exit_code == 0, retried.output
    assert retried.output.startswith("nothing to retry (2 succeeded)\n1 line of the result")


def test_a_blank_line_of_a_results_file_is_worded_for_results(tmp_path: Path) -> None:
    inp = str(J / "completions.input.jsonl")
    out = tmp_path / "out.jsonl"
    out.write_bytes((J / "completions.output.jsonl").read_bytes() + b"  \n")
    joined = run("join", inp, "-r", str(out), "-o", str(tmp_path / "r.csv"))
    assert "remove blank lines (every line must be one JSON result)" in joined.output


def test_an_input_file_given_twice_is_refused(tmp_path: Path) -> None:
    inp = str(J / "completions.input.jsonl")
    out = str(J / "completions.output.jsonl")
    for command in ("join", "retry"):
        result = run(command, inp, inp, "-r", out, "-o", str(tmp_path / f"{command}.jsonl"))
        assert result.exit_code == 2, result.output
        assert f"Error: {inp} is given twice as an input file\n" in result.output


def test_plain_join_loads_only_what_it_needs(tmp_path: Path) -> None:
    """A join of plain answers, as a user runs it, never loads the JSON Schema validator,
    pyarrow's filesystems (S3, SSL: through ``pyarrow.parquet``) or a thread pool module:
    each is a slice of every join's start-up."""
    import subprocess
    import sys

    out = tmp_path / "t.parquet"
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from jsonl_batch.cli import main\n"
        f"args = ['join', *{CHAT!r}, '-o', {str(out)!r}]\n"
        "assert CliRunner().invoke(main, args).exit_code == 1\n"
        "heavy = ('jsonschema_rs', 'pyarrow.parquet', 'pyarrow.fs', 'ssl', 'concurrent.futures')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr
    assert pq.read_table(out).num_rows


@pytest.mark.parametrize("tokens", [[2**63 - 1] * 3, [-(2**63)] * 2])
def test_token_totals_beyond_json_integers_are_floats(tmp_path: Path, tokens: list[int]) -> None:
    """orjson writes integers in [-2**63, 2**64) only: a total beyond is a float, in the
    Parquet metadata and the JSON summary alike (was an internal error, exit 2)."""
    ids = [f"r{i}" for i in range(len(tokens))]
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(jsonl(*(request(c) for c in ids)))
    answers = []
    for c, n in zip(ids, tokens, strict=True):
        body = {"model": "m", "choices": [{"index": 0, "message": {"content": "ok"}}]}
        body["usage"] = {"prompt_tokens": n, "completion_tokens": 1, "total_tokens": n}
        answers.append({"custom_id": c, "response": {"status_code": 200, "body": body}})
    out = tmp_path / "out.jsonl"
    out.write_bytes(jsonl(*answers))
    table = tmp_path / "t.parquet"
    result = run("join", str(inp), "-r", str(out), "-o", str(table))
    assert result.exit_code == 0, result.output
    summary = read_summary(table)
    assert summary["total_tokens"] == float(sum(tokens)) and summary["completion_tokens"] == len(
        ids
    )
    result = run(
        "join",
        str(inp),
        "-r",
        str(out),
        "-o",
        str(tmp_path / "t.jsonl"),
        "--summary-format",
        "json",
    )
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.output)["prompt_tokens"] == float(sum(tokens))
