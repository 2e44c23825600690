"""The fast (pyarrow) and the line-by-line readers read any file the same way, and no file
crashes either (pyarrow 26 crashes the process on a ``null`` line at the start of a block)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from legacy_join import read_inputs

from jsonl_batch.lines.reading import MAX_DEPTH
from jsonl_batch.results.index import Piece, _extract_lines, index_results
from jsonl_batch.results.readers import _DEEP_LINE, _read_slow, plain_lines, read_results


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def result(custom_id: str, status: int) -> bytes:
    body = {"model": "m", "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]}
    line = {"custom_id": custom_id, "response": {"status_code": status, "body": body}}
    return orjson.dumps(line)


def with_extra(line: bytes, extra: bytes) -> bytes:
    """``line`` (an object) with one more member ``"x": extra`` outside the projected fields."""
    return line[:-1] + b',"x":' + extra + b"}"


IDS = st.sampled_from(["a", "b", "c"])
EXTRA = st.sampled_from(
    [
        *(b'"\xff"', b'"caf\xc3"', deep(1025), deep(1024), deep(600), b"null", b"[1,2]"),
        # a number out of orjson's range, alone and with a lone surrogate escape (refused)
        *(b"1e999", b'1e999,"y":"\\ud800"', b'"\\ud800\\udc00",  "y":1e999'),
        # literals pyarrow reads as numbers and orjson refuses
        *(b"NaN", b"-Infinity", b"[1, Infinity]", b'"NaN"', b"Inf", b"[-Inf]", b'"Inf"'),
    ]
)
ODD = st.sampled_from(
    [b"null", b"1", b"[]", b'"text"', b"", b"  ", b"{}", b"{", b"\xef\xbb\xbf{}", deep(1100)]
)
LINE = st.one_of(
    st.builds(result, IDS, st.sampled_from([200, 400, 500])),
    st.builds(with_extra, st.builds(result, IDS, st.just(200)), EXTRA),
    ODD,
)


def table_of(found: Any) -> tuple[Any, ...]:
    return found.lines, found.table.to_pylist(), [a.to_dict() for a in found.invalid]


@settings(max_examples=80, deadline=None)
@given(lines=st.lists(LINE, min_size=1, max_size=8), newline=st.booleans())
def test_fast_and_line_readers_give_the_same_table(lines: list[bytes], newline: bool) -> None:
    data = b"\n".join(lines) + (b"\n" if newline else b"")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.jsonl"
        path.write_bytes(data)
        assert table_of(read_results(str(path))) == table_of(_read_slow(path, ()))


def request(custom_id: str, extra: bytes) -> bytes:
    line = {"custom_id": custom_id, "url": "/v1/chat/completions", "body": {"model": "m"}}
    return with_extra(orjson.dumps(line), extra)


@settings(max_examples=40, deadline=None)
@given(
    lines=st.lists(
        st.one_of(st.builds(request, IDS, EXTRA), ODD.filter(lambda b: b != b"{}")), max_size=6
    )
)
def test_fast_and_line_input_readers_agree(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.jsonl"
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        with open(path, "rb") as handle:  # a path may go fast; a handle never does
            outcomes = [outcome(str(path), path), outcome(handle, path)]
        assert outcomes[0] == outcomes[1]


def outcome(source: Any, path: Path) -> Any:
    """The ids ``read_inputs`` reads, or its error (without the file's name)."""
    try:
        return read_inputs(source).custom_ids.to_pylist()
    except Exception as exc:  # the same error, or the same ids
        return str(exc).replace(str(path), "<file>")


def test_a_null_line_at_a_block_start_does_not_crash(tmp_path: Path) -> None:
    block = result("a", 200) + b"\n"
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"null\n" + block * ((1 << 20) // len(block)) + b"null\n" + block)
    found = read_results(str(path))
    assert [a.line for a in found.invalid] == [1, found.lines - 1]


@settings(max_examples=80, deadline=None)
@given(lines=st.lists(LINE, min_size=1, max_size=8), newline=st.booleans())
def test_the_join_indexes_a_range_as_its_line_reader_does(
    lines: list[bytes], newline: bool
) -> None:
    data = b"\n".join(lines) + (b"\n" if newline else b"")
    with tempfile.TemporaryDirectory() as tmp:
        path, spill = Path(tmp) / "out.jsonl", Path(tmp) / "spill.arrow"
        path.write_bytes(data)
        fast = index_results(((0, str(path), 0, len(data)), str(spill), ()))
        with open(spill, "rb") as handle:
            answers = pa.ipc.open_file(handle).read_all()
    slow = Piece()
    table = _extract_lines(data, (), slow, str(path))
    assert piece_of(fast) == piece_of(slow)
    assert answers.equals(table.drop_columns(["custom_id"]))


def piece_of(piece: Piece) -> tuple[Any, ...]:
    def py(values: Any) -> list[Any]:
        return values.to_pylist() if isinstance(values, pa.Array) else list(values)

    ok = [bool(x) for x in py(piece.ok)]
    return piece.count, py(piece.ids), ok, py(piece.lines), piece.invalid


def plain_lines_of(data: bytes) -> list[int] | None:
    """``plain_lines`` as its docstring says, one line at a time."""
    try:
        data.decode()
    except UnicodeDecodeError:
        return None
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    if not data or not all(line.startswith(b"{") for line in lines):
        return None
    deep = [n for n in lines if len(n) >= _DEEP_LINE and n.count(b"[") + n.count(b"{") > MAX_DEPTH]
    return None if deep else [len(line) for line in lines]


@settings(max_examples=150, deadline=None)
@given(
    parts=st.lists(
        st.sampled_from(
            [b"{", b"}", b"\n", b"[", b"x", b"\xc3\xa9", b"\xc3", b"\xef\xbb\xbf", b" "]
        )
        | st.sampled_from([b"{" + deep(MAX_DEPTH), b"[" * 1100, b"{" * 1100 + b"\n"])
        | st.sampled_from([b"x" * 1500, b"{" * 600, b"[" * 700]),  # long lines, few brackets
        max_size=30,
    )
)
def test_plain_lines_takes_whole_lines_that_start_an_object(parts: list[bytes]) -> None:
    data = b"".join(parts)
    found = plain_lines(data)
    assert (None if found is None else found.to_pylist()) == plain_lines_of(data)


GOOD = result("a", 200)
ODD_LINES = {
    # what a line may hold: ``None`` when pyarrow must not be given the lines
    "multi-byte UTF-8": (with_extra(GOOD, '"café 東京 😀"'.encode()), True),
    "invalid UTF-8": (with_extra(GOOD, b'"\xff"'), False),
    "a truncated character": (with_extra(GOOD, b'"caf\xc3"'), False),
    "a BOM": (b"\xef\xbb\xbf" + GOOD, False),
    "a blank line": (b"", False),
    "spaces": (b"  ", False),
    "a space first": (b" " + GOOD, False),
    "null": (b"null", False),
    "NaN as a value": (with_extra(GOOD, b"NaN"), False),
    "Infinity as a value": (with_extra(GOOD, b"Infinity"), False),
    "-Infinity in an array": (with_extra(GOOD, b"[1,-Infinity]"), False),
    "-Inf as a value": (with_extra(GOOD, b"-Inf"), False),
    "NaN in a string": (with_extra(GOOD, b'"NaN and Infinity"'), True),
    "NaN as a key": (with_extra(GOOD, b'{"NaN":1,"Inf":"Infinity"}'), True),
    "a word starting with N or I": (with_extra(GOOD, b'"Nothing Important"'), True),
    "Information in a string": (with_extra(GOOD, b'"Information: NaN"'), True),
    # a line with a constant's letters that orjson refuses anyway (without its last brace)
    "not JSON, with NaN in a string": (with_extra(GOOD, b'"NaN"')[:-1], False),
    "nested too deep": (with_extra(GOOD, deep(MAX_DEPTH)), False),
    "nested a thousand deep": (with_extra(GOOD, deep(1000)), True),
    "brackets in a string": (with_extra(GOOD, b'"' + b"[" * 2000 + b'"'), False),  # counted
}


@pytest.mark.parametrize("where", ["first", "middle", "last", "last without a newline"])
@pytest.mark.parametrize("case", list(ODD_LINES))
def test_plain_lines_at_each_place(case: str, where: str) -> None:
    line, taken = ODD_LINES[case]
    lines = [GOOD, GOOD, GOOD]
    lines[{"first": 0, "middle": 1}.get(where, 2)] = line
    if not line and where == "last without a newline":
        lines, taken = lines[:2], True  # nothing after the last newline: no line
    data = b"\n".join(lines) + (b"" if where.endswith("newline") else b"\n")
    found = plain_lines(data)
    assert (found is not None) == taken
    if found is not None:
        assert found.to_pylist() == [len(n) for n in lines]  # bytes, not characters


@pytest.mark.parametrize("short", [2, 60])  # the long line most of the bytes, or not
@pytest.mark.parametrize("more", [0, 1])
def test_a_long_line_s_brackets_are_counted_in_bytes(more: int, short: int) -> None:
    """Up to ``MAX_DEPTH`` brackets (``[`` and ``{``, anywhere) a long line is taken."""
    base = with_extra(GOOD, b'""')
    padding = "é".encode() * _DEEP_LINE  # long in bytes, not in characters
    text = b"[" * (MAX_DEPTH - base.count(b"[") - base.count(b"{") + more) + padding
    line = with_extra(GOOD, b'"' + text + b'"')
    lines = [GOOD] * (short // 2) + [line] + [GOOD] * (short - short // 2)
    found = plain_lines(b"\n".join(lines) + b"\n")
    assert (found is None) == bool(more)
    assert found is None or found.to_pylist() == [len(n) for n in lines]


def test_plain_lines_of_ascii_and_of_other_text() -> None:
    ascii_line, other = with_extra(GOOD, b'"plain"'), with_extra(GOOD, '"é"'.encode())
    for lines in ([ascii_line] * 3, [ascii_line, ascii_line, other], [other, ascii_line]):
        found = plain_lines(b"\n".join(lines) + b"\n")
        assert found is not None and found.to_pylist() == [len(n) for n in lines]


def test_plain_lines_of_a_range_cut_inside_a_character() -> None:
    data = with_extra(GOOD, '"é"'.encode()) + b"\n"
    cut = data.index(b"\xa9")
    assert plain_lines(data) is not None
    assert plain_lines(data[:cut]) is None  # ends with the first byte of "é"
    assert plain_lines(b"{" + data[cut:]) is None  # starts with its second
    assert plain_lines(data[:cut] + b"\n" + data) is None


@pytest.mark.parametrize("letters", [0, 5000])
def test_a_nan_value_is_found_however_many_of_its_letters_the_text_holds(letters: int) -> None:
    text = result("a", 200)[:-1] + b',"x":"' + b"NIaN" * letters + b'"}'
    assert plain_lines(text + b"\n") is not None  # in a string: JSON, as orjson reads it
    for value in (b"NaN", b"-Infinity", b"[1,Infinity]"):
        assert plain_lines(text + b"\n" + with_extra(result("b", 200), value) + b"\n") is None
