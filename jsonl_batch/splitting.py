"""Splitting a batch file into parts that each satisfy the limits, copying lines as bytes.

Three steps: validate the file (in parallel, like ``validate``; the limits themselves are not
problems here); one pass over the lines to choose the cut points (``cutting``, with a token
budget reading each line's estimated tokens from worker processes as they count them); then
copy each part's byte ranges through fixed buffers, hashing as it goes (``copying``). Lines
are never re-serialized: without ``by``, the parts concatenated are the input, byte for byte.
Memory stays flat apart from the custom_id set and the cut points. The parts, the rejected
lines and the manifest are written under temporary names and renamed together at the end
(``manifests.OutputSet``), so a failure leaves an earlier split as it was.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from array import array
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path

from orjson import loads

from .copying import ByteRanges
from .cutting import By, PartPlan, Progress, SplitError, plan_cuts, token_counts
from .errors import UsageError
from .limits import PartLimits
from .manifests import (
    Manifest,
    OutputSet,
    Part,
    make_folder,
    manifest_path,
    part_name,
    rejected_name,
)
from .problems import Problem, Report
from .profiles import Profile, get_profile
from .reading import ReadError, describe_os_error, is_compressed
from .validation import validate_file

__all__ = ["LIMIT_CODES", "SplitError", "SplitResult", "split_file", "without"]

LIMIT_CODES = (
    "too_many_tasks",
    "file_too_large",
    "too_many_embedding_inputs",
    "token_limit_exceeded",
)
"""Not problems for ``split``: breaking these is why one splits."""
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
    **limits: int | None,
) -> SplitResult:
    """Split a batch file into parts that each satisfy the profile's limits (or ``limits``).

    ``parts``: exactly that many parts, balanced by requests. ``by``: ``"model"`` makes one
    group per (endpoint, model), ``"endpoint"`` one per endpoint, each split further as
    needed. ``max_tokens`` (default: the profile's ``max_enqueued_tokens``): each part's
    estimated input tokens (``TokenCounter``, counted by ``workers``) stay at or under it;
    raises ``TokensUnavailable`` without tiktoken. Writes ``<stem>.part-001-of-00N.jsonl``...
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
    same step with ``force``. ``progress(bytes_done, size)`` follows the token counting.
    """
    path = Path(source)
    profile = get_profile(profile, **limits)
    part_limits = PartLimits.of(profile, max_tokens)
    if parts is not None and parts < 1:
        raise UsageError(f"parts must be at least 1, not {parts}")
    if by not in (None, "model", "endpoint"):
        raise UsageError(f"by must be 'model' or 'endpoint', not {by!r}")
    if parts is not None and by is not None:
        raise UsageError("--parts cannot be combined with --by (each group is split as needed)")
    _require_file(path)
    ignore = LIMIT_CODES + (TARGET_CODES if by else ())
    if report is None:
        cap = None if skip_invalid else max_problems
        report = validate_file(path, profile, max_problems=cap, ignore=ignore, workers=workers)
    else:
        report = without(report, ignore)
        if skip_invalid and report.truncated:
            raise UsageError("with skip_invalid, the report must list every problem")
    folder = Path(out_dir) if out_dir is not None else path.parent
    result = SplitResult(report, None, folder)
    if report.error or (not report.valid and not skip_invalid) or not report.stats.lines:
        return result
    bad = {p.line for p in report.problems if p.severity == "error" and p.line is not None}
    with ExitStack() as stack:
        budget = part_limits.max_tokens
        tokens = token_counts(stack, path, workers, progress) if budget is not None else None
        recorded = array("q")  # with parts, the counts, in case the cuts must be planned again
        if tokens is not None and parts is not None and skip_invalid:
            tokens = _recording(tokens, recorded)
        # hashing the whole input starts now, in threads (after any worker was forked)
        data = stack.enter_context(closing(ByteRanges(path)))
        planner = plan_cuts(path, part_limits, profile, by, parts, bad, report, tokens)
        if parts is not None and planner.extra and skip_invalid:
            # the lines no part can hold took a share of the parts: plan without them
            alone = {p.line for p in planner.extra if p.line is not None}
            again = None if tokens is None else recorded
            extra = planner.extra
            planner = plan_cuts(path, part_limits, profile, by, parts, bad | alone, report, again)
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
            sha256=data.sha256.result,
        )
        _write(data, manifest, outputs, planner.plans(), planner.rejected)
        result.manifest = manifest
    return result


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


def _recording(counts: Iterator[int], into: array[int]) -> Iterator[int]:
    for n in counts:
        into.append(n)
        yield n


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
    with outputs:
        for plan, name in zip(plans, names, strict=False):
            part = _copy(source, plan, outputs, name)
            part.endpoint, part.model = plan.key
            part.input_tokens = plan.tokens if counted else None
            manifest.parts.append(part)
        if rejected.lines:
            manifest.rejected = _copy(source, rejected, outputs, names[-1])
            manifest.rejected.first_custom_id = manifest.rejected.last_custom_id = None
        manifest.sha256 = source.sha256.result()
        outputs.add_manifest(manifest)
        outputs.commit()


def _copy(source: ByteRanges, plan: PartPlan, outputs: OutputSet, name: str) -> Part:
    with outputs.create(name) as out:
        digest = source.copy(plan.runs, out)
    return Part(
        path=name,
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
