"""A job's table: ``join`` of its inputs with every round's results, plus ``attempts`` (how
many batches the request was sent in) and ``batch_id`` (the batch whose answer the row holds;
for a request without an answer, its last batch).

Round 0's parts hold the inputs' requests in order, so its ``batch_id`` column is each part's
batch repeated over its requests. A retry round holds the requests that failed before, so
a request's last answer is from the last round it took part in: each round's custom_ids
(read from its parts) overwrite ``batch_id`` and add one to ``attempts``. ``join`` keeps a
succeeded answer over a failed one, else the later (the result files are given oldest first).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..lines.reading import read_lines
from ..results.join import JoinSummary, join
from ..results.tables import write_table
from .ledger import PartRecord

TABLE = "results.parquet"


def write_job_table(folder: Path, inputs: list[Path], parts: list[PartRecord]) -> JoinSummary:
    """Join, add the job's columns, write ``folder/results.parquet``; the join's summary."""
    results = [folder / r for p in parts for r in (p.output, p.errors) if r]
    joined = join(inputs, results)
    table = joined.table
    batch_ids, attempts = _first_round(table.num_rows, [p for p in parts if p.round == 0])
    later = sorted({p.round for p in parts if p.round > 0})
    ids = table.column("custom_id")
    for round_ in later:
        sent, batches = _round_ids(folder, [p for p in parts if p.round == round_])
        where = pc.index_in(ids, value_set=sent)
        hit = pc.is_valid(where)
        batch_ids = pc.if_else(hit, pc.take(batches, where), batch_ids)
        attempts = pc.add(attempts, pc.cast(hit, pa.int32()))
    table = table.append_column("attempts", attempts).append_column("batch_id", batch_ids)
    write_table(table, folder / TABLE, summary=joined.summary.to_dict(), force=True)
    return joined.summary


def _first_round(rows: int, parts: list[PartRecord]) -> tuple[pa.Array, pa.Array]:
    counts = [p.requests for p in parts]
    if sum(counts) != rows:  # cannot happen: round 0's parts are the inputs' requests
        raise AssertionError(f"round 0 holds {sum(counts)} requests, the inputs {rows}")
    if not parts:
        return pa.array([], pa.string()), pa.array([], pa.int32())
    batch_ids = pa.concat_arrays(
        [pa.repeat(pa.scalar(p.batch_id, pa.string()), p.requests) for p in parts]
    )
    attempts = pa.concat_arrays(
        [pa.repeat(pa.scalar(min(p.attempt, 1), pa.int32()), p.requests) for p in parts]
    )
    return batch_ids, attempts


def _round_ids(folder: Path, parts: list[PartRecord]) -> tuple[pa.Array, pa.Array]:
    ids: list[str] = []
    batches: list[str | None] = []
    for part in parts:
        found = list(_custom_ids(folder / part.path))
        ids.extend(found)
        batches.extend([part.batch_id] * len(found))
    return pa.array(ids, pa.string()), pa.array(batches, pa.string())


def _custom_ids(path: Path) -> Iterable[str]:
    for _, _, raw in read_lines(os.fspath(path)):
        yield orjson.loads(raw)["custom_id"]
