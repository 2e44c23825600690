"""The join's indexes: where each request is, and each answer's columns set aside.

Files are cut into line-aligned byte ranges handled by worker processes
(``parallel.Workers``). An input range gives each request's custom_id, line and byte range.
A result range is parsed once: each result line's custom_id, whether it succeeded and its
line go to the index (a few tens of bytes per line), and its answer columns
(``results.extract``, or the same computed in Arrow) to a spill file on disk (Arrow IPC),
from which ``joining`` takes each kept answer when it writes the row. So memory follows the
number of lines, never the size of the answers.
"""

from __future__ import annotations

import functools
import os
from array import array
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import orjson
import pyarrow as pa

from .. import compute as pc
from ..lines.parallel import Workers
from ..lines.reading import (
    BUFFER_SIZE,
    LineReader,
    ReadError,
    Source,
    as_file,
    chunk_bounds,
    describe_os_error,
    explain_invalid,
    loads_wide,
    read_range,
    source_name,
    strip_ending,
)
from ..lines.slices import NOT_COPIED
from ..rules.requests import not_a_request
from .readers import (
    EXTRAS,
    FIELDS,
    answer_schema,
    counting,
    extract,
    fast_answers,
    not_copied,
    plain_lines,
    project_lines,
    rows_table,
)
from .structured import FormatFinder, Formats, StructuredPlan, plan_of

RANGE_BYTES = 8 << 20
"""Bytes of a file per indexing task."""

Task = tuple[int, str, int, int]
"""``(file number, path, start, end)``: a line-aligned byte range of a file."""


@dataclass
class Piece:
    """The index of a byte range of one file (offsets relative to the range's start)."""

    ids: Any = field(default_factory=list)
    """custom_ids (a list, or an Arrow array)."""
    ok: Any = field(default_factory=bytearray)
    lines: Any = field(default_factory=lambda: array("q"))
    """Line numbers within the range (1-based)."""
    offsets: Any = field(default_factory=lambda: array("q"))
    lengths: Any = field(default_factory=lambda: array("q"))
    """Each line's byte offset (within the range) and length, ending included."""
    invalid: list[tuple[int, str | None, str, str]] = field(default_factory=list)
    """``(line within the range, custom_id, message, kind)``: lines that are not what was
    expected (``invalid_line``), values that could not be copied (``not_copied``)."""
    count: int = 0
    """Lines in the range."""
    formats: Formats | None = None
    """Inputs: what the requests that ask for JSON output ask for."""


@dataclass
class FileIndex:
    """One file's index: a row per usable line (``table``) and the lines that are not."""

    name: str
    path: str
    lines: int = 0
    table: pa.Table | None = None
    """Inputs: ``custom_id``, ``offset``, ``length``, ``line``; results: ``custom_id``,
    ``line``, ``ok``, ``spill`` and ``row`` (where its answer columns are)."""
    invalid: list[tuple[int, str | None, str, str]] = field(default_factory=list)
    formats: list[tuple[int, Formats]] = field(default_factory=list)
    """Inputs: what their requests ask for, by range (``(the range's first line - 1,
    Formats)``; see ``structured.plan_of``)."""


def tasks(paths: Iterable[str], range_bytes: int | None = None) -> list[Task]:
    """Each file cut into line-aligned byte ranges of about ``RANGE_BYTES``."""
    size_of = range_bytes or RANGE_BYTES
    out = []
    for number, path in enumerate(paths):
        try:
            size = os.path.getsize(path)
            bounds = chunk_bounds(path, size, max(1, size // size_of)) if size else [0, 0]
        except OSError as exc:
            raise ReadError(describe_os_error(path, exc)) from None
        out += [(number, path, a, b) for a, b in pairwise(bounds)]
    return out


# -- inputs ---------------------------------------------------------------------------------


def index_inputs(task: Task, formats: bool = True) -> Piece:
    """Index the request lines in a byte range; stops at the first line that is not one.
    With ``formats``, also what the requests ask for (``piece.formats``: the structured
    plan's part of the range, found here rather than by reading the inputs again)."""
    _, path, start, end = task
    data = read_range(path, start, end)
    found = fast_ids(data, formats)
    if found is None:
        return _index_inputs(path, start, end, formats)
    # every line a request: custom_ids parsed by pyarrow
    ids, lengths, asking = found
    n = len(ids)
    if data.endswith(b"\n"):
        lengths = pc.add(lengths, 1)  # each line's newline
    else:  # but the last line's: it has none
        ends = pa.concat_arrays(
            [pa.repeat(pa.scalar(1, pa.int64()), n - 1), pa.array([0], pa.int64())]
        )
        lengths = pc.add(lengths, ends)
    offsets = pc.subtract(pc.cumulative_sum(lengths), lengths)
    piece = Piece(ids=ids, offsets=offsets, lengths=lengths, count=n)
    piece.lines = counting(n)
    if asking is not None:
        piece.formats = _formats(data, asking, offsets, lengths) if len(asking) else Formats()
    return piece


def _formats(data: bytes, rows: pa.Array, offsets: pa.Array, lengths: pa.Array) -> Formats:
    """What the requests on ``rows`` (those that ask for JSON output) ask for."""
    finder = FormatFinder()
    starts, sizes = pc.take(offsets, rows).to_pylist(), pc.take(lengths, rows).to_pylist()
    for row, start, size in zip(rows.to_pylist(), starts, sizes, strict=True):
        finder.line(row + 1, data[start : start + size])
    return finder.found


def _request_schema(body: pa.DataType) -> pa.Schema:
    return pa.schema([("custom_id", pa.string()), ("url", pa.string()), ("body", body)])


_ID_SCHEMA = _request_schema(pa.struct([]))
_TYPE = pa.struct([("type", pa.string())])
_FORMAT_SCHEMA = _request_schema(
    pa.struct([("response_format", _TYPE), ("text", pa.struct([("format", _TYPE)]))])
)
"""``_ID_SCHEMA`` and the type of JSON output a request body asks for (``requested_schema``:
chat's ``response_format``, responses' ``text.format``)."""
_NO_FORMAT_SCHEMA = _request_schema(
    pa.struct([("response_format", pa.null()), ("text", pa.null())])
)
"""``_FORMAT_SCHEMA`` for ranges without formats, read first: pyarrow appends no null to
these fields' columns for each line that lacks them (about a tenth of its time), and stops
at the first line that holds one (then the range is read on ``_FORMAT_SCHEMA``)."""
_JSON_OUTPUT = pa.array(["json_object", "json_schema"], pa.string())


def fast_ids(
    data: bytes, formats: bool = False
) -> tuple[pa.Array, pa.Array, pa.Array | None] | None:
    """The custom_ids of the request lines in ``data``, parsed by pyarrow, the lines' lengths
    (``plain_lines``) and, with ``formats``, the rows (from 0) whose body may ask for JSON
    output; or ``None`` when a line is not a plain request (then ``not_a_request`` says which
    and why) or its format is not the usual shape."""
    lengths = plain_lines(data)
    if lengths is None:
        return None
    table = project_lines(data, _NO_FORMAT_SCHEMA if formats else _ID_SCHEMA)
    if formats and table is None:  # a line has a format (pyarrow stopped there), or no request
        table = project_lines(data, _FORMAT_SCHEMA)
    if table is None or table.num_rows != len(lengths) or table.column("custom_id").null_count:
        return None
    has_target = pc.or_(pc.is_valid(table.column("url")), pc.is_valid(table.column("body")))
    if not pc.all(has_target).as_py():
        return None
    asking = None
    if formats:
        body = table.column("body").combine_chunks()
        if body.type == _FORMAT_SCHEMA.field("body").type:
            chat = pc.struct_field(body, ["response_format", "type"])
            responses = pc.struct_field(body, ["text", "format", "type"])
            json = pc.or_kleene(
                pc.is_in(chat, value_set=_JSON_OUTPUT), pc.is_in(responses, value_set=_JSON_OUTPUT)
            )
            asking = pc.indices_nonzero(json)
        else:  # read on the lean schema: no line has a format
            asking = pa.array([], pa.uint64())
    return table.column("custom_id").combine_chunks(), lengths, asking


def _index_inputs(path: str, start: int, end: int, formats: bool = True) -> Piece:
    piece = Piece()
    ids, offsets, lengths, lines = piece.ids, piece.offsets, piece.lengths, piece.lines
    loads, decode_error = loads_wide, orjson.JSONDecodeError
    finder = FormatFinder() if formats else None
    position = number = 0
    with open(path, "rb", buffering=BUFFER_SIZE) as handle:
        for raw in LineReader(handle, start=start, end=end).raw():
            number += 1
            if not raw.strip():  # a blank line holds no request: skipped, and said so
                piece.invalid.append((number, None, BLANK_INPUT, "blank_line"))
                position += len(raw)
                continue
            try:
                obj = loads(raw)
            except decode_error:
                piece.invalid.append((number, None, why_not_json(raw), "invalid_line"))
                break
            why = not_a_request(obj)
            if why is not None:
                piece.invalid.append((number, _custom_id(obj), why, "invalid_line"))
                break
            ids.append(obj["custom_id"])
            offsets.append(position)
            lengths.append(len(raw))
            lines.append(number)
            position += len(raw)
            if finder is not None:
                finder.body(number, obj.get("body"))
    piece.count = number
    if finder is not None:
        piece.formats = finder.found
    return piece


BLANK_INPUT = "This line is blank; it was skipped (it holds no request)."


# -- results --------------------------------------------------------------------------------


def spill_schema(extras: tuple[str, ...]) -> pa.Schema:
    """The columns of the spill files: ``answer_schema`` without ``custom_id``."""
    schema = answer_schema(extras)
    return schema.remove(schema.get_field_index("custom_id"))


def index_results(task: tuple[Task, str, tuple[str, ...]]) -> Piece:
    """Index the result lines in a byte range and write their answer columns to ``spill``
    (an Arrow IPC file, one row per result line in order; ``spill_schema``); ``extras`` are
    ``EXTRAS`` keys."""
    (_, path, start, end), spill, extras = task
    data = read_range(path, start, end)
    piece = Piece()
    table = None if extras else fast_answers(data)
    if table is not None:  # every line a clean result line: parsed by pyarrow, in Arrow
        piece.count = table.num_rows
        piece.ids = table.column("custom_id").combine_chunks()
        piece.ok = table.column("ok").combine_chunks()
        piece.lines = counting(table.num_rows)
    else:
        table = _extract_lines(data, extras, piece, os.fspath(path))
    table = table.drop_columns(["custom_id"])  # the index has it (and the table the request's)
    try:
        with pa.OSFile(spill, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    except (OSError, pa.ArrowException) as exc:  # a full or read-only temporary folder
        raise ReadError(f"cannot write the join's temporary files ({exc})") from None
    return piece


def _extract_lines(data: bytes, extras: tuple[str, ...], piece: Piece, name: str) -> pa.Table:
    """The answer columns of each result line, parsed by orjson, and the lines that are
    not results (``piece.invalid``); the index columns go to ``piece``."""
    flags = tuple(option in extras for option in EXTRAS)
    extra_columns = [column for option, column in EXTRAS.items() if option in extras]
    rows: list[tuple[Any, ...]] = []
    lines = data.split(b"\n") if data else []
    last = len(lines) if data.endswith(b"\n") else len(lines) - 1  # lines that had a newline
    if data.endswith(b"\n"):
        lines.pop()  # what follows the last newline
    loads, decode_error = loads_wide, orjson.JSONDecodeError
    for number, raw in enumerate(lines, 1):
        if number <= last and raw.endswith(b"\r"):
            raw = raw[:-1]  # a CRLF ending, as LineReader strips it
        try:
            obj = loads(raw)
        except decode_error:
            kind = "invalid_line" if raw.strip() else "blank_line"  # a blank line: skipped
            piece.invalid.append((number, None, why_not_json(raw, "result"), kind))
            continue
        row = extract(obj, *flags, raw=raw)
        if isinstance(row, str):
            piece.invalid.append((number, _custom_id(obj), row, "invalid_line"))
            continue
        if NOT_COPIED in row:
            values = zip(extra_columns, row[len(FIELDS) + 1 :], strict=True)
            lost = ", ".join(c for c, v in values if v is NOT_COPIED)
            row = tuple(None if v is NOT_COPIED else v for v in row)
            message = not_copied(name, number, row[0], lost).message
            piece.invalid.append((number, row[0], message, "not_copied"))
        rows.append(row)
        piece.ids.append(row[0])
        piece.ok.append(row[len(FIELDS)])
        piece.lines.append(number)
    piece.count = len(lines)
    return rows_table(rows, answer_schema(extras))


def why_not_json(raw: bytes, kind: str = "request") -> str:
    """``explain_invalid`` of a line without its ending (columns counted as the user sees)."""
    raw = strip_ending(raw)
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return explain_invalid(raw, exc, kind)
    return "This line is not valid JSON."  # not reached: only the ending was removed


def _custom_id(obj: Any) -> str | None:
    custom_id = obj.get("custom_id") if type(obj) is dict else None
    return custom_id if type(custom_id) is str else None


# -- both -----------------------------------------------------------------------------------


def index_inputs_of(
    paths: list[str], names: list[str], workers: Any, formats: bool = True
) -> Iterator[FileIndex]:
    """Each input file's index, in order; the first with ``invalid`` lines is the last.
    Every range is handed to ``workers`` at once (the join keeps every index: the workers
    never wait for it). ``formats``: see ``index_inputs``."""
    todo = tasks(paths)
    work = index_inputs if formats else functools.partial(index_inputs, formats=False)
    return _gather_files(todo, workers.map(work, todo, len(todo)), names, None)


def index_results_of(
    paths: list[str],
    names: list[str],
    workers: Any,
    folder: str,
    extras: tuple[str, ...],
    place: Place | None = None,
) -> tuple[Iterator[FileIndex], list[str]]:
    """Each result file's index, in order (every range handed to ``workers`` at once, after
    the inputs': they were stalled while the join checked the inputs), and the spill files
    (``spill`` numbers them). ``place(custom_ids)``: each line's request row, added to the
    index as ``position`` as the ranges come, about ``PLACE_ROWS`` lines at a time (``None``
    from it: no ``position``)."""
    todo = tasks(paths)
    spills = [os.path.join(folder, f"answers-{n:06d}.arrow") for n in range(len(todo))]
    work = [(task, spill, extras) for task, spill in zip(todo, spills, strict=True)]
    pieces = workers.map(index_results, work, len(work))
    return _gather_files(todo, pieces, names, spills, place), spills


Place = Callable[[pa.ChunkedArray], "pa.Array | None"]
"""``matching.Requests.positions``: the request rows of result lines' custom_ids."""
PLACE_ROWS = 131_072
"""Result lines placed at once: a file is placed as its ranges come (while the workers
index the next ones), in groups of about this many lines (each group's lookup table is
small), and its last group when it ends."""


def formats_of(files: Iterable[FileIndex]) -> Iterator[tuple[int, str, int, Formats]]:
    """What the requests of indexed input files ask for, as ``structured.plan_of`` takes it."""
    for number, f in enumerate(files):
        for base, formats in f.formats:
            yield number, f.name, base, formats


def plan_structured(inputs: Iterable[Source], schema: Any = None) -> StructuredPlan:
    """What the requests of ``inputs`` (request files, in join order) ask for, found as the
    join finds it (``index_inputs``), in this process; a file is read up to its first line
    that is not a request. With ``schema`` (see ``structured.output_schema``), that one
    for every answer. Raises ``ReadError`` when a file cannot be read."""
    if schema is not None:
        return plan_of((), schema)
    sources = list(inputs)
    with ExitStack() as stack:
        paths = [stack.enter_context(as_file(s)) for s in sources]
        files = index_inputs_of(paths, [source_name(s) for s in sources], Workers(1))
        return plan_of(formats_of(list(files)))


def _gather_files(
    todo: list[Task],
    pieces: Iterator[Piece],
    names: list[str],
    spills: list[str] | None,
    place: Place | None = None,
) -> Iterator[FileIndex]:
    current: FileIndex | None = None
    current_number = -1
    parts: list[pa.Table] = []
    placed = 0  # parts placed so far
    for spill, ((number, path, start, _end), piece) in enumerate(zip(todo, pieces, strict=True)):
        if number != current_number:
            if current is not None:
                if place is not None:
                    _place(parts, placed, place)
                current.table = _concat(parts, spills is not None)
                yield current
            current, current_number, parts, placed = FileIndex(names[number], path), number, [], 0
        assert current is not None
        base = current.lines
        current.invalid += [(base + line, cid, why, kind) for line, cid, why, kind in piece.invalid]
        if spills is None:
            parts.append(_input_table(piece, start, base))
            if piece.formats is not None and piece.formats.lines:
                current.formats.append((base, piece.formats))
        else:
            parts.append(_result_table(piece, spill, base))
            if place is not None and sum(p.num_rows for p in parts[placed:]) >= PLACE_ROWS:
                placed = _place(parts, placed, place)
        current.lines += piece.count
        if spills is None and any(kind == "invalid_line" for *_, kind in piece.invalid):
            break  # an input line that is not a request: the join stops there
    if current is not None:
        if place is not None:
            _place(parts, placed, place)
        current.table = _concat(parts, spills is not None)
        yield current


def _place(parts: list[pa.Table], first: int, place: Place) -> int:
    """Add ``position`` to the result parts from ``first`` on (``place`` of their custom_ids,
    at once); the number of parts placed."""
    if first == len(parts):
        return first
    ids = pa.chunked_array(
        [c for p in parts[first:] for c in p.column("custom_id").chunks], pa.string()
    )
    found = place(ids)
    if found is not None:
        at = 0
        for i in range(first, len(parts)):
            rows = parts[i].num_rows
            parts[i] = parts[i].append_column("position", found.slice(at, rows))
            at += rows
    return len(parts)


INPUT_SCHEMA = pa.schema(
    [
        ("custom_id", pa.string()),
        ("offset", pa.int64()),
        ("length", pa.int64()),
        ("line", pa.int64()),
    ]
)
RESULT_SCHEMA = pa.schema(
    [
        ("custom_id", pa.string()),
        ("line", pa.int64()),
        ("ok", pa.bool_()),
        ("spill", pa.int32()),
        ("row", pa.int32()),
    ]
)


def _input_table(piece: Piece, start: int, base: int) -> pa.Table:
    n = len(piece.ids)
    columns = [
        pa.array(piece.ids, pa.string()) if isinstance(piece.ids, list) else piece.ids,
        pc.add(_int64(piece.offsets, n), start),
        _int64(piece.lengths, n),
        pc.add(_int64(piece.lines, n), base),
    ]
    return pa.Table.from_arrays(columns, schema=INPUT_SCHEMA)


def _result_table(piece: Piece, spill: int, base: int) -> pa.Table:
    n = len(piece.ids)
    ok = piece.ok
    if not isinstance(ok, pa.Array):
        ok = pc.not_equal(pa.Array.from_buffers(pa.uint8(), n, [None, pa.py_buffer(ok)]), 0)
    lines = _int64(piece.lines, n)
    columns = [
        pa.array(piece.ids, pa.string()) if isinstance(piece.ids, list) else piece.ids,
        pc.add(lines, base),
        ok,
        pa.repeat(pa.scalar(spill, pa.int32()), n),
        pc.cast(counting(n, 0), pa.int32()),
    ]
    return pa.Table.from_arrays(columns, schema=RESULT_SCHEMA)


def _int64(values: array[int] | pa.Array, n: int) -> pa.Array:
    if isinstance(values, pa.Array):
        return values
    return pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(values)])


def _concat(parts: list[pa.Table], results: bool) -> pa.Table:
    schema = RESULT_SCHEMA if results else INPUT_SCHEMA
    return pa.concat_tables(parts) if parts else schema.empty_table()  # chunks: no copy
