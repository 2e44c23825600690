"""Rows into bodies: the readers (CSV, TSV, JSONL, Parquet, stdin), ``BodyShaper``,
``--param`` parsing, and ``build_file`` end to end."""

from __future__ import annotations

import datetime
from decimal import Decimal
from io import BytesIO
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jsonl_batch import BodyShaper, BuildError, build_file, validate_file
from jsonl_batch.build.inputs import RowReader, input_format, load_template, parse_params, plain
from jsonl_batch.cli.options import message
from jsonl_batch.outputs.atomic import OutputExists

CHAT = "/v1/chat/completions"


def rows(path: Path | str, fmt: str | None = None, **options: Any) -> list[dict[str, Any]]:
    return list(RowReader(path, fmt, **options))


def test_csv_quoted_multiline_and_text_columns(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('id,text,n\n007,"say ""hi""\nplease",3\n008,,\n')
    assert rows(path, text_columns=("id",)) == [
        {"id": "007", "text": 'say "hi"\nplease', "n": 3},
        {"id": "008", "text": "", "n": None},
    ]


def test_tsv_and_jsonl_and_parquet(tmp_path: Path) -> None:
    (tmp_path / "q.tsv").write_text("a\tb\nx\t1\n")
    assert rows(tmp_path / "q.tsv") == [{"a": "x", "b": 1}]
    (tmp_path / "q.ndjson").write_bytes(b'{"a": "x"}\r\n{"a": [1, 2]}')
    assert rows(tmp_path / "q.ndjson") == [{"a": "x"}, {"a": [1, 2]}]
    table = pa.table({"a": ["x", "y"], "v": [[1.0, 2.0], [3.0]], "z": [1, 2]})
    pq.write_table(table, tmp_path / "q.parquet")
    reader = RowReader(tmp_path / "q.parquet", columns=("a", "v"))
    assert list(reader) == [{"a": "x", "v": [1.0, 2.0]}, {"a": "y", "v": [3.0]}]
    assert (reader.position, reader.total) == (2, 2)


def test_parquet_from_a_stream() -> None:
    buffer = BytesIO()
    pq.write_table(pa.table({"a": ["x"]}), buffer)

    class Pipe(BytesIO):
        def seekable(self) -> bool:
            return False

    assert rows(Pipe(buffer.getvalue()), "parquet") == [{"a": "x"}]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "data", "code", "match"),
    [
        ("q.csv", b"a,b\n1,2,3\n", "invalid_input", "not readable as CSV"),
        ("q.csv", b"", "invalid_input", "Empty CSV"),
        ("q.parquet", b"not parquet", "invalid_input", "not readable as Parquet"),
        ("q.jsonl", b'{"a": 1}\n[1]\n', "invalid_input", "row 2: This line is not a JSON object"),
        ("q.jsonl", b'{"a": 1}\n\n', "invalid_input", "row 2: This line is blank"),
        ("q.csv", b"a,b\n1,2\n", "missing_column", "column 'text': There is no such column"),
    ],
)
def test_unreadable_input(tmp_path: Path, name: str, data: bytes, code: str, match: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(BuildError, match=match) as err:
        rows(path, columns=("text",) if code == "missing_column" else ())
    assert err.value.code == code


def test_input_format() -> None:
    assert input_format("x.PARQUET") == "parquet"
    assert input_format("-", "csv") == "csv"
    with pytest.raises(ValueError, match="give input_format=") as caught:
        input_format("-")
    assert "give --input-format csv|tsv|jsonl|parquet" in message(caught.value)
    with pytest.raises(ValueError, match="unknown input format"):
        input_format("x.csv", "xml")


@pytest.mark.parametrize(
    ("endpoint", "system", "expected"),
    [
        (CHAT, None, {"messages": [{"role": "user", "content": "hi"}]}),
        (
            CHAT,
            "Be brief.",
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "hi"},
                ]
            },
        ),
        ("/v1/responses", "Be brief.", {"input": "hi", "instructions": "Be brief."}),
        ("/v1/responses", None, {"input": "hi"}),
        ("/v1/embeddings", None, {"input": "hi"}),
        ("/v1/moderations", None, {"input": "hi"}),
        ("/v1/completions", None, {"prompt": "hi"}),
        ("/v1/images/generations", None, {"prompt": "hi"}),
        ("/v1/videos", None, {"prompt": "hi"}),
    ],
)
def test_quick_shapes(endpoint: str, system: str | None, expected: dict[str, Any]) -> None:
    shaper = BodyShaper(endpoint, prompt_column="t", system=system)
    assert shaper.shape({"t": "hi", "other": 1}, 1) == expected
    assert shaper.columns == ("t",)


def test_quick_numbers_become_text_and_lists_stay() -> None:
    shaper = BodyShaper("/v1/embeddings", prompt_column="t")
    assert shaper.shape({"t": 42}, 1) == {"input": "42"}
    assert shaper.shape({"t": [1, 2]}, 1) == {"input": [1, 2]}


def test_params_typed_and_nested() -> None:
    params = parse_params(
        [
            *("temperature=0.2", "n=2", "store=false", 'stop=["\\n"]', "user=alice", 'seed="7"'),
            *("response_format.type=json_object", "metadata.a.b=1"),
        ]
    )
    assert params == {
        "temperature": 0.2,
        "n": 2,
        "store": False,
        "stop": ["\n"],
        "user": "alice",
        "seed": "7",
        "response_format.type": "json_object",
        "metadata.a.b": 1,
    }
    body = BodyShaper(CHAT, prompt_column="t", params=params).shape({"t": "x"}, 1)
    assert body["response_format"] == {"type": "json_object"}
    assert body["metadata"] == {"a": {"b": 1}}


@pytest.mark.parametrize("item", ["temperature", "=1", "a..b=1", "a.=1"])
def test_bad_params(item: str) -> None:
    with pytest.raises(ValueError, match="key=value"):
        parse_params([item])


def test_param_into_a_non_object() -> None:
    shaper = BodyShaper(CHAT, prompt_column="t", params={"messages.x": 1})
    with pytest.raises(BuildError, match="not an object"):
        shaper.shape({"t": "x"}, 4)


def test_template_fills_json_values_never_text() -> None:
    template = {
        "model": "m",
        "messages": [{"role": "user", "content": "Translate: {{ text }} ({{n}} of {{ n }})"}],
        "max_tokens": "{{n}}",
        "metadata": {"tags": "{{tags}}"},
    }
    shaper = BodyShaper(CHAT, template=template)
    assert shaper.columns == ("text", "n", "tags")
    row = {"text": 'a "quoted"\nline}}', "n": 5, "tags": ["x"]}
    body = shaper.shape(row, 1)
    assert body["messages"][0]["content"] == 'Translate: a "quoted"\nline}} (5 of 5)'
    assert body["max_tokens"] == 5 and body["metadata"] == {"tags": ["x"]}
    assert template["max_tokens"] == "{{n}}"  # the template is not changed
    assert shaper.column_for("body.max_tokens") == "n"
    assert shaper.column_for("body.messages[0].content") == "text"
    assert shaper.column_for("body.model") is None
    with pytest.raises(BuildError, match="row 3, column 'n': The value is null") as err:
        shaper.shape({**row, "n": None}, 3)
    assert err.value.code == "null_value"
    with pytest.raises(BuildError, match="missing_column"):
        shaper.shape({"text": "x"}, 3)


@pytest.mark.parametrize(("value", "what"), [("", "empty"), (" \n\t", "only whitespace")])
def test_an_empty_prompt_is_an_error(value: str, what: str) -> None:
    shaper = BodyShaper(CHAT, prompt_column="t", system="Be brief.")
    with pytest.raises(BuildError) as err:
        shaper.shape({"t": value}, 3)
    assert err.value.code == "empty_value"
    assert str(err.value) == (
        f"row 3, column 't': The prompt is {what}; every request needs one (fill it in or drop "
        "the row). (empty_value)"
    )
    assert BodyShaper("/v1/embeddings", prompt_column="t").shape({"t": 0}, 1) == {"input": "0"}


def test_template_prompt_placeholders_must_not_be_empty() -> None:
    template = {
        "model": "m",
        "messages": [{"role": "user", "content": "Translate: {{text}}"}],
        "metadata": {"note": "{{note}}"},
    }
    shaper = BodyShaper(CHAT, template=template)
    assert shaper.prompt_columns == ("text",)
    assert shaper.shape({"text": "x", "note": ""}, 1)["metadata"] == {"note": ""}
    with pytest.raises(BuildError, match="row 2, column 'text': The prompt is only whitespace"):
        shaper.shape({"text": "  ", "note": "n"}, 2)
    responses = BodyShaper(
        "/v1/responses", template={"instructions": "{{style}}", "input": "{{q}}"}
    )
    assert responses.shape({"style": "", "q": "Hi"}, 1) == {"instructions": "", "input": "Hi"}
    with pytest.raises(BuildError, match="column 'q': The prompt is empty"):
        responses.shape({"style": "x", "q": ""}, 1)


def test_shaper_usage_errors() -> None:
    with pytest.raises(ValueError, match="prompt_column=") as caught:
        BodyShaper(CHAT)
    assert "(--prompt-column) or a --template" in message(caught.value)
    with pytest.raises(ValueError, match="replaces"):
        BodyShaper(CHAT, prompt_column="t", template={})
    with pytest.raises(ValueError, match="JSON object"):
        BodyShaper(CHAT, template=[1])
    with pytest.raises(ValueError, match="system= applies") as caught:
        BodyShaper("/v1/embeddings", prompt_column="t", system="x")
    assert message(caught.value).startswith("--system applies")
    with pytest.raises(ValueError, match="unknown endpoint"):
        BodyShaper("/v1/nope", prompt_column="t")
    assert BodyShaper(CHAT, prompt_column="t").column_for("body.messages[0]") == "t"
    assert BodyShaper(CHAT, prompt_column="t").column_for("body.temperature") is None


def test_load_template(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text('{"model": "m"}')
    assert load_template(tmp_path / "t.json") == {"model": "m"}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_template(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValueError, match="must be a JSON object"):
        load_template(tmp_path / "list.json")
    with pytest.raises(ValueError, match="cannot read"):
        load_template(tmp_path / "missing.json")


def test_plain_values() -> None:
    assert plain(Decimal("2")) == 2 and plain(Decimal("2.5")) == 2.5
    assert plain(b"caf\xc3\xa9") == "café"
    assert plain(datetime.date(2024, 1, 2)) == "2024-01-02"
    assert plain(datetime.timedelta(seconds=3)) == 3.0
    assert plain({"a": (Decimal("1"),)}) == {"a": [1]}


def test_build_file_to_a_path(tmp_path: Path) -> None:
    source = tmp_path / "q.csv"
    source.write_text("id,text\n1,a\n2,b\n3,c\n")
    calls: list[tuple[int, int | None]] = []
    manifest = build_file(
        source,
        tmp_path / "out.jsonl",
        CHAT,
        model="m",
        prompt_column="text",
        id_column="id",
        max_requests=2,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert [p.path for p in manifest.parts] == ["out.part-001.jsonl", "out.part-002.jsonl"]
    assert manifest.parts[0].first_custom_id == "1"
    assert calls[-1] == (source.stat().st_size, source.stat().st_size)
    for part in manifest.parts:
        assert validate_file(tmp_path / part.path, max_requests=2).valid


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("q.csv", b"id,question\n1,What?\n2,\n", "empty_value"),
        ("q.csv", b'id,question\n1,What?\n2,"  "\n', "empty_value"),
        ("q.jsonl", b'{"question": "What?"}\n{"question": ""}\n', "empty_value"),
        ("q.jsonl", b'{"question": "What?"}\n{"question": null}\n', "null_value"),
        ("q.parquet", {"question": ["What?", ""]}, "empty_value"),
        ("q.parquet", {"question": ["What?", None]}, "null_value"),
    ],
)
def test_build_file_empty_or_null_prompt_names_row_and_column(
    tmp_path: Path, name: str, data: Any, code: str
) -> None:
    source = tmp_path / name
    if isinstance(data, bytes):
        source.write_bytes(data)
    else:
        pq.write_table(pa.table(data), source)
    with pytest.raises(BuildError) as err:
        build_file(source, tmp_path / "o.jsonl", CHAT, model="m", prompt_column="question")
    assert err.value.code == code
    assert (err.value.row, err.value.column) == (2, "question")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_build_file_token_budget(tmp_path: Path) -> None:
    source = tmp_path / "q.jsonl"
    source.write_bytes(b'{"t": "word word"}\n' * 5)  # 9 tokens each
    options: dict[str, Any] = {"model": "m", "prompt_column": "t", "max_tokens": 18}
    manifest = build_file(source, tmp_path / "o.jsonl", CHAT, **options)
    assert [p.input_tokens for p in manifest.parts] == [18, 18, 9]
    with pytest.raises(BuildError) as err:
        build_file(source, BytesIO(), CHAT, **options)
    assert (err.value.code, err.value.row) == ("token_limit_exceeded", 3)


def test_build_file_to_a_stream_writes_only_good_batches(tmp_path: Path) -> None:
    source = tmp_path / "q.jsonl"
    source.write_bytes(b'{"t": "a"}\n{"t": "b"}\n')
    out = BytesIO()
    manifest = build_file(source, out, CHAT, model="m", prompt_column="t")
    assert len(out.getvalue().splitlines()) == 2 and manifest.parts[0].path == "<stream>"
    source.write_bytes(b'{"t": "a"}\n{"t": 2.5}\n{"x": 1}\n')
    out = BytesIO()
    with pytest.raises(BuildError, match="row 3, column 't'"):
        build_file(source, out, CHAT, model="m", prompt_column="t")
    assert out.getvalue() == b""
    with pytest.raises(ValueError, match="split=True needs an output file") as caught:
        build_file(source, out, CHAT, model="m", prompt_column="t", split=True)
    assert message(caught.value).startswith("--split needs an output file (-o)")


def test_build_file_errors_name_rows_and_columns(tmp_path: Path) -> None:
    source = tmp_path / "q.jsonl"
    source.write_bytes(orjson.dumps({"t": "a", "i": "x"}) + b"\n" + b'{"t": "b", "i": "x"}\n')
    with pytest.raises(BuildError) as err:
        build_file(source, tmp_path / "o.jsonl", CHAT, model="m", prompt_column="t", id_column="i")
    assert str(err.value) == (
        "row 2, column 'i': custom_id 'x' is already used by row 1; custom_ids must be unique "
        "in a file. (duplicate_custom_id)"
    )
    source.write_bytes(b'{"t": "a", "i": {"x": 1}}\n')
    with pytest.raises(BuildError, match="row 1, column 'i': Expected text, found dict"):
        build_file(source, tmp_path / "o.jsonl", CHAT, model="m", prompt_column="t", id_column="i")
    source.write_bytes(b'{"t": []}\n')
    with pytest.raises(BuildError, match=r"row 1, column 't': body\.input must have at least 1"):
        build_file(source, tmp_path / "o.jsonl", "/v1/embeddings", model="m", prompt_column="t")
    source.write_bytes(b'{"t": "a"}\n')
    with pytest.raises(BuildError) as err:
        build_file(source, tmp_path / "o.jsonl", CHAT, prompt_column="t")
    assert str(err.value) == "row 1: Model parameter is required. (invalid_request)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.jsonl"]


def test_prompt_and_system_fields_come_from_the_profiles() -> None:
    from jsonl_batch.build import inputs as rows_module
    from jsonl_batch.rules.profiles import OPENAI_ENDPOINTS as ENDPOINTS

    assert not hasattr(rows_module, "PROMPT_FIELDS") and not hasattr(rows_module, "_regular_size")
    assert {url: e.prompt_field for url, e in ENDPOINTS.items()} == {
        "/v1/responses": "input",
        "/v1/chat/completions": "messages",
        "/v1/embeddings": "input",
        "/v1/completions": "prompt",
        "/v1/moderations": "input",
        "/v1/images/generations": "prompt",
        "/v1/images/edits": "prompt",
        "/v1/videos": "prompt",
    }
    with_system = sorted(url for url, e in ENDPOINTS.items() if e.system_field)
    assert with_system == ["/v1/chat/completions", "/v1/responses"]
    with pytest.raises(ValueError, match="applies to /v1/chat/completions and /v1/responses"):
        BodyShaper("/v1/completions", prompt_column="t", system="x")


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_id_is_an_empty_value(tmp_path: Path, value: str) -> None:
    source = tmp_path / "q.jsonl"
    source.write_bytes(
        orjson.dumps({"t": "a", "i": "x"}) + b"\n" + orjson.dumps({"t": "b", "i": value})
    )
    with pytest.raises(BuildError) as err:
        build_file(source, tmp_path / "o.jsonl", CHAT, model="m", prompt_column="t", id_column="i")
    assert (err.value.code, err.value.row, err.value.column) == ("empty_value", 2, "i")
    assert "custom_id" in err.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.jsonl"]


def test_build_file_never_replaces_nor_removes_its_source(tmp_path: Path) -> None:
    rows_file = tmp_path / "rows.jsonl"
    rows_file.write_bytes(b'{"t": "a"}\n')
    with pytest.raises(OutputExists, match=r"rows\.jsonl is an input"):
        build_file(rows_file, rows_file, CHAT, model="m", prompt_column="t", force=True)
    assert rows_file.read_bytes() == b'{"t": "a"}\n'
    part = tmp_path / "data.part-001.jsonl"
    part.write_bytes(b'{"t": "a"}\n')
    with pytest.raises(OutputExists, match=r"data\.part-001\.jsonl is an input"):
        build_file(part, tmp_path / "data.jsonl", CHAT, model="m", prompt_column="t", force=True)
    assert part.read_bytes() == b'{"t": "a"}\n'
