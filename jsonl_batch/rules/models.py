"""Model facts: each model's context window and maximum output tokens, from a shipped table.

``data/models.json`` lists OpenAI models as their model pages give them, each entry dated and
with its source. A dated snapshot (``gpt-4o-mini-2024-07-18``) takes its alias's facts unless
listed itself; a model missing from the table has no facts: limits are never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

import orjson

_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")

OUTPUT_PARAMS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
"""The body parameters that ask for a number of output tokens (chat, completions, responses)."""


@dataclass(frozen=True)
class ModelFacts:
    """What one model accepts: tokens in one request, and tokens it writes at most."""

    name: str
    context_window: int
    max_output_tokens: int
    as_of: str
    source: str


@cache
def _table() -> dict[str, Any]:
    data = (files("jsonl_batch") / "data" / "models.json").read_bytes()
    table: dict[str, Any] = orjson.loads(data)
    return table


@cache
def model_facts(model: str) -> ModelFacts | None:
    """The facts of ``model`` (or of the alias of its dated snapshot), ``None`` if unknown."""
    models = _table()["models"]
    name = model if model in models else _SNAPSHOT.sub("", model)
    entry = models.get(name)
    if entry is None:
        return None
    return ModelFacts(
        name, entry["context_window"], entry["max_output_tokens"], entry["as_of"], entry["source"]
    )


def requested_output(body: dict[str, Any]) -> tuple[str, int] | None:
    """``(param, tokens)`` for the largest output the body asks for, if it asks."""
    asked = [(p, body[p]) for p in OUTPUT_PARAMS if type(body.get(p)) is int]
    return max(asked, key=lambda pair: pair[1]) if asked else None


def output_over(model: Any, body: dict[str, Any]) -> tuple[str, int, ModelFacts] | None:
    """``(param, tokens, facts)`` when the body asks for more output than the model writes."""
    if type(model) is not str:
        return None
    facts = model_facts(model)
    asked = requested_output(body) if facts is not None else None
    if facts is None or asked is None or asked[1] <= facts.max_output_tokens:
        return None
    return asked[0], asked[1], facts
