"""Choosing where ``split`` cuts: which input lines go in which part.

One pass over the lines (``plan_cuts``), parsing a line only when a limit or ``by`` needs
it, with each line's estimated input tokens read from worker processes as they count them
(``token_counts``). Greedy: each part is as full as the limits (``PartLimits``) allow, or,
with ``parts``, an even share. The result is byte runs per part, for ``copying``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from orjson import loads

from .errors import UsageError
from .limits import PartLimits, Totals
from .problems import Problem, Report, problem
from .profiles import EMBEDDINGS_URL, Profile
from .reading import BUFFER_SIZE, LineReader, ReadError, open_source
from .rules import FileRules, count_inputs

if TYPE_CHECKING:
    pass

Progress = Callable[[int, "int | None"], None]
By = Literal["model", "endpoint"]
TOKENS_PARALLEL_BYTES = 8 << 20
"""Counting tokens costs ~8x parsing: files this big are counted by worker processes..."""
TOKENS_CHUNK_BYTES = 4 << 20
"""...a chunk of this many bytes at a time."""
Key = tuple[str | None, str | None]
"""A line's (endpoint, model)."""


class SplitError(UsageError):
    """The file cannot be split as asked (e.g. more parts than requests, or too few parts)."""


@dataclass
class PartPlan(Totals):
    """One output file being planned: byte runs ``[start, end, first_line, last_line]``."""

    key: Key = (None, None)
    lines: int = 0
    runs: list[list[int]] = field(default_factory=list)
    first: tuple[int, int] = (0, 0)
    last: tuple[int, int] = (0, 0)

    def add(self, line_no: int, start: int, end: int, inputs: int, tokens: int = 0) -> None:
        runs = self.runs
        if runs and runs[-1][1] == start:
            run = runs[-1]
            run[1], run[3] = end, line_no
        else:
            runs.append([start, end, line_no, line_no])
            if not self.lines:
                self.first = (start, end)
        self.last = (start, end)
        self.lines += 1
        self.bytes += end - start
        self.inputs += inputs
        self.tokens += tokens


class Planner:
    """Chooses the cut points, a line at a time: greedy, so each part is as full as allowed."""

    def __init__(
        self, limits: PartLimits, profile: Profile, by: By | None, parts: int | None, good: int
    ) -> None:
        self.limits, self.profile, self.by, self.parts_wanted = limits, profile, by, parts
        self.remaining = good
        self.open: dict[Any, PartPlan] = {}
        self.done: dict[Any, list[PartPlan]] = {}
        self.rejected = PartPlan()
        self.group_rules: dict[str | None, FileRules] = {}
        self.extra: list[Problem] = []
        """Problems found while planning: a line no part can hold, another model (``by``)."""
        self.quota: int | None = None

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
                "ask for more parts, or leave out --parts"
            )
        self.quota = -(-self.remaining // left)

    def _same_model(self, line_no: int, key: Key) -> bool:
        rules = self.group_rules.setdefault(key[0], FileRules(self.profile))
        found = rules.other_model(line_no, key[1]) if key[1] is not None else None
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


def plan_cuts(
    path: Path,
    limits: PartLimits,
    profile: Profile,
    by: By | None,
    parts: int | None,
    bad: set[int],
    report: Report,
    tokens: Iterable[int] | None = None,
) -> Planner:
    """The cut-point pass: one read of the lines, parsing only when a limit or ``by`` needs it.

    ``bad``: the numbers of invalid lines (rejected); ``report``: the file's validation;
    ``tokens``: each line's estimated input tokens, in line order (with a token budget).
    """
    stats = report.stats
    good = stats.lines - len(bad)
    if parts is not None and parts > good:
        raise SplitError(f"cannot make {parts} parts from {good} request(s)")
    planner = Planner(limits, profile, by, parts, good)
    embeddings = limits.max_embedding_inputs is not None and (
        stats.endpoint == EMBEDDINGS_URL or by is not None
    )
    parse = by is not None or embeddings
    key: Key = (stats.endpoint, stats.model)
    reject = planner.rejected.add
    place = planner.place
    counts = iter(tokens if tokens is not None else ())
    with open(path, "rb", buffering=BUFFER_SIZE) as handle:
        reader = LineReader(handle)
        pending: tuple[int, int, bytes, int] | None = None
        for line in reader:
            if pending is not None:
                _one(pending, line[1], bad, parse, key, place, reject)
            pending = (*line, next(counts, 0))
        if pending is not None:
            _one(pending, reader.offset, bad, parse, key, place, reject)
    if reader.offset != stats.bytes:
        raise ReadError(f"{path}: the file changed while it was being split")
    return planner


def _one(
    line: tuple[int, int, bytes, int],
    end: int,
    bad: set[int],
    parse: bool,
    key: Key,
    place: Any,
    reject: Any,
) -> None:
    line_no, start, raw, tokens = line
    if line_no in bad:
        reject(line_no, start, end, 0)
        return
    inputs = 0
    if parse:
        req = loads(raw)
        body = req["body"]
        key = (req["url"], body.get("model"))
        if key[0] == EMBEDDINGS_URL:
            inputs = count_inputs(body.get("input"))
    if not place(line_no, start, end, key, inputs, tokens):
        reject(line_no, start, end, 0)


def token_counts(
    stack: ExitStack, path: Path, workers: int | None, progress: Progress | None = None
) -> Iterator[int]:
    """Each line's estimated input tokens, in order (``tokens.tokens_of_lines``), counted by
    worker processes for a large file. The first count is asked for at once, so the workers
    are forked before any thread starts; ``stack`` closes the file and the workers.
    ``progress(bytes_done, size)`` is called as chunks are counted."""
    from .parallel import LineChunks  # loaded only when counting
    from .tokens import TokenCounter, tokens_of_lines

    handle = stack.enter_context(open_source(path))
    work = partial(tokens_of_lines, TokenCounter())
    chunks = LineChunks(
        path,
        handle,
        work,
        workers=workers,
        prime=True,
        min_parallel_bytes=TOKENS_PARALLEL_BYTES,
        chunk_bytes=TOKENS_CHUNK_BYTES,
    )
    each = _reporting(chunks, progress)
    stack.callback(each.close)
    counts = chain.from_iterable(each)
    first = next(counts, None)
    return chain(() if first is None else (first,), counts)


def _reporting(chunks: Any, progress: Progress | None) -> Generator[Any, None, None]:
    for counts in chunks:  # a chunk is counted once it comes: report it before handing it on
        if progress is not None:
            progress(chunks.done, chunks.size)
        yield counts
