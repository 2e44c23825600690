"""The answers of a block of requests, taken from where the index set them aside.

``indexing`` wrote each result line's answer columns to spill files (Arrow IPC); for a block
of requests (in input order) ``AnswerTaker.take`` takes each kept answer's row from them,
reading only the spill files the block needs, and
``request_bodies`` copies the requests' bodies from their lines (``--include-bodies``).
"""

from __future__ import annotations

import pyarrow as pa

from .. import compute as pc
from ..lines.reading import loads_wide, read_range, strip_ending
from ..lines.slices import NOT_COPIED, copy_value
from .readers import Anomaly, not_copied

HOLD_BYTES = 256 << 20
"""Bytes of a block's spill tables past which they are not joined into one table (a copy
in memory) but stay mapped from their files, a block's rows taken per spill file: the
answers of a whole result file of long answers (gigabytes) are not copied, and Arrow's take
from several chunks, which joins them first, never meets a string column of more than
2 GiB (32-bit offsets: "offset overflow while concatenating arrays")."""


class AnswerTaker:
    """``take(spill, row)``: the answer rows ``(spill[i], row[i])`` of a block in order, a
    row of nulls where ``spill[i]`` is null (a request without an answer). With ``keep``,
    the spill files the block used are kept for the next block, which mostly needs the
    same ones (the blocks of one input file): joined into one table (Arrow's take from
    several chunks joins their strings anew on each call), or, past ``HOLD_BYTES``,
    mapped apart, one table per spill file, to which the next blocks' files are added."""

    def __init__(self, spills: list[str], schema: pa.Schema) -> None:
        self.spills, self.schema = spills, schema
        self.held: set[int] = set()
        self.table = schema.empty_table()
        self.parts: dict[int, pa.Table] = {}
        """The held spill tables apart (past ``HOLD_BYTES``), else empty."""
        self.first = pa.array([0] * len(spills), pa.int64())
        """Per spill file, its first row in ``table``."""

    def take(self, spill: pa.Array, row: pa.Array, keep: bool = False) -> pa.Table:
        used = set(pc.unique(pc.drop_null(spill)).to_pylist())
        if not used:
            taken = self._nulls(len(spill))
        elif self.held.issuperset(used):
            taken = self._apart(spill, row) if self.parts else self._take(spill, row)
        else:
            taken = self._read(used, spill, row, keep)
        if not keep:  # the input file's last block: nothing held after it
            self._let_go()
        return taken

    def _read(self, used: set[int], spill: pa.Array, row: pa.Array, keep: bool) -> pa.Table:
        """The block's rows, the spill files it uses (and did not hold) read first."""
        parts = self.parts  # mapped apart: the files held stay, the block's are added
        if not parts:
            self._let_go()
        tables: dict[int, pa.Table] = {}
        for number in sorted(used - parts.keys()):  # mapped: read when their rows are
            with pa.memory_map(self.spills[number]) as source:
                tables[number] = pa.ipc.open_file(source).read_all()
        if parts or sum(t.nbytes for t in tables.values()) > HOLD_BYTES:
            self.parts, self.held = parts | tables, set(parts) | used
            return self._apart(spill, row)
        at, first = 0, [0] * len(self.spills)
        for number, table in tables.items():
            first[number], at = at, at + table.num_rows
        self.table, self.first = pa.concat_tables(tables.values()), pa.array(first, pa.int64())
        if keep:
            self.table, self.held = self.table.combine_chunks(), used
        return self._take(spill, row)  # from the chunks: one take, nothing held after it

    def _let_go(self) -> None:
        self.table, self.parts, self.held = self.schema.empty_table(), {}, set()

    def _nulls(self, count: int) -> pa.Table:
        schema = self.schema
        return pa.Table.from_arrays([pa.nulls(count, f.type) for f in schema], schema=schema)

    def _apart(self, spill: pa.Array, row: pa.Array) -> pa.Table:
        """The block's rows taken from each held spill file's table (one take each), then
        put in the block's order."""
        answered = pc.indices_nonzero(pc.is_valid(spill))
        at = pc.take(answered, pc.sort_indices(pc.take(spill, answered)))  # by spill file
        files, rows = pc.value_counts(pc.take(spill, at)), pc.take(row, at)
        taken, start = [], 0
        for number, count in zip(
            files.field("values").to_pylist(), files.field("counts").to_pylist(), strict=True
        ):
            taken.append(pc.take(self.parts[number], rows.slice(start, count)))
            start += count
        missing = pc.indices_nonzero(pc.is_null(spill))
        taken.append(self._nulls(len(missing)))
        order = pc.sort_indices(pa.concat_arrays([at, missing]))  # the inverse of the rows'
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
