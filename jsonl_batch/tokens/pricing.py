"""Model prices and batch cost arithmetic, from a JSON price table.

The package ships ``data/prices.json``: providers' standard prices per 1M text tokens (input,
cached input, output), each entry with the date it was read and where from, and each
provider's batch discount (``providers.<name>.batch_multiplier``); ``load_prices(path)`` reads
a user's table of the same shape instead (a table without ``providers`` uses its top-level
``batch_multiplier``, 0.5 by default). Batch prices are the standard ones times the
multiplier, unless an entry gives ``batch_input``/``batch_cached_input``/``batch_output``
itself. A model missing from the table has no price: costs are never guessed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

import orjson

from ..errors import UsageError

_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


class PriceError(UsageError):
    """A price table cannot be read or has the wrong shape."""

    code = "price_error"


@dataclass(frozen=True)
class Price:
    """Batch prices of one model in the table's currency per ``per_tokens`` tokens."""

    input: float
    output: float | None
    """``None`` for models without output tokens (embeddings)."""
    cached_input: float | None = None
    """Cached input tokens; ``None`` when the table lists no cached price (they are costed
    at ``input``)."""
    provider: str | None = field(default=None, compare=False)
    as_of: str | None = field(default=None, compare=False)
    source: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class PriceTable:
    """Batch prices by model name, with where and when the prices were read."""

    models: dict[str, Price]
    as_of: str
    source: str
    batch_multiplier: float = 0.5
    currency: str = "USD"
    per_tokens: int = 1_000_000
    file: str | None = None
    """The table's file, ``None`` for the packaged one."""
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per provider: ``batch_multiplier``, ``as_of``, ``source`` (its pricing page)."""

    def price(self, model: str | None) -> Price | None:
        """The model's batch price: its own entry, else its alias's for a dated snapshot."""
        if not model:
            return None
        found = self.models.get(model)
        if found is None and not model.startswith("ft:"):  # a fine-tune has its own prices
            name = model.lower()
            found = self.models.get(name) or self.models.get(_SNAPSHOT.sub("", name))
        return found

    def cost(self, price: Price, tokens: int, output: bool = False) -> float | None:
        """What ``tokens`` input (or output) tokens cost at batch prices; ``None``: unpriced."""
        unit = price.output if output else price.input
        if unit is None:
            return 0.0 if tokens == 0 else None
        return tokens * unit / self.per_tokens

    def request_cost(
        self, price: Price, prompt: int, completion: int = 0, cached: int = 0
    ) -> float | None:
        """What one answer cost at batch prices: ``prompt`` input tokens of which ``cached``
        were cached, and ``completion`` output tokens (reasoning included); ``None`` when the
        table has no output price for output tokens."""
        cached = min(max(cached, 0), prompt)
        unit = price.input if price.cached_input is None else price.cached_input
        total = (prompt - cached) * price.input + cached * unit
        if completion:
            if price.output is None:
                return None
            total += completion * price.output
        return total / self.per_tokens

    def describe(self) -> dict[str, Any]:
        """Where the prices come from, for reports."""
        return {
            "as_of": self.as_of,
            "source": self.source,
            "file": self.file,
            "currency": self.currency,
            "batch_multiplier": self.batch_multiplier,
            "providers": self.providers,
        }


def load_prices(path: str | os.PathLike[str] | None = None) -> PriceTable:
    """Read a price table: ``path``, or the packaged ``data/prices.json``."""
    try:
        if path is None:
            data = (files("jsonl_batch") / "data" / "prices.json").read_bytes()
        else:
            with open(path, "rb") as handle:
                data = handle.read()
        table = orjson.loads(data)
    except OSError as exc:
        raise PriceError(f"cannot read price table {path}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise PriceError(f"price table {path} is not valid JSON: {exc}") from None
    return _parse(table, None if path is None else os.fspath(path))


def _parse(table: Any, file: str | None) -> PriceTable:
    where = f"price table {file or 'data/prices.json'}"
    if type(table) is not dict or type(table.get("models")) is not dict:
        raise PriceError(f'{where}: expected an object with "models": {{name: {{"input": ...}}}}')
    if type(table.get("as_of")) is not str:
        raise PriceError(f'{where}: "as_of" (the date the prices were read) is required')
    multiplier = table.get("batch_multiplier", 0.5)
    per_tokens = table.get("per_tokens", 1_000_000)
    if not _number(multiplier) or type(per_tokens) is not int or per_tokens <= 0:
        raise PriceError(f'{where}: "batch_multiplier" must be a number, "per_tokens" an integer')
    source = str(table.get("source") or file or "")
    providers = _providers(table.get("providers", {}), where, table["as_of"], source)
    models = {}
    for name, entry in table["models"].items():
        models[name] = _price(name, entry, where, providers, multiplier, table["as_of"], source)
    return PriceTable(
        models=models,
        as_of=table["as_of"],
        source=source,
        batch_multiplier=multiplier,
        currency=str(table.get("currency", "USD")),
        per_tokens=per_tokens,
        file=file,
        providers=providers,
    )


def _providers(data: Any, where: str, as_of: str, source: str) -> dict[str, dict[str, Any]]:
    if type(data) is not dict:
        raise PriceError(f'{where}: "providers" must be an object of provider names')
    out = {}
    for name, entry in data.items():
        if type(entry) is not dict or not _number(entry.get("batch_multiplier")):
            raise PriceError(f'{where}: provider {name!r} needs a number "batch_multiplier"')
        out[name] = {"as_of": as_of, "source": source} | entry
    return out


def _price(
    name: str,
    entry: Any,
    where: str,
    providers: dict[str, dict[str, Any]],
    multiplier: float,
    as_of: str,
    source: str,
) -> Price:
    """One model's batch prices from its table entry (standard prices times the multiplier)."""
    if type(entry) is not dict or not _number(entry.get("input")):
        raise PriceError(f'{where}: model {name!r} needs a number "input" (>= 0)')
    provider = entry.get("provider")
    if provider is not None:
        if provider not in providers:
            raise PriceError(f"{where}: model {name!r} names provider {provider!r}, not listed")
        multiplier = providers[provider]["batch_multiplier"]
        as_of, source = providers[provider]["as_of"], providers[provider]["source"]
    batch: dict[str, float | None] = {}
    for kind in ("input", "cached_input", "output"):
        standard = entry.get(kind)
        if standard is not None and not _number(standard):
            raise PriceError(f'{where}: model {name!r} needs a number "{kind}" (>= 0) or none')
        value = entry.get(f"batch_{kind}", None if standard is None else standard * multiplier)
        if value is not None and not _number(value):
            raise PriceError(f"{where}: model {name!r} has a non-numeric batch price")
        batch[kind] = value
    batch_input = batch["input"]
    if batch_input is None:
        raise PriceError(f"{where}: model {name!r} has no batch input price")
    return Price(
        batch_input,
        batch["output"],
        batch["cached_input"],
        provider,
        str(entry.get("as_of", as_of)),
        str(entry.get("source", source)),
    )


def round_cost(value: float) -> float:
    """A cost rounded to 6 significant digits, for reports."""
    return float(f"{value:.6g}")


def _number(value: Any) -> bool:
    return type(value) in (int, float) and value >= 0
