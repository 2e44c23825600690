"""Output problems, structured checks and usage details of realistic answers."""

from __future__ import annotations

from typing import Any

import pytest
from answer_bodies import GOOD, TICKET_SCHEMA, chat_body, dumps, responses_body

from jsonl_batch.answer_checks import OUTPUT_PROBLEMS, AnswerChecks, output_problem, usage_details
from jsonl_batch.structured import plan_structured

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


def test_a_long_refusal_is_clipped() -> None:
    found = output_problem(chat_body(None, refusal="no " * 400))
    assert found is not None and len(found[1]) == 500 and found[1].endswith("...")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (chat_body("x"), (1024, 0)),
        (responses_body("x"), (0, 320)),
        ({"usage": {"prompt_tokens": 5, "completion_tokens": 1}}, (None, None)),
        ({"usage": {"prompt_tokens_details": {"cached_tokens": "5"}}}, (None, None)),
        ({"usage": {"prompt_tokens_details": {"cached_tokens": -1}}}, (None, None)),
        ({"usage": None}, (None, None)),
        ({}, (None, None)),
    ],
)
def test_usage_details(body: Any, expected: tuple[int | None, int | None]) -> None:
    assert usage_details(body) == expected


@pytest.fixture
def checks() -> AnswerChecks:
    return AnswerChecks(plan_structured([], schema=TICKET_SCHEMA))


@pytest.mark.parametrize(
    ("body", "content", "ok", "expected"),
    [
        (chat_body(dumps(GOOD)), dumps(GOOD), True, (GOOD, None, None, 1024, 0)),
        (responses_body(dumps(GOOD)), dumps(GOOD), True, (GOOD, None, None, 0, 320)),
        (
            chat_body(dumps({"label": "bug"})),
            dumps({"label": "bug"}),
            True,
            (None, "schema_mismatch", "Missing required field parsed.confidence.", 1024, 0),
        ),
        (chat_body("It is a bug."), "It is a bug.", True, (None, "not_json", ..., 1024, 0)),
        (
            chat_body('{"label": "b', finish="length"),
            '{"label": "b',
            True,
            (None, "truncated", ..., 1024, 0),
        ),
        (chat_body(None, refusal=REFUSAL), None, True, (None, "refusal", REFUSAL, 1024, 0)),
        ({"error": {"code": "server_error"}}, None, False, (None, None, None, None, None)),
    ],
)
def test_answer_columns(
    checks: AnswerChecks, body: Any, content: str | None, ok: bool, expected: tuple[Any, ...]
) -> None:
    found = checks.answer(body, content, ok)
    assert len(found) == 5
    for got, want in zip(found, expected, strict=True):
        if want is not ...:
            assert got == want
    assert found[1] is None or found[1] in OUTPUT_PROBLEMS


def test_without_a_plan_only_body_problems_are_found() -> None:
    checks = AnswerChecks()
    assert checks.answer(chat_body("not json"), "not json", True)[:3] == (None, None, None)
    assert checks.answer(chat_body("x", finish="length"), "x", True)[1] == "truncated"
