"""Token and cost estimates of batch input files: ``file_stats(*paths) -> BatchStats``.

Every line the request core (``rules.requests.read_request``) finds ``countable`` (an
object with a batch endpoint ``url`` and a ``body`` object) is counted; other lines are
skipped and counted (``jsonl-batch validate`` says what is wrong with them).
Counting costs ~8x parsing on one core, so large files are cut into line-aligned chunks
counted by worker processes (as ``validation`` does; 1.9x faster on two idle cores). Costs
are estimates at batch prices from a ``PriceTable``.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from orjson import JSONDecodeError, loads

from ..lines.parallel import LineChunks
from ..lines.reading import (
    ReadError,
    Source,
    explain_invalid,
    open_source,
    source_name,
    strip_ending,
)
from ..rules.problems import Problem, problem
from ..rules.profiles import PROFILES, Profile, check_endpoint, get_profile
from ..rules.requests import Context, RequestFacts, read_request
from .counting import TokenCounter, output_ceiling
from .images import UNSIZED
from .pricing import PriceTable, load_prices, round_cost

PARALLEL_MIN_BYTES = 8 << 20
"""Files at least this big are counted by worker processes (when there are cores to use)."""
CHUNK_BYTES = 4 << 20
BLOCK_LINES = 1024
Progress = Callable[[int], None]
"""Called with the number of bytes just counted."""


@dataclass
class Tally:
    """Raw counts over some lines; tallies of chunks and files add up (``add``)."""

    lines: int = 0
    bytes: int = 0
    skipped: int = 0
    tokens: array[int] = field(default_factory=lambda: array("q"))
    groups: dict[tuple[str, str | None], list[int]] = field(default_factory=dict)
    """(url, model) -> [requests, input tokens, output ceiling, requests without a ceiling]"""
    embedding_inputs: int = 0
    images: int = 0
    unsized_images: int = 0
    uncounted_parts: int = 0
    first_skipped: tuple[int, str] | None = None
    """The first skipped line (1-based, among these lines) and why it was skipped."""

    def add(self, other: Tally) -> None:
        if self.first_skipped is None and other.first_skipped is not None:
            line, why = other.first_skipped
            self.first_skipped = (self.lines + line, why)
        self.lines += other.lines
        self.bytes += other.bytes
        self.skipped += other.skipped
        self.tokens.extend(other.tokens)
        for key, counts in other.groups.items():
            mine = self.groups.setdefault(key, [0, 0, 0, 0])
            for i, n in enumerate(counts):
                mine[i] += n
        self.embedding_inputs += other.embedding_inputs
        self.images += other.images
        self.unsized_images += other.unsized_images
        self.uncounted_parts += other.uncounted_parts


def count_lines(
    counter: TokenCounter,
    lines: Iterable[bytes],
    ctx: Context | None = None,
    model: str | None = None,
) -> Tally:
    """Count raw lines (endings may be kept) into a ``Tally``: the hot loop. ``ctx`` reads
    the lines in its profile's shape (``{custom_id, body}`` lines get its endpoint);
    ``model`` is the model of requests whose body names none."""
    tally = Tally()
    tokens, groups = tally.tokens, tally.groups
    before = counter.images, counter.unsized_images, counter.uncounted_parts
    n = size = skipped = inputs = 0
    for raw in lines:
        n += 1
        size += len(raw)
        try:
            req = loads(raw)
        except JSONDecodeError as exc:
            skipped += 1
            if tally.first_skipped is None:
                tally.first_skipped = (n, _not_json(strip_ending(raw), exc))
            continue
        facts = read_request(req, ctx)
        if not isinstance(facts, RequestFacts) or not facts.countable:
            skipped += 1
            if tally.first_skipped is None:
                tally.first_skipped = (n, skip_reason(facts, ctx))
            continue
        url, body, named = facts.url, facts.body, facts.model or model
        assert url is not None and body is not None  # (countable)
        used = counter.count(url, body, model)
        tokens.append(used)
        group = groups.get((url, named))
        if group is None:
            group = groups[url, named] = [0, 0, 0, 0]
        group[0] += 1
        group[1] += used
        ceiling = output_ceiling(url, body)
        if ceiling is None:
            group[3] += 1
        else:
            group[2] += ceiling
        inputs += facts.embedding_inputs
    tally.lines, tally.bytes, tally.skipped, tally.embedding_inputs = n, size, skipped, inputs
    tally.images = counter.images - before[0]
    tally.unsized_images = counter.unsized_images - before[1]
    tally.uncounted_parts = counter.uncounted_parts - before[2]
    return tally


def _not_json(raw: bytes, exc: JSONDecodeError) -> str:
    """Why a line is not JSON; a NUL byte says the file is binary."""
    if b"\x00" in raw:
        return "This line holds a NUL byte: the file is binary, not JSONL."
    return explain_invalid(raw, exc)


def skip_reason(facts: RequestFacts | tuple[str, str, str | None], ctx: Context | None) -> str:
    """Why a parsed line is not counted, in words a user can act on."""
    if not isinstance(facts, RequestFacts):
        return facts[1]  # the core's finding: not a JSON object
    if facts.url is None:
        if facts.body is not None and (ctx is None or ctx.endpoint is None):
            shaped = ", ".join(p.name for p in PROFILES.values() if p.line_shape == "body")
            return (
                "This line is {custom_id, body}, with no url: the shape of providers that take "
                f"the endpoint with the job; count it with such a profile ({shaped}) and the "
                "endpoint."
            )
        return "This line has no string 'url', so it is not a request."
    if facts.body is None:
        return "This line has no 'body' object."
    return f"This line's url {facts.url!r} is not a batch endpoint."


@dataclass
class FileStats:
    """Estimates for one file (or the total of several): ``to_dict()`` is the JSON form."""

    file: str
    tally: Tally
    prices: PriceTable
    error: str | None = None
    problems: list[Problem] = field(default_factory=list)
    """What makes the estimate meaningless (``empty_file``: nothing in it is a request)."""

    def to_dict(self) -> dict[str, Any]:
        """Counts, token summary, output ceiling, cost, notes and problems (``--format
        json``)."""
        t = self.tally
        requests = len(t.tokens)
        endpoints = sorted({url for url, _ in t.groups})
        models = sorted({m for _, m in t.groups if m is not None})
        ceiling = sum(g[2] for g in t.groups.values())
        unlimited = sum(g[3] for g in t.groups.values())
        return {
            "file": self.file,
            "error": self.error,
            "lines": t.lines,
            "bytes": t.bytes,
            "requests": requests,
            "skipped_lines": t.skipped,
            "endpoint": endpoints[0] if len(endpoints) == 1 else None,
            "model": models[0] if len(models) == 1 else None,
            "endpoints": endpoints,
            "models": models,
            "input_tokens": summarize(t.tokens),
            "output_ceiling": {"sum": ceiling, "requests_without": unlimited},
            "embedding_inputs": t.embedding_inputs,
            "images": {"count": t.images, "unsized": t.unsized_images},
            "uncounted_parts": t.uncounted_parts,
            "cost": (cost := self._cost()),
            "notes": self._notes(unlimited, cost["unpriced_models"]),
            "problems": [p.to_dict() for p in self.problems],
        }

    def _notes(self, unlimited: int, unpriced: list[str]) -> list[str]:
        """What a reader of the estimate must know, one sentence each."""
        t = self.tally
        w, h = UNSIZED
        counted = [
            (t.skipped, "Lines skipped, not request objects (jsonl-batch validate says why)"),
            (
                unlimited,
                "Requests without an output limit (max_tokens, max_completion_tokens, "
                "max_output_tokens), not in the output ceiling",
            ),
            (t.unsized_images, f"Images of unknown size (not data: URLs), estimated as {w}x{h} px"),
            (t.uncounted_parts, "Audio and file parts, not counted"),
        ]
        notes = [f"{text}: {n:,}." for n, text in counted if n]
        if unpriced:
            notes.append(
                f"No price (or no output price) in the price table for {', '.join(unpriced)}: "
                "not in the cost (a price table of your own can give them)."
            )
        return notes

    def _cost(self) -> dict[str, Any]:
        """Batch cost of the input and of the output ceiling, summed over priced models."""
        cost_in = cost_out = 0.0
        priced_in = priced_out = False
        unpriced: set[str] = set()
        for (_, model), (_, used, ceiling, _) in self.tally.groups.items():
            price = self.prices.price(model)
            part_out = self.prices.cost(price, ceiling, output=True) if price else None
            if price is not None:
                cost_in += self.prices.cost(price, used) or 0.0
                priced_in = True
            if part_out is not None:
                cost_out += part_out
                priced_out = True
            else:
                unpriced.add(model or "requests without a model")
        return {
            "currency": self.prices.currency,
            "input": round_cost(cost_in) if priced_in else None,
            "output_ceiling": round_cost(cost_out) if priced_out else None,
            "unpriced_models": sorted(unpriced),
        }


@dataclass
class BatchStats:
    """The result of ``file_stats``: per-file estimates, their total, and the price source."""

    files: list[FileStats]
    prices: PriceTable

    @property
    def total(self) -> FileStats:
        tally = Tally()
        for found in self.files:
            tally.add(found.tally)
        return FileStats("total", tally, self.prices)

    @property
    def problems(self) -> list[Problem]:
        """Every file's problems (the command exits 1 when there are any)."""
        return [found for f in self.files for found in f.problems]

    def to_dict(self) -> dict[str, Any]:
        """The JSON output of ``jsonl-batch stats``."""
        return {
            "estimate": True,
            "prices": self.prices.describe(),
            "files": [f.to_dict() for f in self.files],
            "total": self.total.to_dict(),
        }


def summarize(tokens: array[int]) -> dict[str, Any]:
    """Sum, mean and nearest-rank percentiles of per-request token counts."""
    if not tokens:
        return {"sum": 0, "mean": None, "p50": None, "p95": None, "max": None}
    ordered = sorted(tokens)
    n = len(ordered)
    total = sum(ordered)
    return {
        "sum": total,
        "mean": round(total / n, 1),
        "p50": ordered[-(-n * 50 // 100) - 1],
        "p95": ordered[-(-n * 95 // 100) - 1],
        "max": ordered[-1],
    }


def file_stats(
    *sources: Source,
    prices: PriceTable | str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    profile: str | Profile = "openai",
    endpoint: str | None = None,
    model: str | None = None,
) -> BatchStats:
    """Estimate tokens and batch cost of JSONL batch files (paths, ``"-"``, binary files).

    ``prices``: a table, a price file, or ``None`` for the packaged table. ``workers``:
    processes for large files (``None``: one per core; 1: in-process). ``progress`` is called
    with each run of bytes counted. ``profile`` (a name or a ``Profile``) says how lines are
    shaped: its ``{custom_id, body}`` lines are requests to ``endpoint`` (default: the
    profile's first; ``UsageError`` if it is not one of the profile's); ``model`` is the model
    of requests whose body names none (its encoding and price). A file that cannot
    be read gets ``error``; one with no request in it, the problem ``empty_file``. Raises
    ``TokensUnavailable`` when no token counter is installed.
    """
    chosen = get_profile(profile)
    ctx = Context(chosen, check_endpoint(chosen, endpoint))
    table = prices if isinstance(prices, PriceTable) else load_prices(prices)
    counter = TokenCounter()
    results = []
    for source in sources:
        tally = Tally()
        error = None
        try:
            for chunk in _chunks(
                source, partial(count_lines, counter, ctx=ctx, model=model), workers, progress
            ):
                tally.add(chunk)
        except ReadError as exc:
            error = str(exc)
        found = FileStats(source_name(source), tally, table, error)
        if error is None:
            found.problems = file_problems(tally, chosen)
        results.append(found)
    return BatchStats(results, table)


def file_problems(tally: Tally, profile: Profile) -> list[Problem]:
    """``empty_file`` when nothing in a file was counted: it is empty (unless the profile
    takes empty files), or none of its lines is a request (the first says why)."""
    if tally.tokens or (not tally.lines and profile.empty_file_ok):
        return []
    if tally.first_skipped is None:
        message = "The file is empty: it contains no requests."
    else:
        line, reason = tally.first_skipped
        none = f": none of its {tally.lines:,} lines is one" if tally.lines > 1 else ""
        message = f"The file contains no requests{none}. Line {line:,}: {reason}"
    return [problem("empty_file", None, message)]


def _chunks(
    source: Source,
    count: Callable[[Iterable[bytes]], Tally],
    workers: int | None,
    progress: Progress | None,
) -> Iterator[Tally]:
    with open_source(source) as handle:
        chunks = LineChunks(
            source, handle, count, workers=workers, prime=True,
            min_parallel_bytes=PARALLEL_MIN_BYTES, block_lines=BLOCK_LINES,
            chunk_bytes=CHUNK_BYTES,
        )  # fmt: skip
        for tally in chunks:
            if progress is not None:
                progress(tally.bytes)
            yield tally
