"""Renderers: a ``Report`` as text for people or JSON for programs (``--format``)."""

from __future__ import annotations

from collections import defaultdict

import orjson

from .problems import CATALOGUE, Problem, Report

SHOWN_PER_CODE = 5


def report_json(report: Report) -> str:
    """One line of JSON, equal to ``report.to_dict()``."""
    return orjson.dumps(report.to_dict()).decode()


def report_text(report: Report) -> str:
    """A short summary: the verdict, then problems grouped by code, first lines shown."""
    s = report.stats
    if report.error:
        return f"{report.file}: cannot read: {report.error}"
    where = ", ".join(x for x in (s.endpoint, s.model) if x)
    facts = f"{s.requests:,} request{'s' if s.requests != 1 else ''}"
    facts += f" in {s.lines:,} line{'s' if s.lines != 1 else ''}, {s.bytes:,} bytes"
    if where:
        facts += f"; {where}"
    if s.input_tokens is not None:
        facts += f"; ~{s.input_tokens:,} input tokens (estimate)"
    if s.embedding_inputs:
        facts += f"; {_plural(s.embedding_inputs, 'embedding input')}"
    errors = sum(n for c, n in s.counts.items() if CATALOGUE[c].severity == "error")
    warnings = sum(s.counts.values()) - errors
    if errors:
        verdict = f"INVALID ({_plural(errors, 'error')}"
        verdict += f", {_plural(warnings, 'warning')})" if warnings else ")"
    else:
        verdict = f"valid ({_plural(warnings, 'warning')})" if warnings else "valid"
    out = [f"{report.file}: {verdict}: {facts}"]
    grouped: dict[str, list[Problem]] = defaultdict(list)
    for p in report.problems:
        grouped[p.code].append(p)
    order = sorted(s.counts, key=lambda c: (CATALOGUE[c].severity != "error", c not in grouped))
    for code in order:
        total = s.counts[code]
        label = "warning" if CATALOGUE[code].severity == "warning" else "error"
        out.append(f"  {code} ({label}, {total:,}):")
        shown = grouped.get(code, [])[:SHOWN_PER_CODE]
        for p in shown:
            where = f"line {p.line}" if p.line is not None else "file"
            param = f" [{p.param}]" if p.param else ""
            out.append(f"    {where}{param}: {p.message}")
        if total > len(shown):
            out.append(f"    ... and {total - len(shown):,} more")
    return "\n".join(out)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'s' if n != 1 else ''}"
