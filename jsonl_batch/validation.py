"""Validation: reading + rules -> problems, lazily (``iter_problems``) or as a ``Report``.

Per-line work (parse, envelope, body schema) is independent from line to line, so large files
are cut into line-aligned chunks checked by worker processes; the main process merges their
results in line order and applies the rules that span lines. Small files and streams are
checked in-process. Both paths give the same problems in the same order.
"""

from __future__ import annotations

import multiprocessing
import os
import stat
from collections.abc import Collection, Iterator
from typing import Any

from .problems import CATALOGUE, Problem, Report, Stats, problem
from .profiles import Profile, get_profile
from .reading import (
    BUFFER_SIZE,
    LineReader,
    ReadError,
    Source,
    chunk_bounds,
    describe_os_error,
    open_source,
    parse_line,
    source_name,
)
from .rules import Context, Facts, FileRules, Finding, active_rules, facts

PARALLEL_MIN_BYTES = 16 << 20
"""Files at least this big are checked by worker processes (when there are cores to use)."""
CHUNK_BYTES = 8 << 20

Record = tuple[int, "Facts | None", "list[Finding] | None"]
"""One checked line: ``(line_no, facts, findings)``; facts are ``None`` for a non-request."""


class LineChecker:
    """The per-line half of validation: parse once, run the line rules, extract facts."""

    def __init__(self, profile: Profile, ignore: Collection[str] = ()) -> None:
        self.ctx = Context(profile)
        self.rules = active_rules(ignore)

    def check(self, raw: bytes) -> tuple[Facts | None, list[Finding] | None]:
        req, reason = parse_line(raw)
        if reason is not None:
            return None, [("invalid_json_line", reason, None)]
        if type(req) is not dict:
            kind = "an array" if type(req) is list else "a scalar value"
            return None, [("invalid_type",
                           f"This line is {kind}, not a JSON object; each line must be one "
                           "request object.", None)]
        ctx = self.ctx
        found: list[Finding] | None = None
        for rule in self.rules:
            out = rule(req, ctx)
            if out:
                found = [*found, *out] if found else list(out)
        return facts(req, ctx), found

    def check_lines(self, lines: LineReader) -> Iterator[Record]:
        for line_no, _offset, raw in lines:
            f, found = self.check(raw)
            yield line_no, f, found


class Validation:
    """One validation run over one source: iterate it for problems, then read ``stats``.

    ``profile`` is a name or a ``Profile``; ``overrides`` replace its limits
    (``max_requests``, ``max_bytes``, ``max_embedding_inputs``). ``endpoint`` and ``model``
    fix the batch's endpoint and model instead of taking them from the first line. Codes in
    ``ignore`` are neither checked nor reported. ``workers``: processes for large files
    (``None``: one per core; ``1``: in-process).
    """

    def __init__(
        self,
        source: Source,
        profile: str | Profile = "openai",
        *,
        endpoint: str | None = None,
        model: str | None = None,
        ignore: Collection[str] = (),
        workers: int | None = None,
        **overrides: Any,
    ) -> None:
        self.source = source
        self.profile = get_profile(profile, **overrides)
        unknown = sorted(set(ignore) - set(CATALOGUE))
        if unknown:
            raise ValueError(f"unknown problem code(s) to ignore: {', '.join(unknown)}")
        if endpoint is not None and endpoint not in self.profile.endpoints:
            raise ValueError(
                f"{endpoint!r} is not an endpoint of the {self.profile.name} profile "
                f"(choose from {', '.join(self.profile.endpoints)})"
            )
        self.endpoint = endpoint
        self.model = model
        self.ignore = frozenset(ignore)
        self.workers = workers
        self.stats = Stats()

    def __iter__(self) -> Iterator[Problem]:
        stats = self.stats = Stats()
        rules = FileRules(self.profile, self.endpoint, self.model)
        emit = self._emit
        with open_source(self.source) as handle:
            size, records = self._records(handle)
            for line_no, line_facts, found in records:
                stats.lines = line_no
                if found:
                    yield from emit(line_no, found)
                if line_facts is not None:
                    cross = rules.feed(line_no, line_facts)
                    if cross:
                        yield from emit(line_no, cross)
            if size is None:
                size = records.offset  # type: ignore[attr-defined]
        stats.bytes = size
        stats.requests = rules.requests
        stats.endpoint = rules.endpoint
        stats.model = rules.model
        stats.embedding_inputs = rules.embedding_inputs
        yield from emit(None, rules.finish(size))

    def _emit(self, line: int | None, found: list[Finding]) -> Iterator[Problem]:
        counts = self.stats.counts
        for code, message, param in found:
            if code in self.ignore:
                continue
            counts[code] = counts.get(code, 0) + 1
            yield problem(code, line, message, param)

    def _records(self, handle: Any) -> tuple[int | None, Any]:
        """``(size, records)``: size is ``None`` for a stream (known once it is read)."""
        path = self.source if isinstance(self.source, (str, os.PathLike)) else None
        size = _regular_size(handle) if path is not None and path != "-" else None
        workers = self._worker_count(size)
        if path is not None and size is not None and workers > 1:
            return size, _parallel_records(
                os.fspath(path), size, workers, self.profile, self.ignore
            )
        reader = LineReader(handle)
        records = _Sequential(LineChecker(self.profile, self.ignore), reader)
        return size, records

    def _worker_count(self, size: int | None) -> int:
        if size is None or size < PARALLEL_MIN_BYTES:
            return 1
        if self.workers is not None:
            return max(1, self.workers)
        if "fork" not in multiprocessing.get_all_start_methods():
            return 1
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return min(cores or 1, 8)


class _Sequential:
    """In-process records, with the byte count of a stream once it is consumed."""

    def __init__(self, checker: LineChecker, reader: LineReader) -> None:
        self.checker = checker
        self.reader = reader

    def __iter__(self) -> Iterator[Record]:
        return self.checker.check_lines(self.reader)

    @property
    def offset(self) -> int:
        return self.reader.offset


def _regular_size(handle: Any) -> int | None:
    try:
        info = os.fstat(handle.fileno())
    except (OSError, AttributeError, ValueError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


_worker_checker: LineChecker | None = None


def _init_worker(profile: Profile, ignore: frozenset[str]) -> None:
    global _worker_checker
    _worker_checker = LineChecker(profile, ignore)


def _check_chunk(task: tuple[str, int, int]) -> tuple[int, list[Record]]:
    """Check the lines starting in ``[start, end)``; line numbers are relative (from 1)."""
    path, start, end = task
    assert _worker_checker is not None
    with open(path, "rb", buffering=BUFFER_SIZE) as handle:
        reader = LineReader(handle, start=start, end=end)
        records = list(_worker_checker.check_lines(reader))
    return len(records), records


def _parallel_records(
    path: str, size: int, workers: int, profile: Profile, ignore: frozenset[str]
) -> Iterator[Record]:
    chunks = max(2 * workers, min(256, -(-size // CHUNK_BYTES)))
    try:
        bounds = chunk_bounds(path, size, chunks)
    except OSError as exc:
        raise ReadError(describe_os_error(path, exc)) from None
    tasks = [(path, a, b) for a, b in zip(bounds, bounds[1:])]
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=_init_worker, initargs=(profile, ignore)) as pool:
        base = 0
        try:
            for count, records in pool.imap(_check_chunk, tasks):
                for rel, line_facts, found in records:
                    yield base + rel, line_facts, found
                base += count
        except OSError as exc:
            raise ReadError(describe_os_error(path, exc)) from None


def iter_problems(source: Source, profile: str | Profile = "openai", **options: Any
                  ) -> Iterator[Problem]:
    """Yield every problem in a JSONL batch file, lazily, in line order (file-level last).

    Options are those of ``Validation``. Raises ``ReadError`` if the file cannot be read.
    """
    return iter(Validation(source, profile, **options))


def validate_file(
    source: Source,
    profile: str | Profile = "openai",
    *,
    max_problems: int | None = 100,
    **options: Any,
) -> Report:
    """Validate a JSONL batch file and return a ``Report`` (never raises for I/O problems).

    At most ``max_problems`` line problems are listed (``None``: all); file-level problems
    are always listed, and ``report.stats.counts`` stays exact. Other options are those of
    ``Validation`` (``endpoint``, ``model``, ``ignore``, ``workers``, limit overrides).
    """
    run = Validation(source, profile, **options)
    report = Report(file=source_name(source))
    listed = report.problems
    try:
        for found in run:
            if found.line is None or max_problems is None or len(listed) < max_problems:
                listed.append(found)
    except ReadError as exc:
        report.error = str(exc)
    report.stats = run.stats
    return report
