"""Preparing a job: validate every input, split each into parts, write the ledger's round 0.

Nothing is written to the ledger until every input is valid and split, so a run stopped by
an invalid line can be rerun with the fixed file in the same folder. A ledger that exists is
checked against the inputs (their sha256, in order) and the limits: the same command resumes,
other inputs are refused.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import JsonlBatchError, UsageError
from ..lines.reading import ReadError, describe_os_error
from ..results.join import expand_inputs, join_into
from ..rules.limits import LIMIT_CODES, Limits
from ..rules.problems import Report
from ..rules.profiles import Profile
from ..split.engine import split_file
from ..validate import validate_file
from .ledger import Ledger

PARTS = "parts"


class InvalidInputs(JsonlBatchError):
    """Some inputs have problems, so nothing was uploaded; ``reports`` say which."""

    code = "invalid_inputs"

    def __init__(self, reports: list[Report]) -> None:
        names = ", ".join(r.file or "?" for r in reports)
        super().__init__(f"{names}: invalid batch file; nothing was uploaded")
        self.reports = reports


class _Nowhere:
    """A join sink that keeps nothing: the join is run for its checks only."""

    def begin(self, schema: pa.Schema) -> None:
        pass

    def write(self, table: pa.Table) -> None:
        pass


def input_paths(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The job's input files: split manifests stand for their parts."""
    if not inputs:
        raise UsageError("a job needs at least one input file")
    paths = [Path(p) for p in expand_inputs(inputs)]  # type: ignore[arg-type]
    for path in paths:
        if os.fspath(path) == "-":
            raise UsageError("a job reads its inputs more than once: give files, not stdin")
    return paths


def fingerprint(paths: list[Path], profile: Profile, limits: Limits) -> dict[str, Any]:
    """What makes a job this job: its inputs' bytes, in order, and the part limits."""
    files = []
    for path in paths:
        try:
            with open(path, "rb") as handle:
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
        except OSError as exc:
            raise ReadError(describe_os_error(path, exc)) from None
        files.append({"name": path.name, "sha256": digest})
    return {"inputs": files, "profile": profile.name, "limits": limits.to_dict()}


def prepare(
    ledger: Ledger,
    paths: list[Path],
    profile: Profile,
    limits: Limits,
    *,
    workers: int | None = None,
    max_problems: int | None = 100,
    now: float = 0.0,
) -> bool:
    """Make the job's parts unless the ledger already has them; ``True`` when it did.

    Raises ``InvalidInputs`` (nothing written) and ``UsageError`` when the ledger belongs to
    other inputs.
    """
    want = fingerprint(paths, profile, limits)
    if ledger.get("prepared"):
        have = ledger.get("fingerprint")
        if have != want:
            names = ", ".join(f["name"] for f in have["inputs"])
            raise UsageError(
                f"{ledger.folder} holds the job of other inputs or limits ({names}); "
                "give the same inputs and limits to resume, or another folder"
            )
        return False
    ledger.reset()  # a preparation cut short leaves nothing to trust
    reports = [
        validate_file(p, profile, max_problems=max_problems, ignore=LIMIT_CODES, workers=workers)
        for p in paths
    ]
    for report in reports:
        if report.error:
            raise ReadError(report.error)
    bad = [r for r in reports if not r.valid]
    if bad:
        raise InvalidInputs(bad)
    if len(paths) > 1:
        join_into(_Nowhere(), paths, [])  # a custom_id in two inputs: JoinError now, not later
    parts = []
    for index, (path, report) in enumerate(zip(paths, reports, strict=True), 1):
        folder = ledger.folder / PARTS / f"{index:03d}"
        split = split_file(
            path,
            folder,
            profile,
            report=report,
            force=True,
            max_tokens=limits.max_tokens,
            max_problems=max_problems,
            workers=workers,
            keep=paths,
        )
        if split.manifest is None:
            if split.report.stats.lines and not split.report.valid:
                raise InvalidInputs([split.report])
            continue  # no request in it
        for part in split.manifest.parts:
            parts.append((folder / part.path, part))
    with ledger.transaction():
        for path, part in parts:
            ledger.add_part(
                round=0,
                path=os.fspath(path.relative_to(ledger.folder)),
                sha256=part.sha256,
                requests=part.requests,
                bytes=part.bytes,
                tokens=part.input_tokens,
                endpoint=part.endpoint,
            )
        ledger.set("fingerprint", want)
        ledger.set("inputs", [os.fspath(p.resolve()) for p in paths])
        ledger.set("run_id", secrets.token_hex(6))
        ledger.set("started", now)
        ledger.set("round", 0)
        ledger.set("prepared", True)
    return True
