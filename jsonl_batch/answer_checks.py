"""What a succeeded answer is worth: output problems, structured values, cached and reasoning
tokens, read from one response body.

A request can succeed (HTTP 200) and still give nothing usable: cut off by the output limit,
stopped by a content filter, refused, or (when JSON was asked for) not JSON or not matching
the schema. ``output_problem(body)`` finds the first three from the body alone;
``AnswerChecks`` adds the structured checks of a join's ``StructuredPlan`` and returns
every answer column at once (``ANSWER_COLUMNS``).
"""

from __future__ import annotations

from typing import Any

from .structured import StructuredPlan

OUTPUT_PROBLEMS = ("truncated", "content_filter", "refusal", "not_json", "schema_mismatch")
"""The values of ``output_problem``, most fundamental first (a row gets the first that holds)."""
ANSWER_COLUMNS = (
    "parsed",
    "output_problem",
    "problem_message",
    "cached_tokens",
    "reasoning_tokens",
)
"""What ``AnswerChecks`` returns per answer, in order (``parsed`` only with a plan)."""
_MESSAGE_LIMIT = 500


def output_problem(body: Any) -> tuple[str, str] | None:
    """``(problem, message)`` when a chat, completions or responses body was cut off
    (``truncated``), filtered (``content_filter``) or refused (``refusal``), else ``None``.
    Chat and completions are judged by their first choice, as the ``content`` column is."""
    if type(body) is not dict:
        return None
    output = body.get("output")
    if type(output) is list:  # responses
        refusal = _responses_refusal(output)
        if body.get("status") == "incomplete":
            details = body.get("incomplete_details")
            reason = details.get("reason") if type(details) is dict else None
            if reason == "content_filter":
                return "content_filter", "The response was stopped by the content filter."
            if refusal is None:
                return "truncated", f"The response is incomplete ({reason or 'no reason given'})."
        if refusal is not None:
            return "refusal", _clip(refusal)
        return None
    choices = body.get("choices")
    if type(choices) is not list or not choices or type(choices[0]) is not dict:
        return None
    choice = choices[0]
    finish = choice.get("finish_reason")
    if finish == "content_filter":
        return "content_filter", "The answer was stopped by the content filter."
    message = choice.get("message")
    refusal = message.get("refusal") if type(message) is dict else None
    if type(refusal) is str and refusal:
        return "refusal", _clip(refusal)
    if finish == "length":
        return "truncated", "The answer was cut off at the output token limit (length)."
    return None


def _responses_refusal(output: list[Any]) -> str | None:
    for item in output:
        if type(item) is dict and item.get("type") == "message":
            for part in item.get("content") or ():
                if type(part) is dict and part.get("type") == "refusal":
                    text = part.get("refusal")
                    return text if type(text) is str and text else "The model refused."
    return None


def _clip(text: str) -> str:
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


def usage_details(body: Any) -> tuple[int | None, int | None]:
    """``(cached_tokens, reasoning_tokens)`` from a body's usage (chat:
    ``prompt_tokens_details``/``completion_tokens_details``; responses: ``input_tokens_details``
    / ``output_tokens_details``); ``None`` where the server did not say."""
    usage = body.get("usage") if type(body) is dict else None
    if type(usage) is not dict:
        return None, None
    return (
        _detail(usage, "prompt_tokens_details", "input_tokens_details", "cached_tokens"),
        _detail(usage, "completion_tokens_details", "output_tokens_details", "reasoning_tokens"),
    )


def _detail(usage: dict[str, Any], chat: str, responses: str, name: str) -> int | None:
    for key in (chat, responses):
        details = usage.get(key)
        if type(details) is dict:
            value = details.get(name)
            if type(value) is int and 0 <= value < 2**63:
                return value
    return None


class AnswerChecks:
    """Per answer, every answer column: ``answer(body, content, ok, file, line)``.

    ``plan`` (``structured.plan_structured``) says which answers must be JSON and of which
    schema; without one nothing is parsed. ``file`` and ``line`` locate the answer's request
    in the join's inputs (input file index, 1-based line).
    """

    def __init__(self, plan: StructuredPlan | None = None) -> None:
        self.plan = plan if plan is not None and plan.active else None

    def answer(
        self, body: Any, content: str | None, ok: bool, file: int = 0, line: int = 0
    ) -> tuple[Any, str | None, str | None, int | None, int | None]:
        """``(parsed, output_problem, problem_message, cached_tokens, reasoning_tokens)``;
        a failed request (``ok`` false) has no parsed value and no output problem."""
        cached, reasoning = usage_details(body)
        if not ok:
            return None, None, None, cached, reasoning
        found = output_problem(body)
        if found is not None:
            return None, found[0], found[1], cached, reasoning
        if self.plan is None:
            return None, None, None, cached, reasoning
        checked = self.plan.check(file, line, content)
        return checked.value, checked.problem, checked.message, cached, reasoning
