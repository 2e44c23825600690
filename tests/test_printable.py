"""Control characters from a file never reach the terminal raw: text output escapes them."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from jsonl_batch.cli import main
from jsonl_batch.render.text import lines, printable

RAW = ("\x1b", "\r", "\x07", "\x9b", "\u202e")


def test_printable_escapes_controls_as_python_does() -> None:
    assert printable("a\x1b[31mb\r\nc\td\u202ee") == "a\\x1b[31mb\\r\\nc\\td\\u202ee"
    assert printable("plain, ünïcode and 'quotes'") == "plain, ünïcode and 'quotes'"
    assert lines(["one\n", "two\x1b"]) == "one\\n\ntwo\\x1b"


def request(custom_id: str, **extra: object) -> bytes:
    body = {"model": "gpt-4o-mini\r\nfake: line", "messages": [{"role": "user", "content": "hi"}]}
    line = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}
    return orjson.dumps({**line, **extra}) + b"\n"


def assert_clean(output: str, expected_lines: int | None = None) -> None:
    assert not any(c in output for c in RAW), output
    if expected_lines is not None:
        assert len(output.splitlines()) == expected_lines, output


def test_validate_text_escapes_params_messages_and_stats(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(request("a\x1b[2J", **{"k\x1bey\n": 1}) + request("a\x1b[2J"))
    result = CliRunner().invoke(main, ["validate", str(source)])
    assert result.exit_code == 1
    assert_clean(result.output)
    assert "[k\\x1bey\\n]" in result.output and "gpt-4o-mini\\r\\nfake: line" in result.output
    json_out = CliRunner().invoke(main, ["validate", str(source), "--format", "json"]).output
    assert "k\\u001bey\\n" in json_out  # JSON keeps the value, escaped as JSON does


def test_join_and_retry_text_escape_result_values(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(request("r1") + request("r2"))
    results = tmp_path / "out.jsonl"
    error = {"code": "bad\x1b[31m\r\ncode", "message": "m"}
    results.write_bytes(
        orjson.dumps({"id": "x", "custom_id": "r1", "response": None, "error": error})
        + b"\n"
        + orjson.dumps({"id": "y", "custom_id": "orphan\x1b\n", "response": None, "error": error})
        + b"\n"
    )
    joined = CliRunner().invoke(
        main, ["join", str(source), "-r", str(results), "-o", str(tmp_path / "t.csv")]
    )
    assert joined.exit_code == 1, joined.output
    assert_clean(joined.output)
    retried = CliRunner().invoke(
        main, ["retry", str(source), "-r", str(results), "-o", str(tmp_path / "retry.jsonl")]
    )
    assert_clean(retried.output)


def test_error_messages_escape_paths(tmp_path: Path) -> None:
    missing = tmp_path / "no\x1b[2Jsuch\nfile.jsonl"
    for args in (["validate", str(missing)], ["split", str(missing)], ["stats", str(missing)]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2
        assert_clean(result.output, 1)
