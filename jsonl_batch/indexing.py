"""The join's indexes: where each request and each answer is, not what it says.

A result file is indexed line by line (parsed once, by ``results.classify``): each result
line's custom_id, whether it succeeded, its line number and its byte range, in a few tens of
bytes; an input file gives each request's custom_id and byte range. Files are cut into
line-aligned byte ranges indexed by worker processes (``parallel.Workers``), so memory
follows the number of lines, never the size of the answers. ``joining`` then reads each
answer again from its byte range when it writes the row.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .reading import BUFFER_SIZE, LineReader, chunk_bounds, explain_invalid, strip_ending
from .results import classify

RANGE_BYTES = 8 << 20
"""Bytes of a file per indexing task."""


@dataclass
class Piece:
    """The index of a byte range of one file (offsets relative to the range's start)."""

    ids: list[str] = field(default_factory=list)
    offsets: array[int] = field(default_factory=lambda: array("q"))
    lengths: array[int] = field(default_factory=lambda: array("q"))
    lines: array[int] = field(default_factory=lambda: array("q"))
    """Line numbers within the range (1-based)."""
    ok: bytearray = field(default_factory=bytearray)
    invalid: list[tuple[int, str | None, str]] = field(default_factory=list)
    """``(line within the range, custom_id, why)`` of lines that are not what was expected."""
    count: int = 0
    """Lines in the range."""


@dataclass
class FileIndex:
    """One file's index: a row per usable line (``table``) and the lines that are not."""

    name: str
    path: str
    lines: int = 0
    table: pa.Table | None = None
    """``custom_id``, ``offset``, ``length``, ``line`` (and ``ok`` for result files)."""
    invalid: list[tuple[int, str | None, str]] = field(default_factory=list)


def tasks(paths: Iterable[str], range_bytes: int = RANGE_BYTES) -> list[tuple[int, str, int, int]]:
    """``(file number, path, start, end)``: each file cut into line-aligned byte ranges."""
    out = []
    for number, path in enumerate(paths):
        size = os.path.getsize(path)
        bounds = chunk_bounds(path, size, max(1, size // range_bytes)) if size else [0, 0]
        out += [(number, path, a, b) for a, b in pairwise(bounds)]
    return out


def index_results(task: tuple[int, str, int, int]) -> Piece:
    """Index the result lines in a byte range (run in a worker)."""
    return _index(task, _result)


def index_inputs(task: tuple[int, str, int, int]) -> Piece:
    """Index the request lines in a byte range; stops at the first line that is not one."""
    return _index(task, _request)


def _result(obj: Any) -> tuple[str, bool] | str:
    return classify(obj)


def _request(obj: Any) -> tuple[str, bool] | str:
    why = not_a_request(obj)
    return why if why is not None else (obj["custom_id"], True)


def not_a_request(obj: Any) -> str | None:
    """Why a parsed input line is not a request, or ``None``. A request is an object with a
    string ``custom_id`` and a ``url`` or (for providers whose lines have none) a ``body``."""
    if type(obj) is not dict:
        return "This line is not a JSON object."
    if type(obj.get("custom_id")) is not str:
        return "This line has no string 'custom_id'."
    if type(obj.get("url")) is not str and type(obj.get("body")) is not dict:
        return "This line has no string 'url', so it is not a request (is it a result line?)."
    return None


def _index(task: tuple[int, str, int, int], judge: Any) -> Piece:
    _, path, start, end = task
    piece = Piece()
    ids, offsets, lengths, lines, ok = (
        piece.ids,
        piece.offsets,
        piece.lengths,
        piece.lines,
        piece.ok,
    )
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    position = number = 0
    stop = judge is _request
    with open(path, "rb", buffering=BUFFER_SIZE) as handle:
        for raw in LineReader(handle, start=start, end=end).raw():
            number += 1
            try:
                obj = loads(raw)
            except decode_error:
                piece.invalid.append((number, None, _why_not_json(strip_ending(raw))))
                if stop:
                    break
                position += len(raw)
                continue
            found = judge(obj)
            if type(found) is str:
                piece.invalid.append((number, _custom_id(obj), found))
                if stop:
                    break
            else:
                ids.append(found[0])
                ok.append(found[1])
                offsets.append(position)
                lengths.append(len(raw))
                lines.append(number)
            position += len(raw)
    piece.count = number
    return piece


def _why_not_json(raw: bytes) -> str:
    """``explain_invalid`` of a line without its ending (columns counted as the user sees)."""
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return explain_invalid(raw, exc)
    return "This line is not valid JSON."  # not reached: only the ending was removed


def _custom_id(obj: Any) -> str | None:
    custom_id = obj.get("custom_id") if type(obj) is dict else None
    return custom_id if type(custom_id) is str else None


def index_files(
    paths: list[str], names: list[str], work: Any, workers: Any, *, results: bool
) -> Iterator[FileIndex]:
    """Each file's ``FileIndex``, in order, from ``work`` (``index_results`` or
    ``index_inputs``) over its byte ranges run by ``workers`` (a ``parallel.Workers``)."""
    todo = tasks(paths)
    current: FileIndex | None = None
    current_number = -1
    parts: list[pa.Table] = []
    for (number, path, start, _end), piece in zip(todo, workers.map(work, todo), strict=True):
        if number != current_number:
            if current is not None:
                current.table = _concat(parts, results)
                yield current
            current, current_number, parts = FileIndex(names[number], path), number, []
        assert current is not None
        base = current.lines
        current.invalid += [(base + line, cid, why) for line, cid, why in piece.invalid]
        parts.append(_piece_table(piece, start, base, results))
        current.lines += piece.count
        if not results and piece.invalid:
            break  # an input line that is not a request: the join stops there
    if current is not None:
        current.table = _concat(parts, results)
        yield current


INDEX_SCHEMA = pa.schema(
    [
        ("custom_id", pa.string()),
        ("offset", pa.int64()),
        ("length", pa.int64()),
        ("line", pa.int64()),
        ("ok", pa.bool_()),
    ]
)


def _piece_table(piece: Piece, start: int, base: int, results: bool) -> pa.Table:
    n = len(piece.ids)
    columns = [
        pa.array(piece.ids, pa.string()),
        pc.add(_int64(piece.offsets, n), start),
        _int64(piece.lengths, n),
        pc.add(_int64(piece.lines, n), base),
        pc.not_equal(pa.Array.from_buffers(pa.uint8(), n, [None, pa.py_buffer(piece.ok)]), 0),
    ]
    table = pa.Table.from_arrays(columns, schema=INDEX_SCHEMA)
    return table if results else table.drop_columns(["ok"])


def _int64(values: array[int], n: int) -> pa.Array:
    return pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(values)])


def _concat(parts: list[pa.Table], results: bool) -> pa.Table:
    schema = INDEX_SCHEMA if results else INDEX_SCHEMA.remove(4)
    return pa.concat_tables(parts).combine_chunks() if parts else schema.empty_table()
