"""Rows in, a batch out: read CSV, TSV, JSONL or Parquet rows (streaming, a batch at a time),
shape each row into a request body, and write them with ``BatchWriter`` (``build_file``).

Values are placed into parsed JSON, never pasted into JSON text, so a quote or a newline in
a cell cannot break a line. Rows count from 1 (a CSV's header is not a row).
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import orjson

from ..errors import UsageError, option
from ..lines.reading import LineReader, Source, open_source, parse_line, regular_size, source_name
from ..outputs.atomic import atomic_output, is_stdout, writes_through
from ..outputs.manifests import Manifest
from ..rules.checks import duplicate_id
from ..rules.profiles import ENDPOINTS, Profile
from .writer import NON_FINITE_HINT, BatchWriter, BuildError, Rotate, non_finite

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
PLACEHOLDER = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
BATCH_ROWS = 8192


def input_format(source: Source, given: str | None = None) -> str:
    """The format of ``source``: ``given``, or guessed from the file name's extension."""
    if given is not None:
        if given not in set(FORMATS.values()):
            raise UsageError(
                f"unknown input format {given!r} (choose from csv, tsv, jsonl, parquet)"
            )
        return given
    name = source_name(source)
    found = FORMATS.get(Path(name).suffix.lower())
    if found is None:
        raise UsageError(
            f"cannot tell the format of {name}; give {option('input_format')} csv|tsv|jsonl|parquet"
        )
    return found


class RowReader:
    """Iterate the rows (dicts) of a source, a batch at a time; never the whole file at once.

    ``columns`` must exist (checked up front for CSV and Parquet, per row for JSONL);
    ``text_columns`` are read as text from CSV (an id column of digits stays ``"007"``).
    ``position`` / ``total`` track progress: bytes for CSV/JSONL, rows for Parquet.
    """

    def __init__(
        self,
        source: Source,
        fmt: str | None = None,
        *,
        columns: tuple[str, ...] = (),
        text_columns: tuple[str, ...] = (),
    ) -> None:
        self.source = source
        self.name = source_name(source)
        self.format = input_format(source, fmt)
        self.columns = columns
        self.text_columns = text_columns
        self.position = 0
        self.total: int | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        with open_source(self.source) as handle:
            self.total = regular_size(handle)
            if self.format == "jsonl":
                yield from self._jsonl(handle)
            elif self.format == "parquet":
                yield from self._parquet(handle)
            else:
                yield from self._csv(handle, "\t" if self.format == "tsv" else ",")

    def _jsonl(self, handle: IO[bytes]) -> Iterator[dict[str, Any]]:
        reader = LineReader(handle)
        for number, _offset, raw in reader:
            value, reason = parse_line(raw)
            if reason is not None or type(value) is not dict:
                why = reason or "This line is not a JSON object; each row must be one object."
                raise BuildError("invalid_input", why, row=number)
            self.position = reader.offset
            yield value

    def _csv(self, handle: IO[bytes], delimiter: str) -> Iterator[dict[str, Any]]:
        import pyarrow as pa  # imported here: pyarrow takes a while to load
        import pyarrow.csv as pacsv

        try:
            reader = pacsv.open_csv(
                handle,
                read_options=pacsv.ReadOptions(block_size=1 << 20),
                parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in self.text_columns}
                ),
            )
            self._require(reader.schema.names)
            for batch in reader:
                self.position = _tell(handle, self.position)
                yield from batch.to_pylist()
        except (pa.ArrowException, UnicodeDecodeError) as exc:  # a header that is not UTF-8
            raise BuildError(
                "invalid_input", f"{self.name} is not readable as CSV: {exc}"
            ) from None

    def _parquet(self, handle: IO[bytes]) -> Iterator[dict[str, Any]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            seekable = handle.seekable()
        except (AttributeError, OSError, ValueError):
            seekable = False
        data: Any = handle if seekable else pa.BufferReader(handle.read())
        try:
            parquet = pq.ParquetFile(data)
            self._require(parquet.schema_arrow.names)
            self.total = parquet.metadata.num_rows
            wanted = list(self.columns) or None
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=wanted):
                self.position += batch.num_rows
                yield from batch.to_pylist()
        except pa.ArrowException as exc:
            raise BuildError(
                "invalid_input", f"{self.name} is not readable as Parquet: {exc}"
            ) from None

    def _require(self, names: list[str]) -> None:
        for column in self.columns:
            if column not in names:
                raise BuildError(
                    "missing_column",
                    f"There is no such column in {self.name} (columns: {', '.join(names)}).",
                    column=column,
                )


def _tell(handle: IO[bytes], default: int) -> int:
    try:
        return handle.tell()
    except (OSError, ValueError):
        return default


def cell(row: dict[str, Any], column: str, number: int) -> Any:
    """A row's value in ``column`` as plain JSON data; missing or null is a ``BuildError``."""
    if column not in row:
        raise BuildError("missing_column", "The row has no such column.", row=number, column=column)
    value = row[column]
    if value is None:
        raise BuildError("null_value", "The value is null (empty).", row=number, column=column)
    value = plain(value)
    found = non_finite(value)
    if found is not None:
        raise BuildError(
            "invalid_input",
            f"The value{found[0]} is {found[1]!r}, a number JSON cannot hold: {NON_FINITE_HINT}.",
            row=number,
            column=column,
            value=found[1],
        )
    return value


def prompt_cell(row: dict[str, Any], column: str, number: int) -> Any:
    """A value that fills the prompt: like ``cell``, and empty or blank text is an error."""
    value = cell(row, column, number)
    if isinstance(value, str):
        filled(value, "prompt", number, column)
    return value


def text_cell(row: dict[str, Any], column: str, number: int) -> str:
    """A row's value as text (numbers are written as JSON writes them)."""
    value = cell(row, column, number)
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return orjson.dumps(value).decode()
    raise BuildError(
        "invalid_input",
        f"Expected text, found {type(value).__name__}.",
        row=number,
        column=column,
    )


def id_cell(row: dict[str, Any], column: str, number: int) -> str:
    """A custom_id: like ``text_cell``, and empty or blank text is an error."""
    value = text_cell(row, column, number)
    filled(value, "custom_id", number, column)
    return value


def filled(value: str, name: str, number: int, column: str) -> None:
    """``empty_value`` if the ``name`` (prompt, custom_id) is empty or only whitespace."""
    if not value.strip():
        what = "empty" if not value else "only whitespace"
        raise BuildError(
            "empty_value",
            f"The {name} is {what}; every request needs one (fill it in or drop the row).",
            row=number,
            column=column,
        )


def plain(value: Any) -> Any:
    """Arrow's Python values as JSON data: decimals as numbers, bytes as text, dates ISO."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def parse_params(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["temperature=0.2", "response_format.type=json_object"]`` -> a dict of typed values.

    A value that parses as JSON is that JSON (``0.2``, ``true``, ``[1, 2]``, ``"42"``);
    anything else is a string. Dotted keys are paths into the body.
    """
    params: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip() or any(not p for p in key.split(".")):
            raise UsageError(
                f"invalid {option('param')} {item!r}: use key=value (e.g. temperature=0.2)"
            )
        try:
            params[key.strip()] = orjson.loads(text)
        except orjson.JSONDecodeError:
            params[key.strip()] = text
    return params


class BodyShaper:
    """Turn a row into a request body, for one endpoint.

    Either the quick way (``prompt_column``: its value becomes the user message for chat, the
    ``prompt`` for completions, images and videos, the ``input`` for embeddings, moderations
    and responses; ``system`` becomes a system message or the responses ``instructions``) or
    a ``template``: a JSON object whose strings may hold ``{{column}}`` placeholders. A string
    that is just a placeholder takes the value with its type; inside longer text the value is
    written as text. ``params`` (dotted keys allowed) are set on every body. The prompt column
    (or the template's placeholders inside the prompt field: ``messages``, ``input`` or
    ``prompt``) must not be empty or blank text; other columns may be.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        prompt_column: str | None = None,
        system: str | None = None,
        params: dict[str, Any] | None = None,
        template: Any = None,
    ) -> None:
        if endpoint not in ENDPOINTS:
            raise UsageError(f"unknown endpoint {endpoint!r}")
        self.fields = ENDPOINTS[endpoint]
        if template is not None and (prompt_column or system is not None):
            raise UsageError(
                f"a template replaces {option('prompt_column')} and {option('system')}; "
                "give one or the other"
            )
        if template is None and not prompt_column:
            raise UsageError(
                f"give the column that holds the prompt ({option('prompt_column')}) "
                f"or a {option('template')}"
            )
        if template is not None and not isinstance(template, dict):
            raise UsageError("the template must be a JSON object (the request body)")
        if system is not None and self.fields.system_field is None:
            takers = " and ".join(sorted({e.kind for e in ENDPOINTS.values() if e.system_field}))
            raise UsageError(f"{option('system')} applies to {takers}, not {endpoint}")
        self.endpoint, self.prompt_column, self.system = endpoint, prompt_column, system
        self.template = template
        self.params = [(key.split("."), value) for key, value in (params or {}).items()]
        found: list[str] = []
        _placeholders(template, found)
        self.columns: tuple[str, ...] = (
            tuple(dict.fromkeys(found)) if template is not None else (str(prompt_column),)
        )
        in_prompt: list[str] = []
        _placeholders((template or {}).get(self.fields.prompt_field), in_prompt)
        self.prompt_columns = (
            tuple(dict.fromkeys(in_prompt)) if template is not None else self.columns
        )
        """The columns whose values fill the prompt field: they need text."""

    def shape(self, row: dict[str, Any], number: int) -> dict[str, Any]:
        """The body for row ``number`` (1-based); ``BuildError`` on a missing or null value, or
        an empty prompt."""
        if self.template is not None:
            for column in self.prompt_columns:
                prompt_cell(row, column, number)
            body: dict[str, Any] = _fill(self.template, row, number)
        else:
            body = self._quick(prompt_cell(row, str(self.prompt_column), number))
        for path, value in self.params:
            node = body
            for key in path[:-1]:
                node = node.setdefault(key, {})
                if not isinstance(node, dict):
                    raise BuildError(
                        "invalid_body",
                        f"{option('param')} {'.'.join(path)}: body.{key} is not an object.",
                        row=number,
                    )
            node[path[-1]] = value
        return body

    def _quick(self, value: Any) -> dict[str, Any]:
        if isinstance(value, (bool, int, float)):
            value = orjson.dumps(value).decode()
        field, system_field = self.fields.prompt_field, self.fields.system_field
        if field == "messages":
            system = [{"role": "system", "content": self.system}] if self.system else []
            return {"messages": [*system, {"role": "user", "content": value}]}
        body = {field: value}
        if self.system is not None and system_field is not None:
            body[system_field] = self.system
        return body

    def column_for(self, param: str | None) -> str | None:
        """The column a body parameter came from (for error messages), if one did."""
        if not param or not param.startswith("body."):
            return None
        if self.template is None:
            field = self.fields.prompt_field
            return self.prompt_column if re.match(rf"body\.{field}\b", param) else None
        node: Any = self.template
        for name, index in re.findall(r"\.([^.\[\]]+)|\[(\d+)\]", param[4:]):
            try:
                node = node[int(index)] if index else node[name]
            except (KeyError, IndexError, TypeError):
                break
            if isinstance(node, str):
                break
        found: list[str] = []
        _placeholders(node, found)
        return found[0] if found else None


def _placeholders(node: Any, found: list[str]) -> None:
    if isinstance(node, str):
        found.extend(m.strip() for m in PLACEHOLDER.findall(node))
    elif isinstance(node, dict):
        for value in node.values():
            _placeholders(value, found)
    elif isinstance(node, list):
        for value in node:
            _placeholders(value, found)


def _fill(node: Any, row: dict[str, Any], number: int) -> Any:
    if isinstance(node, str):
        if "{{" not in node:
            return node
        whole = PLACEHOLDER.fullmatch(node)
        if whole:
            return cell(row, whole.group(1).strip(), number)
        return PLACEHOLDER.sub(lambda m: _as_text(cell(row, m.group(1).strip(), number)), node)
    if isinstance(node, dict):
        return {key: _fill(value, row, number) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill(value, row, number) for value in node]
    return node


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def load_template(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a body template (a JSON object); ``ValueError`` saying what is wrong with it."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the template {path}: {exc.strerror or exc}") from None
    try:
        template = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"the template {path} is not valid JSON: {exc}") from None
    if not isinstance(template, dict):
        raise UsageError(f"the template {path} must be a JSON object (the request body)")
    return template


def build_file(
    source: Source,
    output: str | os.PathLike[str] | IO[bytes],
    endpoint: str,
    *,
    model: str | None = None,
    prompt_column: str | None = None,
    system: str | None = None,
    params: dict[str, Any] | None = None,
    template: dict[str, Any] | None = None,
    id_column: str | None = None,
    input_format: str | None = None,
    profile: str | Profile = "openai",
    split: bool = False,
    force: bool = False,
    progress: Callable[[int, int | None], None] | None = None,
    max_requests: int | None = None,
    max_bytes: int | None = None,
    max_embedding_inputs: int | None = None,
    max_tokens: int | None = None,
) -> Manifest:
    """Read rows from ``source`` (CSV, TSV, JSONL, Parquet; ``"-"``: stdin) and write a batch.

    Each row becomes a body (see ``BodyShaper``), its custom_id comes from ``id_column`` (else
    ``request-N``). ``output`` is a path (parts and a manifest when a limit is hit, or always
    with ``split``) or a binary stream (written only once every row is good). Raises
    ``BuildError`` naming the row and column of the first bad row, and writes nothing then.
    ``source`` is never removed nor replaced (an output named like it: ``OutputExists``).
    ``max_tokens``: a budget of estimated input tokens per file (see ``BatchWriter``).
    ``progress(done, total)`` is called now and then (bytes, or rows for Parquet).
    """
    shaper = BodyShaper(
        endpoint, prompt_column=prompt_column, system=system, params=params, template=template
    )
    text = tuple(c for c in (prompt_column, id_column) if c)
    columns = tuple(dict.fromkeys([*shaper.columns, *text]))
    rows = RowReader(source, input_format, columns=columns, text_columns=text)
    settings: dict[str, Any] = {
        "model": model,
        "profile": profile,
        "max_requests": max_requests,
        "max_bytes": max_bytes,
        "max_embedding_inputs": max_embedding_inputs,
        "max_tokens": max_tokens,
    }
    keep = [source] if isinstance(source, (str, os.PathLike)) and source != "-" else []
    if isinstance(output, (str, os.PathLike)) and not writes_through(output):
        rotate: Rotate = True if split else "auto"
        writer = BatchWriter(output, endpoint, rotate=rotate, force=force, keep=keep, **settings)
        return _write_rows(writer, rows, shaper, id_column, progress)
    if split:  # parts and a manifest are files beside the output's name
        where = "standard output"
        if isinstance(output, (str, os.PathLike)) and not is_stdout(output):
            where = f"a device or a pipe ({os.fspath(output)}): the parts are files"
        raise UsageError(
            f"{option('split')} needs an output file ({option('output')}), not {where}"
        )
    with ExitStack() as stack:
        if isinstance(output, (str, os.PathLike)):  # standard output, a device, a pipe
            output = stack.enter_context(atomic_output(output, force=force, inputs=keep))
        spool = stack.enter_context(tempfile.TemporaryFile())
        writer = BatchWriter(spool, endpoint, **settings)
        manifest = _write_rows(writer, rows, shaper, id_column, progress)
        spool.seek(0)
        shutil.copyfileobj(spool, output)
        output.flush()
        manifest.parts[0].path = source_name(output)
        return manifest


def _write_rows(
    writer: BatchWriter,
    rows: RowReader,
    shaper: BodyShaper,
    id_column: str | None,
    progress: Callable[[int, int | None], None] | None,
) -> Manifest:
    with writer:
        for number, row in enumerate(rows, 1):
            body = shaper.shape(row, number)
            custom_id = id_cell(row, id_column, number) if id_column else None
            try:
                writer.add(body, custom_id)
            except BuildError as exc:
                raise _at_row(exc, number, shaper, id_column) from None
            if progress is not None and number % 1024 == 0:
                progress(rows.position, rows.total)
        if writer.requests == 0:
            raise BuildError("empty_file", f"{rows.name} has no rows; nothing was written.")
        if progress is not None:
            progress(rows.total or rows.position, rows.total)
    assert writer.manifest is not None
    return writer.manifest


def _at_row(exc: BuildError, row: int, shaper: BodyShaper, id_column: str | None) -> BuildError:
    """The writer's error, told in rows and columns."""
    exc.row = row
    if exc.code == "duplicate_custom_id":
        exc.column = id_column
        exc.message = duplicate_id(exc.value, f"by row {exc.first}")[1]
    elif exc.param is not None and exc.param.startswith("custom_id"):
        exc.column = id_column
    else:
        exc.column = shaper.column_for(exc.param)
    return exc
