"""A job's table: the streaming join of its inputs with every round's results, plus the
job's columns (``JOB_FIELDS``): ``attempts`` (how many batches the request was sent in),
``batch_id`` (the batch whose answer the row holds; for a request without an answer, its
last batch), ``part`` and ``part_line`` (the part file of ``DIR`` that batch was made from,
and the request's line in it: the bytes that were sent).

The join (``results.join.join_into``) hands the rows over a block at a time, in input
order, and each block is written as it comes (``results.tables.TableWriter``): memory does
not grow with the answers. Round 0's parts hold the inputs' requests in order, so a row's
round-0 part follows from its position. A retry round holds requests that failed before,
in input order too (``write_retry`` copies them in input order, one retry file per input,
in the inputs' order), so each round's custom_ids are walked alongside the blocks: a
request of that round overwrites ``batch_id``, ``part`` and ``part_line`` and adds one to
``attempts``. ``join`` keeps a succeeded answer over a failed one, else the later (the
result files are given oldest first).
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from pathlib import Path

import orjson
import pyarrow as pa

from .. import compute as pc
from ..lines.reading import read_lines
from ..results.join import JoinSummary, join_into
from ..results.tables import TableWriter
from .ledger import PartRecord

TABLE = "results.parquet"

JOB_FIELDS = [
    pa.field(name, kind, metadata={"description": meaning})
    for name, kind, meaning in (
        ("attempts", pa.int32(), "How many batches the request was sent in."),
        ("batch_id", pa.string(), "The batch whose answer the row holds (else its last batch)."),
        ("part", pa.string(), "The part file (in the job's folder) that batch was made from."),
        ("part_line", pa.int64(), "The request's line in that part file."),
    )
]
"""The columns a job's table adds to ``join``'s."""


def write_job_table(folder: Path, inputs: list[Path], parts: list[PartRecord]) -> JoinSummary:
    """Join, add the job's columns, write ``folder/results.parquet``; the join's summary."""
    results = [folder / r for p in parts for r in (p.output, p.errors) if r]
    later = sorted({p.round for p in parts if p.round > 0})
    columns = JobColumns(
        [p for p in parts if p.round == 0],
        [_Round(folder, [p for p in parts if p.round == r]) for r in later],
    )
    read = [*inputs, *results]
    with TableWriter(folder / TABLE, fmt="parquet", force=True, inputs=read) as writer:
        summary = join_into(_Adding(writer, columns), inputs, results)
        columns.finish()
        writer.summary = summary.to_dict()
    return summary


class _Adding:
    """A join sink that adds the job's columns to each block and hands it on."""

    def __init__(self, sink: TableWriter, columns: JobColumns) -> None:
        self.sink, self.columns = sink, columns
        self.threaded = sink.threaded

    def begin(self, schema: pa.Schema) -> None:
        for f in JOB_FIELDS:
            schema = schema.append(f)
        self.sink.begin(schema)

    def write(self, table: pa.Table) -> None:
        added = self.columns.block(table.column("custom_id"))
        for f, values in zip(JOB_FIELDS, added, strict=True):
            table = table.append_column(f, values)
        self.sink.write(table)


class JobColumns:
    """The job's columns of each block of the job's rows, given in input order."""

    def __init__(self, first: list[PartRecord], rounds: list[_Round]) -> None:
        self.first = first
        self.starts = list(accumulate((p.requests for p in first), initial=0))
        self.rounds = rounds
        self.row = 0

    def block(self, ids: pa.ChunkedArray | pa.Array) -> list[pa.Array]:
        """``attempts``, ``batch_id``, ``part``, ``part_line`` of the next ``len(ids)`` rows."""
        if isinstance(ids, pa.ChunkedArray):
            ids = ids.combine_chunks()
        attempts, batch_ids, paths, lines = self._first_round(len(ids))
        for round_ in self.rounds:
            where = round_.take(ids)
            hit = pc.is_valid(where)
            batch_ids = pc.if_else(hit, pc.take(round_.batch_ids, where), batch_ids)
            paths = pc.if_else(hit, pc.take(round_.paths, where), paths)
            lines = pc.if_else(hit, pc.take(round_.lines, where), lines)
            attempts = pc.add(attempts, pc.cast(hit, pa.int32()))
        return [attempts, batch_ids, paths, lines]

    def _first_round(self, rows: int) -> list[pa.Array]:
        """Round 0's columns of the rows from ``self.row``: its parts, one after another."""
        start, end = self.row, self.row + rows
        if end > self.starts[-1]:  # cannot happen: round 0's parts are the inputs' requests
            raise AssertionError(f"round 0 holds {self.starts[-1]} requests, the inputs more")
        self.row = end
        pieces: list[list[pa.Array]] = [[], [], [], []]
        number = bisect_right(self.starts, start) - 1
        while start < end:
            part, first = self.first[number], self.starts[number]
            count = min(end, self.starts[number + 1]) - start
            attempts = pa.scalar(min(part.attempt, 1), pa.int32())
            pieces[0].append(pa.repeat(attempts, count))
            pieces[1].append(pa.repeat(pa.scalar(part.batch_id, pa.string()), count))
            pieces[2].append(pa.repeat(pa.scalar(part.path, pa.string()), count))
            at = start - first  # the part's requests before this row: its line is at + 1
            pieces[3].append(pa.array(range(at + 1, at + count + 1), pa.int64()))
            start += count
            number += 1
        kinds = [f.type for f in JOB_FIELDS]
        return [
            pa.concat_arrays(p) if p else pa.array([], kind)
            for p, kind in zip(pieces, kinds, strict=True)
        ]

    def finish(self) -> None:
        """Check that every request of every round was met (cannot fail: see the module)."""
        if self.row != self.starts[-1]:
            raise AssertionError(f"round 0 holds {self.starts[-1]} requests, the inputs {self.row}")
        for round_ in self.rounds:
            round_.finish()


class _Round:
    """A retry round's requests, in the order its parts hold them: custom_id, and the batch,
    part and line each was sent in; ``take`` finds a block's among them, walking forward."""

    def __init__(self, folder: Path, parts: list[PartRecord]) -> None:
        ids: list[str] = []
        batch_ids: list[str | None] = []
        paths: list[str] = []
        lines: list[int] = []
        for part in parts:
            for line, custom_id in _custom_ids(folder / part.path):
                ids.append(custom_id)
                batch_ids.append(part.batch_id)
                paths.append(part.path)
                lines.append(line)
        self.ids = pa.array(ids, pa.string())
        self.batch_ids = pa.array(batch_ids, pa.string())
        self.paths = pa.array(paths, pa.string())
        self.lines = pa.array(lines, pa.int64())
        self.next = 0

    def take(self, ids: pa.Array) -> pa.Array:
        """For each of a block's custom_ids, its index among this round's requests (null when
        the round does not hold it). The round's requests of the block are the next ones: at
        most as many as the block's rows."""
        window = self.ids.slice(self.next, len(ids))
        found = pc.is_in(window, value_set=ids)
        held = pc.sum(pc.cast(found, pa.int64())).as_py() or 0
        if held and not pc.all(found.slice(0, held)).as_py():
            raise AssertionError("a retry round's requests are not in input order")
        where = pc.index_in(ids, value_set=window.slice(0, held))
        self.next += held
        return pc.add(where, self.next - held)

    def finish(self) -> None:
        if self.next != len(self.ids):
            raise AssertionError(f"{len(self.ids) - self.next} retried requests not in the inputs")


def _custom_ids(path: Path) -> Sequence[tuple[int, str]]:
    return [(line, orjson.loads(raw)["custom_id"]) for line, _, raw in read_lines(os.fspath(path))]
