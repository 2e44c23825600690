"""Renderers: a ``Report`` as text for people or JSON for programs (``--format``), and the
small pieces every renderer shares: ``printable``/``lines`` (what reaches a terminal),
``plural``, ``bar``, ``ProgressLine``, ``ProgressBar``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import IO

import orjson

from .problems import CATALOGUE, Problem, Report

SHOWN_PER_CODE = 5
BAR_WIDTH = 30


_CONTROLS = [*range(0x20), *range(0x7F, 0xA0), 0x200E, 0x200F, *range(0x202A, 0x202F)]
_ESCAPES = {c: repr(chr(c))[1:-1] for c in [*_CONTROLS, *range(0x2066, 0x206A)]}


def printable(text: str) -> str:
    """``text`` with control characters (ESC, CR, LF, tab, C1, bidi overrides) escaped as
    Python does (``\\x1b``, ``\\r``, ``\\n``, ``\\u202e``): values from a file or a
    server can neither move the cursor, recolour the terminal nor forge a line."""
    return text.translate(_ESCAPES)


def lines(out: Iterable[str]) -> str:
    """Text output: each line made ``printable``, joined by newlines. Every text renderer
    ends with it."""
    return "\n".join(line.translate(_ESCAPES) for line in out)


def plural(n: int, word: str) -> str:
    """``1 request``, ``0 requests``, ``2,000 requests``."""
    return f"{n:,} {word}{'s' if n != 1 else ''}"


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """``[#####-----]``: ``done`` out of ``total`` in ``width`` characters (empty for no total)."""
    filled = min(width, width * max(done, 0) // total) if total > 0 else 0
    return f"[{'#' * filled}{'-' * (width - filled)}]"


class ProgressLine:
    """One line redrawn in place on a terminal (for progress bars on stderr): ``draw(text)``
    replaces it, ``close()`` ends it with a newline if anything was drawn."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.drawn = False

    def draw(self, text: str) -> None:
        self.stream.write(f"\r{text}\x1b[K")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


class ProgressBar:
    """``label [#####-----]  45%`` on a terminal, for work of a known size (bytes): ``update(n)``
    adds ``n`` units done (redrawing when the percentage moves), ``close()`` ends the line."""

    def __init__(self, stream: IO[str], total: int, label: str) -> None:
        self.line = ProgressLine(stream)
        self.total, self.label = total, label
        self.done, self.shown = 0, -1

    def update(self, n: int) -> None:
        self.done += n
        percent = min(100, 100 * self.done // self.total) if self.total > 0 else 100
        if percent != self.shown:
            self.shown = percent
            self.line.draw(f"{self.label} {bar(self.done, self.total)} {percent:3d}%")

    def close(self) -> None:
        self.line.close()


class SizedProgress:
    """A ``ProgressBar`` fed ``(done, total)`` calls, drawn once the total is known."""

    def __init__(self, stream: IO[str], label: str) -> None:
        self.stream, self.label = stream, label
        self.bar: ProgressBar | None = None

    def __call__(self, done: int, total: int | None) -> None:
        if self.bar is None:
            if total is None:
                return
            self.bar = ProgressBar(self.stream, total, self.label)
        self.bar.update(max(0, done - self.bar.done))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def report_json(report: Report) -> str:
    """One line of JSON, equal to ``report.to_dict()``."""
    return orjson.dumps(report.to_dict()).decode()


def report_text(report: Report) -> str:
    """A short summary: the verdict, then problems grouped by code, first lines shown."""
    s = report.stats
    if report.error:
        return printable(f"{report.file}: cannot read: {report.error}")
    where = ", ".join(x for x in (s.endpoint, s.model) if x)
    facts = f"{s.requests:,} request{'s' if s.requests != 1 else ''}"
    facts += f" in {s.lines:,} line{'s' if s.lines != 1 else ''}, {s.bytes:,} bytes"
    if where:
        facts += f"; {where}"
    if s.input_tokens is not None:
        facts += f"; ~{s.input_tokens:,} input tokens (estimate)"
    if s.embedding_inputs:
        facts += f"; {plural(s.embedding_inputs, 'embedding input')}"
    errors = sum(n for c, n in s.counts.items() if CATALOGUE[c].severity == "error")
    warnings = sum(s.counts.values()) - errors
    if errors:
        verdict = f"INVALID ({plural(errors, 'error')}"
        verdict += f", {plural(warnings, 'warning')})" if warnings else ")"
    else:
        verdict = f"valid ({plural(warnings, 'warning')})" if warnings else "valid"
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
    return lines(out)
