"""Output problems, structured checks and usage details of realistic answers."""

from __future__ import annotations

import pickle
from typing import Any

import pyarrow as pa
import pytest
from answer_bodies import GOOD, TICKET_SCHEMA, chat_body, dumps, responses_body

from jsonl_batch.results.answers import check_answers, output_problem, usage_details
from jsonl_batch.results.index import plan_structured

REFUSAL = "I'm sorry, I cannot help with that request."


@pytest.mark.parametrize(
    ("body", "problem", "message"),
    [
        (chat_body(dumps(GOOD)), None, None),
        (chat_body('{"label": "bug", "confid', finish="length"), "truncated", "(length)"),
        (chat_body(None, finish="content_filter"), "content_filter", "content filter"),
        (chat_body(None, refusal=REFUSAL), "refusal", REFUSAL),
        (chat_body(None, finish="length", refusal=REFUSAL), "refusal", REFUSAL),
        (chat_body(None, finish="tool_calls"), None, None),
        (responses_body(dumps(GOOD)), None, None),
        (
            responses_body('{"label": "bu', "incomplete", "max_output_tokens"),
            "truncated",
            "incomplete (max_output_tokens)",
        ),
        (responses_body(None, "incomplete", "content_filter"), "content_filter", "content filter"),
        (responses_body(None, refusal=REFUSAL), "refusal", REFUSAL),
        ({"choices": [{"text": "x", "finish_reason": "length"}]}, "truncated", "length"),
        ({"choices": []}, None, None),
        ({"output": "odd"}, None, None),
        ("not a body", None, None),
    ],
)
def test_output_problem(body: Any, problem: str | None, message: str | None) -> None:
    found = output_problem(body)
    assert (found and found[0]) == problem
    if message is not None:
        assert found is not None and message in found[1]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (chat_body("x"), (1024, 0)),
        (responses_body("x"), (0, 320)),
        ({"usage": {"prompt_tokens": 5, "completion_tokens": 1}}, (None, None)),
        ({"usage": {"prompt_tokens_details": {"cached_tokens": "5"}}}, (None, None)),
        ({"usage": {"prompt_tokens_details": {"cached_tokens": -1}}}, (-1, None)),  # as sent
        ({"usage": None}, (None, None)),
        ({}, (None, None)),
    ],
)
def test_usage_details(body: Any, expected: tuple[int | None, int | None]) -> None:
    assert usage_details(body) == expected


def answers_table(rows: list[tuple[Any, ...]]) -> pa.Table:
    """A block of answers as ``results`` gives them: only the columns the checks read."""
    schema = pa.schema(
        [("ok", pa.bool_())]
        + [(n, pa.string()) for n in ("output_problem", "error_message", "content")]
    )
    return pa.Table.from_pylist([dict(zip(schema.names, r, strict=True)) for r in rows], schema)


def test_check_answers_parses_what_asked_for_json() -> None:
    plan = plan_structured([], schema=TICKET_SCHEMA)
    checks = plan.for_rows(0, [1, 2, 3, 4, 5, 6])
    table = answers_table(
        [
            (True, None, None, dumps(GOOD)),
            (True, None, None, dumps({"label": "bug"})),
            (True, None, None, "It is a bug."),
            (True, "truncated", "cut off", '{"label": "b'),
            (False, None, "server error", None),
            (None, None, None, None),  # missing
        ]
    )
    checked, parsed = check_answers(table, checks)
    assert parsed.to_pylist() == [GOOD, None, None, None, None, None]
    assert checked.column("output_problem").to_pylist() == [
        None,
        "schema_mismatch",
        "not_json",
        "truncated",
        None,
        None,
    ]
    messages = checked.column("error_message").to_pylist()
    assert messages[1] == "Missing required field parsed.confidence."
    assert messages[2].startswith("The answer is not JSON")
    assert messages[3:5] == ["cut off", "server error"]


def test_check_answers_leaves_plain_text_requests_alone(write: Any) -> None:
    from helpers import request

    path = write([request("a"), request("b", response_format={"type": "json_object"})])
    checks = plan_structured([path]).for_rows(0, [1, 2])
    table = answers_table([(True, None, None, "prose"), (True, None, None, "prose too")])
    checked, parsed = check_answers(table, checks)
    assert parsed.to_pylist() == [None, None]
    assert checked.column("output_problem").to_pylist() == [None, "not_json"]


def test_block_checks_survive_pickling() -> None:
    checks = plan_structured([], schema=TICKET_SCHEMA).for_rows(0, [1])
    again = pickle.loads(pickle.dumps(checks))
    assert again.check(0, dumps(GOOD)).value == GOOD
    assert again.schemas[0].type == checks.schemas[0].type


def test_check_answers_in_worker_pieces_gives_the_same_columns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A block checked by worker processes, a few answers per task (enum dictionaries made
    piece by piece, an integer too large for int64), equals the block checked at once."""
    from jsonl_batch.lines.parallel import Workers
    from jsonl_batch.results import answers

    labels = ["question", "bug", "feature"]
    rows: list[tuple[Any, ...]] = []
    for i in range(40):
        good = dumps(GOOD | {"label": labels[i * 7 % 3], "priority": 1000 + i})
        if i % 9 == 4:  # valid under the schema, too large for the column
            good = good.replace(f'"priority":{1000 + i}', '"priority":1180591620717411303424')
        text = [good, "not json", dumps({"label": "bug"}), None][i % 4 if i % 5 else 0]
        rows.append((i % 6 != 5, "truncated" if i % 11 == 3 else None, None, text))
    table = answers_table(rows)
    checks = plan_structured([], schema=TICKET_SCHEMA).for_rows(0, range(1, 41))
    alone, parsed_alone = check_answers(table, checks)
    monkeypatch.setattr(answers, "CHECK_ROWS", 6)
    monkeypatch.setattr(answers, "CHECK_MIN_ROWS", 1)
    with Workers(2) as pool:
        pieces, parsed_pieces = check_answers(table, checks, pool)
    assert pieces.equals(alone)
    assert parsed_pieces.equals(parsed_alone)
    assert parsed_alone.null_count < 40 and "schema_mismatch" in alone["output_problem"].to_pylist()


@pytest.mark.parametrize("column", ["typed", "json_text"])
def test_check_rows_equals_check_of_each_row(column: str) -> None:
    """The batch check (one parse and one validation for the usual answer) gives each row
    what ``check`` gives it: values, problems and messages."""
    from jsonl_batch.results.structured import JSON_TEXT, BlockChecks, OutputSchema

    ticket = OutputSchema(TICKET_SCHEMA)
    other = OutputSchema({"type": "object", "properties": {"n": {"type": "integer"}}})
    texts = [
        dumps(GOOD),
        " " + dumps(GOOD | {"label": "feature"}) + "\n",
        dumps({"label": "bug"}),
        "not json",
        None,
        "[" * 5000 + "]" * 5000,
        '{"n": 1180591620717411303424}',
        '{"n": 3}',
        "{}",
    ]
    wanted = [0, 0, 0, 0, 0, 0, 1, 1, -2]
    kind = ticket.type if column == "typed" else JSON_TEXT
    checks = BlockChecks([ticket, other], wanted, kind)
    values: list[Any] = [None] * len(texts)
    found = dict(checks.check_rows(range(len(texts)), texts, values))
    for row, text in enumerate(texts):
        one = checks.check(row, text)
        problem = (found[row].problem, found[row].message) if row in found else (None, None)
        assert values[row] == one.value and problem == (one.problem, one.message)
    assert 2 in found and 3 in found and 0 not in found
