"""Splitting a batch file into parts that each satisfy the limits, copying lines as bytes.

Three steps: validate the file (in parallel, like ``validate``; the limits themselves are not
problems here); one pass over the lines to choose the cut points (with a token budget, reading
each line's estimated tokens from worker processes as they count them); then copy each part's
byte ranges through fixed buffers, hashing as it goes. Lines are never re-serialized: without
``by``, the parts concatenated are the input, byte for byte. Memory stays flat apart from the
custom_id set and the cut points.
"""

from __future__ import annotations

import os
import re
import stat
from array import array
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from functools import partial
from hashlib import sha256
from itertools import chain
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from orjson import loads

from .errors import UsageError
from .manifests import Manifest, Part, manifest_path, split_part_name
from .output import OutputExists, atomic_output, check_writable
from .problems import Problem, Report, problem
from .profiles import EMBEDDINGS_URL, Profile, get_profile
from .reading import BUFFER_SIZE, LineReader, ReadError, describe_os_error, open_source
from .rules import FileRules, count_inputs
from .validation import validate_file

if TYPE_CHECKING:
    from .tokens import TokenCounter

LIMIT_CODES = (
    "too_many_tasks",
    "file_too_large",
    "too_many_embedding_inputs",
    "token_limit_exceeded",
)
"""Not problems for ``split``: breaking these is why one splits."""
TARGET_CODES = ("invalid_url", "mismatched_model")
"""Not problems with ``by``: the groups take care of them."""
By = Literal["model", "endpoint"]
COPY_BYTES = 4 << 20
"""Copy and hash in blocks of 4 MiB; blocks under ``SMALL_BYTES`` (single lines, with ``by``)
are hashed in the main thread, where handing them to a thread would cost more."""
SMALL_BYTES = 256 << 10
TOKENS_PARALLEL_BYTES = 8 << 20
"""Counting tokens costs ~16x parsing: files this big are counted by worker processes..."""
TOKENS_CHUNK_BYTES = 4 << 20
"""...a chunk of this many bytes at a time."""


class SplitError(UsageError):
    """The file cannot be split as asked (e.g. more parts than requests, or too few parts)."""


@dataclass
class SplitResult:
    """What ``split_file`` did: the validation ``report``, and the ``manifest`` if it wrote."""

    report: Report
    manifest: Manifest | None = None
    folder: Path | None = None

    @property
    def written(self) -> bool:
        return self.manifest is not None


@dataclass
class _Plan:
    """One output file being planned: byte runs ``[start, end, first_line, last_line]``."""

    key: tuple[str | None, str | None] = (None, None)
    requests: int = 0
    lines: int = 0
    bytes: int = 0
    inputs: int = 0
    tokens: int = 0
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


class _Planner:
    """Chooses the cut points, a line at a time: greedy, so each part is as full as allowed."""

    def __init__(
        self,
        profile: Profile,
        by: By | None,
        parts: int | None,
        good: int,
        max_tokens: int | None = None,
    ) -> None:
        self.profile, self.by, self.parts_wanted = profile, by, parts
        self.max_tokens = max_tokens
        self.remaining = good
        self.open: dict[Any, _Plan] = {}
        self.done: dict[Any, list[_Plan]] = {}
        self.rejected = _Plan()
        self.group_rules: dict[str | None, FileRules] = {}
        self.extra: list[Problem] = []
        self.quota: int | None = None

    def place(
        self,
        line_no: int,
        start: int,
        end: int,
        key: tuple[str | None, str | None],
        inputs: int,
        tokens: int = 0,
    ) -> bool:
        """Put a good line in its group's part; ``False`` if it fits no part (a problem)."""
        if not self._fits_alone(line_no, end - start, inputs, tokens):
            return False
        size = end - start
        if self.by == "endpoint" and not self._same_model(line_no, key):
            return False
        group = key if self.by == "model" else (key[0], None) if self.by else None
        plan = self.open.get(group)
        if plan is not None and self._full(plan, size, inputs, tokens):
            self.done.setdefault(group, []).append(plan)
            plan = None
        if plan is None:
            plan = self.open[group] = _Plan(key)
            self.done.setdefault(group, [])
            self._new_quota()
        plan.add(line_no, start, end, inputs, tokens)
        plan.requests += 1
        self.remaining -= 1
        return True

    def _fits_alone(self, line_no: int, size: int, inputs: int, tokens: int) -> bool:
        """``False`` (and a problem) if the line alone breaks a limit: no part can hold it."""
        p = self.profile
        if p.max_bytes is not None and size > p.max_bytes:
            return self._alone(
                line_no, "file_too_large", f"{size:,} bytes", f"{p.max_bytes:,} bytes", None
            )
        limit = p.max_embedding_inputs
        if limit is not None and inputs > limit:
            what = f"{inputs:,} embedding inputs"
            return self._alone(
                line_no, "too_many_embedding_inputs", what, f"{limit:,}", "body.input"
            )
        budget = self.max_tokens
        if budget is not None and tokens > budget:
            what = f"an estimated {tokens:,} input tokens"
            return self._alone(line_no, "token_limit_exceeded", what, f"{budget:,} tokens", None)
        return True

    def _full(self, plan: _Plan, size: int, inputs: int, tokens: int) -> bool:
        p = self.profile
        return (
            (p.max_requests is not None and plan.requests >= p.max_requests)
            or (p.max_bytes is not None and plan.bytes + size > p.max_bytes)
            or (
                p.max_embedding_inputs is not None and plan.inputs + inputs > p.max_embedding_inputs
            )
            or (self.max_tokens is not None and plan.tokens + tokens > self.max_tokens)
            or (self.quota is not None and plan.requests >= self.quota)
        )

    def _new_quota(self) -> None:
        """With ``parts``: an even share of what is left, so the parts balance."""
        if self.parts_wanted is None:
            return
        made = sum(len(v) for v in self.done.values()) + len(self.open)
        left = self.parts_wanted - made + 1
        if left < 1:
            p = self.profile
            tokens = f", {self.max_tokens} tokens" if self.max_tokens is not None else ""
            raise SplitError(
                f"the requests do not fit in {self.parts_wanted} parts within the limits "
                f"({p.max_requests} requests, {p.max_bytes} bytes{tokens} per part); "
                "ask for more parts, or leave out --parts"
            )
        self.quota = -(-self.remaining // left)

    def _alone(self, line_no: int, code: str, what: str, limit: str, param: str | None) -> bool:
        message = (
            f"This line alone has {what}, more than the limit of {limit} per file; "
            "no part can hold it."
        )
        self.extra.append(problem(code, line_no, message, param))
        return False

    def _same_model(self, line_no: int, key: tuple[str | None, str | None]) -> bool:
        rules = self.group_rules.setdefault(key[0], FileRules(self.profile))
        found = rules.other_model(line_no, key[1]) if key[1] is not None else None
        if found:
            self.extra.append(problem(found[0], line_no, found[1], found[2]))
        return not found

    def plans(self) -> list[_Plan]:
        """Every part, group by group (groups in order of first appearance)."""
        out: list[_Plan] = []
        for group, finished in self.done.items():
            out += finished
            if group in self.open:
                out.append(self.open[group])
        return out


def split_file(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    profile: str | Profile = "openai",
    *,
    parts: int | None = None,
    by: By | None = None,
    skip_invalid: bool = False,
    force: bool = False,
    max_problems: int | None = 100,
    workers: int | None = None,
    max_tokens: int | None = None,
    **limits: int | None,
) -> SplitResult:
    """Split a batch file into parts that each satisfy the profile's limits (or ``limits``).

    ``parts``: exactly that many parts, balanced by requests. ``by``: ``"model"`` makes one
    group per (endpoint, model), ``"endpoint"`` one per endpoint, each split further as
    needed. ``max_tokens`` (default: the profile's ``max_enqueued_tokens``): each part's
    estimated input tokens (``TokenCounter``, counted by ``workers``) stay at or under it;
    raises ``TokensUnavailable`` without tiktoken. Writes ``<stem>.part-001-of-00N.jsonl``...
    and ``<stem>.manifest.json`` in ``out_dir`` (default: next to the input). If the file has
    problems (as ``validate`` reports them, minus the limits), nothing is written and the
    result's report says why, unless ``skip_invalid``: then the invalid lines go, unchanged,
    to ``<stem>.rejected.jsonl``.
    """
    path = Path(source)
    profile = get_profile(profile, **limits)
    budget = max_tokens if max_tokens is not None else profile.max_enqueued_tokens
    if budget is not None and budget < 1:
        raise UsageError(f"max_tokens must be at least 1, not {budget}")
    if parts is not None and parts < 1:
        raise UsageError(f"parts must be at least 1, not {parts}")
    if by not in (None, "model", "endpoint"):
        raise UsageError(f"by must be 'model' or 'endpoint', not {by!r}")
    if parts is not None and by is not None:
        raise UsageError("--parts cannot be combined with --by (each group is split as needed)")
    _require_file(path)
    ignore = LIMIT_CODES + (TARGET_CODES if by else ())
    cap = None if skip_invalid else max_problems
    report = validate_file(path, profile, max_problems=cap, ignore=ignore, workers=workers)
    folder = Path(out_dir) if out_dir is not None else path.parent
    result = SplitResult(report, None, folder)
    if report.error or (not report.valid and not skip_invalid):
        return result
    bad = {p.line for p in report.problems if p.severity == "error" and p.line is not None}
    if skip_invalid and any(p.line is None and p.severity == "error" for p in report.problems):
        return result  # an empty file: nothing to split
    with ExitStack() as stack:
        tokens = _token_counts(stack, path, workers) if budget is not None else None
        # hashing the whole input starts now, in threads (after any worker was forked)
        data = stack.enter_context(closing(_Input(path)))
        planner = _plan(path, profile, by, parts, bad, report, tokens, budget)
        if planner.extra:
            _add_problems(report, planner.extra, max_problems)
            if not skip_invalid:
                return result
        plans = planner.plans()
        if not plans:
            return result
        if skip_invalid:
            _cap(report, max_problems)
        result.manifest = _write(data, folder, profile, plans, planner, report, force)
    return result


def _token_counts(stack: ExitStack, path: Path, workers: int | None) -> Iterator[int]:
    """Each line's estimated input tokens, in order, counted by worker processes for a large
    file. The first count is asked for at once, so the workers are forked before any thread
    starts; ``stack`` closes the file and the workers."""
    from .parallel import LineChunks  # loaded only when counting
    from .tokens import TokenCounter

    handle = stack.enter_context(open_source(path))
    work = partial(_tokens_per_line, TokenCounter())
    chunks = LineChunks(
        path,
        handle,
        work,
        workers=workers,
        prime=True,
        min_parallel_bytes=TOKENS_PARALLEL_BYTES,
        chunk_bytes=TOKENS_CHUNK_BYTES,
    )
    each = iter(chunks)
    stack.callback(each.close)  # type: ignore[attr-defined]  # a generator
    counts = chain.from_iterable(each)
    first = next(counts, None)
    return chain(() if first is None else (first,), counts)


def _tokens_per_line(counter: TokenCounter, lines: Iterable[bytes]) -> array[int]:
    """Estimated input tokens of raw lines, one each (0 for a line that is not a request)."""
    found = array("q")
    count = counter.count
    for raw in lines:
        try:
            req = loads(raw)
        except ValueError:
            found.append(0)
            continue
        url = req.get("url") if type(req) is dict else None
        body = req.get("body") if url is not None else None
        found.append(count(url, body) if type(url) is str and type(body) is dict else 0)
    return found


class _Input:
    """The input, read by offset into fixed buffers (memory stays flat), and two threads that
    hash while the main thread copies (hashlib and file I/O release the GIL)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise ReadError(describe_os_error(path, exc)) from None
        self.buffers = [memoryview(bytearray(COPY_BYTES)) for _ in range(2)]
        self.stopped = False
        self.pool = ThreadPoolExecutor(2)
        self.sha256 = self.pool.submit(self._hash_all)

    def _hash_all(self) -> str:
        digest = sha256()
        buffer = memoryview(bytearray(COPY_BYTES))
        offset = 0
        while not self.stopped and (n := os.preadv(self.fd, [buffer], offset)):
            digest.update(buffer[:n])
            offset += n
        return digest.hexdigest()

    def copy(self, runs: list[list[int]], out: IO[bytes]) -> str:
        """Write the byte runs to ``out``; return their sha256. Two buffers take turns, so a
        block is hashed (in a thread) and written while the next one is read."""
        digest = sha256()
        hashing: Future[None] | None = None
        turn = 0
        for start, end, _first, _last in runs:
            while start < end:
                buffer = self.buffers[turn]
                n = os.preadv(self.fd, [buffer[: min(end - start, COPY_BYTES)]], start)
                if not n:
                    raise ReadError(f"{self.path}: the file changed while it was being split")
                if hashing is not None:
                    hashing.result()
                    hashing = None
                if n < SMALL_BYTES:
                    digest.update(buffer[:n])
                else:
                    hashing = self.pool.submit(digest.update, buffer[:n])
                out.write(buffer[:n])
                start += n
                turn ^= 1
        if hashing is not None:
            hashing.result()
        return digest.hexdigest()

    def read(self, start: int, end: int) -> bytes:
        return os.pread(self.fd, end - start, start)

    def close(self) -> None:
        self.stopped = True
        self.pool.shutdown(wait=True)
        os.close(self.fd)


def _require_file(path: Path) -> None:
    try:
        info = path.stat()
    except OSError as exc:
        raise ReadError(describe_os_error(path, exc)) from None
    if stat.S_ISDIR(info.st_mode):
        raise ReadError(f"{path}: is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise ReadError(f"{path}: not a regular file (split reads its input twice)")


def _plan(
    path: Path,
    profile: Profile,
    by: By | None,
    parts: int | None,
    bad: set[int],
    report: Report,
    tokens: Iterable[int] | None = None,
    max_tokens: int | None = None,
) -> _Planner:
    """The cut-point pass: one read of the lines, parsing only when a limit or ``by`` needs it.

    ``tokens``: each line's estimated input tokens, in line order (with ``max_tokens``).
    """
    stats = report.stats
    good = stats.lines - len(bad)
    if parts is not None and parts > good:
        raise SplitError(f"cannot make {parts} parts from {good} request(s)")
    planner = _Planner(profile, by, parts, good, max_tokens)
    embeddings = profile.max_embedding_inputs is not None and (
        stats.endpoint == EMBEDDINGS_URL or by is not None
    )
    parse = by is not None or embeddings
    key: tuple[str | None, str | None] = (stats.endpoint, stats.model)
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
    key: tuple[str | None, str | None],
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


def _add_problems(report: Report, found: list[Problem], cap: int | None) -> None:
    counts = report.stats.counts
    for p in found:
        counts[p.code] = counts.get(p.code, 0) + 1
        if cap is None or sum(1 for q in report.problems if q.line is not None) < cap:
            report.problems.append(p)
    report.problems.sort(key=lambda p: (p.line is None, p.line or 0))


def _cap(report: Report, cap: int | None) -> None:
    """List at most ``cap`` line problems (file-level ones always), like ``validate_file``."""
    if cap is None:
        return
    lines = [p for p in report.problems if p.line is not None][:cap]
    report.problems[:] = lines + [p for p in report.problems if p.line is None]


def _write(
    source: _Input,
    folder: Path,
    profile: Profile,
    plans: list[_Plan],
    planner: _Planner,
    report: Report,
    force: bool,
) -> Manifest:
    """Copy every part (and the rejected lines), then write the manifest."""
    path, rejected, budget = source.path, planner.rejected, planner.max_tokens
    stem = path.stem
    names = [split_part_name(stem, i, len(plans)) for i in range(1, len(plans) + 1)]
    reject_name = f"{stem}.rejected.jsonl"
    targets = [folder / n for n in names]
    if rejected.lines:
        targets.append(folder / reject_name)
    where = manifest_path(folder, stem)
    stale = _earlier_outputs(folder, stem, set(targets))
    for target in targets:
        check_writable(target, force)
    if stale and not force:
        raise OutputExists(
            f"{stale[0]} is left from an earlier split; use --force to replace that split"
        )
    check_writable(where, force)
    folder.mkdir(parents=True, exist_ok=True)
    stats = report.stats
    manifest = Manifest(
        input=str(path),
        bytes=stats.bytes,
        lines=stats.lines,
        profile=profile.name,
        limits={
            "max_requests": profile.max_requests,
            "max_bytes": profile.max_bytes,
            "max_embedding_inputs": profile.max_embedding_inputs,
        },
    )
    if budget is not None:
        manifest.limits["max_tokens"] = budget
    written: list[Path] = []
    try:
        for plan, name in zip(plans, names, strict=True):
            part = _copy(source, plan, folder / name, force, written)
            part.endpoint, part.model = plan.key
            part.input_tokens = plan.tokens if budget is not None else None
            manifest.parts.append(part)
        if rejected.lines:
            manifest.rejected = _copy(source, rejected, folder / reject_name, force, written)
            manifest.rejected.first_custom_id = manifest.rejected.last_custom_id = None
        manifest.sha256 = source.sha256.result()
        manifest.write(where, force=force)
    except BaseException:
        for done in written:
            done.unlink(missing_ok=True)
        raise
    for old in stale:
        old.unlink(missing_ok=True)
    return manifest


def _copy(source: _Input, plan: _Plan, target: Path, force: bool, written: list[Path]) -> Part:
    with atomic_output(target, force=force) as out:
        digest = source.copy(plan.runs, out)
    written.append(target)
    return Part(
        path=target.name,
        requests=plan.requests,
        lines=plan.lines,
        bytes=plan.bytes,
        sha256=digest,
        first_custom_id=_custom_id(source.read(*plan.first)),
        last_custom_id=_custom_id(source.read(*plan.last)),
        embedding_inputs=plan.inputs,
        line_ranges=[(first, last) for _s, _e, first, last in plan.runs],
    )


def _custom_id(line: bytes) -> str | None:
    try:
        value = loads(line)
    except ValueError:
        return None
    custom_id = value.get("custom_id") if isinstance(value, dict) else None
    return custom_id if isinstance(custom_id, str) else None


def _earlier_outputs(folder: Path, stem: str, keep: set[Path]) -> list[Path]:
    """Parts, rejected lines of an earlier split of the same file that this one will not replace."""
    if not folder.is_dir():
        return []
    pattern = re.compile(re.escape(stem) + r"\.(part-\d{3,}-of-\d{3,}|rejected)\.jsonl")
    return sorted(p for p in folder.iterdir() if pattern.fullmatch(p.name) and p not in keep)
