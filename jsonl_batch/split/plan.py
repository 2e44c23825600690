"""Choosing where ``split`` cuts: which input lines go in which part.

The validation's workers measure every line as they check it (``validation.Measured``: its
bytes, estimated input tokens, embedding inputs, and the (url, model) runs); ``LineFacts``
keeps that, a few bytes per line, with which lines have errors, as the chunks come. Then
``plan_cuts`` walks those numbers, never the file, a chunk at a time (``Cutter``: a chunk
with no cut in it is placed whole). Greedy: each part is as full as the limits (``Limits``)
allow, or, with ``parts``, an even share. The result is byte runs per part,
for ``copying``.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable, Collection, Generator, Iterable
from dataclasses import dataclass, field
from itertools import chain
from operator import sub
from typing import Any, Literal

from orjson import JSONDecodeError, loads

from ..errors import UsageError, option
from ..lines.reading import ReadError, describe_os_error, line_end, newlines
from ..rules.checks import Chunk, Same, one_model
from ..rules.limits import Limits, Totals
from ..rules.problems import Problem, Report, problem
from ..rules.profiles import Profile
from ..rules.requests import Context, RequestFacts, read_request
from ..tokens.counting import TokenCounter, request_tokens
from ..validate import Measured

Progress = Callable[[int, "int | None"], None]
By = Literal["model", "endpoint"]
Key = tuple[str | None, str | None]
"""A line's (endpoint, model)."""


class SplitError(UsageError):
    """The file cannot be split as asked (e.g. more parts than requests, or too few parts)."""

    code = "split_error"


@dataclass
class PartPlan(Totals):
    """One output file being planned: byte runs ``[start, end, first_line, last_line]``."""

    key: Key = (None, None)
    lines: int = 0
    runs: list[list[int]] = field(default_factory=list)
    first: tuple[int, int] = (0, 0)
    last: tuple[int, int] = (0, 0)

    def add(self, line_no: int, start: int, end: int, inputs: int, tokens: int = 0) -> None:
        self.add_lines(line_no, line_no, start, end, end - start, inputs, tokens)

    def add_lines(
        self, first: int, last: int, start: int, end: int, last_size: int, inputs: int, tokens: int
    ) -> None:
        """Add the lines ``first..last``, bytes ``[start, end)``, the last one ``last_size``
        bytes (more than one only when the part has lines: ``first`` is then known)."""
        runs = self.runs
        if runs and runs[-1][1] == start:
            run = runs[-1]
            run[1], run[3] = end, last
        else:
            runs.append([start, end, first, last])
            if not self.lines:
                self.first = (start, end)
        self.last = (end - last_size, end)
        self.lines += last - first + 1
        self.bytes += end - start
        self.inputs += inputs
        self.tokens += tokens


class Planner:
    """Chooses the cut points, a line at a time: greedy, so each part is as full as allowed."""

    def __init__(
        self, limits: Limits, profile: Profile, by: By | None, parts: int | None, good: int
    ) -> None:
        self.limits, self.profile, self.by, self.parts_wanted = limits, profile, by, parts
        self.remaining = good
        self.open: dict[Any, PartPlan] = {}
        self.done: dict[Any, list[PartPlan]] = {}
        self.rejected = PartPlan()
        self.models: dict[str | None, Same] = {}
        """Per endpoint, its one model (``by="endpoint"``: the ``one_model`` rule)."""
        self.extra: list[Problem] = []
        """Problems found while planning: a line no part can hold, another model (``by``)."""
        self.quota: int | None = None
        self.closed: list[PartPlan] = []
        """The parts finished (full) since the caller last emptied this list."""

    def place(
        self, line_no: int, start: int, end: int, key: Key, inputs: int, tokens: int = 0
    ) -> bool:
        """Put a good line in its group's part; ``False`` if it fits no part (a problem)."""
        size = end - start
        breach = self.limits.alone(size, inputs, tokens)
        if breach is not None:
            self.extra.append(problem(breach.code, line_no, breach.message, breach.param))
            return False
        if self.by == "endpoint" and not self._same_model(line_no, key):
            return False
        group = key if self.by == "model" else (key[0], None) if self.by else None
        plan = self.open.get(group)
        if plan is not None and (
            self.limits.overflows(plan, size, inputs, tokens)
            or (self.quota is not None and plan.requests >= self.quota)
        ):
            self.done.setdefault(group, []).append(plan)
            self.closed.append(plan)
            plan = None
        if plan is None:
            plan = self.open[group] = PartPlan(key=key)
            self.done.setdefault(group, [])
            self._new_quota()
        plan.add(line_no, start, end, inputs, tokens)
        plan.requests += 1
        self.remaining -= 1
        return True

    def _new_quota(self) -> None:
        """With ``parts``: an even share of what is left, so the parts balance."""
        if self.parts_wanted is None:
            return
        made = sum(len(v) for v in self.done.values()) + len(self.open)
        left = self.parts_wanted - made + 1
        if left < 1:
            lim = self.limits
            tokens = f", {lim.max_tokens} tokens" if lim.max_tokens is not None else ""
            raise SplitError(
                f"the requests do not fit in {self.parts_wanted} parts within the limits "
                f"({lim.max_requests} requests, {lim.max_bytes} bytes{tokens} per part); "
                f"ask for more parts, or leave out {option('parts')}"
            )
        self.quota = -(-self.remaining // left)

    def _same_model(self, line_no: int, key: Key) -> bool:
        same = self.models.get(key[0])
        if same is None:
            same = self.models[key[0]] = one_model(self.profile)
        found = same.accept(line_no, key[1])
        if found:
            self.extra.append(problem(found[0], line_no, found[1], found[2]))
        return not found

    def plans(self) -> list[PartPlan]:
        """Every part, group by group (groups in order of first appearance)."""
        out: list[PartPlan] = []
        for group, finished in self.done.items():
            out += finished
            if group in self.open:
                out.append(self.open[group])
        return out


class LineFacts:
    """What cutting needs of every line, from the validation's ``Measured`` chunks (``add``
    is its ``on_chunk`` hook): per chunk, the line measures (the (url, model) runs only for
    ``by``; tokens and embedding inputs only where there are some) and a byte per line, 1
    where the line has an error (``bad`` counts them). ``given``: the error lines of an
    earlier validation, used instead of the chunks' ones."""

    def __init__(self, by: By | None = None, given: set[int] | None = None) -> None:
        self.chunks: list[tuple[Measured, bytearray]] = []
        self.bad = 0
        self.by, self.given = by, given

    def add(self, base: int, chunk: Chunk, errors: Iterable[int]) -> None:
        assert isinstance(chunk, Measured)
        n = chunk.lines
        bad = bytearray(n)
        if self.given is not None:
            errors = (line for line in self.given if base < line <= base + n)
        for line in errors:
            bad[line - base - 1] = 1
        self.bad += bad.count(1)
        chunk.custom_ids, chunk.findings = [], []  # the rules are done with them
        if self.by is None:
            chunk.targets = []
        for totals in (chunk.tokens_before, chunk.inputs_before):
            if not totals[-1]:
                del totals[1:]  # none in this chunk: plan_cuts reads 0
        self.chunks.append((chunk, bad))


def measure_lines(ctx: Context, counter: TokenCounter | None, lines: Iterable[bytes]) -> Measured:
    """Measure raw lines as ``LineChecker`` does with ``measure``, without checking them:
    for a file validated before (its report given to ``split_file``)."""
    chunk = Measured()
    size, tokens_at, inputs_at = (
        a.append for a in (chunk.sizes, chunk.tokens_before, chunk.inputs_before)
    )
    targets = chunk.targets
    n = tokens = inputs = 0
    last: Key | None = None
    for raw in lines:
        n += 1
        size(len(raw))
        tokens_at(tokens)
        inputs_at(inputs)
        target: Key = (None, None)
        try:
            req = loads(raw)
        except JSONDecodeError:
            req = None
        facts = read_request(req, ctx)
        if isinstance(facts, RequestFacts):
            if counter is not None:  # as LineChecker counts
                tokens += request_tokens(counter, req, ctx) or 0
            inputs += facts.embedding_inputs
            target = (facts.endpoint, facts.model)
        if target != last:
            targets.append((n, *target))
            last = target
    chunk.lines = n
    tokens_at(tokens)
    inputs_at(inputs)
    return chunk


SIZE_BYTES = 8 << 20
"""``size_lines`` reads 8 MiB at a time (a chunk for ``Cutter``)."""


def size_lines(path: str | os.PathLike[str]) -> Generator[Measured, None, None]:
    """Each line's size (ending included), found by ``memchr`` a chunk of ``SIZE_BYTES`` at
    a time, without looking at what the lines hold: what cutting needs when no limit
    counts tokens or embedding inputs and nothing groups the lines. A last line without a
    newline is a line; so is a blank one. (Read, not mapped: a file cut short meanwhile
    would kill a process reading its map.)"""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ReadError(describe_os_error(path, exc)) from None
    try:
        size = os.fstat(fd).st_size
        buffer = bytearray(SIZE_BYTES)
        view = memoryview(buffer)
        at = 0
        while at < size:
            try:
                n = os.preadv(fd, [view], at)
            except OSError as exc:
                raise ReadError(describe_os_error(path, exc)) from None
            if not n:
                return  # cut short: the plan's end says the file changed
            ends = newlines(buffer, 0, n)
            if not ends:  # a line longer than a chunk
                end = line_end(fd, at + n, size)
                if end == size and os.fstat(fd).st_size < size:
                    return  # no newline because the file was cut short: not one long line
                ends.append(end - at - 1)
            elif at + n >= size and ends[-1] != n - 1:
                ends.append(n - 1)  # the last line, without a newline
            chunk = Measured(lines=len(ends), requests=len(ends))
            chunk.sizes = array("q", map(sub, ends, chain((-1,), ends)))
            chunk.tokens_before.append(0)
            chunk.inputs_before.append(0)
            yield chunk
            at += ends[-1] + 1
    finally:
        os.close(fd)


def plan_cuts(
    facts: LineFacts,
    limits: Limits,
    profile: Profile,
    by: By | None,
    parts: int | None,
    report: Report,
    alone: Collection[int] = (),
) -> Planner:
    """The cut points, from the measures of every line (``facts``) and the file's validation
    (``report``); the lines in ``alone`` are rejected too (with ``parts``: the lines no part
    can hold, found by an earlier plan)."""
    good = report.stats.lines - facts.bad - len(alone)
    if parts is not None and parts > good:
        raise SplitError(f"cannot make {parts} parts from {good} request(s)")
    cutter = Cutter(limits, profile, by, parts, good, alone)
    for chunk, bad in facts.chunks:
        cutter.feed(chunk, bad)
    return cutter.finish(report)


class Cutter:
    """``plan_cuts`` a chunk at a time: ``feed`` each chunk of ``LineFacts`` in order, then
    ``finish``. A chunk that holds no cut is placed whole, in a few steps, not line by line."""

    def __init__(
        self,
        limits: Limits,
        profile: Profile,
        by: By | None,
        parts: int | None = None,
        good: int = 0,
        alone: Collection[int] = (),
    ) -> None:
        self.planner = Planner(limits, profile, by, parts, good)
        self.by, self.alone = by, alone
        self.key: Key = (None, None)  # every chunk's targets start at its first line
        self.line_no = self.end = 0

    def feed(self, chunk: Measured, bad: bytearray) -> None:
        """Place (or reject) every line of the next chunk."""
        if self._whole(chunk, bad):
            return
        planner, alone, key = self.planner, self.alone, self.key
        reject, place = planner.rejected.add, planner.place
        line_no, end = self.line_no, self.end
        measures = (chunk.tokens_before, chunk.inputs_before)
        tokens, inputs = (t if len(t) > 1 else None for t in measures)
        runs = chunk.targets if self.by is not None else []
        turn, at = 0, runs[0][0] - 1 if runs else -1  # the index where the next run starts
        for i, size in enumerate(chunk.sizes):
            line_no += 1
            start = end
            end += size
            if i == at:
                key = runs[turn][1:]
                turn += 1
                at = runs[turn][0] - 1 if turn < len(runs) else -1
            if bad[i] or line_no in alone:
                reject(line_no, start, end, 0)
                continue
            found = inputs[i + 1] - inputs[i] if inputs is not None else 0
            used = tokens[i + 1] - tokens[i] if tokens is not None else 0
            if not place(line_no, start, end, key, found, used):
                reject(line_no, start, end, 0)
        self.line_no, self.end, self.key = line_no, end, key

    def _whole(self, chunk: Measured, bad: bytearray) -> bool:
        """Place the whole chunk in the open part if it all fits there, as ``place`` would
        line by line: the limits cap running totals (a line over one alone takes its part's
        over it too), so the chunk fits if its last line does."""
        planner = self.planner
        plan = planner.open.get(None)
        n = chunk.lines
        if plan is None or self.by is not None or self.alone or not n or bad.count(1):
            return False
        size, last_size = sum(chunk.sizes), chunk.sizes[-1]
        tokens, last_tokens = _shares(chunk.tokens_before)
        inputs, last_inputs = _shares(chunk.inputs_before)
        before_last = Totals(
            plan.requests + n - 1,
            plan.bytes + size - last_size,
            plan.inputs + inputs - last_inputs,
            plan.tokens + tokens - last_tokens,
        )
        quota = planner.quota
        if (quota is not None and plan.requests + n > quota) or planner.limits.overflows(
            before_last, last_size, last_inputs, last_tokens
        ):
            return False
        start, first = self.end, self.line_no + 1
        self.line_no += n
        self.end += size
        plan.add_lines(first, self.line_no, start, self.end, last_size, inputs, tokens)
        plan.requests += n
        planner.remaining -= n
        return True

    def finish(self, report: Report) -> Planner:
        """The plan, once every chunk is fed (``report``: the file's validation)."""
        stats = report.stats
        if self.end != stats.bytes:
            raise ReadError(f"{report.file}: the file changed while it was being split")
        planner = self.planner
        if self.by is None:  # one group: the file's endpoint and model
            for plan in planner.plans():
                plan.key = (stats.endpoint, stats.model)
        return planner


def _shares(before: array[int]) -> tuple[int, int]:
    """A chunk's total of a running count (``Measured.tokens_before``...) and its last
    line's share (0 when ``LineFacts`` left none)."""
    if len(before) < 2:
        return 0, 0
    return before[-1] - before[0], before[-1] - before[-2]
