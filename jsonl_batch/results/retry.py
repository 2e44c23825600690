"""Retry files: the original request lines, byte for byte, of the requests that did not succeed.

``write_retry(inputs, results, output)`` joins (``joining.join``), selects the requests to
retry, copies their lines from the inputs unchanged (in input order) to a temporary file next
to ``output`` and validates it once. Within the profile's limits it becomes ``output``; over
them it is split like ``split`` does (``splitting.split_file``, reusing that validation), and
only the parts and their manifest are written: never a whole file too big to send.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from .. import compute as pc
from ..errors import UsageError
from ..lines.reading import BUFFER_SIZE, LineReader, Source, open_source, source_name
from ..outputs.atomic import atomic_output, check_writable, writes_through
from ..outputs.manifests import OutputSet
from ..rules.limits import LIMIT_CODES
from ..rules.problems import Report
from ..rules.profiles import Profile, check_endpoint, get_profile
from ..split.engine import SplitResult, split_file, without
from ..validate import validate_file
from .join import Collect, expand_inputs, join_into

SELECTIONS = ("all", "failed", "missing", "retryable", "output-problems")
"""``all``: every request that did not succeed; ``retryable``: missing ones and failures that
may succeed unchanged (``RETRYABLE_CODES``, HTTP 408, 429 and 5xx), not 4xx validation errors;
``output-problems``: succeeded requests whose answer has an ``output_problem`` (truncated,
filtered, refused, not JSON, off-schema)."""
RETRYABLE_CODES = frozenset({"batch_expired", "batch_cancelled", "request_timeout"})


@dataclass
class RetryResult:
    """What ``write_retry`` did. ``output`` is ``None`` when there was nothing to retry;
    ``files`` are what was written to send (``output``, or its parts when it was split)."""

    output: str | None
    requests: int = 0
    bytes: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    """Selected requests per reason: ``missing`` or the failure's ``error_code``."""
    succeeded: int = 0
    not_selected: int = 0
    """Requests that did not succeed but were left out by ``only``."""
    not_results: int = 0
    """Lines of the result files that are not results (blank ones left out): a wrong file
    given as results leaves its requests "missing", so they are selected."""
    report: Report | None = None
    """The validation of the retry file (limits included)."""
    split: SplitResult | None = None
    """Set when the file was over the limits and was split into parts."""

    @property
    def files(self) -> list[str]:
        if self.output is None:
            return []
        if self.split is None:
            return [self.output]
        manifest, folder = self.split.manifest, self.split.folder
        if manifest is None or folder is None:
            return []
        return [os.fspath(folder / p.path) for p in manifest.parts]

    @property
    def ok(self) -> bool:
        """True when there was nothing to retry, or the retry file (or its parts) can be sent."""
        if self.output is None:
            return True
        if self.split is not None:
            return self.split.written
        return self.report is not None and self.report.valid

    def to_dict(self) -> dict[str, Any]:
        """``report``: the retry file's validation or, when it could not be split, why not."""
        split = self.split
        report = split.report if split is not None and not split.written else self.report
        return {
            "output": self.output,
            "files": self.files,
            "requests": self.requests,
            "bytes": self.bytes,
            "reasons": dict(self.reasons),
            "succeeded": self.succeeded,
            "not_selected": self.not_selected,
            "not_results": self.not_results,
            "valid": self.ok,
            "report": report.to_dict() if report else None,
            "manifest": split.manifest.to_dict() if split and split.manifest else None,
        }


def check_selection(only: str) -> None:
    """``UsageError`` unless ``only`` is one of ``SELECTIONS``."""
    if only not in SELECTIONS:
        raise UsageError(f"unknown selection {only!r} (choose from {', '.join(SELECTIONS)})")


def retry_mask(table: pa.Table, only: str = "all") -> pa.ChunkedArray:
    """Which rows of a join table to retry (``only`` is one of ``SELECTIONS``)."""
    check_selection(only)
    status = table.column("status")
    missing = pc.equal(status, "missing")
    failed = pc.equal(status, "failed")
    if only == "all":
        return pc.or_(missing, failed)
    if only == "missing":
        return missing
    if only == "failed":
        return failed
    if only == "output-problems":
        return pc.is_valid(table.column("output_problem"))
    code = table.column("status_code")
    retryable = pc.or_kleene(
        pc.is_in(
            table.column("error_code"), value_set=pa.array(sorted(RETRYABLE_CODES), pa.string())
        ),
        pc.or_kleene(
            pc.is_in(code, value_set=pa.array([408, 429], pa.int32())),
            pc.greater_equal(code, 500),
        ),
    )
    return pc.or_(missing, pc.and_(failed, pc.fill_null(retryable, False)))


def write_retry(
    inputs: Sequence[Source],
    results: Sequence[Source],
    output: str | os.PathLike[str],
    *,
    only: str = "all",
    profile: str | Profile = "openai",
    force: bool = False,
    schema: Any = None,
    endpoint: str | None = None,
    **limits: int | None,
) -> RetryResult:
    """Write the request lines to retry to ``output``, validated, split if over the limits.

    Lines are copied byte-identical in input order (a last line without a newline gets one).
    Over the limits (and otherwise valid), ``output`` itself is not written: only its parts
    (``<stem>.part-001-of-00N.jsonl``...) and ``<stem>.manifest.json``, as ``split`` names
    them. Nothing is written when every selected request succeeded. Without ``force`` an
    existing output (or parts or a manifest of its name) is refused before any work; with
    it, whatever an earlier retry left under that name is replaced or, with nothing to
    retry, removed. An input is never removed nor replaced: an output named like one (the
    file, or its parts or manifest when it is split) is refused, even with ``force``.
    ``"-"`` (standard output), a character device or a FIFO is written through, once the
    file is validated; it is never split there (over the limits: ``UsageError``).
    ``schema`` is ``join``'s (the JSON Schema answers are checked against, for
    ``only="output-problems"``). ``endpoint``: the batch's endpoint, as ``validate_file``
    takes it (that of ``{custom_id, body}`` lines; default the profile's first). Raises
    ``ReadError``, ``JoinError``, ``OutputExists`` and ``WriteError`` when it cannot run.
    """
    profile = get_profile(profile, **limits)
    check_endpoint(profile, endpoint)
    check_selection(only)
    sources = expand_inputs(inputs)
    if any(not isinstance(s, (str, os.PathLike)) or os.fspath(s) == "-" for s in sources):
        raise UsageError("retry reads its inputs twice: give files, not standard input")
    read = [s for s in (*sources, *inputs, *results) if isinstance(s, (str, os.PathLike))]
    with ExitStack() as stack:
        if writes_through(output):  # staged aside, then copied: never split
            check_writable(output, force, inputs=read)
            target = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "retry.jsonl"
        else:
            target = Path(output)
        return _write_retry(
            sources, inputs, results, output, target, read, only, profile, force, schema, endpoint
        )


def _write_retry(
    sources: list[Source],
    inputs: Sequence[Source],
    results: Sequence[Source],
    output: str | os.PathLike[str],
    target: Path,
    read: list[str | os.PathLike[str]],
    only: str,
    profile: Profile,
    force: bool,
    schema: Any,
    endpoint: str | None,
) -> RetryResult:
    outputs = OutputSet(
        target.parent,
        target.stem,
        force=force,
        whole=target,
        keep=read,  # never removed, even when named like an earlier retry's parts
        label=target,
        run="retry",
        input=target,
    )
    outputs.check_folder()
    outputs.check([target])
    keep = _Keep(only)
    joined = join_into(keep, sources, results, schema=schema, max_anomalies=0)
    chosen = keep.chosen.table()
    succeeded = keep.succeeded
    result = RetryResult(None, succeeded=succeeded, not_results=joined.not_results)
    # the chosen are among the succeeded for output-problems: succeeded + not_selected
    # (+ the chosen, otherwise) is every request
    picked = 0 if only == "output-problems" else chosen.num_rows
    result.not_selected = joined.requests - succeeded - picked
    if not chosen.num_rows:
        outputs.commit()  # nothing new; with force, what an earlier retry left is removed
        return result
    reasons = pc.coalesce(
        chosen.column("output_problem"), chosen.column("error_code"), chosen.column("status")
    )
    result.reasons = dict(sorted(Counter(reasons.to_pylist()).items()))
    wanted: dict[str, set[int]] = defaultdict(set)
    for name, line in zip(
        chosen.column("input_file").to_pylist(), chosen.column("line").to_pylist(), strict=True
    ):
        wanted[name].add(line)
    result.output = os.fspath(output)
    result.requests = chosen.num_rows
    with outputs:
        with outputs.create(target.name) as out:
            for source in sources:
                lines = wanted.get(source_name(source))
                if lines:
                    result.bytes += copy_lines(source, lines, out)
        staged = outputs.path(target.name)
        report = result.report = validate_file(staged, profile, endpoint=endpoint)
        report.file = result.output
        over = any(p.code in LIMIT_CODES for p in report.problems)
        if not over or not without(report, LIMIT_CODES).valid:
            if target != Path(output):  # written through: standard output, a device, a pipe
                with atomic_output(output, inputs=read) as out, open(staged, "rb") as copy:
                    shutil.copyfileobj(copy, out, BUFFER_SIZE)
                return result
            outputs.commit()  # fits, or has other problems to fix first: one file to look at
            return result
        if target != Path(output):
            raise UsageError(
                f"{result.output}: the retry file is over the limits, so it would be split "
                "into parts; give a file name to write them next to"
            )
        result.split = split_file(
            staged,
            target.parent,
            profile,
            force=force,
            report=report,
            name=target,
            keep=read,
            replaces=target,  # an earlier retry's single file goes with the new parts
            endpoint=endpoint,
        )
        outputs.discard()  # the parts, if any, were written; the whole file never is
    return result


RETRY_COLUMNS = ("input_file", "line", "status", "status_code", "error_code", "output_problem")


class _Keep:
    """A join sink that keeps, of each block of rows, what retry needs of the rows ``only``
    selects (``RETRY_COLUMNS``) and counts the succeeded ones: memory follows the requests
    to retry, not the requests."""

    def __init__(self, only: str) -> None:
        self.only = only
        self.chosen = Collect()
        self.succeeded = 0

    def begin(self, schema: pa.Schema) -> None:
        self.chosen.begin(pa.schema([schema.field(n) for n in RETRY_COLUMNS]))

    def write(self, table: pa.Table) -> None:
        table = table.select(list(RETRY_COLUMNS))
        self.succeeded += pc.sum(pc.equal(table.column("status"), "succeeded")).as_py() or 0
        self.chosen.write(pc.filter(table, retry_mask(table, self.only)))


def copy_lines(source: Source, lines: set[int], out: IO[bytes]) -> int:
    """Copy the given lines (1-based) of ``source`` to ``out`` as they are; return the bytes.

    A line's bytes run from its offset to the next line's, ending included; only a last line
    without a newline gets one, so that the lines stay apart.
    """
    written = 0
    with open_source(source) as handle:
        reader = LineReader(handle)
        pending: tuple[int, bytes] | None = None
        for line_no, offset, raw in reader:
            if pending is not None:
                written += _write_line(out, *pending, offset)
                pending = None
            if line_no in lines:
                pending = (offset, raw)
        if pending is not None:
            written += _write_line(out, *pending, reader.offset)
    return written


def _write_line(out: IO[bytes], start: int, raw: bytes, end: int) -> int:
    ending = {2: b"\r\n", 1: b"\n"}.get(end - start - len(raw), b"\n")
    out.write(raw)
    out.write(ending)
    return len(raw) + len(ending)
