"""The line reader: endings, offsets, blank lines, BOM, bad bytes, huge lines, I/O errors."""

from __future__ import annotations

import io
import itertools
import os
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jsonl_batch.lines import reading
from jsonl_batch.lines.reading import (
    LineReader,
    ReadError,
    chunk_bounds,
    open_source,
    parse_line,
    read_lines,
)


def lines_of(data: bytes) -> list[tuple[int, int, bytes]]:
    return list(LineReader(io.BytesIO(data)))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", []),
        (b"a\n", [(1, 0, b"a")]),
        (b"a", [(1, 0, b"a")]),
        (b"a\r\nb\r\n", [(1, 0, b"a"), (2, 3, b"b")]),
        (b"a\n\nb", [(1, 0, b"a"), (2, 2, b""), (3, 3, b"b")]),
        (b"a\rb\n", [(1, 0, b"a\rb")]),
        (b"\xef\xbb\xbf{}\n", [(1, 0, b"\xef\xbb\xbf{}")]),
        (b"\xff\xfe\n", [(1, 0, b"\xff\xfe")]),
    ],
)
def test_lines(data: bytes, expected: list[tuple[int, int, bytes]]) -> None:
    assert lines_of(data) == expected


@given(
    st.lists(st.binary(max_size=20).map(lambda b: b.replace(b"\n", b"")), max_size=8),
    st.sampled_from([b"\n", b"\r\n"]),
    st.booleans(),
)
def test_offsets_recover_exact_bytes(parts: list[bytes], ending: bytes, final: bool) -> None:
    data = ending.join(parts) + (ending if final and parts else b"")
    reader = LineReader(io.BytesIO(data))
    rows = list(reader)
    assert reader.offset == len(data)
    starts = [offset for _, offset, _ in rows] + [len(data)]
    pieces = [data[a:b] for a, b in itertools.pairwise(starts)]
    assert b"".join(pieces) == data
    for (_, _, raw), piece in zip(rows, pieces, strict=True):
        assert piece.rstrip(b"\n").removesuffix(b"\r") == raw or piece == raw


def test_range_reading_matches_whole(tmp_path) -> None:
    data = b"".join(b'{"n": %d}\n' % i for i in range(1000))
    path = tmp_path / "f.jsonl"
    path.write_bytes(data)
    bounds = chunk_bounds(path, len(data), 7)
    assert bounds[0] == 0 and bounds[-1] == len(data)
    whole = [raw for _, _, raw in read_lines(path)]
    pieces = []
    with open(path, "rb") as handle:
        for a, b in itertools.pairwise(bounds):
            assert a == 0 or data[a - 1 : a] == b"\n"
            pieces += [raw for _, _, raw in LineReader(handle, start=a, end=b)]
    assert pieces == whole


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 12), st.sampled_from([1, 3, 64]))
def test_chunk_bounds_cut_after_the_line_of_each_target(
    data: bytes, chunks: int, peek: int
) -> None:
    """Each cut is the end of the line that covers its target's previous byte, however far
    the newline is (read in blocks of ``peek`` bytes)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "f.jsonl")
        with open(path, "wb") as out:
            out.write(data)
        saved, reading._PEEK = reading._PEEK, peek
        try:
            bounds = chunk_bounds(path, len(data), chunks)
        finally:
            reading._PEEK = saved
    expected = [0]
    for i in range(1, chunks):
        target = len(data) * i // chunks
        if target > expected[-1]:
            newline = data.find(b"\n", target - 1)
            cut = len(data) if newline == -1 else newline + 1
            if expected[-1] < cut < len(data):
                expected.append(cut)
    assert bounds == [*expected, len(data)]


def test_huge_line_is_just_a_line() -> None:
    big = b'{"x": "' + b"a" * (100 << 20) + b'"}'
    rows = lines_of(big + b"\n" + b"{}\n")
    assert [(n, o, len(r)) for n, o, r in rows] == [(1, 0, len(big)), (2, len(big) + 1, 2)]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"", "blank"),
        (b"   ", "blank"),
        (b"\xef\xbb\xbf{}", "byte-order mark"),
        (b'{"a": "\xff"}', "not valid UTF-8 (byte 0xff at column 8)"),
        (b"[" * 2000 + b"]" * 2000, "deeper than 1024"),
        (b'{"a": 1,}', "not parseable as valid JSON"),
    ],
)
def test_parse_line_explains(raw: bytes, words: str) -> None:
    value, reason = parse_line(raw)
    assert value is None and reason is not None and words in reason


def test_parse_line_ok() -> None:
    assert parse_line(b'{"a": [1, 2]}\r') == ({"a": [1, 2]}, None)


def test_open_errors(tmp_path) -> None:
    with pytest.raises(ReadError, match="no such file"), open_source(tmp_path / "nope"):
        pass
    with pytest.raises(ReadError, match="is a directory"), open_source(tmp_path):
        pass
