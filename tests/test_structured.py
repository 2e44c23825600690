"""Structured output: JSON Schema -> Arrow types, answers checked and typed, a join's plan."""

from __future__ import annotations

import enum
import os
import string
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from answer_bodies import GOOD, TICKET_SCHEMA, chat_format, dumps, responses_format
from helpers import jsonl, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jsonl_batch.results import index, structured
from jsonl_batch.results.index import index_inputs, plan_structured, tasks
from jsonl_batch.results.structured import (
    ENUM,
    JSON_TEXT,
    OutputSchema,
    SchemaError,
    flatten,
    load_output_schema,
    output_schema,
    requested_schema,
    schema_key,
)


def field_of(schema: dict[str, Any], required: bool = True) -> pa.Field:
    """The Arrow field a property of ``schema`` becomes inside an object."""
    wrapper = {"type": "object", "properties": {"x": schema}, "required": ["x"] if required else []}
    return OutputSchema(wrapper).type.field("x")


@pytest.mark.parametrize(
    ("schema", "arrow_type", "nullable"),
    [
        ({"type": "string"}, pa.string(), False),
        ({"type": "integer"}, pa.int64(), False),
        ({"type": "number"}, pa.float64(), False),
        ({"type": ["integer", "number"]}, pa.float64(), False),
        ({"type": "boolean"}, pa.bool_(), False),
        ({"type": "string", "enum": ["bug", "feature"]}, ENUM, True),  # see typed_array
        ({"enum": ["bug", None]}, ENUM, True),
        ({"const": "fixed"}, ENUM, True),
        ({"enum": [1, 2, 3]}, pa.int64(), False),
        ({"type": ["string", "null"]}, pa.string(), True),
        ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, pa.int64(), True),
        ({"oneOf": [{"type": "string", "format": "date"}, {"type": "string"}]}, pa.string(), False),
        ({"allOf": [{"type": "integer"}]}, pa.int64(), False),
        (
            {"type": "array", "items": {"type": "integer"}},
            pa.list_(pa.field("item", pa.int64(), False)),
            False,
        ),
        (
            {"type": "array", "items": {"type": ["number", "null"]}},
            pa.list_(pa.float64()),
            False,
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
                "required": ["a"],
            },
            pa.struct([pa.field("a", pa.string(), False), pa.field("b", pa.int64())]),
            False,
        ),
        # what Arrow cannot type is JSON text
        ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, JSON_TEXT, True),
        ({"type": ["string", "integer"]}, JSON_TEXT, True),
        ({"type": "object", "additionalProperties": {"type": "integer"}}, JSON_TEXT, True),
        ({"type": "object"}, JSON_TEXT, True),
        ({"type": "array", "prefixItems": [{"type": "string"}]}, JSON_TEXT, True),
        ({"type": "array"}, JSON_TEXT, True),
        ({}, JSON_TEXT, True),
        ({"enum": ["a", 1]}, JSON_TEXT, True),
    ],
)
def test_arrow_type_of_each_construct(
    schema: dict[str, Any], arrow_type: pa.DataType, nullable: bool
) -> None:
    found = field_of(schema)
    assert found.type == arrow_type
    assert found.nullable is nullable


def test_an_optional_property_is_nullable() -> None:
    assert field_of({"type": "string"}, required=False).nullable


def test_fallbacks_say_where_and_why() -> None:
    schema = OutputSchema(
        {
            "type": "object",
            "properties": {
                "meta": {"type": "object", "additionalProperties": {"type": "string"}},
                "value": {"oneOf": [{"type": "string"}, {"type": "number"}]},
                "ok": {"type": "boolean"},
            },
        }
    )
    assert [(f.path, f.reason) for f in schema.fallbacks] == [
        ("parsed.meta", "a map (additionalProperties)"),
        ("parsed.value", "'oneOf' of different types"),
    ]
    assert schema.typed
    checked = schema.check('{"meta": {"k": "v"}, "value": 3, "ok": true}')
    assert checked.value == {"meta": '{"k":"v"}', "value": "3", "ok": True}


def test_refs_are_resolved_and_recursion_is_json_text() -> None:
    schema = OutputSchema(
        {
            "$defs": {
                "Label": {"type": "string", "enum": ["a", "b"]},
                "Node": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                    },
                    "required": ["name", "children"],
                },
            },
            "type": "object",
            "properties": {"label": {"$ref": "#/$defs/Label"}, "tree": {"$ref": "#/$defs/Node"}},
            "required": ["label", "tree"],
        }
    )
    tree = schema.type.field("tree").type
    assert schema.type.field("label").type == ENUM
    assert tree.field("children").type == pa.list_(JSON_TEXT)
    assert [f.path for f in schema.fallbacks] == ["parsed.tree.children[]"]
    answer = {"label": "a", "tree": {"name": "r", "children": [{"name": "c", "children": []}]}}
    assert schema.check(dumps(answer)).value["tree"]["children"] == ['{"name":"c","children":[]}']


def test_property_order_is_the_schemas() -> None:
    props = {name: {"type": "string"} for name in ("zeta", "alpha", "mid")}
    assert OutputSchema({"type": "object", "properties": props}).type.names == [
        "zeta",
        "alpha",
        "mid",
    ]


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"$ref": "https://example.com/s.json"}, "points outside the schema"),
        ({"$ref": "#/$defs/Missing"}, "points to nothing"),
        ({"type": 5}, "not a usable JSON Schema"),
        ([1, 2], "a JSON Schema is an object"),
    ],
)
def test_unusable_schemas_are_refused(schema: Any, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        output_schema(schema)


@pytest.fixture(scope="module")
def ticket() -> OutputSchema:
    return OutputSchema(TICKET_SCHEMA, "ticket")


def test_a_matching_answer_is_typed(ticket: OutputSchema) -> None:
    checked = ticket.check(dumps(GOOD))
    assert checked.problem is None and checked.value == GOOD
    column = ticket.array([checked.value, None])
    assert column.to_pylist() == [GOOD, None]
    assert column.type.field("label").type == ENUM


@pytest.mark.parametrize(
    ("text", "problem", "message"),
    [
        (dumps({k: v for k, v in GOOD.items() if k != "priority"}), "schema_mismatch",
         "Missing required field parsed.priority."),
        (dumps(GOOD | {"label": "rant"}), "schema_mismatch",
         'parsed.label must be one of "bug", "feature", "question", found string "rant".'),
        (dumps(GOOD | {"steps": [{"n": "one", "text": "x"}]}), "schema_mismatch",
         'parsed.steps[0].n must be an integer, found string "one".'),
        (dumps(GOOD | {"priority": 7}).replace("7", str(2**64 - 1)), "schema_mismatch",
         "too large for a 64-bit column"),
        ("Sure! Here is the JSON: {", "not_json", "The answer is not JSON"),
        ('```json\n{"label": "bug"}\n```', "not_json", "The answer is not JSON"),
        ('{"label": "bug", "confidence": 0.9', "not_json", "The answer is not JSON"),
        (None, "not_json", "no text"),
    ],
)  # fmt: skip
def test_answers_that_do_not_fit(
    ticket: OutputSchema, text: str | None, problem: str, message: str
) -> None:
    checked = ticket.check(text)
    assert checked.value is None and checked.problem == problem
    assert message in (checked.message or "")


def test_an_integral_float_is_an_integer(ticket: OutputSchema) -> None:
    checked = ticket.check(dumps(GOOD | {"priority": 2.0}))
    assert checked.value["priority"] == 2 and type(checked.value["priority"]) is int


def test_a_pydantic_model_gives_its_schema() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Label(enum.StrEnum):
        bug = "bug"
        feature = "feature"

    class Step(pydantic.BaseModel):
        n: int
        text: str

    class Ticket(pydantic.BaseModel):
        label: Label
        confidence: float
        note: str | None = None
        steps: list[Step]

    schema = output_schema(Ticket)
    assert schema.name == "Ticket" and schema.fallbacks == []
    assert schema.type == pa.struct(
        [
            pa.field("label", ENUM),
            pa.field("confidence", pa.float64(), False),
            pa.field("note", pa.string()),
            pa.field(
                "steps",
                pa.list_(
                    pa.field(
                        "item",
                        pa.struct(
                            [pa.field("n", pa.int64(), False), pa.field("text", pa.string(), False)]
                        ),
                        False,
                    )
                ),
                False,
            ),
        ]
    )  # fmt: skip
    value = {"label": "bug", "confidence": 1, "steps": [{"n": 1, "text": "x"}]}
    assert schema.check(dumps(value)).value == value | {"confidence": 1.0, "note": None}


@pytest.mark.parametrize(
    "content",
    [
        TICKET_SCHEMA,
        {"name": "ticket", "strict": True, "schema": TICKET_SCHEMA},
        chat_format(),
        responses_format()["format"],
    ],
)
def test_a_schema_file_may_hold_openais_wrappers(tmp_path: Path, content: Any) -> None:
    path = tmp_path / "schema.json"
    path.write_bytes(orjson.dumps(content))
    schema = load_output_schema(path)
    assert schema.schema == TICKET_SCHEMA


@pytest.mark.parametrize(
    ("data", "message"),
    [(None, "cannot read"), (b"{nope", "is not valid JSON"), (b'{"type": 3}', "not a usable")],
)
def test_bad_schema_files_are_one_line_errors(
    tmp_path: Path, data: bytes | None, message: str
) -> None:
    path = tmp_path / "schema.json"
    if data is not None:
        path.write_bytes(data)
    with pytest.raises(SchemaError, match=message):
        load_output_schema(path)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"response_format": chat_format()}, "json_schema"),
        ({"text": responses_format()}, "json_schema"),
        ({"response_format": {"type": "json_object"}}, "json_object"),
        ({"text": {"format": {"type": "json_object"}}}, "json_object"),
        ({"response_format": {"type": "text"}}, None),
        ({"text": {"format": {"type": "text"}}}, None),
        ({"response_format": {"type": "json_schema"}}, None),
        ({}, None),
        ("not a body", None),
    ],
)
def test_requested_schema(body: Any, kind: str | None) -> None:
    found = requested_schema(body)
    assert (found and found.kind) == kind
    if kind == "json_schema":
        assert found is not None and found.schema == TICKET_SCHEMA and found.name == "ticket"


def responses_request(custom_id: str, schema: dict[str, Any] = TICKET_SCHEMA) -> dict[str, Any]:
    body = {
        "model": "gpt-5-mini",
        "input": "Classify: app crashes",
        "text": responses_format(schema),
    }
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/responses", "body": body}


def test_plan_of_one_schema_is_typed(write: Any) -> None:
    first = write([request("a", response_format=chat_format()), request("b")], "one.jsonl")
    plain = write([request("c")], "plain.jsonl")
    second = write([request("d"), responses_request("e")], "two.jsonl")
    plan = plan_structured([first, plain, second])
    assert (
        plan.typed and plan.reason is None and plan.column_type == OutputSchema(TICKET_SCHEMA).type
    )
    assert len(plan.schemas) == 1
    assert plan.schema_for(0, 1) is plan.schemas[0] and plan.schema_for(0, 2) is None
    assert plan.schema_for(1, 1) is None and plan.schema_for(2, 1) is None
    assert plan.schema_for(2, 2) is plan.schemas[0]
    assert plan.check(0, 1, dumps(GOOD)).value == GOOD
    assert plan.check(0, 2, "plain text").value is None


def test_plan_of_several_schemas_is_json_text(write: Any) -> None:
    other = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
    path = write([request("a", response_format=chat_format()), responses_request("b", other)])
    plan = plan_structured([path])
    assert plan.column_type == JSON_TEXT and not plan.typed
    assert "2 different JSON schemas" in (plan.reason or "")
    assert plan.check(0, 1, f" {dumps(GOOD)}\n").value == dumps(GOOD)
    assert plan.check(0, 2, '{"x": "no"}').problem == "schema_mismatch"
    assert plan.to_dict()["schemas"] == 2


def test_plan_of_json_mode_checks_json_only(write: Any) -> None:
    plan = plan_structured([write([request("a", response_format={"type": "json_object"})])])
    assert plan.active and plan.column_type == JSON_TEXT and plan.json_mode == 1
    assert plan.check(0, 1, '{"any": 1}').value == '{"any": 1}'
    assert plan.check(0, 1, "nope").problem == "not_json"


def test_plan_without_json_output_is_inactive(write: Any) -> None:
    plan = plan_structured([write([request("a"), request("b")])])
    assert not plan.active and plan.column_type is None and plan.reason is None


def test_a_given_schema_applies_to_every_answer(write: Any) -> None:
    plan = plan_structured([write([request("a")])], schema=TICKET_SCHEMA)
    assert plan.user and plan.typed and plan.schema_for(5, 99) is plan.schemas[0]


def test_a_requests_unusable_schema_is_reported_not_fatal(write: Any) -> None:
    bad = chat_format({"$ref": "https://example.com/x.json"})
    plan = plan_structured([write([request("a", response_format=bad)])])
    assert not plan.active and "points outside the schema" in plan.invalid[0]


def test_flatten_gives_top_level_columns(ticket: OutputSchema) -> None:
    parsed = ticket.array([GOOD, None])
    columns = dict(flatten(parsed, taken=["label"]))
    assert list(columns) == ["parsed_label", "confidence", "priority", "tags", "owner", "steps"]
    assert columns["parsed_label"].to_pylist() == ["bug", None]
    assert columns["owner"].to_pylist() == [GOOD["owner"], None]


def test_parquet_with_parsed_reads_in_duckdb(tmp_path: Path, ticket: OutputSchema) -> None:
    other = GOOD | {"label": "question", "owner": None, "tags": []}
    table = pa.table({"custom_id": ["a", "b", "c"], "parsed": ticket.array([GOOD, other, None])})
    pq.write_table(table, tmp_path / "t.parquet")
    rows = duckdb.sql(
        f"SELECT parsed.label, count(*), max(parsed.owner.team), max(len(parsed.tags)) "
        f"FROM '{tmp_path / 't.parquet'}' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert rows == [("bug", 1, "mobile", 2), ("question", 1, None, 0), (None, 1, None, None)]


# -- the property: random schemas of the supported subset round-trip random instances ------

NAMES = st.text(string.ascii_lowercase, min_size=1, max_size=5)


def leaves() -> st.SearchStrategy[tuple[dict[str, Any], st.SearchStrategy[Any]]]:
    enum_values = st.lists(st.text(max_size=6), min_size=1, max_size=4, unique=True)
    return st.one_of(
        st.just(({"type": "string"}, st.text(max_size=8))),
        st.just(({"type": "integer"}, st.integers(-(2**63), 2**63 - 1))),
        st.just(({"type": "number"}, st.floats(allow_nan=False, allow_infinity=False))),
        st.just(({"type": "boolean"}, st.booleans())),
        enum_values.map(lambda vs: ({"type": "string", "enum": vs}, st.sampled_from(vs))),
    )


def extend(
    children: st.SearchStrategy[tuple[dict[str, Any], st.SearchStrategy[Any]]],
) -> st.SearchStrategy[tuple[dict[str, Any], st.SearchStrategy[Any]]]:
    def array(child: tuple[dict[str, Any], Any]) -> tuple[dict[str, Any], Any]:
        return {"type": "array", "items": child[0]}, st.lists(child[1], max_size=3)

    def nullable(child: tuple[dict[str, Any], Any]) -> tuple[dict[str, Any], Any]:
        return {"anyOf": [child[0], {"type": "null"}]}, st.none() | child[1]

    @st.composite
    def obj(draw: Any) -> tuple[dict[str, Any], Any]:
        props = draw(st.dictionaries(NAMES, children, min_size=1, max_size=4))
        required = draw(st.lists(st.sampled_from(sorted(props)), unique=True))
        schema = {
            "type": "object",
            "properties": {k: v[0] for k, v in props.items()},
            "required": required,
            "additionalProperties": False,
        }
        instance = st.fixed_dictionaries(
            {k: props[k][1] for k in required},
            optional={k: v[1] for k, v in props.items() if k not in required},
        )
        return schema, instance

    return st.one_of(children.map(array), children.map(nullable), obj())


SCHEMAS = st.recursive(leaves(), extend, max_leaves=8)


def expected(schema: dict[str, Any], value: Any) -> Any:
    """The instance as the typed column gives it back: absent properties null, numbers float."""
    if value is None:
        return None
    if "anyOf" in schema:
        return expected(schema["anyOf"][0], value)
    kind = schema.get("type")
    if kind == "object":
        return {k: expected(s, value.get(k)) for k, s in schema["properties"].items()}
    if kind == "array":
        return [expected(schema["items"], v) for v in value]
    return float(value) if kind == "number" else value


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_schemas_round_trip_random_instances(data: Any) -> None:
    schema, instances = data.draw(SCHEMAS)
    compiled = OutputSchema(schema)
    assert compiled.fallbacks == []
    values = data.draw(st.lists(instances, min_size=1, max_size=3))
    checked = [compiled.check(orjson.dumps(v)) for v in values]
    assert [c.problem for c in checked] == [None] * len(values), checked
    column = compiled.array([c.value for c in checked])
    assert column.type == compiled.type
    assert column.to_pylist() == [expected(schema, v) for v in values]
    back = pq.read_table(_parquet(pa.table({"parsed": column}))).column("parsed")
    assert back.to_pylist() == column.to_pylist()


def _parquet(table: pa.Table) -> pa.BufferReader:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return pa.BufferReader(sink.getvalue())


def test_plan_reads_each_distinct_request_format_once(write: Any) -> None:
    lines = [
        request(f"c{i}", messages=[{"role": "user", "content": f"text {i}"}],
                response_format=chat_format())
        for i in range(5)
    ]  # fmt: skip
    lines += [request(f"j{i}", response_format={"type": "json_object"}) for i in range(3)]
    lines.append(request("last", response_format=chat_format({"type": "object", "properties": {
        "x": {"type": "integer"}}})))  # fmt: skip
    plan = plan_structured([write(lines)])
    assert plan.json_mode == 3 and len(plan.schemas) == 2
    assert [plan.schema_for(0, n) is plan.schemas[0] for n in range(1, 6)] == [True] * 5
    assert [plan.schema_for(0, n) for n in range(6, 9)] == [True] * 3
    assert plan.schema_for(0, 9) is plan.schemas[1]


def test_a_schema_nested_deeper_than_arrow_types_is_json_text_there() -> None:
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(100):
        schema = {"type": "array", "items": schema}
    compiled = OutputSchema(schema)
    assert [f.reason for f in compiled.fallbacks] == ["nested more than 32 levels deep"]
    value: Any = 1
    for _ in range(100):
        value = [value]
    checked = compiled.check(orjson.dumps(value))
    assert checked.problem is None
    deep, inner = compiled.array([checked.value]).to_pylist()[0], value
    for _ in range(32):
        deep, inner = deep[0], inner[0]
    assert orjson.loads(deep) == inner  # 32 typed levels, then JSON text


def test_a_schema_too_deep_to_compile_is_a_schema_error() -> None:
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(1000):
        schema = {"type": "array", "items": schema}
    with pytest.raises(SchemaError):
        OutputSchema(schema)


# -- what the join's index finds the requests ask for (``index_inputs``' formats) -----------

OTHER_SCHEMA = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
UNUSABLE = {"$ref": "https://example.com/x.json"}
BODY_FORMATS: list[dict[str, Any]] = [
    {},
    {"response_format": {"type": "json_object"}},
    {"response_format": chat_format()},
    {"response_format": chat_format(OTHER_SCHEMA, "other")},
    {"response_format": {"type": "text"}},
    {"text": responses_format()},
    {"text": {"format": {"type": "json_object"}}},
    {"response_format": {"type": "text"}, "text": responses_format()},  # response_format wins
    {"response_format": chat_format(UNUSABLE, "bad")},
    {"extra": {"response_format": {"type": "json_object"}}},  # under an unknown key
    {"response_format": "auto"},  # not what pyarrow projects: the range is read by orjson
]
request_lines = st.tuples(
    st.sampled_from(BODY_FORMATS),
    st.booleans(),  # a top-level key after the body holding a response_format of its own
    st.booleans(),  # the format's type written with an escape
    st.booleans(),  # the body's format keys written with an escape
)


def _line(
    number: int, body_format: dict[str, Any], beside: bool, escaped: bool, keys: bool = False
) -> bytes:
    line: dict[str, Any] = request(f"r{number}", **body_format)
    raw = orjson.dumps(line)
    if keys:
        raw = raw.replace(b'"response_format"', b'"\\u0072esponse_format"')
        raw = raw.replace(b'"text":{"format"', b'"\\u0074ext":{"\\u0066ormat"')
    if beside:
        raw = raw[:-1] + b',"x":{"response_format":{"type":"json_object"}}}'
    return raw.replace(b'"json_', b'"\\u006Ason_') if escaped else raw


@settings(max_examples=60, deadline=None)
@given(st.lists(request_lines, min_size=1, max_size=12), st.sampled_from([None, 300, 1500]))
def test_the_index_finds_what_each_request_asks_for(
    lines: list[tuple[dict[str, Any], bool, bool, bool]], range_bytes: int | None
) -> None:
    """``plan_structured`` (the join's own reading, in ranges of any size, by pyarrow or
    orjson) gives each request what ``requested_schema`` reads in its parsed body."""
    raws = [_line(n, *each) for n, each in enumerate(lines, 1)]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "in.jsonl")
        with open(path, "wb") as out:
            out.write(b"\n".join(raws) + b"\n")
        saved, index.RANGE_BYTES = index.RANGE_BYTES, range_bytes or index.RANGE_BYTES
        try:
            plan = plan_structured([path])
        finally:
            index.RANGE_BYTES = saved
    wanted = [requested_schema(orjson.loads(raw)["body"]) for raw in raws]
    usable = [w for w in wanted if w and w.kind == "json_schema" and w.schema != UNUSABLE]
    expected = [
        None
        if w is None or w.schema == UNUSABLE
        else True
        if w.kind == "json_object"
        else schema_key(w.schema)
        for w in wanted
    ]
    found = [plan.schema_for(0, n) for n in range(1, len(raws) + 1)]
    assert [f if f is None or f is True else f.key for f in found] == expected
    numbers = {id(s): i for i, s in enumerate(plan.schemas)}
    asked = [plan.schema_for(0, n) for n in range(len(raws) + 3)]
    assert plan.for_rows(0, range(len(raws) + 3)).wanted == [
        -1 if f is None else -2 if f is True else numbers[id(f)] for f in asked
    ]  # what a block's checks are
    assert plan.json_mode == sum(w is not None and w.kind == "json_object" for w in wanted)
    assert len(plan.schemas) == len({schema_key(w.schema) for w in usable})
    bad = [n for n, w in enumerate(wanted, 1) if w and w.schema == UNUSABLE]
    assert plan.invalid == [f"{path} line {bad[0]}: {_unusable()}"] if bad else not plan.invalid


def _unusable() -> str:
    with pytest.raises(SchemaError) as caught:
        OutputSchema(UNUSABLE)
    return str(caught.value)


def test_a_format_under_an_escaped_key_is_not_taken_for_anothers(write: Any) -> None:
    """Two requests whose formats differ but whose lines end alike (the same text after an
    escaped ``response_format`` key): each gets its own schema."""
    y_schema = {"type": "object", "properties": {"y": {"type": "string"}}, "required": ["y"]}
    lines = [
        _line(n, {"response_format": chat_format(schema, name)}, True, False, True)
        for n, (schema, name) in enumerate([(OTHER_SCHEMA, "x"), (y_schema, "y")], 1)
    ]
    plan = plan_structured([write(b"\n".join(lines) + b"\n")])
    assert len(plan.schemas) == 2
    assert plan.schema_for(0, 1) is plan.schemas[0] and plan.schema_for(0, 2) is plan.schemas[1]


def test_a_join_with_a_given_schema_does_not_look_for_formats(write: Any) -> None:
    path = write([request("a", response_format=chat_format()), request("b")])
    (task,) = tasks([str(path)])
    assert index_inputs(task, formats=False).formats is None
    found = index_inputs(task).formats
    assert found is not None and list(found.lines) == [1] and found.asked[0].name == "ticket"


def test_formats_are_found_past_a_blank_line(write: Any) -> None:
    """A blank line sends the range to the line-by-line reader; it finds the same."""
    lines = jsonl(request("a"), request("b", response_format={"type": "json_object"}))
    plan = plan_structured([write(b"\n" + lines)])
    assert plan.json_mode == 1 and plan.schema_for(0, 3) is True and plan.schema_for(0, 2) is None


def test_a_format_key_inside_a_string_is_not_a_tail(tmp_path: Path) -> None:
    """A body key written ``"\\"response_format"`` holds ``"response_format"``: the line
    is parsed, not given the format of an earlier line with that tail; a message's
    escapes before the format keep the shortcut (the line's tail)."""
    schema = b'{"type":"json_schema","json_schema":{"name":"n","schema":{"type":"object"}}}'
    start = b'{"custom_id":"%s","url":"/v1/chat/completions","body":{"model":"m","messages":[],'
    tail = b'"response_format":{"type":"json_object"},"text":{"format":' + schema + b"}}}"
    lines = [start % b"a" + tail, start % b"b" + b'"\\' + tail]
    lines += [
        start.replace(b"[]", b'[{"role":"user","content":"x\\ny"}]') % c + tail
        for c in (b"c", b"d")
    ]
    data = b"\n".join(lines) + b"\n"
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    for piece in (
        index_inputs((0, str(path), 0, len(data))),
        index._index_inputs(str(path), 0, len(data)),
    ):
        found = piece.formats
        assert found is not None
        kinds = [(n, found.asked[a].kind) for n, a in zip(found.lines, found.at, strict=True)]
        assert kinds == [
            (1, "json_object"),
            (2, "json_schema"),
            (3, "json_object"),
            (4, "json_object"),
        ]
    assert structured._tail(lines[1]) is None
    assert structured._tail(lines[2]) == structured._tail(lines[0]) == tail
