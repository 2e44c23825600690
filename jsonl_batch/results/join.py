"""Joining result files back to their inputs: one row per request, in input order.

``join(inputs, results)`` reads the requests' custom_ids (input files, or a split manifest
standing for its parts), reads every result line (``results``), keeps one result per request
(a succeeded one over a failed one, else the later), and returns the table
(``tables.COLUMNS``) with a ``JoinSummary``. Nothing is dropped silently: result lines that
answer no request, a custom_id answered twice and lines that are not results are listed as
``Anomaly`` values and counted.
"""

from __future__ import annotations

import glob
import inspect
import math
import os
import re
import threading
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Any, Protocol

import orjson
import pyarrow as pa

from .. import compute as pc
from ..errors import UsageError
from ..lines.parallel import PARALLEL_MIN_BYTES, Workers, cores, small_pages
from ..lines.reading import ReadError, Source, as_file, describe_os_error, open_source, source_name
from ..outputs.atomic import check_folder_target
from ..outputs.scratch import scratch_folder
from ..tokens.pricing import PriceTable, load_prices
from .answers import OUTPUT_PROBLEMS, check_answers
from .costs import CostTally, exact_sum, input_estimates, json_int
from .gather import AnswerTaker, request_bodies
from .index import (
    RESULT_SCHEMA,
    FileIndex,
    counting,
    formats_of,
    index_inputs_of,
    index_results_of,
    spill_schema,
)
from .matching import Requests, one_array
from .origins import Origin, find_origins
from .readers import Anomaly
from .structured import StructuredPlan, flat_names, flatten, output_schema, plan_of
from .tables import COLUMN, COLUMNS, STATUSES, DatasetWriter, TableWriter, join_schema

MANIFEST_SUFFIX = ".manifest.json"


class JoinError(ReadError):
    """The inputs cannot be joined: a line that is not a request, or a custom_id used twice."""

    code = "join_error"


@dataclass
class JoinSummary:
    """Counts of a join; ``anomalies`` lists at most ``max_anomalies`` of each kind."""

    inputs: dict[str, int] = field(default_factory=dict)
    """Requests per input file."""
    results: dict[str, int] = field(default_factory=dict)
    """Lines per result file."""
    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    missing: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)
    """Failed requests per ``error_code``."""
    orphans: int = 0
    duplicates: int = 0
    """Result lines not kept because their custom_id was answered by another line."""
    invalid_lines: int = 0
    """Lines skipped: blank ones and, in the result files, lines that are not results."""
    not_results: int = 0
    """Lines of the result files that are not results, blank ones left out (counted in
    ``invalid_lines`` too): many of them mean a wrong file was given as results."""
    not_copied: int = 0
    """Body or tool-call values left null because they could not be copied."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    output_problems: dict[str, int] = field(default_factory=dict)
    """Succeeded answers that are not usable, per ``output_problem``."""
    cost: dict[str, Any] = field(default_factory=dict)
    """``costs.CostTally.to_dict()``: the total at batch prices, per 1,000 requests, the
    models without a price, the input-token estimate against the reported prompt tokens."""
    structured: dict[str, Any] | None = None
    """``StructuredPlan.to_dict()`` (and ``flattened``) when answers were parsed as JSON."""
    anomalies: list[Anomaly] = field(default_factory=list)
    output: str | None = None
    """Where ``join_to`` wrote the table (``None``: not written, as by ``join``)."""
    format: str | None = None
    """The written table's format (``parquet``, ``csv`` or ``jsonl``)."""
    partition_by: str | None = None
    """The column of a partitioned table's subfolders (``status`` or ``input_file``)."""

    @property
    def complete(self) -> bool:
        """True when there were requests and every one succeeded (no input request is not
        success: the wrong files were most likely given)."""
        return self.requests > 0 and self.succeeded == self.requests

    def to_dict(self) -> dict[str, Any]:
        """The counts and anomalies; then, for a written table, ``output`` and ``format``
        (and ``partition_by`` for a folder): what ``join --summary-format json`` prints and
        Parquet's metadata holds. A token total beyond JSON's integers is a float
        (``costs.json_int``)."""
        data = {k: v for k, v in vars(self).items() if k not in _WHERE}
        for name in TOKEN_COLUMNS:
            data[name] = json_int(data[name])
        data["anomalies"] = [a.to_dict() for a in self.anomalies]
        if self.output is not None:
            data.update(output=self.output, format=self.format)
        if self.partition_by is not None:
            data["partition_by"] = self.partition_by
        return data


_WHERE = ("anomalies", "output", "format", "partition_by")


@dataclass
class Join:
    """A join's table (one row per input request, in input order) and its summary."""

    table: pa.Table
    summary: JoinSummary


class Sink(Protocol):
    """Where the join's rows go: ``begin(schema)`` once the inputs are known to join, then
    ``write(table)`` for each block of rows, in input order. A sink with a true ``threaded``
    attribute writes in threads of its own (and waits when they have enough to do)."""

    def begin(self, schema: pa.Schema) -> None: ...

    def write(self, table: pa.Table) -> None: ...


class Collect:
    """A ``Sink`` that keeps the rows: the whole table, for ``join``."""

    def __init__(self) -> None:
        self.schema = pa.schema([])
        self.tables: list[pa.Table] = []

    def begin(self, schema: pa.Schema) -> None:
        self.schema = schema

    def write(self, table: pa.Table) -> None:
        self.tables.append(table)

    def table(self) -> pa.Table:
        return pa.concat_tables(self.tables) if self.tables else self.schema.empty_table()


def join(
    inputs: Sequence[Source],
    results: Sequence[Source],
    *,
    include_bodies: bool = False,
    include_tool_calls: bool = False,
    include_embeddings: bool = False,
    max_anomalies: int | None = 100,
    schema: Any = None,
    flatten: bool = False,
    prices: PriceTable | str | os.PathLike[str] | None = None,
    estimate_tokens: bool = False,
) -> Join:
    """Join result files (outputs and errors, any mix and order) to their input files.

    ``inputs`` are request files in order (e.g. split's parts) or a split manifest
    (``*.manifest.json``). The options add the columns ``tables.COLUMNS`` names. Answers to
    requests that asked for JSON (a ``response_format`` / ``text.format`` JSON schema) are
    parsed and checked into ``parsed``; ``schema`` (a JSON Schema dict, a pydantic model
    class or a JSON file) checks every answer against that one instead, and ``flatten`` puts
    the parsed top-level properties in columns of their own. ``cost_usd`` comes from
    ``prices`` (a ``PriceTable`` or a price file; default the packaged table), and
    ``estimate_tokens`` compares the reported prompt tokens with ``stats``' estimate of the
    input lines (needs the ``tokens`` extra, bpe-openai; counting costs time). Raises
    ``ReadError`` when a file cannot be read and ``JoinError`` when an input line is not a
    request, a custom_id appears twice in the inputs, or no result line answers any request.
    The whole table is returned in memory; ``join_into`` hands it over a block at a time.
    """
    sink = Collect()
    summary = join_into(sink, inputs, results, **_options(locals()))
    return Join(sink.table(), summary)


def join_to(
    inputs: Sequence[Source],
    results: Sequence[Source],
    output: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    partition_by: str | None = None,
    force: bool = False,
    include_bodies: bool = False,
    include_tool_calls: bool = False,
    include_embeddings: bool = False,
    max_anomalies: int | None = 100,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    schema: Any = None,
    flatten: bool = False,
    prices: PriceTable | str | os.PathLike[str] | None = None,
    estimate_tokens: bool = False,
) -> JoinSummary:
    """``join``, written to ``output`` as it goes (memory does not grow with the answers):
    one file (``fmt``: parquet, csv or jsonl; default from the extension), or with
    ``partition_by`` (``status`` or ``input_file``) a folder of Parquet files read as one
    table (``tables.DatasetWriter``). Written atomically; an existing output is only replaced
    with ``force``. Parquet files hold the summary (``tables.read_summary``)."""
    writer: TableWriter | DatasetWriter
    read = [*inputs, *expand_inputs(inputs), *results, *expand(results)]  # never written over
    if partition_by is not None:
        if fmt not in (None, "parquet"):
            raise UsageError("a partitioned table is written as Parquet files")
        check_folder_target(output, force, inputs=read)
        writer = DatasetWriter(output, partition_by, force=force)
    else:
        writer = TableWriter(output, fmt=fmt, force=force, inputs=read)
    with writer:
        summary = join_into(writer, inputs, results, **_options(locals()))
        writer.summary = summary.to_dict()  # the table's own summary: not where it went
    summary.output, summary.format = os.fspath(output), writer.fmt
    summary.partition_by = partition_by
    return summary


def _options(given: dict[str, Any]) -> dict[str, Any]:
    """The options of ``join_into`` among a caller's arguments (its ``locals()``), passed on
    as they are: ``join`` and ``join_to`` take the same ones."""
    names = list(inspect.signature(join_into).parameters)[3:]  # after sink, inputs, results
    return {name: given[name] for name in names if name in given}


def join_into(
    sink: Sink,
    inputs: Sequence[Source],
    results: Sequence[Source],
    *,
    include_bodies: bool = False,
    include_tool_calls: bool = False,
    include_embeddings: bool = False,
    max_anomalies: int | None = 100,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    schema: Any = None,
    flatten: bool = False,
    prices: PriceTable | str | os.PathLike[str] | None = None,
    estimate_tokens: bool = False,
) -> JoinSummary:
    """The join, written to ``sink`` a block of rows at a time (in input order); the
    options are ``join``'s.

    Result files are indexed first (where each answer is), then the requests are taken in
    input order and each block's answers are read back from their byte ranges, so memory
    follows the number of requests, not the size of the answers. ``workers``: processes
    (``None``: one per core, for inputs of at least ``parallel.PARALLEL_MIN_BYTES``).
    ``progress(bytes_done, bytes_total)`` is called as the files are read.
    """
    if not inputs:
        raise UsageError("join needs at least one input file")
    options = {
        "include_bodies": include_bodies,
        "include_tool_calls": include_tool_calls,
        "include_embeddings": include_embeddings,
    }
    extras = tuple(k for k, v in options.items() if v)
    input_sources = expand_inputs(inputs)
    _once(input_sources)
    results = expand(results)
    table_prices = prices if isinstance(prices, PriceTable) else load_prices(prices)
    with ExitStack() as stack:
        paths = [stack.enter_context(as_file(s)) for s in input_sources]
        names = [source_name(s) for s in input_sources]
        given = None if schema is None else output_schema(schema)
        origins = find_origins(input_sources)
        estimates = input_estimates(paths) if estimate_tokens else None
        result_paths = [stack.enter_context(as_file(s)) for s in results]
        result_names = [source_name(s) for s in results]
        sizes = [os.path.getsize(p) for p in (*paths, *result_paths)]
        meter = _Meter(progress, sum(sizes))
        count = workers if workers is not None else cores()
        if sum(sizes) < PARALLEL_MIN_BYTES:
            count = 1
        if sum(sizes) >= SMALL_PAGES_BYTES:
            small_pages()  # before the workers fork: they inherit it
        folder, no_folder = _temporary_folder(stack)  # removed after the workers end
        pool = stack.enter_context(Workers(count))
        # The workers index the inputs (and find what the requests ask for: ``formats``)
        # and the results; a temporary folder that could not be made is said after the
        # inputs, whose errors come first.
        requests = index_inputs_of(paths, names, pool, formats=given is None)
        lookup: Requests | None = None  # the requests' custom_ids, once all are indexed

        def place(custom_ids: pa.ChunkedArray) -> pa.Array | None:
            assert lookup is not None  # the results are gathered after the inputs
            return lookup.positions(custom_ids)

        answering, spills = (
            index_results_of(result_paths, result_names, pool, folder, extras, place)
            if folder is not None
            else (iter(()), [])
        )
        indexed = []
        blank: list[Anomaly] = []
        for f in requests:
            for line, _, why, kind in f.invalid:
                if kind != "blank_line":
                    raise JoinError(_input_error(f.name, line, why))
                blank.append(Anomaly("invalid_line", f.name, line, None, why))
            if not include_bodies:  # where the lines are: only bodies need it
                assert f.table is not None
                f.table = f.table.drop_columns(["offset", "length"])
            indexed.append(f)
            meter.add(os.path.getsize(f.path))
        ids = _ids(indexed)  # while the workers index the results
        lookup = Requests(ids)
        _check_unique(lookup, indexed)
        answers = _Answers(
            plan_of(formats_of(indexed), given), origins, CostTally(table_prices), estimates
        )
        table_schema = join_schema(
            parsed=answers.parsed_fields(flatten, [c.name for c in COLUMNS]),
            origins=answers.has_origins,
            include_bodies=include_bodies,
            include_tool_calls=include_tool_calls,
            include_embeddings=include_embeddings,
        )
        if no_folder is not None:
            raise no_folder
        answered = list(answering)  # placed on the requests as they come (``place``)
        lookup = None
        pa.default_memory_pool().release_unused()  # the sort, what the pieces came in
        meter.add(sum(sizes[len(paths) :]))
        if not answers.structured.active:
            pool.close(wait=False)  # else it checks the answers (``check_answers``)
        plan = _resolve(ids, indexed, answered, max_anomalies)
        del answered
        pa.default_memory_pool().release_unused()  # the result index's lookups
        summary = plan.summary
        summary.invalid_lines += len(blank)
        plan.input_anomalies += blank
        sink.begin(table_schema)
        taker = AnswerTaker(spills, spill_schema(extras))
        done = 0
        writing = stack.enter_context(_Behind(sink))
        blocks = _blocks(plan, indexed, _row_bytes(plan.spill, spills))
        for at, (number, start, rows) in enumerate(blocks):
            f = indexed[number]
            assert f.table is not None
            more = at + 1 < len(blocks) and blocks[at + 1][0] == number  # of the same file
            found = taker.take(plan.spill.slice(start, rows), plan.row.slice(start, rows), more)
            parsed = None
            if answers.structured.active:
                lines = f.table.column("line").slice(start - plan.first[number], rows)
                checks = answers.structured.for_rows(number, lines.to_pylist())
                found, parsed = check_answers(found, checks, pool)
            bodies = None
            if include_bodies:
                bodies = request_bodies(
                    f.path,
                    f.name,
                    f.table.slice(start - plan.first[number], rows),
                    plan.input_anomalies,
                )
            table = _rows(plan, f, plan.first[number], start, found, bodies, table_schema)
            table = answers.columns(table, number, parsed, table_schema)
            # here: the writing thread has the most to do
            _tally(summary, table, found.column("ok"))
            done += table.num_rows
            writing.write(table)  # while the next block is taken
            del found, parsed, bodies, table  # their memory goes with the block's encoding
            meter.rows(done, len(ids))
        writing.close()
        pool.close()
        summary.requests = done
        _finish(plan, max_anomalies)
        answers.finish(summary, flatten)
        return summary


def _temporary_folder(stack: ExitStack) -> tuple[str | None, ReadError | None]:
    """The join's temporary folder (for the spill files; those killed joins left are removed
    first), or why it could not be made."""
    try:
        return stack.enter_context(scratch_folder("jsonl-batch-join-")), None
    except OSError as exc:
        return None, ReadError(f"cannot make the join's temporary folder ({exc})")


class _Behind:
    """Writes each block in a thread, one block behind: pyarrow's encoding and compression
    release the GIL, so writing overlaps taking the next block's answers. A ``threaded``
    sink is called directly (a block waiting here would be one more in memory)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.direct = bool(getattr(sink, "threaded", False))
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def write(self, table: pa.Table) -> None:
        if self.direct:
            self.sink.write(table)
            return
        self.close()
        self.thread = threading.Thread(target=self._write, args=(table,))
        self.thread.start()

    def _write(self, table: pa.Table) -> None:
        try:
            self.sink.write(table)
        except BaseException as exc:  # raised by ``close``, in the joining thread
            self.error = exc

    def close(self) -> None:
        """Wait for the block being written (and raise its error, if any)."""
        if self.thread is not None:
            thread, self.thread = self.thread, None
            thread.join()
            error, self.error = self.error, None
            if error is not None:
                raise error

    def __enter__(self) -> _Behind:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.thread is not None:  # after an error: the block's own error is not news
            self.thread.join()


class _Meter:
    """Progress in bytes, ``progress(done, total)``: the files count once as they are
    indexed and once more as the rows are written."""

    def __init__(self, progress: Callable[[int, int], None] | None, size: int) -> None:
        self.progress, self.size, self.indexed = progress, size, 0

    def add(self, n: int) -> None:
        self.indexed += n
        if self.progress is not None:
            self.progress(self.indexed, 2 * self.size)

    def rows(self, done: int, total: int) -> None:
        if self.progress is not None and total:
            self.progress(self.size + self.size * done // total, 2 * self.size)


@dataclass
class _Plan:
    """What the index decided: per request, where its kept answer is; and the anomalies."""

    summary: JoinSummary
    spill: pa.Array
    """Per request: the spill file holding its answer's columns (null: missing)..."""
    row: pa.Array
    """... and the row there."""
    first: list[int]
    """Each input file's first request (row of the table)."""
    input_anomalies: list[Anomaly] = field(default_factory=list)
    result_anomalies: list[Anomaly] = field(default_factory=list)
    """Result lines that are not results, values not copied (file, then line order)."""
    later: list[Anomaly] = field(default_factory=list)
    """Orphans, then duplicates."""


def _resolve(
    ids: pa.ChunkedArray, indexed: list[FileIndex], answered: list[FileIndex], cap: int | None
) -> _Plan:
    """Where each request's kept answer is (``ids``: the requests' custom_ids, unique)."""
    summary = JoinSummary()
    for f in indexed:
        summary.inputs[f.name] = summary.inputs.get(f.name, 0) + _rows_of(f)
    for r in answered:
        summary.results[r.name] = summary.results.get(r.name, 0) + r.lines
    result_anomalies = []
    for r in answered:
        kept: Counter[str] = Counter()
        for line, cid, message, kind in r.invalid:
            if kind == "not_copied":
                summary.not_copied += 1
            else:
                summary.invalid_lines += 1
                summary.not_results += kind == "invalid_line"
                kind = "invalid_line"  # a blank line too
            kept[kind] += 1
            if cap is None or kind == "not_copied" or kept[kind] <= cap:
                result_anomalies.append(Anomaly(kind, r.name, line, cid, message))
    results = _concat_index(answered)
    for r in answered:
        r.table = None  # concatenated in ``results``
    if "position" not in results.column_names:  # the request's row (``place``), else:
        found = pc.index_in(results.column("custom_id"), value_set=ids)
        results = results.append_column("position", found)
    position = results.column("position")
    orphan = pc.is_null(position)
    summary.orphans = pc.sum(orphan).as_py() or 0
    if summary.orphans and summary.orphans == results.num_rows and len(ids):
        raise JoinError(no_match(summary.orphans, len(ids)))
    later: list[Anomaly] = []
    if summary.orphans:
        later += _orphans(pc.filter(results, orphan), answered, cap)
        results = pc.filter(results, pc.invert(orphan))
    placed = _place(results.column("position").combine_chunks(), len(ids))
    once = len(ids) - placed.null_count == results.num_rows  # no request answered twice
    results, summary.duplicates, superseded = _dedup(results, answered, cap, once)
    later += superseded
    if not once:
        placed = _place(results.column("position").combine_chunks(), len(ids))
    spill, row = (pc.take(results.column(n).combine_chunks(), placed) for n in ("spill", "row"))
    first = list(accumulate((_rows_of(f) for f in indexed[:-1]), initial=0))
    return _Plan(summary, spill, row, first, [], result_anomalies, later)


def _place(where: pa.Array, n: int) -> pa.Array:
    """Per row ``r`` of ``n``: an ``i`` with ``where[i] == r`` (one of them), else null."""
    if not n:
        return pa.array([], pa.int64())
    rows = counting(max(n, len(where)), 0)
    if "scatter" in pc.FUNCTIONS:  # pyarrow 23 and later: no hash table
        return pc.scatter(rows.slice(0, len(where)), where, max_index=n - 1)
    return pc.index_in(rows.slice(0, n), value_set=pc.cast(where, pa.int64()))


def _rows_of(f: FileIndex) -> int:
    assert f.table is not None
    return f.table.num_rows


def _ids(files: list[FileIndex]) -> pa.ChunkedArray:
    """The requests' custom_ids, in order (each file's own column: no copy)."""
    chunks = [c for f in files if f.table is not None for c in f.table.column("custom_id").chunks]
    return pa.chunked_array(chunks, pa.string())


def _concat_index(answered: list[FileIndex]) -> pa.Table:
    tables = []
    for number, r in enumerate(answered):
        assert r.table is not None
        file = pa.repeat(pa.scalar(number, pa.int32()), r.table.num_rows)
        tables.append(r.table.append_column("file", file))
    if not tables:
        return RESULT_SCHEMA.append(pa.field("file", pa.int32())).empty_table()
    return pa.concat_tables(tables)  # chunks: no copy


def _blocks(
    plan: _Plan, indexed: list[FileIndex], row_bytes: pa.Array | None = None
) -> list[tuple[int, int, int]]:
    """``(input file number, first row, rows)`` of each block of requests, in input order:
    at most ``BLOCK_ROWS`` (a Parquet row group) and within one input file. A join of fewer
    than ``MIN_BLOCKS`` full blocks is cut into about that many (of ``MIN_BLOCK_ROWS`` at
    least), so that taking a block's answers overlaps writing the one before; the first
    block is cut in two (``FIRST_SHARE``), and the last in halves when it has at least twice
    the first's rows: the encoding threads (``parquet_parts.IN_FLIGHT``) finish it together,
    where one would encode a whole last block while the other waits. A block whose answers
    come to more than ``BLOCK_BYTES`` (``row_bytes``: per spill file, the bytes of one of its
    answers) is cut into equal blocks under it."""
    size = min(BLOCK_ROWS, max(MIN_BLOCK_ROWS, -(-len(plan.spill) // MIN_BLOCKS)))
    out = []
    for number, f in enumerate(indexed):
        rows, start = _rows_of(f), plan.first[number]
        for a in range(0, rows, size):
            n = min(size, rows - a)
            cuts = _cuts(plan.spill.slice(start + a, n), row_bytes) if row_bytes is not None else 1
            step = -(-n // cuts)
            out += [(number, start + b, min(step, a + n - b)) for b in range(a, a + n, step)]
    head = max(1, size // FIRST_SHARE)
    if out and out[0][2] > head:  # the first block's quarter first: writing starts sooner
        number, start, rows = out[0]
        out[:1] = [(number, start, head), (number, start + head, rows - head)]
    if len(out) > 2 and out[-1][2] >= 2 * head:  # the last in halves: encoded together
        number, start, rows = out[-1]
        half = rows // 2
        out[-1:] = [(number, start, half), (number, start + half, rows - half)]
    return out


def _row_bytes(spill: pa.Array, spills: list[str]) -> pa.Array | None:
    """Per spill file, its size over the answers the table takes from it (at least their
    bytes there), as float64; None when all of them together stay under ``BLOCK_BYTES``
    (no block can pass it: nothing to count)."""
    sizes = [os.path.getsize(path) for path in spills]
    if sum(sizes) <= BLOCK_BYTES:
        return None
    counts = pc.value_counts(pc.drop_null(spill))
    kept = [0] * len(spills)
    for number, count in zip(
        counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
    ):
        kept[number] = count
    return pa.array(
        [size / (count or 1) for size, count in zip(sizes, kept, strict=True)], pa.float64()
    )


def _cuts(spill: pa.Array, row_bytes: pa.Array) -> int:
    """Into how many blocks a block of requests (``spill``: where their answers are) is cut
    to keep its answers under ``BLOCK_BYTES``."""
    counts = pc.value_counts(pc.drop_null(spill))
    if not len(counts):
        return 1
    each = pc.take(row_bytes, counts.field("values"))
    total = pc.sum(pc.multiply(each, pc.cast(counts.field("counts"), pa.float64()))).as_py()
    return max(1, min(len(spill), math.ceil(total / BLOCK_BYTES)))


BLOCK_ROWS = 65_536
BLOCK_BYTES = 64 << 20
"""A block's answers are taken into memory and written as one row group: blocks of long
answers hold fewer requests (Arrow's strings also stop at 2 GiB a column)."""
SMALL_PAGES_BYTES = 160 << 20
"""Input and result bytes from which the ``jsonl-batch`` program joins in small pages
(``parallel.small_pages``). Alternating runs (2da3fc7, loaded machine), median CPU-seconds
with huge pages against without: 82 MB 0.89 vs 0.88 (the fastest runs 0.64 vs 0.69 s), 134
MB 1.19 vs 1.20 (0.84 vs 1.05 s), 200 MB 1.97 vs 1.73, 668 MB 5.73 vs 5.47, 2.7 GB 21.8 vs
20.4."""

MIN_BLOCKS = 4
MIN_BLOCK_ROWS = 8_192
FIRST_SHARE = 4
"""The first block is cut in two, a ``1/FIRST_SHARE`` of it first: nothing is written until
a block is taken, and the writing thread is the busier one (it writes more slowly than the
answers are taken), so the sooner it starts, the sooner the table is done."""


def _once(sources: list[Source]) -> None:
    """Refuse an input file given twice (by any name): each of its requests would be a
    duplicate of itself."""
    seen: set[str] = set()
    for source in sources:
        if isinstance(source, (str, os.PathLike)) and os.fspath(source) != "-":
            real = os.path.realpath(source)
            if real in seen:
                raise UsageError(f"{source_name(source)} is given twice as an input file")
            seen.add(real)


def expand_inputs(inputs: Iterable[Source]) -> list[Source]:
    """The input files in order: folders and glob patterns expanded (``expand``), each split
    manifest replaced by its parts."""
    out: list[Source] = []
    for source in expand(inputs):
        if isinstance(source, (str, os.PathLike)) and os.fspath(source).endswith(MANIFEST_SUFFIX):
            out.extend(manifest_parts(source))
        else:
            out.append(source)
    return out


JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".jsonl.zst", ".ndjson.gz", ".ndjson.zst")
"""The files a folder given as input or results stands for."""
_GLOB = re.compile(r"[*?\[]")


def expand(sources: Iterable[Source]) -> list[Source]:
    """Sources with each folder replaced by its JSONL files (``JSONL_SUFFIXES``, sorted by
    name, not recursive) and each glob pattern that names no file by the files it matches
    (sorted by name). Raises ``ReadError`` for a folder or pattern that gives no file."""
    out: list[Source] = []
    for source in sources:
        if not isinstance(source, (str, os.PathLike)) or os.fspath(source) == "-":
            out.append(source)
            continue
        name = os.fspath(source)
        if os.path.isdir(name):
            found = sorted(
                os.path.join(name, entry)
                for entry in _listdir(name)
                if entry.endswith(JSONL_SUFFIXES) and os.path.isfile(os.path.join(name, entry))
            )
            if not found:
                raise ReadError(f"{name}: a folder with no JSONL file (*.jsonl, *.jsonl.gz, ...)")
            out.extend(found)
        elif _GLOB.search(name) and not os.path.exists(name):
            matched = sorted(p for p in glob.glob(name) if os.path.isfile(p))
            if not matched:
                raise ReadError(f"{name}: no file matches this pattern")
            out.extend(matched)
        else:
            out.append(source)
    return out


def _listdir(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError as exc:
        raise ReadError(describe_os_error(folder, exc)) from None


def manifest_parts(path: str | os.PathLike[str]) -> list[Path]:
    """The part files a split manifest lists (paths relative to the manifest's folder)."""
    name = os.fspath(path)
    with open_source(path) as handle:
        try:
            data = orjson.loads(handle.read())
            parts = [p["path"] for p in data["parts"]]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise JoinError(f"{name}: not a split manifest (no parts with paths)") from None
    return [Path(name).parent / p for p in parts]


def _input_error(name: str, line: int, why: str) -> str:
    return (
        f"{name} line {line}: {why} Every input line must be a batch request "
        "(check the file with `jsonl-batch validate`)."
    )


def no_match(results: int, requests: int) -> str:
    """Why a join of results that answer none of the requests is refused."""
    return (
        f"none of the {results:,} result lines answers any of the {requests:,} input requests "
        "(no custom_id in common): these look like the results of another batch."
    )


def _check_unique(requests: Requests, files: list[FileIndex]) -> None:
    if not requests.twice():
        return
    ids = one_array(requests.ids)
    counts = pc.value_counts(ids)
    dup = pc.filter(counts, pc.greater(counts.field("counts"), 1))[0]["values"].as_py()
    rows = pc.indices_nonzero(pc.equal(ids, dup)).to_pylist()[:2]
    where = [_locate(files, row) for row in rows]
    raise JoinError(
        f"custom_id {dup!r} appears twice in the inputs ({where[0]} and {where[1]}); "
        "a result could not be told apart, so join needs unique custom_ids."
    )


def _locate(files: list[FileIndex], row: int) -> str:
    for f in files:
        if row < _rows_of(f):
            assert f.table is not None
            return f"{f.name} line {f.table.column('line')[row].as_py()}"
        row -= _rows_of(f)
    raise IndexError(row)


def _orphans(rows: pa.Table, read: list[FileIndex], cap: int | None) -> list[Anomaly]:
    rows = rows.select(["custom_id", "file", "line"])
    return [
        Anomaly(
            "orphan",
            read[r["file"]].name,
            r["line"],
            r["custom_id"],
            f"custom_id {r['custom_id']!r} is in no input file; was another batch's result "
            "file given?",
        )
        for r in (rows if cap is None else rows.slice(0, cap)).to_pylist()
    ]


def _dedup(
    results: pa.Table, read: list[FileIndex], cap: int | None, once: bool
) -> tuple[pa.Table, int, list[Anomaly]]:
    """One result per custom_id: a succeeded one first, else the later (file, then line).

    Returns the kept rows, how many were dropped, and (at most ``cap``) anomalies for them.
    ``once``: every custom_id is answered once (nothing to do).
    """
    if once:
        return results, 0, []
    keys = [("position", "ascending"), ("ok", "descending"), ("file", "descending")]
    ranked = pc.take(results, pc.sort_indices(results, sort_keys=[*keys, ("line", "descending")]))
    rows = ranked.column("position").combine_chunks()  # a request's row: its custom_id
    keep = pa.concat_arrays([pa.array([True], pa.bool_()), pc.not_equal(rows[1:], rows[:-1])])
    kept, dropped = pc.filter(ranked, keep), pc.filter(ranked, pc.invert(keep))
    listed = dropped.select(["custom_id", "file", "line", "position"])
    listed = pc.take(
        listed, pc.sort_indices(listed, sort_keys=[("file", "ascending"), ("line", "ascending")])
    )
    if cap is not None:
        listed = listed.slice(0, cap)
    kept_rows = kept.column("position").combine_chunks()
    winners = pc.take(kept, pc.index_in(listed.column("position"), value_set=kept_rows))
    anomalies = []
    for r, w in zip(
        listed.to_pylist(), winners.select(["file", "line", "ok"]).to_pylist(), strict=True
    ):
        state = "succeeded" if w["ok"] else "failed"
        anomalies.append(
            Anomaly(
                "duplicate",
                read[r["file"]].name,
                r["line"],
                r["custom_id"],
                f"custom_id {r['custom_id']!r} was answered more than once; kept "
                f"{read[w['file']].name} line {w['line']} ({state}) instead of this line.",
            )
        )
    return kept, dropped.num_rows, anomalies


def _rows(
    plan: _Plan,
    f: FileIndex,
    first: int,
    start: int,
    answers: pa.Table,
    bodies: pa.Array | None,
    schema: pa.Schema,
) -> pa.Table:
    """A block's rows in the join's schema: the request's columns, then its answer's."""
    status = pc.take(_STATUS_OF_OK, pc.fill_null(pc.cast(answers.column("ok"), pa.int8()), 2))
    assert f.table is not None
    rows = answers.num_rows
    columns = {
        "custom_id": f.table.column("custom_id").slice(start - first, rows),
        "input_file": pa.repeat(pa.scalar(f.name, pa.string()), rows),
        "line": f.table.column("line").slice(start - first, rows),
        "status": status,
    }
    if bodies is not None:
        columns["request_body"] = bodies
    names = [n for n in schema.names if n in columns or n in answers.column_names]
    return pa.Table.from_arrays(
        [columns[n] if n in columns else answers.column(n) for n in names],
        schema=pa.schema([schema.field(n) for n in names]),
    )


_STATUS_OF_OK = pa.array([STATUSES[1], STATUSES[0], STATUSES[2]], pa.string())
"""A row's ``status`` by its answer's ``ok``: false (0), true (1), null (2)."""


def _tally(summary: JoinSummary, table: pa.Table, ok: pa.ChunkedArray) -> None:
    """Add a block's counts to the summary (statuses, from the answers' ``ok``; error codes,
    tokens)."""
    succeeded = pc.sum(ok).as_py() or 0
    summary.succeeded += succeeded
    summary.missing += ok.null_count
    summary.failed += len(ok) - ok.null_count - succeeded
    codes = Counter(summary.error_codes)
    for r in pc.value_counts(pc.drop_null(table.column("error_code"))).to_pylist():
        codes[r["values"]] += r["counts"]
    summary.error_codes = dict(sorted(codes.items()))
    for name in TOKEN_COLUMNS:
        setattr(summary, name, getattr(summary, name) + exact_sum(table.column(name)))
    problems = Counter(summary.output_problems)
    for r in pc.value_counts(pc.drop_null(table.column("output_problem"))).to_pylist():
        problems[r["values"]] += r["counts"]
    summary.output_problems = {p: problems[p] for p in OUTPUT_PROBLEMS if problems[p]}


TOKEN_COLUMNS = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "reasoning_tokens",
)


def _origin_lines(origin: Origin) -> pa.Array:
    """A part's original lines, and a null after them (for lines past its ranges)."""
    return pa.concat_arrays([origin.lines(origin.lines_held), pa.nulls(1, pa.int64())])


class _Answers:
    """What join adds to each block's rows beyond the answer's own fields: ``parsed`` (or
    its flattened columns), ``cost_usd``, the original file and line of a split's parts, and
    the token estimate; and their summary."""

    def __init__(
        self,
        structured: StructuredPlan,
        origins: list[Origin | None],
        costs: CostTally,
        estimates: list[array[int] | None] | None,
    ) -> None:
        self.structured, self.origins, self.costs, self.estimates = (
            structured,
            origins,
            costs,
            estimates,
        )
        self.flat: list[str] = []
        self._arrays: dict[tuple[str, int], pa.Array] = {}

    @property
    def has_origins(self) -> bool:
        return any(o is not None for o in self.origins)

    def parsed_fields(self, flatten: bool, taken: list[str]) -> list[pa.Field]:
        kind = self.structured.column_type
        if kind is None:
            return []
        meaning = {"description": COLUMN["parsed"].meaning}
        if not (flatten and pa.types.is_struct(kind)):
            return [pa.field("parsed", kind, metadata=meaning)]
        names = [name for name, _ in flat_names(kind, taken)]
        self.flat = names
        return [pa.field(n, f.type, metadata=meaning) for n, f in zip(names, kind, strict=True)]

    def columns(
        self, table: pa.Table, number: int, parsed: pa.Array | None, schema: pa.Schema
    ) -> pa.Table:
        """A block's rows (``_rows``) with the added columns, in ``schema``'s order."""
        added: dict[str, pa.Array] = {}
        if parsed is not None:
            if self.flat:
                for name, (_, values) in zip(self.flat, flatten(parsed), strict=True):
                    added[name] = values
            else:
                added["parsed"] = parsed
        prompt = table.column("prompt_tokens")
        added["cost_usd"] = self.costs.costs(
            table.column("model"),
            prompt,
            table.column("completion_tokens"),
            table.column("cached_tokens"),
        )
        lines = pc.subtract(table.column("line"), 1)
        if self.has_origins:
            origin = self.origins[number]
            if origin is None:
                added["original_file"] = pa.nulls(table.num_rows, pa.string())
                added["original_line"] = pa.nulls(table.num_rows, pa.int64())
            else:
                held = self._cached(("origin", number), lambda: _origin_lines(origin))
                added["original_file"] = pa.repeat(
                    pa.scalar(origin.input, pa.string()), table.num_rows
                )
                added["original_line"] = pc.take(held, pc.min_element_wise(lines, len(held) - 1))
        counted = self.estimates[number] if self.estimates is not None else None
        if counted is not None:
            estimates = self._cached(("estimate", number), lambda: pa.array(counted, pa.int64()))
            self.costs.estimates(pc.take(estimates, lines), prompt)
        have = set(table.column_names)
        return pa.Table.from_arrays(
            [
                table.column(n)
                if n in have
                else added[n]
                if n in added
                else pa.nulls(table.num_rows, f.type)
                for n, f in zip(schema.names, schema, strict=True)
            ],
            schema=schema,
        )

    def _cached(self, key: tuple[str, int], make: Callable[[], pa.Array]) -> pa.Array:
        """A per-input-file array, made once (its blocks come one after another)."""
        found = self._arrays.get(key)
        if found is None:
            found = self._arrays[key] = make()
        return found

    def finish(self, summary: JoinSummary, flatten: bool) -> None:
        summary.cost = self.costs.to_dict()
        if self.structured.active:
            summary.structured = self.structured.to_dict() | {"flattened": bool(self.flat)}
            if flatten and not self.flat:
                why = self.structured.reason or "the schema's root is not an object"
                summary.structured["not_flattened"] = why


def _finish(plan: _Plan, cap: int | None) -> None:
    """The summary's anomalies in the order of a whole-table join: the inputs', each result
    file's (line order), orphans, duplicates; at most ``cap`` of each kind."""
    summary = plan.summary
    summary.not_copied += sum(a.kind == "not_copied" for a in plan.input_anomalies)
    anomalies = plan.input_anomalies + plan.result_anomalies + plan.later
    summary.anomalies = _cap(anomalies, cap)


def _cap(anomalies: list[Anomaly], cap: int | None) -> list[Anomaly]:
    if cap is None:
        return anomalies
    seen: Counter[str] = Counter()
    out = []
    for a in anomalies:
        seen[a.kind] += 1
        if seen[a.kind] <= cap:
            out.append(a)
    return out
