"""``split_file(check=False)``: a file validated before, split without checking its lines:
the parts are the input's bytes, within the limits, measured by their sizes alone unless a
limit needs what the lines hold; the same parts and manifest as the checked split."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import jsonl, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jsonl_batch import split_file, validate_file
from jsonl_batch.errors import UsageError
from jsonl_batch.lines.reading import ReadError
from jsonl_batch.split import engine as splitting
from jsonl_batch.split import plan
from jsonl_batch.split import ranges as copying


def embedding(custom_id: str, inputs: Any, model: str = "e") -> dict[str, Any]:
    body = {"model": model, "input": inputs}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings", "body": body}


def padded(custom_id: str, pad: int) -> dict[str, Any]:
    """A valid chat request ``pad`` characters longer than the shortest."""
    return request(custom_id, messages=[{"role": "user", "content": "x" * pad}])


def parts_of(result: Any) -> list[bytes]:
    return [(result.folder / p.path).read_bytes() for p in result.manifest.parts]


@pytest.fixture
def no_parsing(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Neither validation nor the parsing measures may run; ``size_lines``' calls counted."""
    monkeypatch.setattr(splitting, "validate_file", None)
    monkeypatch.setattr(splitting, "measure_lines", None)
    calls = [0]
    sizes = plan.size_lines

    def counted(path: Any) -> Any:
        calls[0] += 1
        return sizes(path)

    monkeypatch.setattr(splitting, "size_lines", counted)
    return calls


def test_unchecked_parts_are_the_input_byte_for_byte(tmp_path: Path, no_parsing: list[int]) -> None:
    """Blank lines, lines that are no JSON, CRLF and a last line without a newline: each
    line is a request, copied as it is."""
    lines = [
        orjson.dumps(request("r1")) + b"\r\n",
        b"\n",
        b"not json\n",
        orjson.dumps(request("r2")) + b"\n",
        b"\r\n",
        orjson.dumps(request("r3")),
    ]
    data = b"".join(lines)
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    result = split_file(path, tmp_path / "out", max_requests=2, check=False)
    assert no_parsing == [1]
    assert result.report.problems == [] and result.report.valid
    stats = result.report.stats
    assert (stats.lines, stats.requests, stats.bytes) == (6, 6, len(data))
    assert (stats.endpoint, stats.model) == ("/v1/chat/completions", "gpt-4o-mini")
    got = parts_of(result)
    assert got == [b"".join(lines[i : i + 2]) for i in (0, 2, 4)]
    manifest = result.manifest
    assert manifest.sha256 == hashlib.sha256(data).hexdigest() and manifest.lines == 6
    assert [p.sha256 for p in manifest.parts] == [hashlib.sha256(b).hexdigest() for b in got]
    assert [p.line_ranges for p in manifest.parts] == [[(1, 2)], [(3, 4)], [(5, 6)]]
    assert [(p.first_custom_id, p.last_custom_id) for p in manifest.parts] == [
        ("r1", None),
        (None, "r2"),
        (None, "r3"),
    ]
    assert {(p.endpoint, p.model) for p in manifest.parts} == {
        ("/v1/chat/completions", "gpt-4o-mini")
    }


def test_unchecked_within_the_byte_limit(tmp_path: Path, no_parsing: list[int]) -> None:
    data = jsonl(*(padded(f"r{i}", i * 7) for i in range(1, 30)))
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    result = split_file(path, tmp_path / "out", max_bytes=700, check=False)
    got = parts_of(result)
    assert b"".join(got) == data and all(len(b) <= 700 for b in got)
    assert [p.bytes for p in result.manifest.parts] == [len(b) for b in got]
    assert sum(p.requests for p in result.manifest.parts) == 29
    for block in got:  # each part as full as the limit allows
        assert block.count(b"\n") == len(block.splitlines())


def test_a_line_no_part_can_hold_is_still_a_problem(tmp_path: Path, no_parsing: list[int]) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(request("r1"), padded("r2", 500)))
    result = split_file(path, tmp_path / "out", max_bytes=300, check=False)
    assert not result.written
    assert result.report.flatten(["line", "code"]) == [[2, "file_too_large"]]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("data", [b"", b"\n", b"{}", b"x\r\n\r\n"])
def test_unchecked_edge_files(tmp_path: Path, data: bytes) -> None:
    """An empty file writes nothing; any other is cut into lines that end after each
    ``\\n`` (or at the end of the file). (No first request says the endpoint, so it may be
    embeddings: the lines are parsed for their inputs, still unchecked.)"""
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    result = split_file(path, tmp_path / "out", max_requests=1, check=False)
    assert result.report.stats.lines == len(data.splitlines())
    if not data:  # the one problem an unchecked file can have, as validation reports it
        assert not result.written and not (tmp_path / "out").exists()
        assert result.report.flatten(["line", "code"]) == [[None, "empty_file"]]
        assert not result.report.valid
        return
    assert parts_of(result) == data.splitlines(keepends=True)


def test_lines_longer_than_a_chunk(
    tmp_path: Path, no_parsing: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan, "SIZE_BYTES", 16)
    lines = [b"a" * 40 + b"\n", b"b\n", b"c" * 70 + b"\r\n", b"d" * 33]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(lines))
    chat = "/v1/chat/completions"  # the endpoint given: no line needs reading
    result = split_file(path, tmp_path / "out", max_requests=1, check=False, endpoint=chat)
    assert parts_of(result) == lines


def test_a_file_cut_short_while_measured_is_a_read_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last read finds no newline because the file lost its end meanwhile: the file
    changed (exit 2), not one request too big for a part (it was read as a line covering
    the lost bytes)."""
    monkeypatch.setattr(plan, "SIZE_BYTES", 1000)
    path = tmp_path / "in.jsonl"
    data = jsonl(*(padded(f"r{i}", 60) for i in range(20)))
    path.write_bytes(data)
    real, calls = os.preadv, []

    def preadv(fd: int, buffers: list[memoryview], at: int) -> int:
        calls.append(at)
        if len(calls) == 2:
            os.truncate(path, len(data) - 1500)
        return real(fd, buffers, at)

    monkeypatch.setattr(os, "preadv", preadv)
    with pytest.raises(ReadError, match="changed while it was being split"):
        split_file(path, tmp_path / "out", check=False, max_bytes=1000)
    assert not (tmp_path / "out").exists()


def test_a_first_line_too_long_to_hold_names_no_model(
    tmp_path: Path, no_parsing: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first line is read for the batch's endpoint and model only if it is at most
    ``FIRST_LINE_BYTES`` long (else it would be held whole, however long)."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(padded("r1", 300), request("r2")))
    chat = "/v1/chat/completions"
    held = split_file(path, tmp_path / "a", check=False, endpoint=chat)
    assert held.manifest is not None and held.manifest.parts[0].model == "gpt-4o-mini"
    monkeypatch.setattr(splitting, "FIRST_LINE_BYTES", 100)
    result = split_file(path, tmp_path / "b", check=False, endpoint=chat)
    assert result.manifest is not None and result.manifest.parts[0].model is None
    assert parts_of(result) == parts_of(held)


@pytest.mark.parametrize(
    "options",
    [{"max_tokens": 10**9}, {"by": "model"}, {"endpoint": "/v1/embeddings"}, {}],
    ids=["tokens", "by", "embeddings given", "embeddings found"],
)
def test_limits_that_need_the_content_measure_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict[str, Any]
) -> None:
    """The lines are parsed and measured (embedding inputs within their limit, counted in
    the manifest) but not checked: the same parts and manifest as the checked split."""
    monkeypatch.setattr(splitting, "size_lines", None)
    lines = [embedding(f"e{i}", ["x"] * (i % 4 + 1)) for i in range(12)]
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(*lines))
    limits = {"max_requests": 5, "max_embedding_inputs": 6}
    unchecked = split_file(path, tmp_path / "a", check=False, **limits, **options)
    checked = split_file(path, tmp_path / "b", **limits, **options)
    assert unchecked.manifest is not None and checked.manifest is not None
    assert unchecked.manifest.dumps() == checked.manifest.dumps()
    assert all(p.embedding_inputs <= 6 for p in unchecked.manifest.parts)
    assert sum(p.embedding_inputs for p in unchecked.manifest.parts) == 30


def test_a_report_made_before_needs_only_the_sizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_parsing: list[int]
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(*(request(f"r{i}") for i in range(7))))
    monkeypatch.undo()  # validate first, with the real functions
    report = validate_file(path)
    checked = split_file(path, tmp_path / "a", max_requests=3)
    for name in ("validate_file", "measure_lines"):
        monkeypatch.setattr(splitting, name, None)
    given = split_file(path, tmp_path / "b", max_requests=3, report=report)
    assert given.manifest is not None and checked.manifest is not None
    assert given.manifest.dumps() == checked.manifest.dumps()


def test_skip_invalid_needs_the_checks(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(request("r1")))
    with pytest.raises(UsageError) as caught:
        split_file(path, tmp_path / "out", skip_invalid=True, check=False)
    assert "skip_invalid=True" in str(caught.value) and "check=False" in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_a_body_shaped_profile_takes_the_given_endpoint(tmp_path: Path) -> None:
    lines = [{"custom_id": f"r{i}", "body": {"model": "m", "messages": []}} for i in range(4)]
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(*lines))
    result = split_file(path, tmp_path / "out", "mistral", max_requests=3, check=False)
    assert result.report.stats.endpoint == "/v1/chat/completions"
    assert [(p.endpoint, p.model) for p in result.manifest.parts] == [
        ("/v1/chat/completions", "m")
    ] * 2


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.integers(0, 300), st.sampled_from([b"\n", b"\r\n"])), min_size=1, max_size=30
    ),
    st.booleans(),
    st.integers(1, 8),
    st.integers(400, 3000),
    st.sampled_from([None, 1, 2, 3]),
    st.sampled_from([16, 64, 1 << 20]),
    st.booleans(),
)
def test_property_unchecked_and_checked_splits_are_the_same(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[tuple[int, bytes]],
    final: bool,
    max_requests: int,
    max_bytes: int,
    parts: int | None,
    chunk: int,
    kernel: bool,
) -> None:
    """A valid file gives the same parts and manifest checked or not (by design: the cuts
    come from the same sizes), whatever the sizes' chunks; ``kernel``: parts of these few
    bytes copied in the kernel and hashed by the two threads (as ``spread`` shares them
    when unchecked), in blocks of a few bytes."""
    raw = [orjson.dumps(padded(f"r{i}", pad)) + end for i, (pad, end) in enumerate(lines)]
    if not final:
        raw[-1] = raw[-1].rstrip(b"\r\n")
    folder = tmp_path_factory.mktemp("unchecked")
    path = folder / "in.jsonl"
    path.write_bytes(b"".join(raw))
    limits = {"max_requests": max_requests, "max_bytes": max_bytes, "parts": parts}

    def split(out: str, **options: Any) -> Any:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(plan, "SIZE_BYTES", chunk)
            if kernel:
                for name, size in (("SMALL_BYTES", 1), ("HASH_BYTES", 7), ("ALONE_BYTES", 50)):
                    patch.setattr(copying, name, size)
            try:
                result = split_file(path, folder / out, **limits, **options)
            except UsageError as exc:  # parts that cannot be made
                return str(exc)
        manifest = result.manifest
        files = [(folder / out / p.path).read_bytes() for p in manifest.parts] if manifest else []
        return (manifest.dumps() if manifest else None), files, result.report.problems

    checked = split("checked")
    assert split("unchecked", check=False) == checked
    if not isinstance(checked, str) and checked[0] is not None:
        data = path.read_bytes()
        assert b"".join(checked[1]) == data
        manifest = orjson.loads(checked[0])
        assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
        digests = [hashlib.sha256(b).hexdigest() for b in checked[1]]
        assert [p["sha256"] for p in manifest["parts"]] == digests
