"""Model prices and batch cost arithmetic, from a JSON price table.

The package ships ``data/prices.json`` (OpenAI's standard prices per 1M text tokens, with the
date they were read and where from); ``load_prices(path)`` reads a user's table of the same
shape instead. Batch prices are the standard ones times ``batch_multiplier`` (0.5), unless an
entry gives ``batch_input``/``batch_output`` itself. A model missing from the table has no
price: costs are never guessed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import orjson

from .errors import UsageError

_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


class PriceError(UsageError):
    """A price table cannot be read or has the wrong shape."""


@dataclass(frozen=True)
class Price:
    """Batch prices of one model in the table's currency per ``per_tokens`` tokens."""

    input: float
    output: float | None
    """``None`` for models without output tokens (embeddings)."""


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

    def describe(self) -> dict[str, Any]:
        """Where the prices come from, for reports."""
        return {
            "as_of": self.as_of,
            "source": self.source,
            "file": self.file,
            "currency": self.currency,
            "batch_multiplier": self.batch_multiplier,
        }


def load_prices(path: str | os.PathLike[str] | None = None) -> PriceTable:
    """Read a price table: ``path``, or the packaged ``data/prices.json``."""
    try:
        if path is None:
            data = (files(__package__) / "data" / "prices.json").read_bytes()
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
    models = {}
    for name, entry in table["models"].items():
        standard_in = entry.get("input") if type(entry) is dict else None
        if not _number(standard_in):
            raise PriceError(f'{where}: model {name!r} needs a number "input" (>= 0)')
        standard_out = entry.get("output")
        if standard_out is not None and not _number(standard_out):
            raise PriceError(f'{where}: model {name!r} needs a number "output" (>= 0) or none')
        batch_in = entry.get("batch_input", standard_in * multiplier)
        batch_out = entry.get("batch_output")
        if batch_out is None and standard_out is not None:
            batch_out = standard_out * multiplier
        if not _number(batch_in) or (batch_out is not None and not _number(batch_out)):
            raise PriceError(f"{where}: model {name!r} has a non-numeric batch price")
        models[name] = Price(batch_in, batch_out)
    return PriceTable(
        models=models,
        as_of=table["as_of"],
        source=str(table.get("source") or file or ""),
        batch_multiplier=multiplier,
        currency=str(table.get("currency", "USD")),
        per_tokens=per_tokens,
        file=file,
    )


def _number(value: Any) -> bool:
    return type(value) in (int, float) and value >= 0
