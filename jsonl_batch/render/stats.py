"""Renderers of token and cost estimates (``jsonl-batch stats``): text for people, JSON for
programs (equal to ``BatchStats.to_dict()``)."""

from __future__ import annotations

from typing import Any

import orjson

from ..tokens.stats import BatchStats
from .text import lines, plural


def stats_json(stats: BatchStats) -> str:
    """One line of JSON, equal to ``stats.to_dict()``."""
    return orjson.dumps(stats.to_dict()).decode()


def stats_text(stats: BatchStats) -> str:
    """Per file (and the total of several): requests, tokens, cost; then where prices are from.

    Files that could not be read are left out (their ``error`` names the file: the CLI prints
    it once, on stderr); with none readable the text is empty.
    """
    data = stats.to_dict()
    read = [found for found in data["files"] if not found["error"]]
    if not read:
        return ""
    out: list[str] = []
    for found in read:
        out.extend(_file_text(found))
    if len(read) > 1:
        out.extend(_file_text(data["total"], f"total of {len(read)} files"))
    p = data["prices"]
    where = f"{p['file']}, " if p["file"] else ""
    out.append(
        f"Estimates: tokens counted as tiktoken counts them; batch prices = standard prices as of "
        f"{p['as_of']} x {p['batch_multiplier']:g} ({where}{p['source']})."
    )
    return lines(out)


def _file_text(s: dict[str, Any], name: str | None = None) -> list[str]:
    where = "; ".join(
        x
        for x in (s["endpoint"] or ", ".join(s["endpoints"]), s["model"] or ", ".join(s["models"]))
        if x
    )
    head = f"{name or s['file']}: {plural(s['requests'], 'request')}"
    out = [f"{head}; {where}" if where else head]
    t = s["input_tokens"]
    if t["mean"] is not None:
        out.append(
            f"  input tokens    {t['sum']:>14,}  (per request: mean {t['mean']:,}, "
            f"p50 {t['p50']:,}, p95 {t['p95']:,}, max {t['max']:,})"
        )
    ceiling = s["output_ceiling"]
    if ceiling["sum"] or ceiling["requests_without"]:
        out.append(f"  output ceiling  {ceiling['sum']:>14,}")
    if s["embedding_inputs"]:
        out.append(f"  embedding inputs{s['embedding_inputs']:>14,}")
    cost = s["cost"]
    if cost["input"] is not None:
        cur = cost["currency"]
        line = f"  batch cost      {_money(cost['input'], cur)} input"
        if cost["output_ceiling"] is not None and (ceiling["sum"] or ceiling["requests_without"]):
            total = cost["input"] + cost["output_ceiling"]
            line += f" + up to {_money(cost['output_ceiling'], cur)} output"
            line += f" = up to {_money(total, cur)}"
        out.append(line)
    out.extend(f"  note: {note}" for note in s["notes"])
    out.extend(f"  {p['severity']}: {p['message']} [{p['code']}]" for p in s["problems"])
    return out


def _money(value: float, currency: str) -> str:
    """``$12.35``, ``$0.0002``, ``<$0.0001`` (other currencies: ``12.35 EUR``)."""
    sign, unit = ("$", "") if currency == "USD" else ("", f" {currency}")
    if value == 0:
        return f"{sign}0{unit}"
    if value < 0.0001:
        return f"<{sign}0.0001{unit}"
    return f"{sign}{value:,.2f}{unit}" if value >= 1 else f"{sign}{value:.4f}{unit}"
