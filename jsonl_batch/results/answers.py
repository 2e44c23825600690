"""What a succeeded answer is worth: output problems, structured values, cached and reasoning
tokens, read from one response body.

A request can succeed (HTTP 200) and still give nothing usable: cut off by the output limit,
stopped by a content filter, refused, or (when JSON was asked for) not JSON or not matching
the schema. ``output_problem(body)`` finds the first three from the body alone (and
``problem_columns`` the same in Arrow, for the join's fast reader); ``check_answers`` adds
the structured checks to a block of answers.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from .. import compute as pc
from ..lines.parallel import Workers
from .structured import BlockChecks

OUTPUT_PROBLEMS = ("truncated", "content_filter", "refusal", "not_json", "schema_mismatch")
"""The values of ``output_problem``, most fundamental first (a row gets the first that holds)."""
CONTENT_FILTERED = "The answer was stopped by the content filter."
CUT_OFF = "The answer was cut off at the output token limit (length)."
REFUSED = "The model refused."


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
                return "content_filter", CONTENT_FILTERED
            if refusal is None:
                return "truncated", _incomplete(reason if type(reason) is str else None)
        if refusal is not None:
            return "refusal", refusal
        return None
    choices = body.get("choices")
    if type(choices) is not list or not choices or type(choices[0]) is not dict:
        return None
    choice = choices[0]
    finish = choice.get("finish_reason")
    if finish == "content_filter":
        return "content_filter", CONTENT_FILTERED
    message = choice.get("message")
    refusal = message.get("refusal") if type(message) is dict else None
    if type(refusal) is str and refusal:
        return "refusal", refusal
    if finish == "length":
        return "truncated", CUT_OFF
    return None


def _incomplete(reason: str | None) -> str:
    return f"The response is incomplete ({reason or 'no reason given'})."


def _responses_refusal(output: list[Any]) -> str | None:
    for item in output:
        if type(item) is dict and item.get("type") == "message":
            for part in item.get("content") or ():
                if type(part) is dict and part.get("type") == "refusal":
                    text = part.get("refusal")
                    return text if type(text) is str and text else REFUSED
    return None


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
        value = details.get(name) if type(details) is dict else None
        if type(value) is int and -(2**63) <= value < 2**63:
            return value
    return None


def problem_columns(
    ok: pa.Array,
    finish: pa.Array,
    refusal: pa.Array,
    responses: pa.Array,
    status: pa.Array,
    reason: pa.Array,
    responses_refusal: pa.Array,
) -> tuple[pa.Array, pa.Array]:
    """``output_problem`` in Arrow, for a block of answers: ``(problem, message)`` columns
    from the first choice's ``finish_reason`` and ``message.refusal`` (chat, completions) or,
    where ``responses`` is true, the body's ``status``, incomplete ``reason`` and first
    refusal part (``refusal_texts``). The same rules as ``output_problem``."""
    responses = pc.fill_null(responses, False)
    incomplete = pc.fill_null(pc.equal(status, "incomplete"), False)
    filtered = pc.if_else(
        responses,
        pc.and_(incomplete, pc.fill_null(pc.equal(reason, "content_filter"), False)),
        pc.fill_null(pc.equal(finish, "content_filter"), False),
    )
    chat_refusal = pc.if_else(pc.greater(pc.utf8_length(refusal), 0), refusal, None)
    refused = pc.if_else(responses, responses_refusal, chat_refusal)
    cut = pc.if_else(responses, incomplete, pc.fill_null(pc.equal(finish, "length"), False))
    named = pc.fill_null(pc.greater(pc.utf8_length(reason), 0), False)
    why = pc.binary_join_element_wise(
        "The response is incomplete (", pc.if_else(named, reason, "no reason given"), ").", ""
    )
    ok = pc.fill_null(ok, False)
    cases = pc.make_struct(
        pc.and_(ok, filtered),
        pc.and_(ok, pc.is_valid(refused)),
        pc.and_(ok, cut),
        field_names=["content_filter", "refusal", "truncated"],
    )
    problem = pc.case_when(cases, "content_filter", "refusal", "truncated")
    message = pc.case_when(cases, CONTENT_FILTERED, refused, pc.if_else(responses, why, CUT_OFF))
    return problem, message


def refusal_texts(output: pa.ListArray) -> pa.Array:
    """Per responses ``output`` list: the text of its first refusal part (``REFUSED`` when
    it has none), null when there is no refusal; in Arrow, as ``_responses_refusal``."""
    items = pc.list_flatten(output)
    parts = pc.struct_field(items, "content")
    values = pc.list_flatten(parts)
    rows = pc.take(pc.list_parent_indices(output), pc.list_parent_indices(parts))
    is_message = pc.fill_null(pc.equal(pc.struct_field(items, "type"), "message"), False)
    keep = pc.and_(
        pc.take(is_message, pc.list_parent_indices(parts)),
        pc.fill_null(pc.equal(pc.struct_field(values, "type"), "refusal"), False),
    )
    text = pc.struct_field(values, "refusal")
    text = pc.if_else(pc.fill_null(pc.greater(pc.utf8_length(text), 0), False), text, REFUSED)
    rows, text = pc.filter(rows, keep), pc.filter(text, keep)
    first = pc.index_in(
        pc.subtract(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), len(output))), 1), rows
    )
    return pc.take(text, first)


CHECK_ROWS = 8192
"""The most answers per task when worker processes check a block (``check_answers``)..."""
CHECK_MIN_ROWS = 1024
"""...and the fewest in a block worth sending to them."""


def check_answers(
    table: pa.Table, checks: BlockChecks, workers: Workers | None = None
) -> tuple[pa.Table, pa.Array]:
    """The structured checks of a block of answers (``results``' columns, in request order):
    the ``parsed`` column, and the table with ``output_problem`` and ``error_message`` set
    for answers that are not JSON or do not match their schema. Only succeeded answers
    without an output problem are parsed. ``workers``: processes that check the block in
    as many equal pieces, of at most ``CHECK_ROWS`` answers (the same columns come back)."""
    todo = pc.and_(
        pc.and_(
            pc.fill_null(table.column("ok"), False), pc.is_null(table.column("output_problem"))
        ),
        pc.not_equal(pa.array(checks.wanted, pa.int32()), -1),
    )
    if not pc.any(todo).as_py():
        return table, checks.array([None] * table.num_rows)[0]
    if isinstance(todo, pa.ChunkedArray):
        todo = todo.combine_chunks()
    content, problems, messages = (
        table.column(n).combine_chunks() for n in ("content", "output_problem", "error_message")
    )
    size = table.num_rows
    if workers is None or workers.pool is None or size < CHECK_MIN_ROWS:
        parsed, problems, messages = _check(
            (todo, pc.filter(content, todo), problems, messages, checks)
        )
    else:
        processes = workers.processes
        pieces = processes * -(-size // (processes * CHECK_ROWS))
        step = -(-size // pieces)
        tasks = []
        for start in range(0, size, step):
            part = [_copy(c.slice(start, step)) for c in (todo, problems, messages)]
            texts = pc.filter(content.slice(start, step), part[0])  # only what is checked
            tasks.append((part[0], texts, part[1], part[2], checks.part(start, start + step)))
        done = list(workers.map(_check, tasks))
        parsed, problems, messages = (pa.concat_arrays([d[i] for d in done]) for i in range(3))
    for name, column in (("output_problem", problems), ("error_message", messages)):
        at = table.schema.get_field_index(name)
        table = table.set_column(at, table.schema.field(at), column)
    return table, parsed


def _check(
    task: tuple[pa.Array, pa.Array, pa.Array, pa.Array, BlockChecks],
) -> tuple[pa.Array, pa.Array, pa.Array]:
    """``check_answers`` of one piece (in a worker or not): ``todo`` rows, their ``texts``
    (the content of those rows only), the rows' problems and messages so far, the checks;
    returns the ``parsed``, ``output_problem`` and ``error_message`` columns."""
    todo, texts, problem_column, message_column, checks = task
    rows = pc.indices_nonzero(todo).to_pylist()
    values: list[Any] = [None] * len(todo)
    problems = problem_column.to_pylist()
    messages = message_column.to_pylist()
    for row, checked in checks.check_rows(rows, texts.to_pylist(), values):
        problems[row], messages[row] = checked.problem, checked.message
    parsed, unfit = checks.array(values)
    for row, why in unfit.items():
        problems[row], messages[row] = "schema_mismatch", why
    return parsed, pa.array(problems, pa.string()), pa.array(messages, pa.string())


def _copy(array: pa.Array) -> pa.Array:
    """A slice with buffers of its own (a pickled slice would carry its parent's whole)."""
    return pa.concat_arrays([array])
