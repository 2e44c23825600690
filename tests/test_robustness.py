"""No input makes validate print a traceback: random bytes, random JSON, huge and deep lines."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import DrawFn, composite

from jsonl_batch import validate_file
from jsonl_batch.cli import main
from jsonl_batch.lines.reading import is_compressed

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
envelope_keys = st.sampled_from(
    [
        "custom_id",
        "method",
        "url",
        "body",
        "model",
        "messages",
        "input",
        "stream",
        "role",
        "content",
    ]
)


@composite
def request_like(draw: DrawFn) -> object:
    """Objects shaped like requests, with random values where fields go."""
    body = draw(st.dictionaries(envelope_keys, json_values, max_size=5))
    fields = {
        "custom_id": draw(st.text(max_size=5) | json_values),
        "method": draw(st.sampled_from(["POST", "GET", None])),
        "url": draw(
            st.sampled_from(["/v1/chat/completions", "/v1/embeddings", "/v1/responses", "x"])
        ),
        "body": body,
    }
    keep = draw(st.sets(st.sampled_from(sorted(fields))))
    return {k: v for k, v in fields.items() if k in keep}


def check_cli(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    for fmt in ("text", "json"):
        result = CliRunner().invoke(main, ["validate", str(path), "--format", fmt])
        assert result.exception is None or isinstance(result.exception, SystemExit)
        # random bytes that start like gzip or zstd are a compressed file that cannot be read
        unreadable = is_compressed(path) and result.exit_code == 2
        assert result.exit_code in (0, 1) or unreadable, result.output
        assert "Traceback" not in result.output and "internal error" not in result.output


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=300))
def test_random_bytes(tmp_path: Path, data: bytes) -> None:
    check_cli(tmp_path, data)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(json_values | request_like(), max_size=6), st.sampled_from([b"\n", b"\r\n"]))
def test_random_json_lines(tmp_path: Path, values: list[object], ending: bytes) -> None:
    data = b"".join(json.dumps(v).encode() + ending for v in values)  # big ints too
    check_cli(tmp_path, data)


def test_hundred_megabyte_line(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    content = "a" * (100 << 20)
    line = {
        "custom_id": "big",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]},
    }
    path.write_bytes(orjson.dumps(line) + b"\n" + b"not json\n")
    report = validate_file(path, max_bytes=1 << 30)
    assert report.flatten(["line", "code"]) == [[2, "invalid_json_line"]]
    assert report.stats.requests == 1


def test_deep_nesting_everywhere(tmp_path: Path) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    inner = b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":'
    check_cli(
        tmp_path,
        deep + b"\n" + inner + b"{" * 5000 + b"\n" + b'{"a":' * 1000 + b"1" + b"}" * 1000 + b"\n",
    )
