"""The answers of a block of requests, taken from where the index set them aside.

``indexing`` wrote each result line's answer columns to spill files (Arrow IPC); for a block
of requests (in input order) ``take_answers`` takes each kept answer's row from them,
memory-mapping only the spill files the block needs, for as long as it needs them, and
``request_bodies`` copies the requests' bodies from their lines (``--include-bodies``).
"""

from __future__ import annotations

from contextlib import ExitStack

import pyarrow as pa

from .. import compute as pc
from ..lines.reading import loads_wide, read_range, strip_ending
from ..lines.slices import NOT_COPIED, copy_value
from .readers import Anomaly, not_copied


def take_answers(spills: list[str], spill: pa.Array, row: pa.Array, schema: pa.Schema) -> pa.Table:
    """The answer rows ``(spill[i], row[i])`` in order, a row of nulls where ``spill[i]`` is
    null (a request without an answer)."""
    used = pc.unique(pc.drop_null(spill)).to_pylist()
    if not used:
        return pa.Table.from_arrays([pa.nulls(len(spill), f.type) for f in schema], schema=schema)
    tables, first = [], [0] * len(spills)
    at = 0
    with ExitStack() as stack:  # the spill files mapped while their rows are taken
        for number in sorted(used):
            source = stack.enter_context(pa.memory_map(spills[number]))
            tables.append(pa.ipc.open_file(source).read_all())
            first[number], at = at, at + tables[-1].num_rows
        where = pc.add(pc.take(pa.array(first, pa.int64()), spill), pc.cast(row, pa.int64()))
        return pc.take(pa.concat_tables(tables), where)  # one take; null where no answer


def request_bodies(path: str, name: str, requests: pa.Table, anomalies: list[Anomaly]) -> pa.Array:
    """The bodies of consecutive requests of an input file (``custom_id``, ``line``,
    ``offset``, ``length``) as JSON text, copied from their lines as written."""
    lines, ids = requests.column("line"), requests.column("custom_id")
    offset, length = requests.column("offset"), requests.column("length")
    offsets, lengths = offset.to_pylist(), length.to_pylist()
    texts: list[str | None] = []
    if not offsets:
        return pa.array(texts, pa.string())
    start = offsets[0]
    data = read_range(path, start, offsets[-1] + lengths[-1])
    for i, (at, size) in enumerate(zip(offsets, lengths, strict=True)):
        raw = strip_ending(data[at - start : at - start + size])
        body = loads_wide(raw).get("body")  # a number orjson cannot hold: see loads_wide
        text = None if body is None else copy_value(raw, ("body",), body)
        if text is NOT_COPIED:
            text = None
            anomalies.append(not_copied(name, lines[i].as_py(), ids[i].as_py(), "request_body"))
        texts.append(text)
    return pa.array(texts, pa.string())
