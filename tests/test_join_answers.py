"""join with realistic answers: structured output typed in `parsed`, output problems, actual
usage and cost, a split's original lines; read back with DuckDB and polars."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import duckdb
import orjson
import polars as pl
import pytest
from answer_bodies import (
    GOOD,
    TICKET_SCHEMA,
    chat_body,
    chat_format,
    dumps,
    responses_body,
    responses_format,
    result_line,
)
from click.testing import CliRunner
from helpers import jsonl, request

from jsonl_batch.cli import main
from jsonl_batch.results.join import join
from jsonl_batch.results.readers import read_results
from jsonl_batch.results.structured import ENUM
from jsonl_batch.results.tables import read_summary, write_table
from jsonl_batch.split.engine import split_file

REFUSAL = "I'm sorry, but I can't help with that."
QUESTION = GOOD | {"label": "question", "owner": None, "tags": [], "priority": 3}


def chat_requests(n: int, **body: Any) -> list[dict[str, Any]]:
    return [request(f"t{i}", response_format=chat_format(), **body) for i in range(n)]


ANSWERS = [
    chat_body(dumps(GOOD)),
    chat_body(dumps(QUESTION)),
    chat_body(dumps({k: v for k, v in GOOD.items() if k != "tags"})),  # a required field missing
    chat_body("The ticket is a bug with high confidence."),  # not JSON
    chat_body('{"label": "bug", "confidence": 0.9, "tags": ["lo', finish="length"),  # truncated
    chat_body(None, refusal=REFUSAL),
    chat_body(None, finish="content_filter"),
]


@pytest.fixture
def ticket_files(write: Any) -> tuple[Path, Path]:
    inputs = write(chat_requests(len(ANSWERS) + 1), "tickets.jsonl")
    lines = [result_line(f"t{i}", body) for i, body in enumerate(ANSWERS)]
    return inputs, write(lines[::-1], "tickets.output.jsonl")  # missing: t7


def test_structured_answers_are_typed_and_checked(ticket_files: tuple[Path, Path]) -> None:
    found = join([ticket_files[0]], [ticket_files[1]])
    table = found.table
    assert table.schema.field("parsed").type.field("label").type == ENUM
    rows = table.select(["status", "output_problem", "error_message", "parsed"]).to_pylist()
    assert [r["status"] for r in rows] == ["succeeded"] * 7 + ["missing"]
    assert [r["output_problem"] for r in rows] == [
        None,
        None,
        "schema_mismatch",
        "not_json",
        "truncated",
        "refusal",
        "content_filter",
        None,
    ]
    assert [r["parsed"] for r in rows[:3]] == [GOOD, QUESTION, None]
    assert rows[2]["error_message"] == "Missing required field parsed.tags."
    assert rows[5]["error_message"] == REFUSAL
    summary = found.summary
    assert summary.succeeded == 7 and summary.complete is False
    assert summary.output_problems == {
        "truncated": 1,
        "content_filter": 1,
        "refusal": 1,
        "not_json": 1,
        "schema_mismatch": 1,
    }
    assert summary.structured is not None and summary.structured["typed"]


def test_parsed_fields_read_in_duckdb_and_polars(
    ticket_files: tuple[Path, Path], tmp_path: Path
) -> None:
    found = join([ticket_files[0]], [ticket_files[1]])
    target = tmp_path / "tickets.parquet"
    write_table(found.table, target, summary=found.summary.to_dict())
    rows = duckdb.sql(
        f"SELECT parsed.label, count(*), max(parsed.owner.team), sum(len(parsed.steps)) "
        f"FROM '{target}' GROUP BY 1 ORDER BY 1 NULLS LAST"
    ).fetchall()
    assert rows == [("bug", 1, "mobile", 2), ("question", 1, None, 2), (None, 6, None, None)]
    frame = pl.read_parquet(target)
    labels = frame.select(pl.col("parsed").struct.field("label")).to_series().to_list()
    assert labels == ["bug", "question"] + [None] * 6
    priority = frame.select(pl.col("parsed").struct.field("priority")).to_series()
    assert priority.dtype == pl.Int64 and priority.to_list()[:2] == [2, 3]
    assert read_summary(target)["output_problems"]["refusal"] == 1


def test_flatten_puts_properties_in_columns(
    ticket_files: tuple[Path, Path], tmp_path: Path
) -> None:
    found = join([ticket_files[0]], [ticket_files[1]], flatten=True)
    names = found.table.schema.names
    assert "parsed" not in names
    assert names[names.index("content") + 1 : names.index("content") + 7] == [
        "label",
        "confidence",
        "priority",
        "tags",
        "owner",
        "steps",
    ]
    assert found.table.column("label").to_pylist()[:3] == ["bug", "question", None]
    target = tmp_path / "flat.parquet"
    write_table(found.table, target)
    assert duckdb.sql(f"SELECT count(*) FROM '{target}' WHERE owner.oncall").fetchall() == [(1,)]


def test_a_property_named_like_a_column_gets_a_prefix(write: Any) -> None:
    schema = {
        "type": "object",
        "properties": {"status": {"type": "string"}, "score": {"type": "integer"}},
        "required": ["status", "score"],
    }
    inputs = write([request("a")])
    outputs = write([result_line("a", chat_body('{"status": "open", "score": 4}'))], "o.jsonl")
    table = join([inputs], [outputs], schema=schema, flatten=True).table
    assert table.column("status").to_pylist() == ["succeeded"]
    assert table.column("parsed_status").to_pylist() == ["open"]
    assert table.column("score").to_pylist() == [4]


def test_responses_api_structured_output(write: Any) -> None:
    body = {"model": "gpt-5-mini", "input": "Classify: app crashes", "text": responses_format()}
    inputs = write(
        [
            {"custom_id": f"r{i}", "method": "POST", "url": "/v1/responses", "body": body}
            for i in range(3)
        ]
    )
    outputs = write(
        [
            result_line("r0", responses_body(dumps(GOOD))),
            result_line("r1", responses_body('{"label": "bu', "incomplete", "max_output_tokens")),
            result_line("r2", responses_body(None, refusal=REFUSAL)),
        ],
        "out.jsonl",
    )
    table = join([inputs], [outputs]).table
    assert table.column("parsed").to_pylist() == [GOOD, None, None]
    assert table.column("output_problem").to_pylist() == [None, "truncated", "refusal"]
    assert table.column("error_message").to_pylist()[1] == (
        "The response is incomplete (max_output_tokens)."
    )
    assert table.column("reasoning_tokens").to_pylist() == [320, 320, 320]
    # gpt-5-mini at batch prices: 0.125 input, 1.00 output per 1M; 400 output tokens
    assert table.column("cost_usd").to_pylist()[0] == pytest.approx((900 * 0.125 + 400) / 1e6)


def test_requests_with_different_schemas_give_json_text(write: Any) -> None:
    other = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    inputs = write(
        [
            request("a", response_format=chat_format()),
            request("b", response_format=chat_format(other, "other")),
            request("c"),
        ]
    )
    outputs = write(
        [
            result_line("a", chat_body(dumps(GOOD))),
            result_line("b", chat_body('{"ok": "yes"}')),
            result_line("c", chat_body("plain prose")),
        ],
        "o.jsonl",
    )
    found = join([inputs], [outputs], flatten=True)
    table = found.table
    assert table.schema.field("parsed").type == "string"
    assert table.column("parsed").to_pylist() == [dumps(GOOD), None, None]
    assert table.column("output_problem").to_pylist() == [None, "schema_mismatch", None]
    structured = found.summary.structured
    assert structured is not None and "2 different JSON schemas" in structured["reason"]
    assert structured["flattened"] is False and "not_flattened" in structured


def test_a_given_schema_checks_answers_to_plain_requests(write: Any, tmp_path: Path) -> None:
    inputs = write([request("a"), request("b")])
    outputs = write(
        [result_line("a", chat_body(dumps(GOOD))), result_line("b", chat_body('{"x": 1}'))],
        "o.jsonl",
    )
    schema = tmp_path / "ticket.schema.json"
    schema.write_bytes(orjson.dumps(chat_format()))
    table = join([inputs], [outputs], schema=schema).table
    assert table.column("parsed").to_pylist() == [GOOD, None]
    assert table.column("output_problem").to_pylist() == [None, "schema_mismatch"]


def test_without_json_requests_there_is_no_parsed_column(write: Any) -> None:
    inputs = write([request("a")])
    outputs = write([result_line("a", chat_body("not json, and fine"))], "o.jsonl")
    found = join([inputs], [outputs])
    assert "parsed" not in found.table.schema.names and found.summary.structured is None
    assert found.table.column("output_problem").to_pylist() == [None]


def test_usage_and_cost_columns(ticket_files: tuple[Path, Path]) -> None:
    found = join([ticket_files[0]], [ticket_files[1]])
    row = found.table.slice(0, 1).to_pylist()[0]
    assert (row["prompt_tokens"], row["cached_tokens"], row["reasoning_tokens"]) == (1200, 1024, 0)
    # gpt-4o-mini batch: 0.075 input, 0.0375 cached, 0.30 output per 1M
    expected = (176 * 0.075 + 1024 * 0.0375 + 80 * 0.30) / 1e6
    assert row["cost_usd"] == pytest.approx(expected)
    cost = found.summary.cost
    assert cost["total"] == pytest.approx(7 * expected) and cost["priced_answers"] == 7
    assert cost["per_1000_requests"] == pytest.approx(1000 * expected)
    assert found.table.column("cost_usd").to_pylist()[-1] is None  # missing: no usage
    assert found.summary.cached_tokens == 7 * 1024


def test_an_unknown_model_has_no_cost_and_a_note(write: Any) -> None:
    inputs = write([request("a")])
    outputs = write([result_line("a", chat_body("hi", model="my-azure-deployment"))], "o.jsonl")
    found = join([inputs], [outputs])
    assert found.table.column("cost_usd").to_pylist() == [None]
    assert found.summary.cost["total"] is None
    assert "my-azure-deployment (1)" in found.summary.cost["notes"][0]


def test_token_estimate_against_reported_prompt_tokens(write: Any) -> None:
    inputs = write([request("a"), request("b")])
    usage = {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}
    outputs = write(
        [
            result_line("a", chat_body("x", usage=usage)),
            result_line("b", chat_body("y", usage=usage)),
        ],
        "o.jsonl",
    )
    estimate = join([inputs], [outputs], estimate_tokens=True).summary.cost["token_estimate"]
    assert estimate["answers"] == 2 and estimate["reported_prompt_tokens"] == 20
    expected = estimate["estimated_input_tokens"]
    assert expected > 0
    assert estimate["drift_percent"] == round(100 * (20 - expected) / expected, 2)


def test_fast_and_line_readers_agree_on_realistic_answers(write: Any) -> None:
    bodies = [*ANSWERS, responses_body(dumps(GOOD)), responses_body(None, refusal=REFUSAL)]
    bodies.append(responses_body(None, "incomplete", "content_filter"))
    bodies.append(responses_body('{"a', "incomplete", None))
    lines = [result_line(f"t{i}", body) for i, body in enumerate(bodies)]
    path = write(lines, "o.jsonl")
    fast = read_results(path)
    slow = read_results(path, ("include_bodies",))
    columns = [n for n in fast.table.schema.names]
    assert fast.table.to_pylist() == slow.table.select(columns).to_pylist()
    problems = fast.table.column("output_problem").to_pylist()
    assert problems[-4:] == [None, "refusal", "content_filter", "truncated"]


def test_parts_of_a_split_report_their_original_lines(write: Any, tmp_path: Path) -> None:
    lines = [request(f"r{i}", model="gpt-4o" if i % 3 else "gpt-4o-mini") for i in range(6)]
    split_file(write(lines, "all.jsonl"), tmp_path / "parts", by="model")
    outputs = write([result_line(f"r{i}", chat_body("ok")) for i in range(6)], "o.jsonl")
    table = join([tmp_path / "parts" / "all.manifest.json"], [outputs]).table
    rows = table.select(["custom_id", "input_file", "line", "original_file", "original_line"])
    found = {r["custom_id"]: r for r in rows.to_pylist()}
    assert [found[f"r{i}"]["original_line"] for i in range(6)] == [1, 2, 3, 4, 5, 6]
    assert found["r3"]["input_file"].endswith("part-001-of-002.jsonl") and found["r3"]["line"] == 2
    assert all(r["original_file"].endswith("all.jsonl") for r in found.values())


def test_plain_inputs_have_no_original_columns(ticket_files: tuple[Path, Path]) -> None:
    names = join([ticket_files[0]], [ticket_files[1]]).table.schema.names
    assert "original_line" not in names


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def test_cli_join_schema_flatten_and_exit_on_output_problems(
    ticket_files: tuple[Path, Path], tmp_path: Path
) -> None:
    inputs, outputs = map(str, ticket_files)
    schema = tmp_path / "s.json"
    schema.write_bytes(orjson.dumps(TICKET_SCHEMA))
    target = tmp_path / "t.parquet"
    result = run("join", inputs, "-r", outputs, "-o", str(target), "--schema", str(schema))
    assert result.exit_code == 1  # t7 is missing
    assert "output_problem): truncated 1, content_filter 1, refusal 1" in result.output
    assert "structured output: typed, in `parsed`" in result.output
    assert "cost at batch prices: $" in result.output
    complete = tmp_path / "complete.jsonl"
    complete.write_bytes(jsonl(*chat_requests(7)))
    target2 = tmp_path / "t2.parquet"
    args = ["join", str(complete), "-r", outputs, "-o", str(target2), "--flatten"]
    assert run(*args).exit_code == 0  # every request succeeded
    assert run(*args, "--force", "--exit-on-output-problems").exit_code == 1
    assert "label" in duckdb.sql(f"SELECT * FROM '{target2}'").columns


def test_cli_join_bad_schema_is_a_usage_error(
    ticket_files: tuple[Path, Path], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"type": "object", "properties": {"a": {"$ref": "http://x/y"}}}')
    inputs, outputs = map(str, ticket_files)
    result = run(
        "join", inputs, "-r", outputs, "-o", str(tmp_path / "t.parquet"), "--schema", str(bad)
    )
    assert result.exit_code == 2 and "points outside the schema" in result.output
    assert "Traceback" not in result.output


def test_retry_output_problems_copies_their_lines_byte_identical(
    ticket_files: tuple[Path, Path], tmp_path: Path
) -> None:
    inputs, outputs = ticket_files
    target = tmp_path / "retry.jsonl"
    args = [str(inputs), "-r", str(outputs), "-o", str(target), "--only", "output-problems"]
    result = run("retry", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.output)
    assert data["requests"] == 5 and data["reasons"] == {
        "content_filter": 1,
        "not_json": 1,
        "refusal": 1,
        "schema_mismatch": 1,
        "truncated": 1,
    }
    original = inputs.read_bytes().splitlines(keepends=True)
    assert target.read_bytes() == b"".join(original[2:7])


def test_an_integer_too_big_for_int64_is_a_mismatch_not_a_crash(write: Any) -> None:
    inputs = write(chat_requests(3))
    huge = dumps(GOOD | {"priority": 7}).replace("7", str(2**64 - 1))
    bodies = [chat_body(dumps(GOOD)), chat_body(huge), chat_body(dumps(QUESTION))]
    outputs = write([result_line(f"t{i}", b) for i, b in enumerate(bodies)], "o.jsonl")
    table = join([inputs], [outputs]).table
    assert table.column("parsed").to_pylist() == [GOOD, None, QUESTION]
    assert table.column("output_problem").to_pylist() == [None, "schema_mismatch", None]
    assert "too large for a 64-bit column" in table.column("error_message").to_pylist()[1]


@pytest.mark.parametrize("flat", [False, True])
def test_csv_and_jsonl_tables_hold_parsed_as_json(
    ticket_files: tuple[Path, Path], tmp_path: Path, flat: bool
) -> None:
    found = join([ticket_files[0]], [ticket_files[1]], flatten=flat)
    write_table(found.table, tmp_path / "t.csv")
    write_table(found.table, tmp_path / "t.jsonl")
    rows = list(csv.DictReader((tmp_path / "t.csv").open(encoding="utf-8")))
    first = orjson.loads((tmp_path / "t.jsonl").read_bytes().splitlines()[0])
    if flat:
        assert rows[0]["label"] == "bug" and orjson.loads(rows[0]["owner"]) == GOOD["owner"]
        assert first["label"] == "bug" and first["steps"] == GOOD["steps"]
    else:
        assert orjson.loads(rows[0]["parsed"]) == GOOD and rows[2]["parsed"] == ""
        assert first["parsed"] == GOOD
