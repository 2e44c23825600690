"""``jsonl-batch build`` through click's CliRunner: every option, every error path, exit codes."""

from __future__ import annotations

import importlib
import io
import json
import os
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from helpers import NO_COUNTER, without_token_counter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jsonl_batch import validate_file
from jsonl_batch.cli import main
from jsonl_batch.render.text import SizedProgress

build_module = importlib.import_module("jsonl_batch.cli.build")  # `cli.build` is the command
QUICK = ("--model", "m", "--prompt-column", "text")
CSV = 'id,text\n1,What is 2+2?\n2,"Say ""hi""\nplease"\n3,Name a colour\n'


def run(*args: str, input: bytes | str | None = None) -> Result:
    result = CliRunner().invoke(main, ["build", *args], input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    path = tmp_path / "q.csv"
    path.write_text(CSV)
    return path


def bodies(data: bytes) -> list[dict]:
    return [orjson.loads(line)["body"] for line in data.splitlines()]


def test_quick_chat_to_stdout(csv: Path) -> None:
    result = run(
        str(csv),
        "--model",
        "gpt-4o-mini",
        "--prompt-column",
        "text",
        "--system",
        "Be brief.",
        "--param",
        "temperature=0",
        "--param",
        "response_format.type=json_object",
    )
    assert result.exit_code == 0, result.output
    lines = [orjson.loads(line) for line in result.stdout_bytes.splitlines()]
    assert [line["custom_id"] for line in lines] == ["request-1", "request-2", "request-3"]
    assert lines[1]["body"] == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": 'Say "hi"\nplease'},
        ],
        "temperature": 0,
        "response_format": {"type": "json_object"},
    }
    assert result.stderr == ""


def test_to_a_file_with_ids(csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "batch.jsonl"
    result = run(str(csv), "-o", str(out), "--model", "m", "--prompt-column", "text")
    assert result.exit_code == 0
    assert result.stdout.startswith("3 requests -> 1 part\n  batch.jsonl  3 requests")
    run(str(csv), "-o", str(out), "--model", "m", "--prompt-column", "text", "--id-column", "id")
    result = run(
        *(str(csv), "-o", str(out), "--model", "m", "--prompt-column", "text"),
        *("--id-column", "id", "--force", "--format", "json"),
    )
    assert result.exit_code == 0
    manifest = orjson.loads(result.stdout)
    assert manifest["parts"][0]["first_custom_id"] == "1" and manifest["manifest"] is None
    assert validate_file(out).valid


def test_limits_make_parts_and_split_forces_them(csv: Path, tmp_path: Path) -> None:
    args = ("--model", "m", "--prompt-column", "text")
    result = run(str(csv), "-o", str(tmp_path / "a.jsonl"), *args, "--max-requests", "2")
    assert "a.part-001.jsonl  2 requests" in result.stdout and "a.manifest.json" in result.stdout
    result = run(str(csv), "-o", str(tmp_path / "b.jsonl"), *args, "--split")
    assert result.exit_code == 0 and (tmp_path / "b.part-001.jsonl").exists()
    assert (tmp_path / "b.manifest.json").exists() and not (tmp_path / "b.jsonl").exists()
    result = run(str(csv), *args, "--split")
    assert result.exit_code == 2 and "--split needs an output file" in result.output
    result = run(str(csv), "-o", str(tmp_path / "c.jsonl"), *args, "--max-bytes", "100B")
    assert result.exit_code == 1 and "row 1" in result.output and "file_too_large" in result.output


def test_max_tokens(csv: Path, tmp_path: Path) -> None:
    args = ("--model", "m", "--prompt-column", "text", "--max-tokens", "25")
    result = run(str(csv), "-o", str(tmp_path / "a.jsonl"), *args, "--format", "json")
    assert result.exit_code == 0, result.output
    manifest = orjson.loads(result.stdout)
    assert manifest["limits"]["max_tokens"] == 25
    # 14, 12 and 10 tokens: 14 + 12 is over 25
    assert [(p["requests"], p["input_tokens"]) for p in manifest["parts"]] == [(1, 14), (2, 22)]
    result = run(str(csv), *args)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith(
        "Error: row 2: This request (an estimated 12 input tokens) would give the file an "
        "estimated 26 input tokens; the limit is 25 input tokens"
    )
    assert result.stderr.rstrip().endswith("(token_limit_exceeded)")
    assert "--max-tokens" in run("--help").output


def test_max_tokens_without_token_counter_exits_2(
    csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_token_counter(monkeypatch)
    result = run(str(csv), "-o", str(tmp_path / "a.jsonl"), *QUICK, "--max-tokens", "99")
    assert result.exit_code == 2
    assert result.output == NO_COUNTER
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.csv"]


def test_template(tmp_path: Path) -> None:
    template = tmp_path / "body.json"
    template.write_text('{"model": "e", "input": "{{text}}", "dimensions": "{{dims}}"}')
    source = tmp_path / "rows.jsonl"
    source.write_bytes(b'{"text": "a \\"quote\\"", "dims": 256}\n')
    result = run(str(source), "--endpoint", "/v1/embeddings", "--template", str(template))
    assert result.exit_code == 0, result.output
    assert bodies(result.stdout_bytes) == [{"model": "e", "input": 'a "quote"', "dimensions": 256}]
    template.write_text("{")
    result = run(str(source), "--endpoint", "/v1/embeddings", "--template", str(template))
    assert result.exit_code == 2 and "not valid JSON" in result.output
    result = run(str(source), "--template", str(template), "--prompt-column", "text")
    assert result.exit_code == 2


def test_formats_and_stdin(tmp_path: Path) -> None:
    pq.write_table(pa.table({"t": ["a", "b"]}), tmp_path / "q.parquet")
    result = run(str(tmp_path / "q.parquet"), "--model", "m", "--prompt-column", "t")
    assert len(bodies(result.stdout_bytes)) == 2
    (tmp_path / "q.tsv").write_text("t\tx\na\t1\n")
    result = run(str(tmp_path / "q.tsv"), "--model", "m", "--prompt-column", "t")
    assert bodies(result.stdout_bytes)[0]["messages"][0]["content"] == "a"
    result = run(
        *("-", "--input-format", "jsonl", "--endpoint", "/v1/responses"),
        *("--model", "m", "--prompt-column", "t", "--system", "French."),
        input=b'{"t": "Hello"}\n',
    )
    assert bodies(result.stdout_bytes) == [
        {"model": "m", "input": "Hello", "instructions": "French."}
    ]
    result = run("-", "--model", "m", "--prompt-column", "t", input=b"")
    assert result.exit_code == 2 and "--input-format" in result.output
    result = run(
        "-", "--input-format", "csv", "--model", "m", "--prompt-column", "t", input="t\nx\n"
    )
    assert result.exit_code == 0


@pytest.mark.parametrize(
    ("data", "args", "message"),
    [
        (CSV, ("--prompt-column", "nope"), "column 'nope': There is no such column in"),
        ("t\nx\n", ("--prompt-column", "t", "--id-column", "id"), "column 'id'"),
        ('{"t": null}\n', ("--prompt-column", "t"), "row 1, column 't': The value is null"),
        (
            "id,question\n1,What?\n2,\n",
            ("--prompt-column", "question"),
            "Error: row 2, column 'question': The prompt is empty; every request needs one",
        ),
        ('{"t": "a"}\n{"t": " "}\n', ("--prompt-column", "t"), "row 2, column 't': The prompt"),
        (
            '{"t": "a"}\n{"t": "b"}\n',
            ("--prompt-column", "t", "--max-tokens", "7"),
            "row 1: This request alone has an estimated 8 input tokens; the limit is 7 input",
        ),
        (
            '{"t": "a", "i": 1}\n{"t": "b", "i": 1}\n',
            ("--prompt-column", "t", "--id-column", "i"),
            "row 2, column 'i': custom_id '1' is already used by row 1",
        ),
        (
            '{"t": "a"}\n',
            ("--prompt-column", "t", "--param", "temperature=9"),
            "row 1: body.temperature must be at most 2, found integer 9. (invalid_body)",
        ),
        ("", ("--prompt-column", "t"), "has no rows; nothing was written. (empty_file)"),
        ('{"t": "a"}\nnot json\n', ("--prompt-column", "t"), "row 2: This line is not parseable"),
        ("a,b\n1,2,3\n", ("--prompt-column", "a"), "not readable as CSV"),
    ],
)
def test_bad_data_exits_1_and_writes_nothing(
    tmp_path: Path, data: str, args: tuple[str, ...], message: str
) -> None:
    suffix = ".jsonl" if data.startswith("{") or data == "" else ".csv"
    source = tmp_path / f"in{suffix}"
    source.write_text(data)
    out = tmp_path / "out.jsonl"
    result = run(str(source), "-o", str(out), "--model", "m", *args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [source.name]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--prompt-column", "text"), "give --model"),
        (("--model", "m"), "--prompt-column"),
        ((*QUICK, "--param", "oops"), "key=value"),
        (
            (*QUICK, "--endpoint", "/v1/embeddings", "--system", "x"),
            "--system applies",
        ),
        (
            (*QUICK, "--endpoint", "/v1/completions", "--profile", "azure"),
            "not an endpoint of the azure profile",
        ),
        ((*QUICK, "--endpoint", "/v2/x"), "Invalid value"),
        ((*QUICK, "--max-bytes", "lots"), "invalid size"),
        ((*QUICK, "--input-format", "xml"), "Invalid value"),
    ],
)
def test_usage_errors_exit_2(csv: Path, args: tuple[str, ...], message: str) -> None:
    result = run(str(csv), *args)
    assert result.exit_code == 2
    assert message in result.output


def test_io_errors_exit_2(csv: Path, tmp_path: Path) -> None:
    args = ("--model", "m", "--prompt-column", "text")
    result = run(str(tmp_path / "missing.csv"), *args)
    assert result.exit_code == 2 and "missing.csv: no such file" in result.output
    result = run(str(csv), "-o", str(csv), *args)
    assert result.exit_code == 2 and "q.csv is an input; choose another" in result.output
    (tmp_path / "old.jsonl").write_text("old")
    result = run(str(csv), "-o", str(tmp_path / "old.jsonl"), *args)
    assert result.exit_code == 2 and "already exists; use --force" in result.output
    result = run(str(csv), "-o", str(tmp_path / "no" / "dir.jsonl"), *args)
    assert result.exit_code == 2 and "cannot write here" in result.output
    result = run(str(tmp_path), "--input-format", "csv", *args)
    assert result.exit_code == 2 and "is a directory" in result.output


def test_allow_param(csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    args = ("--model", "m", "--prompt-column", "text", "--param", "seed_v2=1")
    result = run(str(csv), "-o", str(out), *args, "--allow-param", "seed_v2")
    assert result.exit_code == 0, result.output  # was an internal error (a TypeError)
    assert all(
        line["body"]["seed_v2"] == 1 for line in map(orjson.loads, out.read_bytes().splitlines())
    )


def test_progress_bar_on_a_terminal(csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(build_module, "_terminal", lambda: terminal)
    result = run(str(csv), "--model", "m", "--prompt-column", "text")
    assert result.exit_code == 0
    assert "building" in terminal.getvalue() and "100%" in terminal.getvalue()


def test_progress_without_a_total() -> None:
    progress = SizedProgress(io.StringIO(), "building")
    progress(10, None)
    assert progress.bar is None
    progress.close()


def test_help_has_an_example() -> None:
    result = CliRunner().invoke(main, ["build", "--help"])
    assert result.exit_code == 0 and "Example:" in result.output and "--template" in result.output


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.binary(max_size=200)
    | st.lists(
        st.dictionaries(
            st.sampled_from(["t", "id", "x"]),
            st.none()
            | st.booleans()
            | st.integers()
            | st.text(max_size=5)
            | st.lists(st.integers()),
        ),
        max_size=5,
    ).map(lambda rows: "".join(json.dumps(r) + "\n" for r in rows).encode()),  # big ints too
    st.sampled_from(["jsonl", "csv", "parquet"]),
    st.sampled_from(["/v1/chat/completions", "/v1/embeddings", "/v1/responses"]),
)
def test_no_traceback_on_any_input(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, fmt: str, endpoint: str
) -> None:
    folder = tmp_path_factory.mktemp("any")
    source = folder / f"in.{fmt}"
    source.write_bytes(data)
    args = ("--endpoint", endpoint, "--id-column", "id", "-o", str(folder / "o.jsonl"))
    result = run(str(source), *QUICK[:3], "t", *args, "--force")
    # bad data is 1, never a usage error; a cut compressed file is a read error (2), as in
    # every command
    corrupt = result.output.startswith(f"Error: {source}: not valid ")
    assert result.exit_code in (0, 1) or (result.exit_code == 2 and corrupt), result.output
    assert "Usage:" not in result.output and "internal error" not in result.output
    if result.exit_code == 0:
        assert validate_file(folder / "o.jsonl").valid


def test_force_leaves_no_stale_parts(csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "small.jsonl"
    assert run(str(csv), "-o", str(out), *QUICK, "--max-requests", "1").exit_code == 0
    result = run(str(csv), "-o", str(out), *QUICK)
    assert result.exit_code == 2
    assert "small.part-002.jsonl is left from an earlier build; use --force" in result.output
    assert run(str(csv), "-o", str(out), *QUICK, "--force").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.csv", "small.jsonl"]
    assert run(str(csv), "-o", str(out), *QUICK, "--split", "--force").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "q.csv",
        "small.manifest.json",
        "small.part-001.jsonl",
    ]


def test_a_missing_folder_names_the_output(csv: Path, tmp_path: Path) -> None:
    target = tmp_path / "nodir" / "x.jsonl"
    result = run(str(csv), "-o", str(target), *QUICK)
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {target}: cannot write here")
    assert "part-" not in result.output


def test_force_never_touches_the_source(tmp_path: Path) -> None:
    part = tmp_path / "data.part-001.jsonl"
    part.write_bytes(b'{"text": "a"}\n')
    result = run(str(part), "-o", str(tmp_path / "data.jsonl"), *QUICK, "--force")
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert f"{part} is an input" in result.output
    rows = tmp_path / "rows.jsonl"
    rows.write_bytes(b'{"text": "a"}\n')
    result = run(str(rows), "-o", str(rows), *QUICK, "--force")
    assert result.exit_code == 2 and f"{rows} is an input" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.part-001.jsonl", "rows.jsonl"]
    assert rows.read_bytes() == part.read_bytes() == b'{"text": "a"}\n'


def test_force_keeps_the_mode_of_the_replaced_file(csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "batch.jsonl"
    out.write_text("old")
    out.chmod(0o600)
    assert run(str(csv), "-o", str(out), *QUICK, "--force").exit_code == 0
    assert out.stat().st_mode & 0o777 == 0o600


CHAT_PROMPT = '"messages": [{"role": "user", "content": "{{prompt}}"}]'


@pytest.mark.parametrize(
    ("temp", "score", "template", "where"),
    [
        (
            "inf",
            "1",
            '{"temperature": "{{temp}}", ' + CHAT_PROMPT + "}",
            "column 'temp': The value is inf",
        ),
        (
            "0.5",
            "-inf",
            '{"messages": [{"role": "user", "content": "s {{score}}"}]}',
            "column 'score': The value is -inf",
        ),
        (
            float("nan"),
            1.0,
            '{"top_p": "{{temp}}", ' + CHAT_PROMPT + "}",
            "column 'temp': The value is nan",
        ),
    ],
)
def test_non_finite_numbers_are_refused_not_written_as_null(
    tmp_path: Path, temp: object, score: object, template: str, where: str
) -> None:
    """JSON has no NaN or infinity: orjson wrote them as null (and "null" inside text)."""
    if isinstance(temp, str):
        source = tmp_path / "rows.csv"
        source.write_text(f"id,prompt,temp,score\na,hello,{temp},{score}\n")
    else:  # a CSV "nan" is read as empty; Parquet holds NaN
        source = tmp_path / "rows.parquet"
        rows = {"id": ["a"], "prompt": ["hello"], "temp": [temp], "score": [score]}
        pq.write_table(pa.table(rows), source)
    body = tmp_path / "template.json"
    body.write_text(template)
    out = tmp_path / "batch.jsonl"
    args = ["build", str(source), "-o", str(out), "--model", "m", "--template", str(body)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert f"row 1, {where}" in result.output and "a number JSON cannot hold" in result.output
    assert not out.exists()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_batch_writer_refuses_non_finite_numbers(value: float) -> None:
    from jsonl_batch import BatchWriter, BuildError

    with BatchWriter(io.BytesIO(), "/v1/chat/completions", model="m") as writer:
        writer.add({"messages": [{"role": "user", "content": "ok"}]})
        body = {"messages": [{"role": "user", "content": "x", "extra": [1, value]}]}
        with pytest.raises(BuildError) as caught:
            writer.add(body)
        assert caught.value.param == "body.messages[0].extra[1]"
        assert caught.value.code == "invalid_body" and "JSON cannot hold" in str(caught.value)
        with pytest.raises(BuildError, match=r"body\.temperature"):
            writer.add({"messages": [{"role": "user", "content": "x"}], "temperature": value})
        writer.add({"messages": [{"role": "user", "content": "null"}], "stop": None})
    assert writer.requests == 2


def test_split_to_a_device_says_so(csv: Path) -> None:
    """``-o /dev/null --split`` was told it wrote to standard output."""
    args = ("--model", "m", "--prompt-column", "text", "--split")
    result = run(str(csv), "-o", os.devnull, *args)
    assert result.exit_code == 2
    assert (
        f"Error: --split needs an output file (-o), not a device or a pipe ({os.devnull}): "
        "the parts are files" in result.output
    )
    result = run(str(csv), "-o", "-", *args)
    assert result.exit_code == 2 and "(-o), not standard output" in result.output
