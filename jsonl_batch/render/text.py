"""Renderers: a ``Report`` as text for people or JSON for programs (``--format``), and the
small pieces every renderer shares: ``printable``/``lines`` (what reaches a terminal),
``plural``, ``bar``, ``ProgressLine``, ``ProgressBar``."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from typing import IO

import orjson

from ..rules.problems import CATALOGUE, Problem, Report, plural

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


def report_text(report: Report, per_code: int | None = SHOWN_PER_CODE) -> str:
    """A short summary: the verdict, then problems grouped by code, the first ``per_code``
    of each listed (``None``: all)."""
    out = ReportOutput("text", per_code)
    for p in report.problems:
        out.add(p)
    return "".join(out.chunks(report))


class ReportOutput:
    """A report's text or JSON built while its problems arrive, in bounded memory: each
    listed problem is rendered at once into a temporary file (in memory while small), so a
    million problems cost a few MB. ``add`` each problem, then ``chunks(report)`` yields the
    output, equal to ``report_text(report, per_code)`` or ``report.to_dict()`` of a report
    holding them."""

    def __init__(self, fmt: str = "text", per_code: int | None = SHOWN_PER_CODE) -> None:
        self.fmt, self.per_code = fmt, per_code
        self.spools: dict[str, IO[str]] = {}
        self.listed: dict[str, int] = {}

    def add(self, p: Problem) -> None:
        n = self.listed.get(p.code, 0)
        self.listed[p.code] = n + 1
        if self.fmt == "json":
            key, line = "", orjson.dumps(p.to_dict()).decode()
            if key in self.spools:
                line = "," + line
        elif self.per_code is None or n < self.per_code:
            where = f"line {p.line}" if p.line is not None else "file"
            param = f" [{p.param}]" if p.param else ""
            key, line = p.code, "\n" + printable(f"    {where}{param}: {p.message}")
        else:
            return
        spool = self.spools.get(key)
        if spool is None:
            spool = self.spools[key] = tempfile.SpooledTemporaryFile(  # noqa: SIM115
                SPOOL_BYTES, "w+", encoding="utf-8", newline=""
            )  # closed by chunks()
        spool.write(line)

    def chunks(self, report: Report) -> Iterator[str]:
        """The output, a piece at a time (no final newline); closes the spools."""
        try:
            yield from (self._json(report) if self.fmt == "json" else self._text(report))
        finally:
            self.close()

    def close(self) -> None:
        """Drop what was spooled (``chunks`` does it when done)."""
        for spool in self.spools.values():
            spool.close()

    def _spooled(self, key: str) -> Iterator[str]:
        spool = self.spools.get(key)
        if spool is None:
            return
        spool.seek(0)
        while block := spool.read(SPOOL_BYTES):
            yield block

    def _json(self, report: Report) -> Iterator[str]:
        head, _, tail = orjson.dumps({**report.to_dict(), "problems": []}).partition(
            b'"problems":[]'
        )
        yield (head + b'"problems":[').decode()
        yield from self._spooled("")
        yield ("]" + tail.decode())

    def _text(self, report: Report) -> Iterator[str]:
        s = report.stats
        if report.error:
            yield printable(f"{report.file}: cannot read: {report.error}")
            return
        yield printable(f"{report.file}: {verdict(report)}: {facts(report)}")
        listed = self.listed
        order = sorted(s.counts, key=lambda c: (CATALOGUE[c].severity != "error", c not in listed))
        for code in order:
            total = s.counts[code]
            label = "warning" if CATALOGUE[code].severity == "warning" else "error"
            yield f"\n  {code} ({label}, {total:,}):"
            yield from self._spooled(code)
            shown = listed.get(code, 0)
            if self.per_code is not None:
                shown = min(shown, self.per_code)
            if total > shown:
                yield f"\n    ... and {total - shown:,} more"


SPOOL_BYTES = 1 << 20
"""Rendered problems kept in memory per spool before it moves to a temporary file."""


def verdict(report: Report) -> str:
    """``valid``, ``valid (2 warnings)`` or ``INVALID (3 errors, 1 warning)``."""
    counts = report.stats.counts
    errors = sum(n for c, n in counts.items() if CATALOGUE[c].severity == "error")
    warnings = sum(counts.values()) - errors
    if errors:
        text = f"INVALID ({plural(errors, 'error')}"
        return text + (f", {plural(warnings, 'warning')})" if warnings else ")")
    return f"valid ({plural(warnings, 'warning')})" if warnings else "valid"


def facts(report: Report) -> str:
    """What the file holds: requests, lines, bytes, endpoint, model, tokens, inputs."""
    s = report.stats
    where = ", ".join(x for x in (s.endpoint, s.model) if x)
    text = f"{plural(s.requests, 'request')} in {plural(s.lines, 'line')}, {s.bytes:,} bytes"
    if where:
        text += f"; {where}"
    if s.input_tokens is not None:
        text += f"; ~{s.input_tokens:,} input tokens (estimate)"
    if s.embedding_inputs:
        text += f"; {plural(s.embedding_inputs, 'embedding input')}"
    return text
