"""Actual cost of answers (``costs.CostTally``) against hand-computed figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from helpers import request

from jsonl_batch.results.costs import CostTally, input_estimates
from jsonl_batch.tokens.counting import TokenCounter
from jsonl_batch.tokens.pricing import load_prices


def tally_of(rows: list[tuple[Any, ...]], prices: Any = None) -> tuple[CostTally, list[Any]]:
    tally = CostTally(prices or load_prices())
    model, prompt, completion, cached = (list(c) for c in zip(*rows, strict=True))
    cost = tally.costs(
        pa.array(model, pa.string()),
        pa.array(prompt, pa.int64()),
        pa.array(completion, pa.int64()),
        pa.array(cached, pa.int64()),
    )
    return tally, cost.to_pylist()


def test_costs_per_row_at_batch_prices() -> None:
    tally, cost = tally_of(
        [
            # gpt-4o-mini batch: input 0.075, cached 0.0375, output 0.30 per 1M tokens
            ("gpt-4o-mini-2024-07-18", 1200, 80, 1024),
            # gpt-5-mini batch: 0.125 / 0.0125 / 1.00; 320 reasoning tokens are in the 400
            ("gpt-5-mini-2025-08-07", 900, 400, 0),
            # an embedding: input only
            ("text-embedding-3-small", 5000, None, None),
        ]
    )
    expected = [
        (176 * 0.075 + 1024 * 0.0375 + 80 * 0.30) / 1e6,  # 0.0000756
        (900 * 0.125 + 400 * 1.00) / 1e6,  # 0.0005125
        5000 * 0.01 / 1e6,  # 0.00005
    ]
    assert cost == pytest.approx(expected, rel=1e-12)
    assert cost[0] == pytest.approx(0.0000756) and cost[1] == pytest.approx(0.0005125)
    summary = tally.to_dict()
    assert summary["total"] == pytest.approx(0.0006381)
    assert summary["per_1000_requests"] == pytest.approx(0.2127)
    assert summary["priced_answers"] == 3 and summary["notes"] == []


def test_unknown_models_get_no_cost_and_a_note() -> None:
    tally, cost = tally_of(
        [
            ("my-azure-deployment", 100, 10, 0),
            ("gpt-4o-mini", 1000, 0, 0),
            (None, 5, 5, None),
            ("my-azure-deployment", 1, 1, None),
        ]
    )
    assert cost == [None, pytest.approx(0.000075), None, None]
    summary = tally.to_dict()
    assert summary["total"] == pytest.approx(0.000075) and summary["priced_answers"] == 1
    assert summary["unpriced_models"] == {"my-azure-deployment": 2, "unknown model": 1}
    assert "my-azure-deployment (2)" in summary["notes"][0]


def test_rows_of_one_model_cost_as_among_other_models() -> None:
    # One model (null rows aside) is priced with scalars, rows of many models by lookup:
    # the same cost for the same row, and a row without a model is unpriced either way.
    rows = [
        ("gpt-4o-mini", 1200, 80, 1024),
        (None, 5, 5, None),
        ("gpt-4o-mini", 900, 0, -3),
        ("gpt-4o-mini", None, None, None),
        ("gpt-4o-mini", 10, 2**60, 20),
    ]
    alone, cost = tally_of(rows)
    mixed, among = tally_of([*rows, ("gpt-5-mini", 1, 1, 0)])
    assert cost == among[:-1] and cost[1] is None and cost[3] is None
    assert alone.unpriced == mixed.unpriced == {"unknown model": 1}
    no_price, unpriced = tally_of([("my-deployment", 7, 7, 0), (None, 1, 1, 0)])
    assert unpriced == [None, None]
    assert no_price.unpriced == {"my-deployment": 1, "unknown model": 1}


def test_rows_without_usage_cost_nothing_and_are_not_counted() -> None:
    tally, cost = tally_of([("gpt-4o", None, None, None), (None, None, None, None)])
    assert cost == [None, None]
    summary = tally.to_dict()
    assert summary["total"] is None and summary["per_1000_requests"] is None
    assert summary["unpriced_models"] == {} and summary["notes"] == []


def test_cached_tokens_without_a_cached_price_cost_the_input_price() -> None:
    tally, cost = tally_of([("gpt-4o-2024-05-13", 1000, 100, 600)])  # batch 2.5 / 7.5
    assert cost == [pytest.approx((1000 * 2.5 + 100 * 7.5) / 1e6)]
    assert tally.cached_at_input == 1 and "costed at the input price" in tally.notes()[0]


def test_token_counts_past_a_doubles_integers_are_priced_not_a_crash() -> None:
    """A server's 64-bit extremes (beyond 2**53, where Arrow's int64-to-double cast refused:
    the join ended in a traceback) are priced as floats."""
    big = 2**63 - 1
    rows = [("gpt-4o-mini", big, -(2**63), big), ("gpt-4o-mini", 2**53 + 1, big, 0)]
    _, cost = tally_of(rows)  # gpt-4o-mini batch: input 0.075, cached 0.0375, output 0.30
    expected = [(big * 0.0375 - 2**63 * 0.30) / 1e6, (2**53 * 0.075 + big * 0.30) / 1e6]
    assert cost == pytest.approx(expected)


def test_a_users_price_table_is_used(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_bytes(
        orjson.dumps({"as_of": "2031-01", "models": {"mine": {"input": 2, "output": 4}}})
    )
    _, cost = tally_of([("mine", 1_000_000, 1_000_000, 0)], load_prices(path))
    assert cost == [pytest.approx(1.0 + 2.0)]


def test_token_drift_past_64_bits_is_exact() -> None:
    # a server's 64-bit extremes: Arrow's sum wrapped (the reported total was negative)
    tally = CostTally(load_prices())
    tally.estimates(pa.array([8, 8]), pa.array([2**62, 2**62]))
    assert tally.reported_tokens == 2**63 and tally.estimated_tokens == 16


def test_token_drift_against_reported_prompt_tokens() -> None:
    tally = CostTally(load_prices())
    tally.estimates(pa.array([100, 200, None, 50]), pa.array([110, 220, 999, None]))
    assert tally.estimated_tokens == 300 and tally.reported_tokens == 330
    assert tally.drift_percent == 10.0
    assert tally.to_dict()["token_estimate"] == {
        "answers": 2,
        "estimated_input_tokens": 300,
        "reported_prompt_tokens": 330,
        "drift_percent": 10.0,
    }


def test_input_estimates_count_as_stats_does(write: Any) -> None:
    lines = [request("a"), request("b", messages=[{"role": "user", "content": "Hello there"}])]
    good = write(lines, "good.jsonl")
    odd = write([request("c"), {"custom_id": "d", "url": "/v1/chat/completions"}], "odd.jsonl")
    found = input_estimates([good, odd], workers=1)
    counter = TokenCounter()
    assert found[0] is not None
    assert list(found[0]) == [counter.count(r["url"], r["body"]) for r in lines]
    assert found[1] is None  # a line stats skips: the estimates would not line up
