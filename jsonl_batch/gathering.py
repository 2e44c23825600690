"""The answers of a block of requests, read from their byte ranges: the join's columns.

``joining`` cuts the requests into blocks (in input order); for each block it knows where
each request's kept answer is (result file, byte offset, length: ``indexing``). ``gather``
reads those bytes (sorted by file and offset, adjacent lines in one read), parses each answer
once and turns it into the answer columns with ``results.extract``, the one place that says
which fields of an answer become which column. Blocks run in worker processes
(``parallel.Workers``), so only one block's answers are in memory per process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

import orjson
import pyarrow as pa

from .answer_checks import check_answers
from .reading import strip_ending
from .results import (
    EXTRAS,
    FIELDS,
    Anomaly,
    answer_columns,
    extract,
    not_copied,
    result_schema,
    rows_table,
)
from .slices import NOT_COPIED, copy_value
from .structured import BlockChecks

RUN_BYTES = 16 << 20
"""Adjacent answers are read together up to this many bytes."""


@dataclass
class Block:
    """A block of consecutive requests of one input file and where their answers are."""

    results: tuple[str, ...]
    """The result files' paths (``file`` numbers index them)."""
    result_names: tuple[str, ...]
    file: pa.Array
    """Per request: the number of the file holding its answer (null: missing)."""
    offset: pa.Array
    length: pa.Array
    line: pa.Array
    """The answer's line number in its file."""
    extras: tuple[str, ...] = ()
    input: tuple[str, str, pa.Array, pa.Array, pa.Array, pa.Array] | None = None
    """For request bodies: the input's path and name, and per request its custom_id, line,
    offset and length."""
    checks: BlockChecks | None = None
    """What each answer must be (JSON, of a schema), when the requests asked for JSON."""


@dataclass
class Gathered:
    """A block's answer columns (``answer_schema``) and what could not be copied."""

    table: pa.Table
    request_bodies: pa.Array | None = None
    parsed: pa.Array | None = None
    """The answers parsed and typed (``Block.checks``)."""
    input_anomalies: list[Anomaly] = field(default_factory=list)
    result_anomalies: list[tuple[int, Anomaly]] = field(default_factory=list)
    """``(result file number, anomaly)``."""


def answer_schema(extras: tuple[str, ...] = ()) -> pa.Schema:
    """``extract``'s columns: ``results.FIELDS``, ``ok`` and the extras asked for."""
    schema = result_schema(extras)
    return schema.remove(schema.get_field_index("line"))


def gather(block: Block) -> Gathered:
    """Read and extract the answers of a block (run in a worker)."""
    raws = _read(block)
    out = Gathered(pa.table({}))
    schema = answer_schema(block.extras)
    present = [i for i, raw in enumerate(raws) if raw is not None]
    lines = [raw for raw in raws if raw is not None]
    columns = None if block.extras else answer_columns(lines)
    if columns is not None:  # the common case, in Arrow: no Python object per field
        where: list[int | None] = [None] * len(raws)
        for position, i in enumerate(present):
            where[i] = position
        table = pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)
        out.table = table.take(pa.array(where, pa.int64()))
    else:
        out.table = rows_table(_extract(block, raws, out), schema)
    if block.checks is not None:
        out.table, out.parsed = check_answers(out.table, block.checks)
    if block.input is not None:
        out.request_bodies = _bodies(block.input, out.input_anomalies)
    return out


def _read(block: Block) -> list[bytes | None]:
    """Each request's answer line (without its ending), ``None`` when it has none; read
    in file and offset order, adjacent lines at once."""
    files = block.file.to_pylist()
    offsets = block.offset.to_pylist()
    lengths = block.length.to_pylist()
    raws: list[bytes | None] = [None] * len(files)
    found = (i for i, f in enumerate(files) if f is not None)
    order = sorted(found, key=lambda i: (files[i], offsets[i]))
    for number, group in groupby(order, key=lambda i: files[i]):
        fd = os.open(block.results[number], os.O_RDONLY)
        try:
            for run in _runs(list(group), offsets, lengths):
                start = offsets[run[0]]
                data = os.pread(fd, offsets[run[-1]] + lengths[run[-1]] - start, start)
                for i in run:
                    at = offsets[i] - start
                    raws[i] = strip_ending(data[at : at + lengths[i]])
        finally:
            os.close(fd)
    return raws


def _extract(block: Block, raws: list[bytes | None], out: Gathered) -> list[tuple[Any, ...]]:
    """``results.extract`` of each answer (a row of nulls for none); values that could not
    be copied become nulls and anomalies."""
    flags = tuple(option in block.extras for option in EXTRAS)
    extra_columns = [column for option, column in EXTRAS.items() if option in block.extras]
    nothing = (None,) * (len(FIELDS) + 1 + len(extra_columns))
    loads = orjson.loads
    rows: list[tuple[Any, ...]] = []
    for i, raw in enumerate(raws):
        if raw is None:
            rows.append(nothing)
            continue
        row = extract(loads(raw), *flags, raw=raw)
        assert not isinstance(row, str)  # the index took it as a result line
        if NOT_COPIED in row:
            values = zip(extra_columns, row[len(FIELDS) + 1 :], strict=True)
            lost = ", ".join(c for c, v in values if v is NOT_COPIED)
            row = tuple(None if v is NOT_COPIED else v for v in row)
            number = block.file[i].as_py()
            anomaly = not_copied(block.result_names[number], block.line[i].as_py(), row[0], lost)
            out.result_anomalies.append((number, anomaly))
        rows.append(row)
    return rows


def _runs(order: list[int], offsets: list[int], lengths: list[int]) -> list[list[int]]:
    """Rows whose byte ranges follow each other (read at once, up to ``RUN_BYTES``)."""
    runs: list[list[int]] = []
    end = size = -1
    for i in order:
        if offsets[i] == end and size + lengths[i] <= RUN_BYTES:
            runs[-1].append(i)
            size += lengths[i]
        else:
            runs.append([i])
            size = lengths[i]
        end = offsets[i] + lengths[i]
    return runs


def _bodies(
    found: tuple[str, str, pa.Array, pa.Array, pa.Array, pa.Array], anomalies: list[Anomaly]
) -> pa.Array:
    """The requests' bodies as JSON text, copied from their lines (consecutive in the file)."""
    path, name, ids, lines, offset, length = found
    offsets, lengths = offset.to_pylist(), length.to_pylist()
    texts: list[str | None] = []
    if not offsets:
        return pa.array(texts, pa.string())
    start = offsets[0]
    with open(path, "rb", buffering=0) as handle:
        data = os.pread(handle.fileno(), offsets[-1] + lengths[-1] - start, start)
    for i, (at, size) in enumerate(zip(offsets, lengths, strict=True)):
        raw = strip_ending(data[at - start : at - start + size])
        body = orjson.loads(raw).get("body")
        text = None if body is None else copy_value(raw, ("body",), body)
        if text is NOT_COPIED:
            text = None
            anomalies.append(not_copied(name, lines[i].as_py(), ids[i].as_py(), "request_body"))
        texts.append(text)
    return pa.array(texts, pa.string())
