"""The answers of a block of requests, taken from where the index set them aside.

``indexing`` wrote each result line's answer columns to spill files (Arrow IPC); for a block
of requests (in input order) ``AnswerTaker.take`` takes each kept answer's row from them,
reading only the spill files the block needs, and
``request_bodies`` copies the requests' bodies from their lines (``--include-bodies``).
"""

from __future__ import annotations

from contextlib import ExitStack

import pyarrow as pa

from .. import compute as pc
from ..lines.reading import loads_wide, read_range, strip_ending
from ..lines.slices import NOT_COPIED, copy_value
from .readers import Anomaly, not_copied

LIMIT = 2**31 - 1
"""Bytes of a block's spill tables past which its rows are taken per spill file: Arrow's
take from several chunks joins them first, and a string column of more than 2 GiB cannot
be joined (32-bit offsets: "offset overflow while concatenating arrays")."""


class AnswerTaker:
    """``take(spill, row)``: the answer rows ``(spill[i], row[i])`` of a block in order, a
    row of nulls where ``spill[i]`` is null (a request without an answer). With ``keep``,
    the spill files the block used are joined into one table and kept for the next block,
    which mostly needs the same ones (the blocks of one input file): Arrow's take from
    several chunks joins their strings anew on each call. Spill tables of more than
    ``LIMIT`` bytes are held apart, one per spill file, and a block takes from each."""

    def __init__(self, spills: list[str], schema: pa.Schema) -> None:
        self.spills, self.schema = spills, schema
        self.held: set[int] = set()
        self.table = schema.empty_table()
        self.parts: dict[int, pa.Table] = {}
        """The held spill tables apart (more than ``LIMIT`` bytes), else empty."""
        self.first = pa.array([0] * len(spills), pa.int64())
        """Per spill file, its first row in ``table``."""

    def take(self, spill: pa.Array, row: pa.Array, keep: bool = False) -> pa.Table:
        used = pc.unique(pc.drop_null(spill)).to_pylist()
        if not used:
            if not keep:
                self._let_go()
            return self._nulls(len(spill))
        if self.held.issuperset(used):
            taken = self._apart(used, spill, row) if self.parts else self._take(spill, row)
            if not keep:  # the input file's last block: nothing held after it
                self._let_go()
            return taken
        self._let_go()  # first
        tables, first, at = [], [0] * len(self.spills), 0
        with ExitStack() as stack:  # the spill files mapped while their rows are taken
            for number in sorted(used):
                source = stack.enter_context(pa.memory_map(self.spills[number]))
                tables.append(pa.ipc.open_file(source).read_all())
                first[number], at = at, at + tables[-1].num_rows
            if sum(table.nbytes for table in tables) > LIMIT:
                parts = dict(zip(sorted(used), tables, strict=True))
                if keep:
                    parts = {
                        n: t.combine_chunks() if t.nbytes <= LIMIT else t for n, t in parts.items()
                    }
                    self.parts, self.held = parts, set(used)
                return self._apart(used, spill, row, parts)
            self.table, self.first = pa.concat_tables(tables), pa.array(first, pa.int64())
            if not keep:  # one take from the chunks, nothing held while the block is written
                taken = self._take(spill, row)
                self.table = self.schema.empty_table()
                return taken
            self.table, self.held = self.table.combine_chunks(), set(used)
        return self._take(spill, row)

    def _let_go(self) -> None:
        self.table, self.parts, self.held = self.schema.empty_table(), {}, set()

    def _nulls(self, count: int) -> pa.Table:
        schema = self.schema
        return pa.Table.from_arrays([pa.nulls(count, f.type) for f in schema], schema=schema)

    def _apart(
        self,
        used: list[int],
        spill: pa.Array,
        row: pa.Array,
        parts: dict[int, pa.Table] | None = None,
    ) -> pa.Table:
        """The block's rows taken from each spill file's table, then put in the block's order."""
        parts = self.parts if parts is None else parts
        at, taken = [], []
        for number in used:
            where = pc.indices_nonzero(pc.fill_null(pc.equal(spill, number), False))
            at.append(where)
            taken.append(pc.take(parts[number], pc.take(row, where)))
        where = pc.indices_nonzero(pc.is_null(spill))
        at.append(where)
        taken.append(self._nulls(len(where)))
        order = pc.sort_indices(pa.concat_arrays(at))  # the inverse of the rows' positions
        return pc.take(pa.concat_tables(taken), order)

    def _take(self, spill: pa.Array, row: pa.Array) -> pa.Table:
        where = pc.add(pc.take(self.first, spill), pc.cast(row, pa.int64()))
        return pc.take(self.table, where)  # one take; null where no answer


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
