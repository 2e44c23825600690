"""The price table: packaged data, lookups, overrides and batch cost arithmetic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import request

from jsonl_batch.tokens.counting import TokenCounter
from jsonl_batch.tokens.pricing import Price, PriceError, load_prices
from jsonl_batch.tokens.stats import file_stats


@pytest.fixture(scope="module")
def table() -> Any:
    return load_prices()


def test_packaged_table_says_when_and_where(table: Any) -> None:
    assert table.file is None and table.as_of == "2025-08"
    assert table.source.startswith("https://") and "openai.com" in table.source
    assert table.batch_multiplier == 0.5 and table.currency == "USD"


@pytest.mark.parametrize(
    ("model", "price"),
    [
        ("gpt-4o-mini", Price(0.075, 0.3, 0.0375)),  # standard 0.15 / 0.60 / 0.075, halved
        ("gpt-4o-mini-2024-07-18", Price(0.075, 0.3, 0.0375)),  # a snapshot: its alias's
        ("gpt-4o-2024-05-13", Price(2.5, 7.5)),  # unless it is listed itself (no cached price)
        ("gpt-4o", Price(1.25, 5.0, 0.625)),
        ("gpt-5-mini", Price(0.125, 1.0, 0.0125)),
        ("llama-3.1-8b-instant", Price(0.025, 0.04)),  # Groq: its own batch discount
        ("text-embedding-3-small", Price(0.01, None)),
        ("ft:gpt-4o-mini-2024-07-18:acme::x", None),  # fine-tunes have their own prices
        ("gpt-4o-mini-2099", None),
        ("my-azure-deployment", None),
        (None, None),
    ],
)
def test_lookup(table: Any, model: str | None, price: Price | None) -> None:
    assert table.price(model) == price


def test_every_packaged_price_has_a_source_and_a_date(table: Any) -> None:
    assert set(table.providers) >= {"openai", "groq", "mistral"}
    for name, price in table.models.items():
        assert price.provider in table.providers, name
        assert price.source and price.source.startswith("https://"), name
        assert price.as_of and price.as_of.startswith("20"), name
    for provider in table.providers.values():
        assert provider["batch_multiplier"] == 0.5 and provider["source"].startswith("https://")


@pytest.mark.parametrize(
    ("model", "prompt", "completion", "cached", "expected"),
    [
        # gpt-4o-mini at batch prices: input 0.075, cached 0.0375, output 0.30 per 1M
        ("gpt-4o-mini", 1000, 500, 200, (800 * 0.075 + 200 * 0.0375 + 500 * 0.30) / 1e6),
        ("gpt-4o-mini", 1000, 500, 0, (1000 * 0.075 + 500 * 0.30) / 1e6),
        # gpt-5: 0.625 / 0.0625 / 5.00; reasoning tokens are in the completion tokens
        ("gpt-5", 2_000_000, 1_000_000, 1_000_000, 0.625 + 0.0625 + 5.0),
        # no cached price listed: cached tokens cost the input price
        ("gpt-4o-2024-05-13", 1000, 0, 400, 1000 * 2.5 / 1e6),
        # embeddings: input only
        ("text-embedding-3-small", 1_000_000, 0, 0, 0.01),
        # more cached than prompt tokens (a server's mistake) is capped at the prompt
        ("gpt-4o", 100, 0, 500, 100 * 0.625 / 1e6),
    ],
)
def test_request_cost_against_hand_computed_figures(
    table: Any, model: str, prompt: int, completion: int, cached: int, expected: float
) -> None:
    assert table.request_cost(table.price(model), prompt, completion, cached) == pytest.approx(
        expected, rel=1e-12
    )


def test_request_cost_without_an_output_price_is_none(table: Any) -> None:
    assert table.request_cost(table.price("text-embedding-3-small"), 10, 5) is None


def test_cost_arithmetic(table: Any) -> None:
    price = table.price("gpt-4o")
    assert table.cost(price, 1_000_000) == 1.25
    assert table.cost(price, 2_000_000, output=True) == 10.0
    embeddings = table.price("text-embedding-3-large")
    assert table.cost(embeddings, 1_000_000) == 0.065
    assert table.cost(embeddings, 0, output=True) == 0.0
    assert table.cost(embeddings, 5, output=True) is None


def write_table(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "prices.json"
    path.write_bytes(data if isinstance(data, bytes) else orjson.dumps(data))
    return path


def test_a_users_table_replaces_the_packaged_one(tmp_path: Path) -> None:
    path = write_table(
        tmp_path,
        {
            "as_of": "2031-01-01",
            "models": {
                "my-deployment": {"input": 4, "output": 8},
                "other": {"input": 1, "output": 2, "batch_input": 0.8, "batch_output": 1.5},
            },
        },
    )
    table = load_prices(path)
    assert table.file == str(path) and table.source == str(path)
    assert table.price("my-deployment") == Price(2.0, 4.0)
    assert table.price("other") == Price(0.8, 1.5)
    assert table.price("other").source == str(path)


def test_a_users_table_with_providers(tmp_path: Path) -> None:
    path = write_table(
        tmp_path,
        {
            "as_of": "2031-01",
            "providers": {"cheap": {"batch_multiplier": 0.25, "source": "https://x.test/p"}},
            "models": {
                "m": {"provider": "cheap", "input": 4, "cached_input": 2, "output": 8},
                "n": {"input": 4, "output": 8, "batch_cached_input": 1, "as_of": "2031-02"},
            },
        },
    )
    table = load_prices(path)
    assert table.price("m") == Price(1.0, 2.0, 0.5)
    assert table.price("m").source == "https://x.test/p" and table.price("m").as_of == "2031-01"
    assert table.price("n") == Price(2.0, 4.0, 1) and table.price("n").as_of == "2031-02"
    assert table.price("gpt-4o") is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{nope", "not valid JSON"),
        ({"models": {}}, '"as_of"'),
        ({"as_of": "x", "models": []}, '"models"'),
        ({"as_of": "x", "models": {"m": {"output": 1}}}, 'needs a number "input"'),
        ({"as_of": "x", "models": {"m": {"input": "1"}}}, "needs a number"),
        ({"as_of": "x", "models": {"m": {"input": 1, "output": -1}}}, 'number "output"'),
        ({"as_of": "x", "batch_multiplier": "half", "models": {}}, "batch_multiplier"),
        ({"as_of": "x", "providers": {"p": {}}, "models": {}}, "batch_multiplier"),
        ({"as_of": "x", "providers": [], "models": {}}, '"providers"'),
        ({"as_of": "x", "models": {"m": {"input": 1, "provider": "p"}}}, "not listed"),
        ({"as_of": "x", "models": {"m": {"input": 1, "cached_input": "1"}}}, "cached_input"),
    ],
)
def test_bad_tables_are_refused(tmp_path: Path, data: Any, message: str) -> None:
    with pytest.raises(PriceError, match=message):
        load_prices(write_table(tmp_path, data))


def test_a_missing_table_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PriceError, match="cannot read"):
        load_prices(tmp_path / "missing.json")


def test_file_cost_is_tokens_times_batch_price(write: Any) -> None:
    lines = [request(f"r-{i}", max_tokens=100) for i in range(3)]
    stats = file_stats(write(lines)).files[0].to_dict()
    per_request = TokenCounter().count(lines[0]["url"], lines[0]["body"])
    assert stats["input_tokens"]["sum"] == 3 * per_request
    assert stats["output_ceiling"] == {"sum": 300, "requests_without": 0}
    assert stats["cost"]["input"] == pytest.approx(3 * per_request * 0.075 / 1e6)
    assert stats["cost"]["output_ceiling"] == pytest.approx(300 * 0.3 / 1e6)
    assert stats["cost"]["unpriced_models"] == [] and stats["notes"] == []


def test_an_unknown_model_gets_tokens_and_no_cost(write: Any) -> None:
    stats = file_stats(write([request(model="my-deployment")])).files[0].to_dict()
    assert stats["input_tokens"]["sum"] > 0
    assert stats["cost"]["input"] is None and stats["cost"]["unpriced_models"] == ["my-deployment"]
    assert any("No price" in note and "price table of your own" in note for note in stats["notes"])


def test_mixed_models_cost_the_priced_ones_and_name_the_rest(write: Any) -> None:
    path = write([request("a", max_tokens=10), request("b", model="mystery", max_tokens=10)])
    cost = file_stats(path).files[0].to_dict()["cost"]
    assert cost["output_ceiling"] == pytest.approx(10 * 0.3 / 1e6)
    assert cost["unpriced_models"] == ["mystery"]
