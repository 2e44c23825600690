"""``jsonl-batch validate`` through click's CliRunner: output, formats, exit codes, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import orjson
import pytest
from click.testing import CliRunner
from helpers import DATA, ROOT, request

from jsonl_batch import validate_file
from jsonl_batch.cli import main

SAMPLES = ROOT / "samples"


def run(*args: str, input: bytes | None = None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def test_valid_sample_exits_0() -> None:
    result = run("validate", str(SAMPLES / "chat.jsonl"))
    assert result.exit_code == 0
    assert "valid" in result.output and "4 requests" in result.output


def test_invalid_sample_exits_1_and_groups_problems() -> None:
    result = run("validate", str(SAMPLES / "invalid.jsonl"))
    assert result.exit_code == 1
    assert "INVALID" in result.output
    assert "duplicate_custom_id (error, 1):" in result.output
    assert "line 2 [custom_id]: custom_id 'request-1' is already used on line 1" in result.output


@pytest.mark.parametrize("name", ["chat.jsonl", "invalid.jsonl", "embeddings.jsonl"])
def test_json_output_equals_library_report(name: str) -> None:
    path = str(SAMPLES / name)
    result = run("validate", path, "--format", "json")
    assert orjson.loads(result.output) == validate_file(path).to_dict()


def test_json_one_object_per_file() -> None:
    files = [str(SAMPLES / n) for n in ("chat.jsonl", "invalid.jsonl")]
    result = run("validate", *files, "--format", "json")
    rows = [orjson.loads(line) for line in result.output.splitlines()]
    assert [(r["file"], r["valid"]) for r in rows] == [(files[0], True), (files[1], False)]
    assert result.exit_code == 1


def test_stdin() -> None:
    data = (SAMPLES / "chat.jsonl").read_bytes()
    result = run("validate", "-", "--format", "json", input=data)
    report = orjson.loads(result.output)
    assert result.exit_code == 0 and report["file"] == "<stdin>"
    assert report["stats"]["bytes"] == len(data)


def test_options_reach_the_library(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"".join(orjson.dumps(request(f"r{i}")) + b"\n" for i in range(3)))
    result = run(
        "validate",
        str(path),
        "--max-requests",
        "2",
        "--max-bytes",
        "1KiB",
        "--model",
        "gpt-4o",
        "--format",
        "json",
    )
    counts = orjson.loads(result.output)["stats"]["counts"]
    assert counts == {"mismatched_model": 3, "too_many_tasks": 1}
    result = run(
        "validate",
        str(path),
        "--endpoint",
        "/v1/responses",
        "--ignore",
        "invalid_url",
        "--profile",
        "azure",
    )
    assert result.exit_code == 0, result.output


def test_max_problems_caps_the_list_not_the_counts(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"\n" * 30)
    report = orjson.loads(
        run("validate", str(path), "--max-problems", "5", "--format", "json").output
    )
    assert len(report["problems"]) == 6  # 5 lines + the file-level empty_file
    assert report["stats"]["counts"] == {"invalid_json_line": 30, "empty_file": 1}
    text = run("validate", str(path), "--max-problems", "5").output
    assert "... and 25 more" in text
    everything = orjson.loads(
        run("validate", str(path), "--max-problems", "0", "--format", "json").output
    )
    assert len(everything["problems"]) == 31


def test_warnings_do_not_fail(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(orjson.dumps(request("has space")) + b"\n")
    result = run("validate", str(path))
    assert result.exit_code == 0
    assert "valid (1 warning)" in result.output and "nonportable_custom_id" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["validate", "missing.jsonl"], "missing.jsonl: no such file"),
        (["validate", str(DATA)], "is a directory"),
    ],
)
def test_io_errors_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_permission_denied(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import builtins

    path = tmp_path / "secret.jsonl"
    path.write_bytes(b"{}\n")
    real_open = builtins.open

    def deny(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert "secret.jsonl: permission denied" in result.output


def test_io_error_in_json_mode_is_a_report() -> None:
    result = CliRunner().invoke(main, ["validate", "missing.jsonl", "--format", "json"])
    assert result.exit_code == 2
    report = orjson.loads(result.output)
    assert report["valid"] is False and "no such file" in report["error"]


@pytest.mark.parametrize(
    "args",
    [
        ["validate"],
        ["validate", "x.jsonl", "--profile", "nope"],
        ["validate", "x.jsonl", "--max-bytes", "12 parsecs"],
        ["validate", "x.jsonl", "--ignore", "not_a_code"],
        ["validate", str(SAMPLES / "chat.jsonl"), "--endpoint", "/v1/nope"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_validate_does_not_load_heavy_modules() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from jsonl_batch.cli import main\n"
        f"CliRunner().invoke(main, ['validate', {str(SAMPLES / 'chat.jsonl')!r}])\n"
        "print(sorted(m for m in ('pyarrow', 'tiktoken', 'openai') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr


def test_python_dash_m(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "jsonl_batch", "validate", str(SAMPLES / "chat.jsonl")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "valid" in done.stdout


def test_samples_and_schema_commands() -> None:
    assert "chat.jsonl" in run("samples").output.split()
    assert run("samples", "chat.jsonl").output.encode() == (SAMPLES / "chat.jsonl").read_bytes()
    assert orjson.loads(run("schema", "embeddings").output)["required"] == ["model", "input"]
    assert CliRunner().invoke(main, ["samples", "nope"]).exit_code == 2


def _commands(command: click.Command, path: list[str]) -> Iterator[list[str]]:
    yield path
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, name
            yield from _commands(sub, [*path, name])


def test_every_command_and_group_has_an_example_as_typed() -> None:
    """Each ``--help`` shows an example whose lines are commands (or their continuations),
    not a command re-wrapped by click into lines that do not run."""
    for path in _commands(main, []):
        result = CliRunner().invoke(main, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "Example:" in result.output, path
        example = result.output.split("Example:")[1].split("Options:")[0]
        lines = [line.strip() for line in example.splitlines() if line.strip()]
        assert lines, path
        for before, line in zip(["", *lines], lines, strict=False):
            assert line.startswith("jsonl-batch ") or before.endswith("\\"), (path, line)


def test_max_enqueued_tokens(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"".join(orjson.dumps(request(f"r{i}")) + b"\n" for i in range(3)))
    over = run("validate", str(path), "--max-enqueued-tokens", "10", "--format", "json")
    report = orjson.loads(over.output)
    assert over.exit_code == 1 and report["stats"]["counts"] == {"token_limit_exceeded": 1}
    assert report["stats"]["input_tokens"] > 10
    under = run("validate", str(path), "--max-enqueued-tokens", "100000")
    assert under.exit_code == 0 and "input tokens (estimate)" in under.output
    plain = orjson.loads(run("validate", str(path), "--format", "json").output)
    assert plain["stats"]["input_tokens"] is None


def test_token_counting_unavailable_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from jsonl_batch.tokens import encodings

    def missing(name: str) -> None:
        raise encodings.TokensUnavailable("token counting needs bpe-openai: pip install x")

    monkeypatch.setattr("jsonl_batch.tokens.counting.text_counter", missing)
    path = tmp_path / "f.jsonl"
    path.write_bytes(orjson.dumps(request()) + b"\n")
    result = CliRunner().invoke(main, ["validate", str(path), "--max-enqueued-tokens", "5"])
    assert result.exit_code == 2
    assert result.output.strip() == "Error: token counting needs bpe-openai: pip install x"


@pytest.mark.parametrize("depth", [300, 600, 1000])
@pytest.mark.parametrize("where", ["content", "tools", "metadata"])
def test_deep_but_legal_nesting_is_a_problem_not_a_crash(
    tmp_path: Path, depth: int, where: str
) -> None:
    deep = b"[" * depth + b"]" * depth
    body = {
        "content": b'{"model":"m","messages":[{"role":"user","content":' + deep + b"}]}",
        "tools": b'{"model":"m","messages":[{"role":"user","content":"x"}],"tools":' + deep + b"}",
        "metadata": b'{"model":"m","messages":[{"role":"user","content":"x"}],"metadata":{"a":'
        + deep
        + b"}}",
    }[where]
    line = b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":' + body + b"}"
    path = tmp_path / "deep.jsonl"
    path.write_bytes(line + b"\n")
    for fmt in ("text", "json"):
        result = CliRunner().invoke(main, ["validate", str(path), "--format", fmt])
        assert result.exit_code == 1, result.output
        assert "internal error" not in result.output and "Usage:" not in result.output
    report = validate_file(path)
    assert report.flatten(["line", "code"]) == [[1, "invalid_body"]]


def test_outputs_get_normal_permissions(tmp_path: Path) -> None:
    import os

    from jsonl_batch.outputs.atomic import atomic_output

    target = tmp_path / "out.jsonl"
    old = os.umask(0o022)
    try:
        with atomic_output(target) as handle:
            handle.write(b"{}\n")
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o644
    target.chmod(0o600)
    with atomic_output(target, force=True) as handle:
        handle.write(b"[]\n")
    assert target.stat().st_mode & 0o777 == 0o600 and target.read_bytes() == b"[]\n"


def test_progress_reaches_the_file_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jsonl_batch.lines import parallel

    path = tmp_path / "f.jsonl"
    path.write_bytes(b"".join(orjson.dumps(request(f"r{i}")) + b"\n" for i in range(300)))
    size = path.stat().st_size
    for workers, min_bytes in ((1, 1 << 40), (2, 0)):
        monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", min_bytes)
        monkeypatch.setattr(parallel, "CHUNK_BYTES", 4096)
        monkeypatch.setattr(parallel, "BLOCK_LINES", 50)
        seen: list[tuple[int, int | None]] = []

        def note(done: int, total: int | None, seen: list[tuple[int, int | None]] = seen) -> None:
            seen.append((done, total))

        report = validate_file(path, workers=workers, progress=note)
        assert report.valid and len(seen) > 2
        assert seen[-1] == (size, size) and [d for d, _ in seen] == sorted(d for d, _ in seen)
