"""The join table as a contract (its Arrow schema) and its writers: Parquet, CSV, JSONL.

Every column is documented here once; the README's table of join columns is generated from
``COLUMNS`` (a test keeps the two equal). Writers go through ``output.atomic_output``, so a
failed write leaves nothing under the final name.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from .. import compute as pc
from ..errors import UsageError
from ..outputs.atomic import (
    WriteError,
    atomic_output,
    check_folder_target,
    folder_lock,
    replace_together,
    temporary_folder,
)
from ..outputs.parquet_parts import StitchedWriter

if TYPE_CHECKING:
    import pyarrow.csv as pacsv


@dataclass(frozen=True)
class Column:
    """One column of the join table: name, Arrow type, meaning, and the option that adds it."""

    name: str
    type: pa.DataType
    meaning: str
    option: str | None = None
    added: str | None = None
    """When the column is there, for columns no flag adds (``option`` names the rule)."""

    @property
    def field(self) -> pa.Field:
        return pa.field(self.name, self.type, metadata={"description": self.meaning})


COLUMNS: tuple[Column, ...] = (
    Column("custom_id", pa.string(), "The request's `custom_id`."),
    Column("input_file", pa.string(), "The input file the request came from."),
    Column("line", pa.int64(), "The request's line in its input file (1-based)."),
    Column(
        "original_file",
        pa.string(),
        "For a part of a split: the file that was split (from the split manifest beside it).",
        "origins",
        "joining a split's parts",
    ),
    Column(
        "original_line",
        pa.int64(),
        "For a part of a split: the request's line in the file that was split.",
        "origins",
        "joining a split's parts",
    ),
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
        "`request_timeout`, ...), else `error.type`, else `response.body.error.code`, else "
        "its `type`, else `http_<status>` (an `error` given as a string, as vLLM writes it, "
        "is the message).",
    ),
    Column(
        "error_message",
        pa.string(),
        "`error.message`, else `response.body.error.message`; for an `output_problem`, what "
        "it is (the first schema validation error, the refusal, the incomplete reason).",
    ),
    Column(
        "output_problem",
        pa.string(),
        "Why a succeeded answer is not usable: `truncated` (output token limit; responses "
        "`incomplete`), `content_filter`, `refusal`, `not_json` or `schema_mismatch` (when "
        "JSON or a JSON schema was asked for); null when it is fine.",
    ),
    Column("model", pa.string(), "`response.body.model` (the model that answered)."),
    Column(
        "content",
        pa.string(),
        "Chat: the first choice's message content (text parts joined); completions: the first "
        "choice's text; responses: the `output_text` parts joined; null otherwise.",
    ),
    Column(
        "parsed",
        pa.string(),
        "The answer parsed and checked against the JSON schema: typed from the schema "
        "(objects as structs, arrays as lists, integer int64, number float64, string enums "
        "dictionary strings); JSON text when the requests use several schemas, or asked for "
        "JSON without one; null for an answer with an `output_problem`.",
        "parsed",
        "a JSON schema (the requests' `response_format` / `text.format`, or `--schema`); "
        "`--flatten`: its top-level properties as columns instead",
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
    Column(
        "cached_tokens",
        pa.int64(),
        "Prompt tokens read from the cache: `usage.prompt_tokens_details.cached_tokens` "
        "(responses: `usage.input_tokens_details.cached_tokens`).",
    ),
    Column(
        "reasoning_tokens",
        pa.int64(),
        "Reasoning tokens (in `completion_tokens`): `usage.completion_tokens_details."
        "reasoning_tokens` (responses: `usage.output_tokens_details.reasoning_tokens`).",
    ),
    Column(
        "cost_usd",
        pa.float64(),
        "What the answer cost at batch prices (cached input at its own price), from the price "
        "table; null without usage or for a model the table does not price.",
    ),
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
_REPEATING = [
    "input_file",
    "status",
    "status_code",
    "error_code",
    "error_message",
    "output_problem",
    "model",
    "content",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
]
"""Columns whose values often repeat: dictionary-encoded in Parquet, which falls back to
plain values in a row group once its dictionary passes 1 MiB (pyarrow's
``dictionary_pagesize_limit``). Token counts and costs repeat in any batch, answers in
classification-like jobs (a label, "yes"): there the file is half the size and written in
~40% less CPU; unique answers cost the same either way (500,000 rows, measured)."""
OPTIONS = ("include_bodies", "include_tool_calls", "include_embeddings")
STATUSES = ("succeeded", "failed", "missing")
FORMATS = ("parquet", "csv", "jsonl")
SUMMARY_KEY = b"jsonl_batch.summary"
"""The Parquet key-value metadata key that holds the join summary (JSON)."""


def join_schema(
    *, parsed: Sequence[pa.Field] = (), origins: bool = False, **options: bool
) -> pa.Schema:
    """The join table's schema: the base columns plus those the given options add;
    ``parsed`` (the ``parsed`` field, or the flattened ones) where ``parsed`` goes, and the
    ``original_*`` columns with ``origins``."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise UsageError(f"unknown join option(s): {', '.join(unknown)}")
    fields: list[pa.Field] = []
    for c in COLUMNS:
        if c.option == "parsed":
            fields += parsed
        elif c.option is None or options.get(c.option) or (c.option == "origins" and origins):
            fields.append(c.field)
    return pa.schema(fields)


def column_table() -> str:
    """The README's table of join columns, generated from ``COLUMNS``."""
    rows = ["| column | type | meaning | added by |", "|---|---|---|---|"]
    for c in COLUMNS:
        flag = "" if c.option is None else f"`--{c.option.replace('_', '-')}`"
        flag = c.added or flag
        kind = "from the schema" if c.option == "parsed" else f"`{_type_name(c.type)}`"
        rows.append(f"| `{c.name}` | {kind} | {c.meaning} | {flag} |")
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
    with TableWriter(path, fmt=fmt, force=force, inputs=inputs) as writer:
        writer.begin(table.schema)
        writer.write(table)
        writer.summary = summary
    return writer.fmt


PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "use_dictionary": _REPEATING}
"""How the join table is written as Parquet (the rest is pyarrow's defaults)."""


def parquet_writer(where: str | IO[bytes], schema: pa.Schema) -> Any:
    """A Parquet writer (``write_table``, ``add_key_value_metadata``, ``close``) of a table
    of ``schema`` to a path or a binary file, with ``PARQUET_OPTIONS``.

    It is pyarrow's writer itself, ``pyarrow._parquet.ParquetWriter``, given the defaults of
    ``pyarrow.parquet.ParquetWriter`` (the same file, byte for byte: a test holds it):
    importing ``pyarrow.parquet`` loads pyarrow's filesystems (S3, SSL), a good part of a
    join's start-up, for paths this module never gives it. Where that class takes other
    arguments (another pyarrow: a ``TypeError``), the public one. (A pyarrow without
    ``pyarrow._parquet`` has no ``pyarrow.parquet`` either: no fallback for that.)"""
    from pyarrow._parquet import ParquetWriter

    try:
        return ParquetWriter(where, schema, **_PARQUET_DEFAULTS, **PARQUET_OPTIONS)
    except TypeError:
        import pyarrow.parquet as pq

        return pq.ParquetWriter(where, schema, **PARQUET_OPTIONS)


_PARQUET_DEFAULTS = {"version": "2.6", "data_page_version": "1.0", "writer_engine_version": "V2"}
"""``pyarrow.parquet.ParquetWriter``'s values of these options (``None`` in the class below)."""


class TableWriter:
    """The join table written as it comes, a block of rows at a time (a Parquet row group
    each, encoded in threads: ``outputs.parquet_parts``), to a temporary file renamed into
    place on success: a ``joining.Sink``.

    ``begin(schema)``, ``write(table)``..., then ``summary`` (stored in a Parquet file's
    key-value metadata) is set before the ``with`` block ends.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fmt: str | None = None,
        force: bool = False,
        inputs: Iterable[object] = (),
    ) -> None:
        self.path, self.force, self.inputs = path, force, inputs
        self.fmt = table_format(path, fmt)
        self.summary: dict[str, Any] | None = None
        self._stack = ExitStack()
        self._handle: IO[bytes] | None = None
        self._parquet: StitchedWriter | None = None
        self._csv: pacsv.CSVWriter | None = None

    @property
    def threaded(self) -> bool:
        """Parquet is encoded in threads of its own (``joining.Sink``)."""
        return self.fmt == "parquet"

    def __enter__(self) -> TableWriter:
        self._handle = self._stack.enter_context(
            atomic_output(self.path, force=self.force, inputs=self.inputs)
        )
        return self

    def begin(self, schema: pa.Schema) -> None:
        assert self._handle is not None
        if self.fmt == "parquet":
            self._parquet = StitchedWriter(self._handle, schema, parquet_writer)
        elif self.fmt == "csv":
            import pyarrow.csv as pacsv

            self._csv = pacsv.CSVWriter(self._handle, _lists_as_json(schema.empty_table()).schema)

    def write(self, table: pa.Table) -> None:
        assert self._handle is not None
        if self._parquet is not None:
            self._parquet.write_table(table)
        elif self._csv is not None:
            self._csv.write_table(_lists_as_json(table))
        else:
            _write_jsonl(table, self._handle)

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._parquet is not None and exc[0] is not None:
                self._parquet.abort()
            elif self._parquet is not None:
                if self.summary is not None:
                    self._parquet.add_key_value_metadata({SUMMARY_KEY: orjson.dumps(self.summary)})
                self._parquet.close()
            if self._csv is not None:
                self._csv.close()
        except BaseException:
            self._stack.__exit__(*sys.exc_info())  # the temporary file is removed
            raise
        self._stack.__exit__(*exc)  # renamed into place, or removed after an error


class DatasetWriter:
    """The join table as a folder of Parquet files, one subfolder per value of a column
    (``status``, or ``input_file``): ``<folder>/succeeded/part-0.parquet``... Every file has
    every column, so DuckDB (``'<folder>/**/*.parquet'``), polars and pyarrow read the folder
    as one table. Written under a temporary folder renamed into place; an existing folder is
    only replaced with ``force``. A ``joining.Sink``, used like ``TableWriter``.
    """

    def __init__(self, folder: str | os.PathLike[str], by: str, *, force: bool = False) -> None:
        if by not in PARTITIONS:
            raise UsageError(f"cannot partition by {by!r} (choose from {', '.join(PARTITIONS)})")
        self.folder, self.by, self.force = Path(folder), by, force
        self.fmt = "parquet"
        self.summary: dict[str, Any] | None = None
        self.files: list[Path] = []
        self._writers: dict[str, Any] = {}  # parquet_writer's
        self._names: dict[str, str] = {}
        self._schema = pa.schema([])
        self._tmp: Path | None = None
        self._live = -1

    def __enter__(self) -> DatasetWriter:
        check_folder(self.folder, self.force)
        self._live, self._tmp = temporary_folder(self.folder)  # live until __exit__
        return self

    def begin(self, schema: pa.Schema) -> None:
        self._schema = schema

    def write(self, table: pa.Table) -> None:
        column = table.column(self.by)
        for value in pc.unique(column).to_pylist():
            part = pc.filter(table, pc.equal(column, value))
            self._writer(value).write_table(part, row_group_size=max(1, part.num_rows))

    def _writer(self, value: str) -> Any:
        writer = self._writers.get(value)
        if writer is None:
            assert self._tmp is not None
            name = self._names[value] = _segment(value, set(self._names.values()))
            (self._tmp / name).mkdir()
            writer = parquet_writer(str(self._tmp / name / "part-0.parquet"), self._schema)
            self._writers[value] = writer
        return writer

    def __exit__(self, *exc: object) -> None:
        assert self._tmp is not None
        try:
            for writer in self._writers.values():
                if exc[0] is None and self.summary is not None:
                    writer.add_key_value_metadata({SUMMARY_KEY: orjson.dumps(self.summary)})
                writer.close()
            if exc[0] is None:
                self._replace()
                self.files = sorted(self.folder.glob("*/part-0.parquet"))
        except OSError as exc_:
            raise WriteError(f"{self.folder}: {exc_.strerror or exc_}") from None
        finally:
            os.close(self._live)
            if self._tmp.exists():
                shutil.rmtree(self._tmp, ignore_errors=True)

    def _replace(self) -> None:
        """The new folder in place of the old one, in one journaled step (the old one set
        aside, then removed; a run killed meanwhile is completed by the next one there)."""
        assert self._tmp is not None
        with folder_lock(self.folder.parent, self.folder):
            check_folder(self.folder, self.force)
            replace_together(self.folder.parent, [(self._tmp, self.folder)])


PARTITIONS = ("status", "input_file")


def check_folder(folder: Path, force: bool) -> None:
    """Fail early if ``folder`` exists (without ``force``) or is something else than a folder."""
    check_folder_target(folder, force)


def _segment(value: str, taken: set[str]) -> str:
    """A folder name for a partition value: its last path part, with only ``[A-Za-z0-9._-]``
    (others become ``_``), made unique among ``taken``."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", Path(value).name or "_").lstrip(".") or "_"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def read_summary(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The join summary stored in a Parquet file written by ``write_table`` (or ``None``)."""
    import pyarrow.parquet as pq

    meta = pq.read_metadata(path).metadata or {}
    raw = meta.get(SUMMARY_KEY)
    return None if raw is None else orjson.loads(raw)


def _lists_as_json(table: pa.Table) -> pa.Table:
    """List and struct columns (``embedding``, ``parsed`` and its flattened fields) as JSON
    text, dictionary columns as plain text: CSV has none of them."""
    for i, field in enumerate(table.schema):
        kind = field.type
        if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_struct(kind):
            text = [None if v is None else orjson.dumps(v).decode() for v in table[i].to_pylist()]
            table = table.set_column(i, field.name, pa.array(text, pa.string()))
        elif pa.types.is_dictionary(kind):
            table = table.set_column(i, field.name, pc.cast(table[i], kind.value_type))
    return table


def _write_jsonl(table: pa.Table, handle: Any) -> None:
    dumps = orjson.dumps
    for batch in table.to_batches(max_chunksize=8192):
        handle.write(b"".join(dumps(row) + b"\n" for row in batch.to_pylist()))
