"""Splitting a batch file into parts that each satisfy the limits, copying lines as bytes.

One pass over the file: the validation (in parallel, like ``validate``; the limits
themselves are not problems here) also measures every line (bytes, estimated tokens with a
token budget, embedding inputs) and says which have errors; ``cutting`` chooses the cut
points from those numbers, a few bytes per line, without reading the file again, as the
chunks come (with ``parts``, once all are in: the shares need the count of good lines), and
each full part is hashed in a thread from then on; then ``ranges`` copies each part's byte
ranges (in the kernel where it can, two parts at a time). A file validated before
(``report``) or split unchecked (``check=False``) is only measured: by its line ends alone
(``plan.size_lines``, nothing parsed) unless a limit reads the lines. Problems are not held
(``--skip-invalid`` on a million invalid lines stays flat). Lines are never re-serialized: without
``by``, the parts concatenated are the input, byte for byte. Memory stays flat apart from
the custom_id set (and, with ``parts``, the per-line measures). The parts, the rejected
lines and the manifest are written under temporary names and renamed together at the end
(``manifests.OutputSet``), so a failure leaves an earlier split as it was.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from orjson import loads

from ..errors import UsageError, option
from ..lines.parallel import LineChunks
from ..lines.reading import ReadError, describe_os_error, is_compressed, open_source
from ..outputs.manifests import (
    Manifest,
    OutputSet,
    Part,
    make_folder,
    manifest_path,
    part_name,
    rejected_name,
)
from ..rules.checks import Chunk, Context
from ..rules.limits import LIMIT_CODES, Limits
from ..rules.problems import Problem, Report, Stats, problem
from ..rules.profiles import EMBEDDINGS_URLS, Profile, check_endpoint, get_profile
from ..rules.requests import RequestFacts, read_request
from ..tokens.counting import TokenCounter
from ..validate import Measured, validate_file
from .plan import (
    By,
    Cutter,
    LineFacts,
    PartPlan,
    Progress,
    SplitError,
    measure_lines,
    plan_cuts,
    size_lines,
)
from .ranges import ByteRanges

__all__ = ["LIMIT_CODES", "SplitError", "SplitResult", "split_file", "without"]

T = TypeVar("T")
TARGET_CODES = ("invalid_url", "mismatched_model")
"""Not problems with ``by``: the groups take care of them."""


@dataclass
class SplitResult:
    """What ``split_file`` did: the validation ``report``, and the ``manifest`` if it wrote.

    With ``skip_invalid`` and no valid line, the manifest has no parts (only ``rejected``).
    """

    report: Report
    manifest: Manifest | None = None
    folder: Path | None = None

    @property
    def written(self) -> bool:
        return self.manifest is not None

    def to_dict(self) -> dict[str, Any]:
        """What ``split --format json`` prints: the manifest's ``to_dict()`` (with
        ``manifest``, where it was written) when the split wrote, else the report's, as
        ``validate_file`` returns it: a manifest has ``parts``, a report ``problems``."""
        return self.manifest.to_dict() if self.manifest is not None else self.report.to_dict()


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
    report: Report | None = None,
    name: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    keep: Iterable[str | os.PathLike[str]] = (),
    replaces: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    check: bool = True,
    **limits: int | None,
) -> SplitResult:
    """Split a batch file into parts that each satisfy the profile's limits (or ``limits``).

    ``parts``: exactly that many parts, balanced by requests. ``by``: ``"model"`` makes one
    group per (endpoint, model), ``"endpoint"`` one per endpoint, each split further as
    needed. ``max_tokens`` (default: the profile's ``max_enqueued_tokens``): each part's
    estimated input tokens (``TokenCounter``, counted by ``workers``) stay at or under it;
    raises ``TokensUnavailable`` without bpe-openai. Writes ``<stem>.part-001-of-00N.jsonl``...
    and ``<stem>.manifest.json`` in ``out_dir`` (default: next to the input); ``name``
    (default: ``source``) gives the stem and the manifest's ``input``. If the file has
    problems (as ``validate`` reports them, minus the limits), nothing is written and the
    result's report says why, unless ``skip_invalid``: then the invalid lines go, unchanged,
    to ``<stem>.rejected.jsonl`` (even when no line is valid: a manifest with no parts). An
    empty file writes nothing. ``report``: the file's validation if it was made before (its
    limit problems are left out); else ``split_file`` validates. Without ``force`` an
    earlier split's files are never replaced; with it, they all are, and only once every
    new file is complete; never, even with ``force``, the split of another input sharing
    the stem (its manifest names that input: ``OutputExists``), nor the files of ``keep``
    (the caller's inputs: never removed, and an output named like one is refused).
    ``replaces``: a single file the parts stand for (an earlier retry file), removed in the
    same step with ``force``. ``progress(bytes_done, size)`` follows the validation (and
    token counting). ``endpoint``: the batch's endpoint, as ``validate_file`` takes it (the
    endpoint of ``{custom_id, body}`` lines; default the profile's first).

    ``check=False``: for a file validated before, the lines are not checked (the report has
    no problems but a line no part can hold, or an empty file; its stats give the lines, the
    bytes and the first line's endpoint and model): every line is a request, copied as it
    is. The limits that need a line's content (``max_tokens``, ``by``, embedding inputs)
    still read every line; the others need only the line sizes, found without parsing.
    """
    path = Path(source)
    profile = get_profile(profile, **limits)
    part_limits = Limits.of(profile, max_tokens)
    check_endpoint(profile, endpoint)
    if parts is not None and parts < 1:
        raise UsageError(f"parts must be at least 1, not {parts}")
    if by not in (None, "model", "endpoint"):
        raise UsageError(f"by must be 'model' or 'endpoint', not {by!r}")
    if parts is not None and by is not None:
        raise UsageError(
            f"{option('parts')} cannot be combined with {option('by')} "
            "(each group is split as needed)"
        )
    if skip_invalid and not check and report is None:
        raise UsageError(
            f"{option('skip_invalid')} needs the lines checked: unchecked lines "
            f"({option('no_check')}) are never found invalid"
        )
    _require_file(path)
    ignore = LIMIT_CODES + (TARGET_CODES if by else ())
    given = None
    if report is not None:
        report = without(report, ignore)
        if skip_invalid and report.truncated:
            raise UsageError("with skip_invalid, the report must list every problem")
        given = {p.line for p in report.problems if p.severity == "error" and p.line is not None}
    folder = Path(out_dir) if out_dir is not None else path.parent
    result = SplitResult(report or Report(str(path)), None, folder)
    if report is not None and _nothing_to_write(report, skip_invalid):
        return result
    unchecked = report is None and not check
    if unchecked:
        report = result.report = _unchecked(path, profile, endpoint)
    sizes_only = report is not None and not _reads_lines(part_limits, profile, by, report)
    known = (report.stats.bytes or None) if report is not None else None  # as measured
    facts = LineFacts(by, given)
    cutter = Cutter(part_limits, profile, by) if parts is None else None
    with ExitStack() as stack:
        hashing: list[ByteRanges] = []

        def measured(base: int, chunk: Chunk, errors: list[int]) -> None:
            if not hashing:  # its threads start once the workers are forked
                ranges = ByteRanges(path, known, spread=sizes_only)
                hashing.append(stack.enter_context(closing(ranges)))
            facts.add(base, chunk, errors)
            if cutter is not None:  # cut as the chunks come; hash each full part at once
                cutter.feed(*facts.chunks.pop())
                for plan in cutter.planner.closed:
                    hashing[0].hash(plan.runs)
                cutter.planner.closed.clear()
                filling = cutter.planner.open.get(None)
                if by is None and filling is not None:  # and the part being filled so far
                    hashing[0].follow(filling.runs)

        if report is None:
            report = result.report = validate_file(
                path, profile, max_problems=max_problems, ignore=ignore, workers=workers,
                endpoint=endpoint, measure=True, count_tokens=part_limits.max_tokens is not None,
                on_chunk=measured, progress=progress,
            )  # fmt: skip
        else:
            with _measures(path, profile, endpoint, part_limits, sizes_only, workers) as chunks:
                base = done = 0
                for chunk in chunks:
                    done += sum(chunk.sizes)
                    measured(base, chunk, [])
                    base += chunk.lines
                    if progress is not None:
                        progress(done, report.stats.bytes or None)
            if unchecked:
                report.stats.lines = report.stats.requests = base
        if _nothing_to_write(report, skip_invalid) or not hashing:
            return result
        data = hashing[0]
        if cutter is not None:
            planner = cutter.finish(report)
        else:
            planner = plan_cuts(facts, part_limits, profile, by, parts, report)
        if parts is not None and planner.extra and skip_invalid:
            # the lines no part can hold took a share of the parts: plan without them
            alone = {p.line for p in planner.extra if p.line is not None}
            extra = planner.extra
            planner = plan_cuts(facts, part_limits, profile, by, parts, report, alone)
            planner.extra = extra
        made = len(planner.plans())
        if parts is not None and made != parts and (skip_invalid or not planner.extra):
            raise SplitError(f"could make {made} parts, not {parts}")  # never, by design
        if planner.extra:
            _add_problems(report, planner.extra, max_problems)
            if not skip_invalid:
                return result
        if skip_invalid:
            _cap(report, max_problems)
        label = Path(name) if name is not None else path
        manifest = Manifest(
            input=str(label),
            bytes=report.stats.bytes,
            lines=report.stats.lines,
            profile=profile.name,
            limits=part_limits.to_dict(),
        )
        outputs = OutputSet(
            folder,
            label.stem,
            force=force,
            whole=replaces,
            keep=[path, *keep],
            run="split",
            input=label,
            sha256=lambda: data.sha256.result(),
        )
        _write(data, manifest, outputs, planner.plans(), planner.rejected)
        result.manifest = manifest
    return result


FIRST_LINE_BYTES = 16 << 20
"""An unchecked split reads the batch's endpoint and model from the first line if it is at
most this long (a longer one is not held in memory for them: they stay unknown)."""


def _unchecked(path: Path, profile: Profile, endpoint: str | None) -> Report:
    """The report of a file split unchecked: its bytes, and the batch's endpoint and model
    (the endpoint given, else the first line's; the first line's model); the lines come
    once measured. An empty file is the one problem it can have (as validation says it)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            first = handle.readline(FIRST_LINE_BYTES + 1)
    except OSError as exc:
        raise ReadError(describe_os_error(path, exc)) from None
    ctx = Context(profile, endpoint)
    try:
        facts = read_request(loads(first), ctx) if len(first) <= FIRST_LINE_BYTES else None
    except ValueError:
        facts = None
    found = model = None
    if isinstance(facts, RequestFacts):
        found, model = facts.endpoint, facts.model
    endpoint = ctx.endpoint or endpoint or found
    report = Report(str(path), Stats(bytes=size, endpoint=endpoint, model=model))
    if not size and not profile.empty_file_ok:
        _add_problems(report, [problem("empty_file", None, "The file contains no requests.")], 1)
    return report


def _reads_lines(limits: Limits, profile: Profile, by: By | None, report: Report) -> bool:
    """Whether cutting needs what the lines hold, not only their sizes: their tokens, their
    groups, or their embedding inputs (limited, or counted in the manifest: wherever the
    file's endpoint may be an embeddings one)."""
    if limits.max_tokens is not None or by is not None:
        return True
    endpoint = report.stats.endpoint
    mixed = endpoint is None or not profile.one_endpoint
    return any(url in EMBEDDINGS_URLS for url in profile.endpoints) and (
        mixed or endpoint in EMBEDDINGS_URLS
    )


@contextmanager
def _measures(
    path: Path,
    profile: Profile,
    endpoint: str | None,
    limits: Limits,
    sizes_only: bool,
    workers: int | None,
) -> Iterator[Iterable[Measured]]:
    """Every line measured without checking it (a file validated before, or unchecked): only
    its size where that is all cutting needs (``size_lines``), else parsed and measured
    (``measure_lines``) in the workers."""
    if sizes_only:
        with closing(size_lines(path)) as sizes:
            yield sizes
        return
    counter = TokenCounter() if limits.max_tokens is not None else None
    work = partial(measure_lines, Context(profile, endpoint), counter)
    with open_source(path) as handle:
        yield LineChunks(path, handle, work, workers=workers, prime=bool(counter))


def _nothing_to_write(report: Report, skip_invalid: bool) -> bool:
    """An unreadable or empty file, or one with problems and no ``skip_invalid``."""
    return bool(report.error) or (not report.valid and not skip_invalid) or not report.stats.lines


def without(report: Report, codes: Iterable[str]) -> Report:
    """A copy of ``report`` without the problems of ``codes`` (nor their counts)."""
    drop = set(codes)
    counts = {c: n for c, n in report.stats.counts.items() if c not in drop}
    return Report(
        report.file,
        dataclasses.replace(report.stats, counts=counts),
        [p for p in report.problems if p.code not in drop],
        report.error,
    )


def _require_file(path: Path) -> None:
    if str(path) == "-":
        raise UsageError("split copies byte ranges of its input: give a file, not standard input")
    try:
        info = path.stat()
    except OSError as exc:
        raise ReadError(describe_os_error(path, exc)) from None
    if stat.S_ISDIR(info.st_mode):
        raise ReadError(f"{path}: is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise ReadError(f"{path}: not a regular file (split reads its input twice)")
    if is_compressed(path):  # parts are byte ranges of the file: decompress it first
        raise ReadError(f"{path}: compressed; split copies byte ranges, so decompress it first")


def _add_problems(report: Report, found: list[Problem], cap: int | None) -> None:
    counts = report.stats.counts
    listed = sum(1 for q in report.problems if q.line is not None)
    for p in found:
        counts[p.code] = counts.get(p.code, 0) + 1
        if cap is None or listed < cap:
            report.problems.append(p)
            listed += 1
    report.problems.sort(key=lambda p: (p.line is None, p.line or 0))


def _cap(report: Report, cap: int | None) -> None:
    """List at most ``cap`` line problems (file-level ones always), like ``validate_file``."""
    if cap is None:
        return
    lines = [p for p in report.problems if p.line is not None][:cap]
    report.problems[:] = lines + [p for p in report.problems if p.line is None]


def _write(
    source: ByteRanges,
    manifest: Manifest,
    outputs: OutputSet,
    plans: list[PartPlan],
    rejected: PartPlan,
) -> None:
    """Copy every part (and the rejected lines) and write the manifest, all under temporary
    names; then rename them into place together (the manifest last)."""
    folder, stem = outputs.folder, outputs.stem
    names = [part_name(stem, i, len(plans)) for i in range(1, len(plans) + 1)]
    if rejected.lines:
        names.append(rejected_name(stem))
    outputs.check([*(folder / n for n in names), manifest_path(folder, stem)])
    make_folder(folder)
    counted = manifest.limits.get("max_tokens") is not None
    with outputs, _beside() as beside:
        for plan in plans:  # to the hashing thread, in order, before the input's digest
            source.hash(plan.runs)
        whole = source.sha256  # the rest of the input, hashed while the parts are copied
        copies: list[Future[tuple[Part, Future[str]]]] = []
        failed: list[Future[Any]] = []
        for i, (plan, name) in enumerate(zip(plans, names, strict=False)):
            if failed:  # a copy beside failed: say so now, not after every other part
                failed[0].result()
            if i % 2 and source.in_kernel_copy(plan.runs):  # two kernel copies at a time
                copies.append(beside.submit(_copy, source, plan, outputs, name))
                copies[-1].add_done_callback(partial(_note_failure, failed))
            else:
                copies.append(_done(_copy(source, plan, outputs, name)))
        hashes = []
        for plan, copied in zip(plans, copies, strict=True):
            part, digest = copied.result()
            part.endpoint, part.model = plan.key
            part.input_tokens = plan.tokens if counted else None
            manifest.parts.append(part)
            hashes.append((part, digest))
        if rejected.lines:
            manifest.rejected, digest = _copy(source, rejected, outputs, names[-1])
            manifest.rejected.first_custom_id = manifest.rejected.last_custom_id = None
            hashes.append((manifest.rejected, digest))
        for part, digest in hashes:  # the parts are hashed in a thread as they are copied
            part.sha256 = digest.result()
        manifest.sha256 = whole.result()
        outputs.add_manifest(manifest)
        outputs.commit()


def _note_failure(failed: list[Future[Any]], future: Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        failed.append(future)


@contextmanager
def _beside() -> Iterator[ThreadPoolExecutor]:
    """A thread copying beside the main one; when the block fails (an error, Ctrl-C), the
    copies it has not started are dropped, and the one under way ends before the block's
    temporary files are removed."""
    pool = ThreadPoolExecutor(1)
    try:
        yield pool
    except BaseException:
        pool.shutdown(cancel_futures=True)
        raise
    pool.shutdown()


def _done(value: T) -> Future[T]:
    done: Future[T] = Future()
    done.set_result(value)
    return done


def _copy(
    source: ByteRanges, plan: PartPlan, outputs: OutputSet, name: str
) -> tuple[Part, Future[str]]:
    """Copy one plan into its file; the part (its sha256 left to the future)."""
    with outputs.create(name) as out:
        digest = source.copy(plan.runs, out)
    part = Part(
        path=name,
        requests=plan.requests,
        lines=plan.lines,
        bytes=plan.bytes,
        first_custom_id=_custom_id(source.read(*plan.first)),
        last_custom_id=_custom_id(source.read(*plan.last)),
        embedding_inputs=plan.inputs,
        line_ranges=[(first, last) for _s, _e, first, last in plan.runs],
    )
    return part, digest


def _custom_id(line: bytes) -> str | None:
    try:
        value = loads(line)
    except ValueError:
        return None
    custom_id = value.get("custom_id") if isinstance(value, dict) else None
    return custom_id if isinstance(custom_id, str) else None
