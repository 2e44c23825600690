"""Structured output: a JSON Schema as an Arrow type, and answers checked and typed by it.

``OutputSchema(schema)`` compiles a JSON Schema (a dict; ``from_pydantic`` takes a pydantic
model class, ``load_output_schema`` a file) once: ``type`` is the Arrow type of the parsed
answers (objects are structs, arrays lists, ``integer`` int64, ``number`` float64, string
enums dictionary strings, optional or nullable fields nullable; local ``$ref``s resolved),
and ``check(text)`` parses an answer, validates it with jsonschema-rs and returns the value
ready for that type. What Arrow cannot type (``anyOf`` of different types, maps given by
``additionalProperties``, tuples, recursion, "any value") becomes JSON text at that place,
and ``fallbacks`` says where and why.

``requested_schema(body)`` reads what a request asked for (chat ``response_format``,
responses ``text.format``); ``FormatFinder`` does so for the requests of a range of lines
(where the join indexes them, ``results.index``), and ``plan_of`` gathers the ranges'
findings and decides the ``parsed`` column: typed when all requests share one schema, JSON
text (with the reason) when they use several.
"""

from __future__ import annotations

import os
import re
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
import pyarrow as pa

from .. import compute as pc
from ..errors import JsonlBatchError, UsageError
from ..lines.reading import loads_wide

MAX_DEPTH = 32
"""Schema levels typed at most; deeper values are JSON text (no Python recursion limit)."""
JSON_TEXT = pa.string()
"""The type of values kept as JSON text (whole answers, or the parts Arrow cannot type)."""
ENUM = pa.dictionary(pa.int32(), pa.string())
_INT64 = (-(2**63), 2**63)


class SchemaError(UsageError):
    """A JSON Schema that cannot be used: not valid, not found, or not a schema at all."""

    code = "schema_error"


class Unfit(JsonlBatchError, ValueError):
    """A value valid under its schema that its Arrow type cannot hold (an integer over 64 bits)."""

    code = "unfit"


@dataclass(frozen=True)
class Fallback:
    """A place of the schema kept as JSON text, and why."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


class Checked(NamedTuple):
    """One answer checked: its typed value, or why it has none (``problem`` and ``message``).
    A named tuple: one is made per answer."""

    value: Any = None
    problem: str | None = None
    """``not_json`` or ``schema_mismatch`` (``None`` when the answer fits)."""
    message: str | None = None


Convert = Callable[[Any], Any]


@dataclass(frozen=True)
class _Node:
    type: pa.DataType
    nullable: bool
    convert: Convert | None
    """``None``: the value is already what pyarrow takes (no copy needed)."""


class OutputSchema:
    """A JSON Schema compiled for answers: Arrow ``type``, validator, converter."""

    def __init__(self, schema: Mapping[str, Any] | bool, name: str | None = None) -> None:
        if not isinstance(schema, (Mapping, bool)):
            raise SchemaError(f"a JSON Schema is an object, found {type(schema).__name__}")
        self.schema: Any = dict(schema) if isinstance(schema, Mapping) else schema
        self.name = name
        _check_refs(self.schema)
        import jsonschema_rs  # here: most joins check no schema, and need not load it

        try:
            self._validator = jsonschema_rs.validator_for(self.schema)
        except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SchemaError(f"not a usable JSON Schema: {first}") from None
        self.fallbacks: list[Fallback] = []
        self._refs: list[str] = []
        self._depth = 0
        self._loose = False
        node = self._node(self.schema, "parsed")
        self.type: pa.DataType = node.type
        self._convert = node.convert
        found, self.fallbacks, self._loose = self.fallbacks, [], True
        self._convert_loose = self._node(self.schema, "parsed").convert  # same fallbacks
        self.fallbacks = found
        self.key = schema_key(self.schema)
        """The schema's canonical bytes: equal keys, equal schemas."""

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its schema (worker processes compile it again)."""
        return (OutputSchema, (self.schema, self.name))

    @property
    def typed(self) -> bool:
        """False when the whole answer is kept as JSON text (no Arrow type for the root)."""
        return not any(f.path == "parsed" for f in self.fallbacks)

    def check(self, text: str | bytes | None, strict: bool = True) -> Checked:
        """Parse an answer's text, validate it, and convert it for ``type``; ``strict=False``
        leaves numbers as they are (``array`` then takes a batch at once, see ``convert``)."""
        if text is None:
            return Checked(None, "not_json", "The answer has no text to parse as JSON.")
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return Checked(None, "not_json", f"The answer is not JSON: {exc}.")
        return self.check_value(value, strict)

    def convert(self, value: Any) -> Checked:
        """A valid value converted strictly (an integer over 64 bits is ``schema_mismatch``):
        for a batch that ``array`` could not take as checked loosely."""
        try:
            return Checked(value if self._convert is None else self._convert(value))
        except Unfit as exc:
            return Checked(None, "schema_mismatch", str(exc))

    def check_value(self, value: Any, strict: bool = True) -> Checked:
        """Validate a parsed answer and convert it for ``type``."""
        try:
            valid = self._validator.is_valid(value)
        except ValueError:  # jsonschema-rs: "Recursion limit reached"
            return Checked(None, "schema_mismatch", "The answer nests too deeply to check.")
        if not valid:
            return Checked(None, "schema_mismatch", self.first_error(value))
        if not strict:
            loose = self._convert_loose
            return Checked(value if loose is None else loose(value))
        return self.convert(value)

    def first_error(self, value: Any) -> str:
        """The first validation failure of ``value``, as a sentence."""
        from ..rules.schemas import explain  # with jsonschema_rs, loaded for a schema only

        error = next(iter(self._validator.iter_errors(value)))
        return explain(error, value, root="parsed", noun="field")[1]

    def array(self, values: Sequence[Any]) -> pa.Array:
        """Checked values (``None`` for rows without one) as an Arrow array of ``type``."""
        return typed_array(values, self.type)

    # -- the schema as an Arrow type ------------------------------------------------------

    def _fallback(self, path: str, reason: str) -> _Node:
        """JSON text (nullable: a JSON null is a null) where Arrow has no type."""
        self.fallbacks.append(Fallback(path, reason))
        return _Node(JSON_TEXT, True, _as_json)

    def _node(self, schema: Any, path: str) -> _Node:
        if self._depth >= MAX_DEPTH:
            return self._fallback(path, f"nested more than {MAX_DEPTH} levels deep")
        self._depth += 1
        try:
            return self._node_of(schema, path)
        finally:
            self._depth -= 1

    def _node_of(self, schema: Any, path: str) -> _Node:
        if schema is True or schema == {}:
            return self._fallback(path, "any JSON value is allowed here")
        if not isinstance(schema, dict):
            return self._fallback(path, "no value is allowed here")
        if "$ref" in schema:
            return self._ref(schema, path)
        for word in ("allOf", "not", "if", "patternProperties", "prefixItems"):
            if word in schema and not (word == "allOf" and len(schema[word]) == 1):
                return self._fallback(path, f"'{word}' has no Arrow type")
        if "allOf" in schema:
            merged = {k: v for k, v in schema.items() if k != "allOf"} | schema["allOf"][0]
            return self._node(merged, path)
        for word in ("anyOf", "oneOf"):
            if word in schema:
                return self._union(schema, word, path)
        if "enum" in schema or "const" in schema:
            return self._enum(schema, path)
        kind = schema.get("type")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else None
        kinds = kind if isinstance(kind, list) else [kind]
        nullable = "null" in kinds
        kinds = [k for k in kinds if k != "null"]
        if kinds == ["integer", "number"] or kinds == ["number", "integer"]:
            kinds = ["number"]
        if len(kinds) != 1:
            why = "several types" if kinds else "only null" if nullable else "no type"
            return self._fallback(path, f"{why} allowed here")
        kind = kinds[0]
        if kind == "object":
            return self._object(schema, path, nullable)
        if kind == "array":
            items = schema.get("items")
            if not isinstance(items, dict) or items == {}:
                return self._fallback(path, "an array of any values")
            item = self._node(items, f"{path}[]")
            convert = None if item.convert is None else _list_of(item.convert)
            value_field = pa.field("item", item.type, item.nullable)
            return _Node(pa.list_(value_field), nullable, _nullable(convert, nullable))
        scalar = _SCALARS.get(kind) if type(kind) is str else None
        if scalar is None:
            return self._fallback(path, f"unknown type {kind!r}")
        arrow_type, convert = scalar
        if self._loose:
            convert = None  # pyarrow converts numbers itself (and refuses what does not fit)
        return _Node(arrow_type, nullable, _nullable(convert, nullable))

    def _ref(self, schema: dict[str, Any], path: str) -> _Node:
        ref = schema["$ref"]
        if ref in self._refs:
            return self._fallback(path, "the schema refers to itself (recursion)")
        target = _pointer(self.schema, ref)
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        self._refs.append(ref)
        try:
            return self._node(target | rest if isinstance(target, dict) else target, path)
        finally:
            self._refs.pop()

    def _object(self, schema: dict[str, Any], path: str, nullable: bool) -> _Node:
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and extra != {}:
            why = "a map (additionalProperties)"
            return self._fallback(path, why if not properties else f"{why} beside properties")
        if not isinstance(properties, dict) or not properties:
            return self._fallback(path, "an object without properties")
        required = set(schema.get("required") or ())
        fields, converters = [], []
        for name, sub in properties.items():
            child = self._node(sub, f"{path}.{name}")
            fields.append(pa.field(name, child.type, child.nullable or name not in required))
            converters.append((name, child.convert))
        convert = None if all(c is None for _, c in converters) else _struct_of(converters)
        return _Node(pa.struct(fields), nullable, _nullable(convert, nullable))

    def _union(self, schema: dict[str, Any], word: str, path: str) -> _Node:
        rest = {k: v for k, v in schema.items() if k != word}
        branches = [b for b in schema[word] if not _is_null(b)]
        nullable = len(branches) < len(schema[word])
        if len(branches) == 1 and isinstance(branches[0], dict):
            node = self._node(rest | branches[0], path)
            return _Node(node.type, True, _nullable(node.convert, True)) if nullable else node
        seen = len(self.fallbacks)
        nodes = [self._node(rest | b if isinstance(b, dict) else b, path) for b in branches]
        del self.fallbacks[seen:]
        if nodes and all(n.type == nodes[0].type and n.type in _SIMPLE for n in nodes):
            nullable = nullable or any(n.nullable for n in nodes)
            return _Node(nodes[0].type, nullable, _nullable(nodes[0].convert, nullable))
        return self._fallback(path, f"'{word}' of different types")

    def _enum(self, schema: dict[str, Any], path: str) -> _Node:
        values = schema["enum"] if "enum" in schema else [schema["const"]]
        nullable = None in values or "null" in _listed(schema.get("type"))
        values = [v for v in values if v is not None]
        if values and all(type(v) is str for v in values):
            return _Node(ENUM, True, None)  # nullable: see typed_array
        if values and all(type(v) is int for v in values):
            convert = None if self._loose else _nullable(_int64, nullable)
            return _Node(pa.int64(), nullable, convert)
        if values and all(type(v) is bool for v in values):
            return _Node(pa.bool_(), nullable, None)
        return self._fallback(path, "an enum of mixed values")


def _check_refs(schema: Any) -> None:
    """Refuse ``$ref``s outside the schema (nothing is fetched) and ones that lead nowhere."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref is not None:
                _pointer(schema, ref)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _pointer(root: Any, ref: Any) -> Any:
    """The part of ``root`` a local ``$ref`` (``#/$defs/Name``) points to."""
    if type(ref) is not str or not ref.startswith("#"):
        raise SchemaError(f"$ref {ref!r} points outside the schema; only local refs (#/...) work")
    node = root
    for part in ref[1:].split("/")[1:] if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise SchemaError(f"$ref {ref!r} points to nothing in the schema")
    return node


def _is_null(branch: Any) -> bool:
    return isinstance(branch, dict) and (branch.get("type") == "null" or branch == {"const": None})


def _listed(kind: Any) -> list[Any]:
    return kind if isinstance(kind, list) else [kind]


def _int64(value: Any) -> int:
    if type(value) is not int:
        value = int(value)  # an integral float such as 3.0 is an integer in JSON Schema
    if not _INT64[0] <= value < _INT64[1]:
        raise Unfit(f"The answer holds the integer {value}, too large for a 64-bit column.")
    return value


def _as_json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


_SCALARS: dict[str, tuple[pa.DataType, Convert | None]] = {
    "string": (pa.string(), None),
    "integer": (pa.int64(), _int64),
    "number": (pa.float64(), float),
    "boolean": (pa.bool_(), None),
}
_SIMPLE = {t for t, _ in _SCALARS.values()}


def _nullable(convert: Convert | None, nullable: bool) -> Convert | None:
    if convert is None or not nullable:
        return convert
    return lambda value: None if value is None else convert(value)


def _list_of(convert: Convert) -> Convert:
    return lambda values: [convert(v) for v in values]


def _struct_of(converters: list[tuple[str, Convert | None]]) -> Convert:
    def convert(value: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name, each in converters:
            item = value.get(name)
            out[name] = item if each is None or item is None else each(item)
        return out

    return convert


def typed_array(values: Sequence[Any], arrow_type: pa.DataType) -> pa.Array:
    """``values`` as an array of ``arrow_type``, a null struct's enum fields null too.

    pyarrow leaves the fields under a null struct valid; DuckDB 2.0 then reads a dictionary
    field there as ``""`` (or fails), so nulls are pushed down to them (enum fields are
    nullable for this reason; other fields keep their nullability).
    """
    return _push_nulls(pa.array(values, arrow_type), None)


def _push_nulls(array: pa.Array, hidden: pa.Array | None) -> pa.Array:
    """``array`` with its dictionary values null where ``hidden`` (an ancestor is null)."""
    kind = array.type
    if pa.types.is_dictionary(kind):
        if hidden is None:
            return array
        indices = pc.if_else(hidden, pa.scalar(None, kind.index_type), array.indices)
        return pa.DictionaryArray.from_arrays(indices, array.dictionary)
    if not _has_dictionary(kind):
        return array
    if array.null_count:
        own = pc.is_null(array)
        hidden = own if hidden is None else pc.or_(hidden, own)
    valid = pc.is_valid(array) if array.null_count else None
    if pa.types.is_struct(kind):
        children = [_push_nulls(array.field(i), hidden) for i in range(kind.num_fields)]
        return pc.struct_array(kind, len(array), children, valid)
    inner = None if hidden is None else pc.take(hidden, pc.list_parent_indices(array))
    values = _push_nulls(pc.list_flatten(array), inner)
    offsets = pc.subtract(array.offsets, array.offsets[0])
    return pc.list_array(kind, offsets, values, valid)


def _has_dictionary(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return True
    if pa.types.is_struct(kind):
        return any(_has_dictionary(f.type) for f in kind)
    return pa.types.is_list(kind) and _has_dictionary(kind.value_type)


def schema_key(schema: Any) -> bytes:
    """A schema's canonical JSON (sorted keys): two requests asking for equal schemas match."""
    return orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)


# -- where schemas come from ---------------------------------------------------------------


def unwrap(data: Any) -> tuple[Any, str | None]:
    """A schema and its name from a bare JSON Schema, OpenAI's ``{"name", "schema"}``
    wrapper, or a whole ``response_format`` / ``text.format`` object."""
    if isinstance(data, dict) and data.get("type") == "json_schema":
        inner = data.get("json_schema", data)  # chat nests it; responses does not
        if isinstance(inner, dict) and "schema" in inner:
            return inner["schema"], _name(inner)
    if isinstance(data, dict) and isinstance(data.get("schema"), (dict, bool)) and "name" in data:
        return data["schema"], _name(data)
    return data, None


def _name(data: dict[str, Any]) -> str | None:
    name = data.get("name")
    return name if type(name) is str else None


def load_output_schema(path: str | os.PathLike[str]) -> OutputSchema:
    """An ``OutputSchema`` from a JSON file (a JSON Schema, or OpenAI's wrappers of one)."""
    try:
        with open(path, "rb") as handle:
            data = orjson.loads(handle.read())
    except OSError as exc:
        raise SchemaError(f"cannot read schema {os.fspath(path)}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise SchemaError(f"schema {os.fspath(path)} is not valid JSON: {exc}") from None
    schema, name = unwrap(data)
    try:
        return OutputSchema(schema, name)
    except SchemaError as exc:
        raise SchemaError(f"schema {os.fspath(path)}: {exc}") from None


def from_pydantic(model: type) -> OutputSchema:
    """An ``OutputSchema`` from a pydantic model class (pydantic is imported only here)."""
    schema_of = getattr(model, "model_json_schema", None)
    if schema_of is None:
        raise SchemaError(f"{model!r} is not a pydantic model class (no model_json_schema)")
    return OutputSchema(schema_of(), getattr(model, "__name__", None))


def output_schema(schema: Any) -> OutputSchema:
    """An ``OutputSchema`` from what a caller gives: one already compiled, a JSON Schema
    dict (or OpenAI's wrappers), a pydantic model class, or a path to a JSON file."""
    if isinstance(schema, OutputSchema):
        return schema
    if isinstance(schema, (str, os.PathLike)):
        return load_output_schema(schema)
    if isinstance(schema, type):
        return from_pydantic(schema)
    found, name = unwrap(schema)
    return OutputSchema(found, name)


@dataclass(frozen=True)
class Requested:
    """What a request asked for: ``json_schema`` (with the schema) or ``json_object``."""

    kind: str
    schema: Any = None
    name: str | None = None


def requested_schema(body: Any) -> Requested | None:
    """The structured output a request body asks for: chat ``response_format``, responses
    ``text.format``; ``None`` for plain text."""
    if type(body) is not dict:
        return None
    fmt = body.get("response_format")
    if fmt is None:
        text = body.get("text")
        fmt = text.get("format") if type(text) is dict else None
    if type(fmt) is not dict:
        return None
    kind = fmt.get("type")
    if kind == "json_object":
        return Requested("json_object")
    if kind == "json_schema":
        schema, name = unwrap(fmt)
        if schema is not fmt:
            return Requested("json_schema", schema, name)
    return None


# -- a join's requests: which schema each asked for ----------------------------------------


@dataclass
class StructuredPlan:
    """The structured output of a join's requests, and the ``parsed`` column it makes.

    ``schemas[i]`` is the i-th distinct schema; ``index[f][line - 1]`` the schema of input
    file ``f``'s request on ``line``: ``-1`` none, ``-2`` JSON mode (no schema). A file
    that mentions no JSON output has an empty index (every line: none).
    """

    schemas: list[OutputSchema] = field(default_factory=list)
    index: list[array[int]] = field(default_factory=list)
    user: bool = False
    """True when one schema was given for every answer (then ``index`` is not used)."""
    json_mode: int = 0
    """Requests that asked for JSON without a schema (``json_object``)."""
    invalid: list[str] = field(default_factory=list)
    """Requests whose schema could not be compiled (their answers are not checked)."""

    @property
    def active(self) -> bool:
        """Whether any answer is parsed (a ``parsed`` column is added)."""
        return bool(self.schemas) or self.json_mode > 0

    @property
    def column_type(self) -> pa.DataType | None:
        """The ``parsed`` column's type: the schema's, JSON text, or ``None`` (no column)."""
        if not self.active:
            return None
        if len(self.schemas) == 1 and not self.json_mode:
            return self.schemas[0].type
        return JSON_TEXT

    @property
    def typed(self) -> bool:
        """Whether ``parsed`` holds typed values (a struct, list or scalar), not JSON text."""
        return self.reason is None and self.active

    @property
    def reason(self) -> str | None:
        """Why ``parsed`` holds JSON text instead of typed values (``None`` when typed)."""
        if not self.active:
            return None
        if len(self.schemas) > 1:
            return (
                f"the requests ask for {len(self.schemas)} different JSON schemas, so parsed "
                "holds JSON text (give one schema to type it)"
            )
        if not self.schemas:
            return "the requests ask for JSON without a schema (json_object)"
        if self.json_mode:
            return "some requests ask for JSON without a schema (json_object)"
        if not self.schemas[0].typed:
            return f"the schema has no Arrow type ({self.schemas[0].fallbacks[0].reason})"
        return None

    def schema_for(self, file: int, line: int) -> OutputSchema | bool | None:
        """What the answer to input ``file``'s request on ``line`` must be: an
        ``OutputSchema``, ``True`` for any JSON (JSON mode), ``None`` for plain text."""
        if self.user:
            return self.schemas[0]
        rows = self.index[file] if file < len(self.index) else ()
        at = rows[line - 1] if 0 < line <= len(rows) else -1
        return True if at == -2 else None if at < 0 else self.schemas[at]

    def check(self, file: int, line: int, text: str | None) -> Checked:
        """Parse and check the answer's text against what its request asked for; the value
        fits ``column_type`` (the answer's text when that is JSON text)."""
        return _check(self.schema_for(file, line), text, self.column_type == JSON_TEXT)

    def for_rows(self, file: int, lines: Sequence[int]) -> BlockChecks:
        """The checks of input ``file``'s requests on ``lines``, to send to a worker (what
        ``schema_for`` says, as the numbers ``index`` holds)."""
        if self.user:
            wanted = [0] * len(lines)
        else:
            rows = self.index[file] if file < len(self.index) else array("i")
            last = len(rows)
            wanted = [rows[line - 1] if 0 < line <= last else -1 for line in lines]
        return BlockChecks(self.schemas, wanted, self.column_type or JSON_TEXT)

    def array(self, values: Sequence[Any]) -> pa.Array:
        """A batch of checked values as the ``parsed`` column."""
        return typed_array(values, self.column_type)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schemas": len(self.schemas),
            "given": self.user,
            "typed": self.typed,
            "reason": self.reason,
            "json_mode_requests": self.json_mode,
            "fallbacks": [f.to_dict() for s in self.schemas for f in s.fallbacks],
            "invalid_schemas": self.invalid[:10],
        }


@dataclass
class BlockChecks:
    """What each answer of a block must be (picklable: sent to worker processes):
    ``wanted[row]`` is a schema number, ``-1`` (plain text) or ``-2`` (any JSON)."""

    schemas: list[OutputSchema]
    wanted: list[int]
    column_type: pa.DataType

    def part(self, start: int, stop: int) -> BlockChecks:
        """The checks of rows ``start`` to ``stop`` (numbered from 0 again)."""
        return BlockChecks(self.schemas, self.wanted[start:stop], self.column_type)

    def check(self, row: int, text: str | None) -> Checked:
        """Check answer ``row``'s text; ``Checked()`` when it need not be JSON. Numbers are
        left as they are: ``array`` converts them."""
        at = self.wanted[row]
        wanted = None if at == -1 else True if at == -2 else self.schemas[at]
        return _check(wanted, text, self.column_type == JSON_TEXT, strict=False)

    def check_rows(
        self, rows: Sequence[int], texts: Sequence[str | None], values: list[Any]
    ) -> list[tuple[int, Checked]]:
        """``check`` of each of ``rows`` (their answers' ``texts``), the values put in
        ``values[row]``; returns the rows with a problem. The usual answer (typed schema, valid
        JSON matching it) costs one parse and one validation here, without ``check``'s calls."""
        problems = []
        loads, typed = orjson.loads, self.column_type != JSON_TEXT
        for row, text in zip(rows, texts, strict=True):
            at = self.wanted[row]
            if typed and at >= 0 and text is not None:
                schema = self.schemas[at]
                try:
                    value = loads(text)
                    valid = schema._validator.is_valid(value)
                except ValueError:  # not JSON, or too deep to check: ``check`` says which
                    valid = False
                if valid:
                    loose = schema._convert_loose
                    values[row] = value if loose is None else loose(value)
                    continue
            checked = self.check(row, text)
            values[row] = checked.value
            if checked.problem is not None:
                problems.append((row, checked))
        return problems

    def array(self, values: list[Any]) -> tuple[pa.Array, dict[int, str]]:
        """The block's ``parsed`` column, and the rows whose value does not fit it (an
        integer over 64 bits: set to null here) with why."""
        try:
            return typed_array(values, self.column_type), {}
        except (OverflowError, pa.ArrowInvalid, pa.ArrowTypeError):
            unfit = {}
            for row, value in enumerate(values):
                at = self.wanted[row]
                if value is not None and at >= 0:
                    converted = self.schemas[at].convert(value)
                    values[row] = converted.value
                    if converted.problem is not None:
                        unfit[row] = converted.message or converted.problem
            return typed_array(values, self.column_type), unfit


def _check(
    wanted: OutputSchema | bool | None, text: str | None, json_text: bool, strict: bool = True
) -> Checked:
    if wanted is None:
        return Checked()
    if not isinstance(wanted, OutputSchema):
        return _check_json(text)
    checked = wanted.check(text, strict)
    if checked.problem is None and json_text and wanted.typed:
        return Checked(text.strip() if isinstance(text, str) else text)
    return checked


def _check_json(text: str | None) -> Checked:
    if text is None:
        return Checked(None, "not_json", "The answer has no text to parse as JSON.")
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return Checked(None, "not_json", f"The answer is not JSON: {exc}.")
    return Checked(text.strip())


@dataclass
class Formats:
    """The requests of a range of lines that ask for JSON output, and what they ask (small and
    picklable: found in the worker processes that index the inputs). Request ``lines[i]``
    (numbered within the range) asks for ``asked[at[i]]``, which line ``first[at[i]]`` asked
    for first; ``keys[at[i]]`` is its schema's ``schema_key`` (``b""`` for JSON mode)."""

    lines: array[int] = field(default_factory=lambda: array("q"))
    at: array[int] = field(default_factory=lambda: array("i"))
    asked: list[Requested] = field(default_factory=list)
    keys: list[bytes] = field(default_factory=list)
    first: list[int] = field(default_factory=list)


class FormatFinder:
    """What each request of a range asks for (``requested_schema``), gathered in ``found``:
    give it each request line that may ask for JSON output (``line``) or each request's parsed
    body (``body``), in order."""

    def __init__(self) -> None:
        self.found = Formats()
        self._tails: dict[bytes, int] = {}
        self._entries: dict[bytes, int] = {}

    def line(self, line: int, raw: bytes) -> None:
        """A request line (raw bytes): parsed only when its format was not seen (``_tail``)."""
        tail = _tail(raw)
        at = self._tails.get(tail) if tail is not None else None
        if at is None:
            try:
                body = loads_wide(raw).get("body")
            except (orjson.JSONDecodeError, AttributeError):
                body = None  # not a request: the join reports it
            at = self._entry(requested_schema(body), line)
            if tail is not None and len(self._tails) < _TAILS:
                self._tails[tail] = at
        if at != -1:
            self.found.lines.append(line)
            self.found.at.append(at)

    def body(self, line: int, body: Any) -> None:
        """A request's parsed body."""
        at = self._entry(requested_schema(body), line)
        if at != -1:
            self.found.lines.append(line)
            self.found.at.append(at)

    def _entry(self, wanted: Requested | None, line: int) -> int:
        if wanted is None:
            return -1
        key = b"" if wanted.kind == "json_object" else schema_key(wanted.schema)
        at = self._entries.get(key)
        if at is None:
            found = self.found
            at = self._entries[key] = len(found.asked)
            found.asked.append(wanted)
            found.keys.append(key)
            found.first.append(line)
        return at


_TAILS = 4096
"""Distinct line tails remembered (requests usually share one format: a few suffice)."""


def _tail(raw: bytes) -> bytes | None:
    """The line from the first ``"response_format"`` or ``"text"`` on: it holds the whole
    format value (a key is a string no earlier occurrence can follow unescaped), so two lines
    with the same tail ask for the same thing and only the first is parsed. ``None`` (parse
    the line) when an ASCII character is escaped before it: the body's key may be written
    so (``"\\u0072esponse_format"``), the tail then another key's; and when a backslash
    is just before it: its quote is escaped, so it lies inside a string (a key
    ``"\\"response_format"``), not at a key. Other escapes before it (a message's ``\\n``)
    keep the shortcut."""
    at = raw.find(b'"response_format"')
    text = raw.find(b'"text"', 0, None if at == -1 else at)  # only an earlier one matters
    if text != -1:
        at = text
    if at <= 0 or raw[at - 1] == _BACKSLASH or _ASCII_ESCAPE.search(raw, 0, at):
        return None
    return raw[at:].rstrip()


_ASCII_ESCAPE = re.compile(rb"\\u00[2-7][0-9a-fA-F]")
_BACKSLASH = ord("\\")


def plan_of(found: Iterable[tuple[int, str, int, Formats]], schema: Any = None) -> StructuredPlan:
    """The plan of a join's requests from what each range of them asks for: ``(input file
    number, its name, the range's first line - 1, Formats)``, in join order. With
    ``schema``, that one for every answer (``found`` is not read)."""
    if schema is not None:
        return StructuredPlan([output_schema(schema)], user=True)
    plan = StructuredPlan()
    numbers: dict[bytes, int] = {}
    for file, name, base, formats in found:
        while len(plan.index) <= file:
            plan.index.append(array("i"))
        wanted = [
            _number(plan, numbers, asked, key, f"{name} line {base + first}")
            for asked, key, first in zip(formats.asked, formats.keys, formats.first, strict=True)
        ]
        if not formats.lines:
            continue
        rows = plan.index[file]
        rows.extend(array("i", [-1]) * (base + formats.lines[-1] - len(rows)))
        for line, at in zip(formats.lines, formats.at, strict=True):
            rows[base + line - 1] = wanted[at]
        if -2 in wanted:
            plan.json_mode += sum(wanted[at] == -2 for at in formats.at)
    return plan


def _number(
    plan: StructuredPlan, numbers: dict[bytes, int], asked: Requested, key: bytes, where: str
) -> int:
    """The plan's number of a requested format: a schema's index, ``-2`` JSON mode, ``-1``
    a schema that cannot be compiled (said in ``plan.invalid`` once)."""
    if asked.kind == "json_object":
        return -2
    at = numbers.get(key)
    if at is None:
        try:
            compiled = OutputSchema(asked.schema, asked.name)
        except SchemaError as exc:
            plan.invalid.append(f"{where}: {exc}")
            compiled = None
        at = numbers[key] = -1 if compiled is None else len(plan.schemas)
        if compiled is not None:
            plan.schemas.append(compiled)
    return at


def flat_names(kind: pa.StructType, taken: Iterable[str] = ()) -> list[tuple[str, pa.Field]]:
    """The column name of each top-level field of a struct ``parsed`` type (``flatten``): its
    own, or with a ``parsed_`` prefix when another column already has it."""
    used = set(taken)
    out = []
    for child in kind:
        name = child.name if child.name not in used else f"parsed_{child.name}"
        used.add(name)
        out.append((name, child))
    return out


def flatten(parsed: pa.Array, taken: Iterable[str] = ()) -> list[tuple[str, pa.Array]]:
    """The top-level fields of a struct ``parsed`` column as columns of their own (null
    where the whole answer is), named by ``flat_names``."""
    if not pa.types.is_struct(parsed.type):
        raise UsageError("only a typed (object) parsed column can be flattened")
    return [
        (name, pc.struct_field(parsed, [i]))
        for i, (name, _) in enumerate(flat_names(parsed.type, taken))
    ]
