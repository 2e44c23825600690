"""What a run actually cost: ``cost_usd`` per answer from its reported usage, and totals.

``CostTally(prices)`` prices a batch of rows at once (``costs(model, prompt_tokens,
completion_tokens, cached_tokens)``, Arrow arrays in, the ``cost_usd`` array out) and keeps
the totals a join summary reports: the cost, the cost per 1,000 requests, the models without
a price (never guessed), and, given the estimates ``stats`` makes from the input lines, how
far the reported prompt tokens drifted from them.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import pyarrow as pa

from .. import compute as pc
from ..lines.reading import Source
from ..tokens.pricing import Price, PriceTable, round_cost

Column: TypeAlias = pa.Array | pa.ChunkedArray
"""An Arrow column, whole or in chunks."""


@dataclass
class CostTally:
    """Costs of a join's answers at batch prices, batch by batch; ``to_dict`` for summaries."""

    prices: PriceTable
    total: float = 0.0
    priced: int = 0
    """Answers with a cost."""
    unpriced: Counter[str] = field(default_factory=Counter)
    """Answers with usage but no price, per model (``"unknown model"`` when none is named)."""
    cached_at_input: int = 0
    """Priced answers whose cached tokens had no cached price (costed at the input price)."""
    estimated_tokens: int = 0
    reported_tokens: int = 0
    """Estimated and reported prompt tokens of the answers that have both."""
    estimated_answers: int = 0

    def costs(
        self,
        model: Column,
        prompt: Column,
        completion: Column,
        cached: Column,
    ) -> pa.Array:
        """The ``cost_usd`` of each row (null without usage or without a price), counted.
        Token counts are taken as floats (Arrow refuses to widen an integer past 2**53)."""
        prompt, completion, cached = (
            pc.cast(c, pa.float64(), safe=False) for c in (prompt, completion, cached)
        )
        input_unit, cached_unit, output_unit, known = self._units(model)
        has_usage = pc.or_(pc.is_valid(prompt), pc.is_valid(completion))
        priced = has_usage if known is None else pc.and_(has_usage, known)
        prompt_in = pc.fill_null(prompt, 0)
        cached_in = pc.max_element_wise(pc.fill_null(cached, 0), 0)  # a server's nonsense
        cached_in = pc.min_element_wise(cached_in, prompt_in)
        out_tokens = pc.fill_null(completion, 0)
        output_cost = pc.if_else(pc.equal(out_tokens, 0), 0.0, pc.multiply(out_tokens, output_unit))
        total = pc.add(
            pc.add(
                pc.multiply(pc.subtract(prompt_in, cached_in), input_unit),
                pc.multiply(cached_in, pc.coalesce(cached_unit, input_unit)),
            ),
            output_cost,
        )
        cost = pc.if_else(priced, pc.divide(total, float(self.prices.per_tokens)), None)
        self._count(model, cost, has_usage, cached_in, cached_unit)
        return cost.combine_chunks() if isinstance(cost, pa.ChunkedArray) else cost

    def _units(self, model: Column) -> tuple[Any, Any, Any, Any]:
        """Each row's price per token of input, cached input and output (null: none), and
        which rows have them (``None``: all the rows' units are as given). Rows that name one
        model (a batch's usual case) get one scalar each, valid where ``model`` is: no
        per-row lookup."""
        low, high = (m.as_py() for m in pc.min_max(model).values())
        if low == high:  # one model (null rows aside), or none
            price = self.prices.price(low)
            known = pc.is_valid(model) if model.null_count else None
            return (*(pa.scalar(u, pa.float64()) for u in _units_of(price)), known)
        models = pc.unique(model).to_pylist()
        prices = [self.prices.price(m) for m in models]
        where = pc.index_in(model, value_set=pa.array(models, pa.string()))
        columns = zip(*(_units_of(p) for p in prices), strict=True)
        return (*(pc.take(pa.array(c, pa.float64()), where) for c in columns), None)

    def _count(
        self,
        model: Column,
        cost: Column,
        has_usage: Column,
        cached: Column,
        cached_unit: pa.Scalar | pa.Array,
    ) -> None:
        self.total += pc.sum(cost).as_py() or 0.0
        self.priced += len(cost) - cost.null_count
        missing = pc.and_(has_usage, pc.is_null(cost))
        if pc.any(missing).as_py():
            names = pc.fill_null(pc.filter(model, missing), "unknown model")
            for row in pc.value_counts(names).to_pylist():
                self.unpriced[row["values"]] += row["counts"]
        at_input = pc.and_(
            pc.and_(pc.is_valid(cost), pc.greater(cached, 0)), pc.is_null(cached_unit)
        )
        self.cached_at_input += pc.sum(at_input).as_py() or 0

    def estimates(self, estimated: Column, reported: Column) -> None:
        """Count input-token estimates (``stats``' counting) against reported prompt tokens;
        rows missing either are left out."""
        both = pc.and_(pc.is_valid(estimated), pc.is_valid(reported))
        self.estimated_answers += pc.sum(both).as_py() or 0
        self.estimated_tokens += exact_sum(pc.filter(estimated, both))
        self.reported_tokens += exact_sum(pc.filter(reported, both))

    @property
    def drift_percent(self) -> float | None:
        """How far reported prompt tokens are above (+) or below (-) the estimate."""
        if not self.estimated_tokens:
            return None
        change = (self.reported_tokens - self.estimated_tokens) / self.estimated_tokens
        return round(100 * change, 2)

    def notes(self) -> list[str]:
        """What a reader of the cost must know, one sentence each."""
        out = []
        if self.unpriced:
            names = ", ".join(f"{m} ({n:,})" for m, n in sorted(self.unpriced.items()))
            out.append(
                f"No price in the price table for {names}: those answers have no cost "
                "(add the models to a price table to cost them)."
            )
        if self.cached_at_input:
            out.append(
                f"{self.cached_at_input:,} answer(s) reported cached tokens of a model "
                "without a cached-input price: costed at the input price."
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        per_1000 = 1000 * self.total / self.priced if self.priced else None
        drift = None
        if self.estimated_answers:
            drift = {
                "answers": self.estimated_answers,
                "estimated_input_tokens": self.estimated_tokens,
                "reported_prompt_tokens": json_int(self.reported_tokens),
                "drift_percent": self.drift_percent,
            }
        return {
            "currency": self.prices.currency,
            "total": round_cost(self.total) if self.priced else None,
            "per_1000_requests": None if per_1000 is None else round_cost(per_1000),
            "priced_answers": self.priced,
            "unpriced_models": dict(sorted(self.unpriced.items())),
            "token_estimate": drift,
            "prices": self.prices.describe(),
            "notes": self.notes(),
        }


def _units_of(price: Price | None) -> tuple[float | None, float | None, float | None]:
    """A price's input, cached-input and output units (``None``: no price)."""
    return (None, None, None) if price is None else (price.input, price.cached_input, price.output)


def input_estimates(
    sources: Sequence[Source], workers: int | None = None
) -> list[array[int] | None]:
    """Per input file, its requests' estimated input tokens in line order, counted as
    ``stats`` counts them (worker processes for large files); ``None`` for a file with a
    line ``stats`` cannot count (the estimates would not line up) or that cannot be read.
    Needs a token counter, the ``tokens`` extra (bpe-openai; ``TokensUnavailable``
    otherwise)."""
    from ..tokens.stats import file_stats

    found = file_stats(*sources, workers=workers)
    return [
        f.tally.tokens if f.error is None and not f.tally.skipped else None for f in found.files
    ]


def json_int(n: int) -> int | float:
    """``n`` as the summary's JSON gives it: orjson writes integers in [-2**63, 2**64)
    only, so an exact total (``exact_sum``) beyond that range is given as a float (its
    nearest one: a server's extremes summed, not a real count)."""
    return n if -(1 << 63) <= n < 1 << 64 else float(n)


def exact_sum(column: pa.ChunkedArray | pa.Array) -> int:
    """The sum of an integer column, exact: Arrow's wraps past 2**63 (a server's 64-bit
    extremes), so a column whose values could reach that is summed in Python."""
    low, high = pc.min_max(column).values()
    if low.as_py() is None:
        return 0
    if max(-low.as_py(), high.as_py()) < (1 << 63) // len(column):
        return pc.sum(column).as_py() or 0
    return sum(pc.drop_null(column).to_pylist())
