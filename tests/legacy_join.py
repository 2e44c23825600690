"""The whole-table join as it was before the streaming engine: the reference the new one must
equal (tests only). One row per request, in input order.

``join(inputs, results)`` reads the requests' custom_ids (input files, or a split manifest
standing for its parts), reads every result line (``results``), keeps one result per request
(a succeeded one over a failed one, else the later), and returns the table
(``tables.COLUMNS``) with a ``JoinSummary``. Nothing is dropped silently: result lines that
answer no request, a custom_id answered twice and lines that are not results are listed as
``Anomaly`` values and counted.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from jsonl_batch.errors import UsageError
from jsonl_batch.lines.reading import (
    LineReader,
    ReadError,
    Source,
    explain_invalid,
    open_source,
    source_name,
)
from jsonl_batch.lines.slices import NOT_COPIED, copy_value
from jsonl_batch.results.costs import exact_sum
from jsonl_batch.results.join import Join, JoinError, JoinSummary
from jsonl_batch.results.readers import (
    EXTRAS,
    Anomaly,
    ResultFile,
    not_copied,
    read_projected,
    read_results,
    result_schema,
)
from jsonl_batch.results.tables import STATUSES, join_schema

MANIFEST_SUFFIX = ".manifest.json"

ADDED_COLUMNS = ("cost_usd",)
ADDED_SUMMARY = (
    "cost",
    "output_problems",
    "cached_tokens",
    "reasoning_tokens",
    "structured",
    "not_results",
)
"""What the streaming join added after the whole-table join (``test_join`` and
``test_costs`` test them); ``output_problem`` and the token columns come from
``results.extract``, so both joins have them."""


@dataclass
class InputFile:
    """One input file's requests: their custom_ids in line order (line n is row n - 1)."""

    name: str
    custom_ids: pa.Array
    bodies: pa.Array | None = None
    """The request bodies as JSON text (copied from the lines), when asked for."""
    anomalies: list[Anomaly] = field(default_factory=list)
    """Bodies that could not be copied (``not_copied``)."""


def join(
    inputs: Sequence[Source],
    results: Sequence[Source],
    *,
    include_bodies: bool = False,
    include_tool_calls: bool = False,
    include_embeddings: bool = False,
    max_anomalies: int | None = 100,
) -> Join:
    """Join result files (outputs and errors, any mix and order) to their input files.

    ``inputs`` are request files in order (e.g. split's parts) or a split manifest
    (``*.manifest.json``). The options add the columns ``tables.COLUMNS`` names. Raises
    ``ReadError`` when a file cannot be read and ``JoinError`` when an input line is not a
    request or a custom_id appears twice in the inputs.
    """
    if not inputs:
        raise UsageError("join needs at least one input file")
    options = {
        "include_bodies": include_bodies,
        "include_tool_calls": include_tool_calls,
        "include_embeddings": include_embeddings,
    }
    extras = tuple(k for k, v in options.items() if v)
    sources = expand_inputs(inputs)
    with ThreadPoolExecutor(1) as pool:  # pyarrow releases the GIL: inputs overlap results
        files = pool.submit(lambda: [read_inputs(s, bodies=include_bodies) for s in sources])
        try:
            read = [read_results(s, extras) for s in results]
        except ReadError:
            files.result()  # the inputs' error, if any, is the one to report
            raise
        return _assemble(files.result(), read, join_schema(**options), max_anomalies)


def expand_inputs(inputs: Iterable[Source]) -> list[Source]:
    """The inputs with each split manifest replaced by its parts, in order."""
    out: list[Source] = []
    for source in inputs:
        if isinstance(source, (str, os.PathLike)) and os.fspath(source).endswith(MANIFEST_SUFFIX):
            out.extend(manifest_parts(source))
        else:
            out.append(source)
    return out


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


def read_inputs(source: Source, *, bodies: bool = False) -> InputFile:
    """Read an input file's custom_ids (and bodies); every line must be a request."""
    if not bodies and isinstance(source, (str, os.PathLike)) and os.fspath(source) != "-":
        ids = _fast_ids(os.fspath(source))
        if ids is not None:
            return InputFile(os.fspath(source), ids)
    name = source_name(source)
    ids_list: list[str] = []
    body_list: list[str | None] = []
    anomalies: list[Anomaly] = []
    with open_source(source) as handle:
        for line_no, _offset, raw in LineReader(handle):
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise JoinError(_input_error(name, line_no, explain_invalid(raw, exc))) from None
            why = _not_a_request(obj)
            if why:
                raise JoinError(_input_error(name, line_no, why))
            custom_id = obj["custom_id"]
            ids_list.append(custom_id)
            if bodies:
                body = obj.get("body")
                text = None if body is None else copy_value(raw, ("body",), body)
                if text is NOT_COPIED:
                    text = None
                    anomalies.append(not_copied(name, line_no, custom_id, "request_body"))
                body_list.append(text)
    body_array = pa.array(body_list, pa.string()) if bodies else None
    return InputFile(name, pa.array(ids_list, pa.string()), body_array, anomalies)


def _not_a_request(obj: Any) -> str | None:
    if type(obj) is not dict:
        return "This line is not a JSON object."
    if type(obj.get("custom_id")) is not str:
        return "This line has no string 'custom_id'."
    if type(obj.get("url")) is not str:
        return "This line has no string 'url', so it is not a request (is it a result line?)."
    return None


_ID_SCHEMA = pa.schema([("custom_id", pa.string()), ("url", pa.string())])


def _fast_ids(path: str) -> pa.Array | None:
    """custom_ids via pyarrow when every line has one and a url (else ``None``)."""
    table = read_projected(path, _ID_SCHEMA)
    if table is None or table.column("custom_id").null_count or table.column("url").null_count:
        return None
    return table.column("custom_id").combine_chunks()


def _input_error(name: str, line: int, why: str) -> str:
    return (
        f"{name} line {line}: {why} Every input line must be a batch request "
        "(check the file with `jsonl-batch validate`)."
    )


def _assemble(
    files: list[InputFile], read: list[ResultFile], schema: pa.Schema, cap: int | None
) -> Join:
    summary = JoinSummary()
    for f in files:
        summary.inputs[f.name] = summary.inputs.get(f.name, 0) + len(f.custom_ids)
    for r in read:
        summary.results[r.name] = summary.results.get(r.name, 0) + r.lines
    ids = pa.concat_arrays([f.custom_ids for f in files]) if files else pa.array([], pa.string())
    _check_unique(ids, files)
    anomalies: list[Anomaly] = [a for f in files for a in f.anomalies]
    anomalies += [a for r in read for a in r.invalid]
    summary.not_copied = sum(a.kind == "not_copied" for a in anomalies)
    summary.invalid_lines = len(anomalies) - summary.not_copied

    extras = tuple(o for o, c in EXTRAS.items() if c in schema.names)
    results = _concat_results(read, extras)
    position = pc.index_in(results.column("custom_id"), value_set=ids)
    orphan = position.is_null()
    summary.orphans = pc.sum(orphan).as_py() or 0
    if summary.orphans and summary.orphans == results.num_rows and len(ids):
        raise JoinError(no_match(summary.orphans, len(ids)))
    if summary.orphans:
        anomalies += _orphans(results.filter(orphan), read, cap)
        results = results.filter(pc.invert(orphan))
    results, summary.duplicates, superseded = _dedup(results, read, cap)
    anomalies += superseded

    kept = results.take(pc.index_in(ids, value_set=results.column("custom_id").combine_chunks()))
    ok = kept.column("ok")
    status = pc.if_else(
        ok.is_null(), "missing", pc.if_else(pc.fill_null(ok, False), "succeeded", "failed")
    )
    columns = {
        "custom_id": ids,
        "input_file": pa.chunked_array(
            [pa.repeat(pa.scalar(f.name), len(f.custom_ids)) for f in files], pa.string()
        ),
        "line": pa.chunked_array(
            [pc.cumulative_sum(pa.repeat(pa.scalar(1), len(f.custom_ids))) for f in files],
            pa.int64(),
        ),
        "status": status,
    }
    if "request_body" in schema.names:
        columns["request_body"] = pa.chunked_array([f.bodies for f in files], pa.string())
    table = pa.Table.from_arrays(
        [
            columns[n] if n in columns else _answered(kept, n, schema.field(n).type)
            for n in schema.names
        ],
        schema=schema,
    )
    _count(summary, table)
    summary.anomalies = _cap(anomalies, cap)
    return Join(table, summary)


def no_match(results: int, requests: int) -> str:
    """Why a join of results that answer none of the requests is refused."""
    return (
        f"none of the {results:,} result lines answers any of the {requests:,} input requests "
        "(no custom_id in common): these look like the results of another batch."
    )


def _check_unique(ids: pa.Array, files: list[InputFile]) -> None:
    if pc.count_distinct(ids).as_py() == len(ids):
        return
    counts = pc.value_counts(ids)
    dup = counts.filter(pc.greater(counts.field("counts"), 1))[0]["values"].as_py()
    rows = pc.indices_nonzero(pc.equal(ids, dup)).to_pylist()[:2]
    where = [_locate(files, row) for row in rows]
    raise JoinError(
        f"custom_id {dup!r} appears twice in the inputs ({where[0]} and {where[1]}); "
        "a result could not be told apart, so join needs unique custom_ids."
    )


def _locate(files: list[InputFile], row: int) -> str:
    for f in files:
        if row < len(f.custom_ids):
            return f"{f.name} line {row + 1}"
        row -= len(f.custom_ids)
    raise IndexError(row)


def _concat_results(read: list[ResultFile], extras: tuple[str, ...]) -> pa.Table:
    tables = []
    for index, r in enumerate(read):
        assert r.table is not None
        tables.append(
            r.table.append_column("file", pa.repeat(pa.scalar(index, pa.int32()), len(r.table)))
        )
    if tables:
        return pa.concat_tables(tables)
    # (it was result_schema(): a KeyError with no result file and an extra column)
    return result_schema(extras).append(pa.field("file", pa.int32())).empty_table()


def _orphans(rows: pa.Table, read: list[ResultFile], cap: int | None) -> list[Anomaly]:
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
    results: pa.Table, read: list[ResultFile], cap: int | None
) -> tuple[pa.Table, int, list[Anomaly]]:
    """One result per custom_id: a succeeded one first, else the later (file, then line).

    Returns the kept rows, how many were dropped, and (at most ``cap``) anomalies for them.
    """
    if pc.count_distinct(results.column("custom_id")).as_py() == results.num_rows:
        return results, 0, []
    keys = [("custom_id", "ascending"), ("ok", "descending"), ("file", "descending")]
    ranked = results.take(pc.sort_indices(results, sort_keys=[*keys, ("line", "descending")]))
    ids = ranked.column("custom_id").combine_chunks()
    keep = pa.concat_arrays([pa.array([True]), pc.not_equal(ids[1:], ids[:-1])])
    kept, dropped = ranked.filter(keep), ranked.filter(pc.invert(keep))
    listed = dropped.select(["custom_id", "file", "line"])
    listed = listed.take(
        pc.sort_indices(listed, sort_keys=[("file", "ascending"), ("line", "ascending")])
    )
    if cap is not None:
        listed = listed.slice(0, cap)
    kept_ids = kept.column("custom_id").combine_chunks()
    winners = kept.take(pc.index_in(listed.column("custom_id"), value_set=kept_ids))
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


def _answered(kept: pa.Table, name: str, kind: pa.DataType) -> pa.Array:
    """An answer column; nulls for the columns the streaming join added after this one
    (``cost_usd``: ``test_join_engine`` compares the rest)."""
    if name in kept.column_names:
        return kept.column(name)
    return pa.nulls(kept.num_rows, kind)


def _count(summary: JoinSummary, table: pa.Table) -> None:
    summary.requests = table.num_rows
    counts = Counter(
        {r["values"]: r["counts"] for r in pc.value_counts(table.column("status")).to_pylist()}
    )
    summary.succeeded, summary.failed, summary.missing = (counts[s] for s in STATUSES)
    codes = pc.value_counts(table.column("error_code").drop_null()).to_pylist()
    summary.error_codes = dict(sorted((r["values"], r["counts"]) for r in codes))
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        setattr(summary, name, exact_sum(table.column(name)))


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
