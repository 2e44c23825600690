"""``jsonl-batch split`` through click's CliRunner: every option, every error path, exit codes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result
from helpers import NO_COUNTER, jsonl, request, without_token_counter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jsonl_batch import split_file, validate_file
from jsonl_batch.cli import main
from jsonl_batch.split.ranges import ByteRanges


def run(*args: str) -> Result:
    result = CliRunner().invoke(main, ["split", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def embedding(custom_id: str, inputs: Any, model: str = "e") -> dict[str, Any]:
    body = {"model": model, "input": inputs}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings", "body": body}


@pytest.fixture
def big(tmp_path: Path) -> Path:
    path = tmp_path / "big.jsonl"
    path.write_bytes(jsonl(*(request(f"r{i}") for i in range(1, 6))))
    return path


def names(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_split_text(big: Path, tmp_path: Path) -> None:
    result = run(str(big), "--max-requests", "2", "-o", str(tmp_path / "parts"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"{big}: 5 requests -> 3 parts in {tmp_path / 'parts'}"
    assert lines[1].startswith("  big.part-001-of-003.jsonl  2 requests, ")
    assert lines[1].endswith("r1 .. r2") and lines[-1] == "  big.manifest.json"
    assert names(tmp_path / "parts") == [
        "big.manifest.json",
        "big.part-001-of-003.jsonl",
        "big.part-002-of-003.jsonl",
        "big.part-003-of-003.jsonl",
    ]


def test_split_json_equals_the_manifest(big: Path, tmp_path: Path) -> None:
    result = run(str(big), "--max-bytes", "0.3KB", "--format", "json")
    assert result.exit_code == 0
    printed = orjson.loads(result.stdout)
    written = orjson.loads((tmp_path / "big.manifest.json").read_bytes())
    assert printed.pop("manifest") == str(tmp_path / "big.manifest.json")
    assert printed == written and len(written["parts"]) == 3
    assert all(p["bytes"] <= 300 for p in written["parts"])


def test_parts_by_and_limits(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        jsonl(request("r1"), embedding("e1", ["a", "b"]), request("r2", model="x"))
        + jsonl(embedding("e2", ["c", "d"]), request("r3"))
    )
    result = run(str(path), "--format", "json")
    assert result.exit_code == 1 and orjson.loads(result.stdout)["valid"] is False
    result = run(str(path), "--by", "model", "--max-embedding-inputs", "3", "--format", "json")
    assert result.exit_code == 0, result.output
    parts = orjson.loads(result.stdout)["parts"]
    assert [(p["model"], p["requests"]) for p in parts] == [
        ("gpt-4o-mini", 2),
        ("e", 1),
        ("e", 1),
        ("x", 1),
    ]
    result = run(str(path), "--by", "endpoint", "--force")
    assert result.exit_code == 1 and "mismatched_model" in result.stdout
    result = run(str(path), "--by", "endpoint", "--skip-invalid", "--force")
    assert result.exit_code == 0 and "mixed.rejected.jsonl  1 invalid line," in result.stdout


def test_balanced_parts(big: Path) -> None:
    result = run(str(big), "--parts", "2", "--format", "json")
    assert [p["requests"] for p in orjson.loads(result.stdout)["parts"]] == [3, 2]


def test_invalid_input_is_reported_like_validate(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(jsonl(request("r1"), request("r1")) + b"\n")
    result = run(str(path))
    assert result.exit_code == 1
    assert "INVALID (2 errors)" in result.stdout
    assert "line 2 [custom_id]: custom_id 'r1' is already used on line 1" in result.stdout
    assert "Nothing was written" in result.stderr
    assert names(tmp_path) == ["bad.jsonl"]
    result = run(str(path), "--format", "json", "--max-problems", "1")
    library = split_file(path, max_problems=1).report.to_dict()
    assert orjson.loads(result.stdout) == library and len(library["problems"]) == 1
    assert result.stderr == ""


def test_skip_invalid(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(jsonl(request("r1"), request("r1"), request("r2")))
    result = run(str(path), "--skip-invalid", "--jobs", "1")
    assert result.exit_code == 0
    assert "bad.rejected.jsonl  1 invalid line," in result.stdout
    assert "duplicate_custom_id" in result.stderr  # why they were rejected
    assert (tmp_path / "bad.rejected.jsonl").read_bytes() == jsonl(request("r1"))
    assert validate_file(tmp_path / "bad.part-001-of-001.jsonl").valid


def test_max_tokens(big: Path, tmp_path: Path) -> None:
    result = run(str(big), "--max-tokens", "20", "-o", str(tmp_path / "a"))  # 8 tokens each
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].endswith("5 requests -> 3 parts in " + str(tmp_path / "a"))
    assert ", ~16 input tokens  r1 .. r2" in lines[1] and ", ~8 input tokens  r5" in lines[3]
    result = run(str(big), "--max-tokens", "20", "-o", str(tmp_path / "b"), "--format", "json")
    manifest = orjson.loads(result.stdout)
    assert manifest["limits"]["max_tokens"] == 20
    assert [p["input_tokens"] for p in manifest["parts"]] == [16, 16, 8]


def test_a_request_over_max_tokens(big: Path, tmp_path: Path) -> None:
    result = run(str(big), "--max-tokens", "7", "-o", str(tmp_path / "a"), "--max-problems", "1")
    assert result.exit_code == 1
    assert "line 1: This request alone has an estimated 8 input tokens; the limit is 7 input" in (
        result.stdout
    )
    assert "token_limit_exceeded" in result.stdout and "Nothing was written" in result.stderr
    assert not (tmp_path / "a").exists()


def test_max_tokens_without_token_counter_exits_2(
    big: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_token_counter(monkeypatch)
    result = run(str(big), "--max-tokens", "100")
    assert result.exit_code == 2
    assert result.output == NO_COUNTER
    assert names(big.parent) == ["big.jsonl"]


def test_profile(tmp_path: Path) -> None:
    path = tmp_path / "emb.jsonl"
    line = embedding("e1", "x")
    path.write_bytes(jsonl({**line, "url": "/v1/completions"}))
    result = run(str(path), "--profile", "azure")
    assert result.exit_code == 1 and "unsupported_endpoint" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--parts", "2", "--by", "model"), "cannot be combined"),
        (("--parts", "9"), "cannot make 9 parts from 5"),
        (("--parts", "2", "--max-requests", "2"), "do not fit in 2 parts"),
        (("--parts", "0"), "Invalid value"),
        (("--max-bytes", "big"), "invalid size"),
        (("--by", "colour"), "Invalid value"),
        (("--max-tokens", "0"), "Invalid value"),
        (("--parts", "2", "--max-tokens", "16"), "do not fit in 2 parts"),
    ],
)
def test_usage_errors_exit_2(big: Path, args: tuple[str, ...], message: str) -> None:
    result = run(str(big), *args)
    assert result.exit_code == 2 and message in result.output


def test_no_check_splits_as_the_checked_split(big: Path, tmp_path: Path) -> None:
    args = (str(big), "--max-requests", "2", "--format", "json")
    checked = run(*args, "-o", str(tmp_path / "a"))
    unchecked = run(*args, "-o", str(tmp_path / "b"), "--no-check")
    assert checked.exit_code == unchecked.exit_code == 0, unchecked.output
    a, b = orjson.loads(checked.stdout), orjson.loads(unchecked.stdout)
    assert a.pop("manifest") != b.pop("manifest") and a == b
    last = big.read_bytes().splitlines(keepends=True)[-1]
    assert (tmp_path / "b" / "big.part-003-of-003.jsonl").read_bytes() == last


def test_no_check_copies_any_line_and_refuses_skip_invalid(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_bytes(jsonl(request("r1")) + b"not json\n\n")
    result = run(str(path), "--no-check", "--max-requests", "2", "-o", str(tmp_path / "out"))
    assert result.exit_code == 0 and "3 requests -> 2 parts" in result.stdout
    assert (tmp_path / "out" / "odd.part-002-of-002.jsonl").read_bytes() == b"\n"
    result = run(str(path), "--no-check", "--max-bytes", "100", "-o", str(tmp_path / "b"))
    assert result.exit_code == 1 and "line 1: This request alone has" in result.stdout
    assert "use --skip-invalid without --no-check" in result.stderr
    result = run(str(path), "--no-check", "--skip-invalid")
    assert result.exit_code == 2 and "--no-check" in result.output
    assert "--skip-invalid needs the lines checked" in result.output


def test_standard_input_is_refused(big: Path, tmp_path: Path) -> None:
    # found by hand: '-' was "<stdin>: no such file"
    result = CliRunner().invoke(main, ["split", "-", "-o", str(tmp_path)], input=big.read_bytes())
    assert result.exit_code == 2 and "give a file, not standard input" in result.output
    assert "no such file" not in result.output and os.listdir(tmp_path) == [big.name]


def test_io_errors_exit_2(big: Path, tmp_path: Path) -> None:
    result = run(str(tmp_path / "missing.jsonl"))
    assert result.exit_code == 2 and "missing.jsonl: no such file" in result.output
    result = run(str(tmp_path))
    assert result.exit_code == 2 and "is a directory" in result.output
    assert run(str(big)).exit_code == 0
    result = run(str(big))
    assert result.exit_code == 2 and "already exists; use --force" in result.output
    result = run(str(big), "--max-requests", "1")
    assert result.exit_code == 2 and "left from an earlier split" in result.output
    assert run(str(big), "--max-requests", "1", "--force").exit_code == 0
    assert len([n for n in names(tmp_path) if ".part-" in n]) == 5
    (tmp_path / "file").write_text("")
    result = run(str(big), "-o", str(tmp_path / "file"))
    assert result.exit_code == 2


def test_help_has_an_example() -> None:
    result = CliRunner().invoke(main, ["split", "--help"])
    assert (
        result.exit_code == 0 and "Example:" in result.output and "--skip-invalid" in result.output
    )


CANNOT_CUT = ("cannot make 2 parts from", "do not fit in 2 parts", "decompress it first")
"""The only exit-2 messages a file's content can cause (with ``--parts 2 --max-requests 1``;
a file starting with gzip's or zstd's magic bytes is compressed: split copies byte ranges)."""
json_lines = st.lists(
    st.sampled_from(
        [
            jsonl(request("r1")),
            jsonl(request("r2", model="other")),
            jsonl(embedding("e1", ["a", "b"])),
            jsonl(request("r1", stream=True)),
            b"\n",
            b"\xef\xbb\xbf{}\n",
            b"[1]\r\n",
            b'{"custom_id": 5}',
            b"\xff\xfe\n",
        ]
    ),
    max_size=8,
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    json_lines | st.binary(max_size=200).map(lambda b: [b]),
    st.sampled_from(
        [(), ("--by", "model"), ("--by", "endpoint"), ("--parts", "2"), ("--max-tokens", "9")]
    ),
    st.booleans(),
)
def test_no_traceback_on_any_input(
    tmp_path_factory: pytest.TempPathFactory,
    chunks: list[bytes],
    options: tuple[str, ...],
    skip: bool,
) -> None:
    folder = tmp_path_factory.mktemp("any")
    path = folder / "in.jsonl"
    path.write_bytes(b"".join(chunks))
    args = [str(path), "--max-requests", "1", *options] + (["--skip-invalid"] if skip else [])
    for fmt in ("text", "json"):
        result = run(*args, "--format", fmt, "--force")
        assert result.exit_code in (0, 1, 2), result.output
        assert "internal error" not in result.output
        if result.exit_code == 2:  # the file cannot be cut as asked: one line, not "Usage:"
            assert result.output.startswith("Error: ") and "Usage:" not in result.output
            assert any(m in result.output for m in CANNOT_CUT), result.output


def test_output_folder_under_a_file(big: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    result = run(str(big), "-o", str(tmp_path / "afile" / "sub"))
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {tmp_path / 'afile' / 'sub'}: cannot ")
    assert len(result.output.splitlines()) == 1 and "internal error" not in result.output


def test_skip_invalid_when_every_line_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"not json\n[1]\n")
    result = run(str(path), "--skip-invalid")
    assert result.exit_code == 1  # no part to upload
    assert "bad.rejected.jsonl  2 invalid lines, unchanged" in result.stdout
    assert "or use --skip-invalid" not in result.output
    assert "No valid request: every line went to bad.rejected.jsonl" in result.stderr
    assert names(tmp_path) == ["bad.jsonl", "bad.manifest.json", "bad.rejected.jsonl"]
    result = run(str(path), "--skip-invalid", "--force", "--format", "json")
    assert result.exit_code == 1 and orjson.loads(result.stdout)["parts"] == []


def test_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    for skip in ((), ("--skip-invalid",)):
        result = run(str(path), *skip)
        assert result.exit_code == 1
        assert f"Nothing was written: {path} is empty." in result.stderr
        assert "--skip-invalid" not in result.stderr
    assert names(tmp_path) == ["empty.jsonl"]


def test_a_failed_split_with_force_keeps_the_earlier_split(
    big: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(str(big), "--max-requests", "2").exit_code == 0
    before = {n: (tmp_path / n).read_bytes() for n in names(tmp_path)}
    calls = []
    copy = ByteRanges.copy

    def full(self: Any, runs: Any, out: Any) -> str:
        calls.append(runs)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return copy(self, runs, out)

    monkeypatch.setattr(ByteRanges, "copy", full)
    result = run(str(big), "--max-requests", "2", "--force")
    assert result.exit_code == 2 and "No space left on device" in result.output
    assert {n: (tmp_path / n).read_bytes() for n in names(tmp_path)} == before


def test_parts_and_manifest_get_normal_permissions(tmp_path) -> None:
    import os

    from jsonl_batch import split_file

    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(
        b'{"custom_id":"r%d","method":"POST","url":"/v1/chat/completions","body":{"model":"m",'
        b'"messages":[{"role":"user","content":"hi"}]}}\n' % i for i in range(3)
    ))  # fmt: skip
    old = os.umask(0o022)
    try:
        result = split_file(source, tmp_path / "out", max_requests=1)
    finally:
        os.umask(old)
    assert result.manifest is not None
    written = sorted((tmp_path / "out").iterdir())
    assert len(written) == 4
    assert {p.stat().st_mode & 0o777 for p in written} == {0o644}


def test_token_counting_reports_progress(tmp_path) -> None:
    from jsonl_batch import split_file

    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(
        b'{"custom_id":"r%d","method":"POST","url":"/v1/chat/completions","body":{"model":"m",'
        b'"messages":[{"role":"user","content":"hello there"}]}}\n' % i for i in range(50)
    ))  # fmt: skip
    seen: list[tuple[int, int | None]] = []
    result = split_file(source, tmp_path / "out", max_tokens=200,
                        progress=lambda done, total: seen.append((done, total)))  # fmt: skip
    assert result.manifest is not None and len(result.manifest.parts) > 1
    assert seen and seen[-1] == (source.stat().st_size, source.stat().st_size)


def test_force_never_clears_another_inputs_split(tmp_path: Path) -> None:
    for job in ("job1", "job2"):
        (tmp_path / job).mkdir()
        (tmp_path / job / "requests.jsonl").write_bytes(jsonl(request(job), request(f"{job}b")))
    parts = tmp_path / "parts"
    first = tmp_path / "job1" / "requests.jsonl"
    assert run(str(first), "-o", str(parts), "--max-requests", "1").exit_code == 0
    before = names(parts)
    result = run(str(tmp_path / "job2" / "requests.jsonl"), "-o", str(parts), "--force")
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert f"is the split of another input ({first})" in result.output
    assert "earlier split" not in result.output
    assert names(parts) == before
    assert run(str(first), "-o", str(parts), "--force").exit_code == 0
    assert names(parts) == ["requests.manifest.json", "requests.part-001-of-001.jsonl"]


def test_parts_is_exact_with_skip_invalid(tmp_path: Path) -> None:
    path = tmp_path / "chat.jsonl"
    huge = request("big", user="x" * 400)
    path.write_bytes(jsonl(*(request(f"r{i}") for i in range(1, 5)), huge))
    result = run(str(path), "--parts", "4", "--max-bytes", "300", "--skip-invalid")
    assert result.exit_code == 0
    assert len([n for n in names(tmp_path) if "-of-004" in n]) == 4


def test_a_read_error_while_hashing_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jsonl_batch.split import ranges

    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(*(request(f"r{i}") for i in range(1, 40))))
    monkeypatch.setattr(ranges, "SMALL_BYTES", 0)  # parts copied in the kernel, followed

    def failing(fd: int, buffers: Any, offset: int) -> int:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(ranges.os, "preadv", failing)
    result = run(str(path), "--max-requests", "7")
    assert result.exit_code == 2
    assert result.output == f"Error: {path}: Input/output error\n"
    assert names(tmp_path) == ["in.jsonl"]
