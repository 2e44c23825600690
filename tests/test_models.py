"""Model facts: the shipped table, output over a model's maximum (no counting needed), and
estimated input plus output over its context window (when tokens are counted)."""

from __future__ import annotations

from io import BytesIO
from typing import Any

import orjson
import pytest

from jsonl_batch import validate_file
from jsonl_batch.rules.models import _table, model_facts, output_over
from jsonl_batch.rules.profiles import get_profile
from jsonl_batch.validate import LineChecker

CHAT = "/v1/chat/completions"


def line(body: dict[str, Any], url: str = CHAT, custom_id: str = "r1") -> bytes:
    return orjson.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


def chat(model: str = "gpt-4o-mini", text: str = "Hi", **params: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **params}


def report(*lines: bytes, profile: str = "openai", **options: Any) -> list[list[Any]]:
    data = b"\n".join(lines) + b"\n"
    return validate_file(BytesIO(data), profile, **options).flatten(["line", "code", "param"])


def test_the_table_is_dated_and_sourced() -> None:
    table = _table()
    assert table["as_of"] and table["source"].startswith("https://platform.openai.com/")
    for name, entry in table["models"].items():
        assert entry["source"].startswith("https://platform.openai.com/docs/models/"), name
        assert entry["as_of"] and entry["checked_with"], name
        assert 0 < entry["max_output_tokens"] <= entry["context_window"], name


def test_facts_of_models_and_snapshots_never_guessed() -> None:
    facts = model_facts("gpt-4o-mini")
    assert facts and (facts.context_window, facts.max_output_tokens) == (128_000, 16_384)
    assert model_facts("gpt-4o-mini-2024-07-18") == facts  # a snapshot takes its alias's
    snapshot = model_facts("gpt-4o-2024-05-13")  # unless listed itself
    assert snapshot and snapshot.max_output_tokens == 4_096
    assert model_facts("gpt-4o-mini-fast") is None and model_facts("my-model") is None


@pytest.mark.parametrize(
    ("url", "body", "param"),
    [
        (CHAT, chat(max_tokens=16_385), "body.max_tokens"),
        (CHAT, chat(max_completion_tokens=200_000), "body.max_completion_tokens"),
        ("/v1/responses", {"model": "gpt-4.1", "input": "x", "max_output_tokens": 40_000}, None),
        ("/v1/completions", {"model": "gpt-3.5-turbo", "prompt": "x", "max_tokens": 5_000}, None),
    ],
)
def test_more_output_than_the_model_writes_is_invalid_body(url: str, body: dict, param) -> None:
    param = param or "body." + next(k for k in body if k.startswith("max"))
    assert report(line(body, url)) == [[1, "invalid_body", param]]
    checker = LineChecker(get_profile())
    _, found = checker.explain(orjson.loads(line(body, url)))  # the rules agree with the fast path
    assert found and [(f[0], f[2]) for f in found] == [("invalid_body", param)]
    assert found[0][1].endswith("(its model page, as of 2026-11).")


def test_within_the_limit_unknown_models_and_deployments_pass() -> None:
    assert report(line(chat(max_tokens=16_384))) == []
    assert report(line(chat("my-finetune", max_tokens=10**6))) == []
    assert report(line(chat(max_tokens=10**6)), profile="azure") == []  # a deployment name
    assert output_over("gpt-4o-mini", {"max_tokens": "lots"}) is None


def test_input_plus_output_over_the_context_window_when_counting() -> None:
    pytest.importorskip("tiktoken")
    long = chat("gpt-4", "word " * 7_900, max_tokens=1_000)  # gpt-4: 8,192 tokens in all
    fits = chat("gpt-4", "word " * 100, max_tokens=1_000)
    lines = (line(long, custom_id="a"), line(fits, custom_id="b"))
    assert report(*lines) == []  # not counted: not checked
    found = validate_file(BytesIO(b"\n".join(lines)), count_tokens=True)
    assert found.flatten(["line", "code", "param"]) == [[1, "invalid_body", "body"]]
    message = found.problems[0].message
    assert "plus 1,000 requested output tokens" in message and "window of 8,192" in message
    assert found.stats.input_tokens and found.stats.input_tokens > 7_900
    # too much output is said once, by the output rule
    over = line(chat("gpt-4", "word " * 7_900, max_tokens=9_000))
    assert report(over, count_tokens=True) == [[1, "invalid_body", "body.max_tokens"]]
