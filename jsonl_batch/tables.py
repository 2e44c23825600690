"""The join table as a contract (its Arrow schema) and its writers: Parquet, CSV, JSONL.

Every column is documented here once; the README's table of join columns is generated from
``COLUMNS`` (a test keeps the two equal). Writers go through ``output.atomic_output``, so a
failed write leaves nothing under the final name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .errors import UsageError
from .output import atomic_output


@dataclass(frozen=True)
class Column:
    """One column of the join table: name, Arrow type, meaning, and the option that adds it."""

    name: str
    type: pa.DataType
    meaning: str
    option: str | None = None

    @property
    def field(self) -> pa.Field:
        return pa.field(self.name, self.type, metadata={"description": self.meaning})


COLUMNS: tuple[Column, ...] = (
    Column("custom_id", pa.string(), "The request's `custom_id`."),
    Column("input_file", pa.string(), "The input file the request came from."),
    Column("line", pa.int64(), "The request's line in its input file (1-based)."),
    Column(
        "status",
        pa.string(),
        "`succeeded` (no `error`, HTTP 2xx), `failed` (an `error`, or HTTP status not 2xx) "
        "or `missing` (in no result file).",
    ),
    Column("status_code", pa.int32(), "The HTTP status; null when there was no HTTP response."),
    Column(
        "error_code",
        pa.string(),
        "For failed requests: `error.code` (`batch_expired`, `batch_cancelled`, "
        "`request_timeout`, ...), else `response.body.error.code`, else its `type`, else "
        "`http_<status>`.",
    ),
    Column("error_message", pa.string(), "`error.message`, else `response.body.error.message`."),
    Column("model", pa.string(), "`response.body.model` (the model that answered)."),
    Column(
        "content",
        pa.string(),
        "Chat: the first choice's message content (text parts joined); completions: the first "
        "choice's text; responses: the `output_text` parts joined; null otherwise.",
    ),
    Column(
        "finish_reason",
        pa.string(),
        "Chat and completions: the first choice's `finish_reason`; responses: "
        "`incomplete_details.reason`, else `status`.",
    ),
    Column("prompt_tokens", pa.int64(), "`usage.prompt_tokens` (responses: `usage.input_tokens`)."),
    Column(
        "completion_tokens",
        pa.int64(),
        "`usage.completion_tokens` (responses: `usage.output_tokens`).",
    ),
    Column("total_tokens", pa.int64(), "`usage.total_tokens`."),
    Column("request_id", pa.string(), "`response.request_id` (quote it to the provider)."),
    Column("batch_request_id", pa.string(), "The result line's `id` (`batch_req_...`)."),
    Column(
        "request_body",
        pa.string(),
        "The request's `body`, as JSON text exactly as written in the input line.",
        "include_bodies",
    ),
    Column(
        "response_body",
        pa.string(),
        "`response.body`, as JSON text exactly as written (null without a response).",
        "include_bodies",
    ),
    Column(
        "tool_calls",
        pa.string(),
        "Chat: the first choice's `message.tool_calls`; responses: the `function_call` "
        "output items; as JSON text, null when there are none.",
        "include_tool_calls",
    ),
    Column(
        "embedding",
        pa.list_(pa.float32()),
        "Embeddings: the request's vectors in input order, concatenated (one input, the usual "
        "case: exactly its vector; n inputs: n vectors end to end). Base64 vectors are decoded.",
        "include_embeddings",
    ),
)
COLUMN = {c.name: c for c in COLUMNS}
_REPEATING = ["input_file", "status", "status_code", "error_code", "model", "finish_reason"]
"""Columns with few distinct values: dictionary-encoded in Parquet (smaller, faster)."""
OPTIONS = ("include_bodies", "include_tool_calls", "include_embeddings")
STATUSES = ("succeeded", "failed", "missing")
FORMATS = ("parquet", "csv", "jsonl")
SUMMARY_KEY = b"jsonl_batch.summary"
"""The Parquet key-value metadata key that holds the join summary (JSON)."""


def join_schema(**options: bool) -> pa.Schema:
    """The join table's schema: the base columns plus those the given options add."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise UsageError(f"unknown join option(s): {', '.join(unknown)}")
    return pa.schema([c.field for c in COLUMNS if c.option is None or options.get(c.option)])


def column_table() -> str:
    """The README's table of join columns, generated from ``COLUMNS``."""
    rows = ["| column | type | meaning | added by |", "|---|---|---|---|"]
    for c in COLUMNS:
        flag = "" if c.option is None else f"`--{c.option.replace('_', '-')}`"
        rows.append(f"| `{c.name}` | `{_type_name(c.type)}` | {c.meaning} | {flag} |")
    return "\n".join(rows)


def _type_name(t: pa.DataType) -> str:
    if pa.types.is_list(t):
        return f"list<{_type_name(t.value_type)}>"
    return "float32" if t == pa.float32() else str(t)


def table_format(path: str | os.PathLike[str], fmt: str | None = None) -> str:
    """The format to write: ``fmt`` if given, else from the extension (``.parquet`` default)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise UsageError(f"unknown table format {fmt!r} (choose from {', '.join(FORMATS)})")
        return fmt
    suffix = Path(path).suffix.lower().lstrip(".")
    return {"csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl"}.get(suffix, "parquet")


def write_table(
    table: pa.Table,
    path: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    summary: dict[str, Any] | None = None,
    force: bool = False,
    inputs: Iterable[object] = (),
) -> str:
    """Write ``table`` atomically as Parquet (zstd), CSV or JSONL; return the format used.

    Parquet keeps the column types and descriptions and stores ``summary`` as JSON under
    ``SUMMARY_KEY`` in the file's key-value metadata. CSV writes list columns as JSON text.
    ``"-"`` is standard output; ``inputs`` (the files the table was made from) are never
    written over, even with ``force``.
    """
    fmt = table_format(path, fmt)
    with atomic_output(path, force=force, inputs=inputs) as handle:
        if fmt == "parquet":
            if summary is not None:
                meta = dict(table.schema.metadata or {})
                meta[SUMMARY_KEY] = orjson.dumps(summary)
                table = table.replace_schema_metadata(meta)
            pq.write_table(table, handle, compression="zstd", use_dictionary=_REPEATING)
        elif fmt == "csv":
            pacsv.write_csv(_lists_as_json(table), handle)
        else:
            _write_jsonl(table, handle)
    return fmt


def read_summary(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The join summary stored in a Parquet file written by ``write_table`` (or ``None``)."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(SUMMARY_KEY)
    return None if raw is None else orjson.loads(raw)


def _lists_as_json(table: pa.Table) -> pa.Table:
    for i, field in enumerate(table.schema):
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            text = [None if v is None else orjson.dumps(v).decode() for v in table[i].to_pylist()]
            table = table.set_column(i, field.name, pa.array(text, pa.string()))
    return table


def _write_jsonl(table: pa.Table, handle: Any) -> None:
    dumps = orjson.dumps
    for batch in table.to_batches(max_chunksize=8192):
        handle.write(b"".join(dumps(row) + b"\n" for row in batch.to_pylist()))
