"""Renderers of jobs (``batches run``, ``status``, ``clean``): the live view, the line log,
the final summary, a job's status."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from .batches import duration
from .text import ProgressLine, bar, lines, plural, printable

STALL_WORDS = "has made no progress for"
HINT = "resume with the same command"


def progress_text(p: Any) -> str:
    """The live view's line (a ``jobs.JobProgress``): parts, requests, time."""
    parts = [f"round {p.round}", f"{p.queued} queued", f"{p.active} running", f"{p.done} done"]
    if p.failed:
        parts.append(f"{p.failed} failed")
    total = p.round_requests
    parts.append(f"{bar(p.completed, total, 20)} {p.completed:,}/{total:,} requests")
    parts.append(duration(p.elapsed))
    if p.eta is not None:
        parts.append(f"ETA {duration(p.eta)}")
    if p.expires_in is not None:
        parts.append(f"expires in {duration(max(p.expires_in, 0))}")
    return " · ".join(parts)


class JobView:
    """``run_job``'s progress callback for a terminal: one line redrawn in place, each state
    change printed above it. Elsewhere (a log): only the state changes, a line each, with
    the time since the start."""

    def __init__(self, stream: IO[str], tty: bool) -> None:
        self.stream, self.tty = stream, tty
        self.line = ProgressLine(stream)
        self.warned: set[str] = set()

    def __call__(self, p: Any) -> None:
        said = [p.event] if p.event else []
        for batch_id in p.stalled:
            if batch_id not in self.warned:
                self.warned.add(batch_id)
                said.append(f"warning: {batch_id} {STALL_WORDS} a long time")
        if said and self.line.drawn:
            self.stream.write("\r\x1b[K")  # the events go above the live line
            self.line.drawn = False
        for text in said:
            self.stream.write(printable(f"[{duration(p.elapsed)}] {text}") + "\n")
        if self.tty:
            self.line.draw(printable(progress_text(p)))
        self.stream.flush()

    def close(self) -> None:
        self.line.close()


def job_text(result: Any) -> str:
    """``run``'s summary (a ``jobs.JobResult``): the table, its counts, failed batches."""
    s = result.summary
    out = [
        f"wrote {result.table} ({plural(s.requests, 'request')}: {s.succeeded:,} succeeded, "
        f"{s.failed:,} failed, {s.missing:,} missing)",
        f"{s.batches:,} batch{'es' if s.batches != 1 else ''} in {plural(s.rounds, 'round')}"
        + (f"; {s.resubmits} sent again after token_limit_exceeded" if s.resubmits else ""),
    ]
    if s.join and s.join.error_codes:
        codes = ", ".join(f"{k} {v}" for k, v in s.join.error_codes.items())
        out.append(f"failed requests by error: {codes}")
    for failed in s.failed_batches:
        why = "; ".join(failed["errors"]) or "no reason given"
        out.append(f"batch {failed['batch_id']} of {Path(failed['part']).name} failed: {why}")
    return lines(out)


def status_text(status: Any) -> str:
    """A job's parts, one line each (a ``job_status.JobStatus``)."""
    states = ", ".join(f"{n} {state}" for state, n in status.states.items())
    head = f"{status.folder}: round {status.round + 1}, {plural(len(status.parts), 'part')}"
    out = [f"{head} ({states}); {plural(status.requests, 'request')}"]
    if status.finished:
        out.append("finished: the table is results.parquet (rerun the command to rebuild it)")
    for p in status.parts:
        counts = (p.batch or {}).get("request_counts") or {}
        done = counts.get("completed", 0) + counts.get("failed", 0)
        where = f" {p.batch_id} {p.status}" if p.batch_id else ""
        progress = f" {done}/{p.requests}" if p.batch_id else f" {p.requests} requests"
        again = f", sent {p.attempt}x" if p.attempt > 1 else ""
        out.append(f"  {Path(p.path).name}: {p.state}{where}{progress}{again}")
    if not status.refreshed:
        out.append("(offline: as the ledger last saw it)")
    return lines(out)


def cleaned_text(cleaned: Any) -> str:
    """What ``clean`` deleted (a ``job_status.Cleaned``)."""
    out = [f"deleted {d['id']} ({d['what']})" for d in cleaned.deleted]
    out += [f"already gone: {file_id}" for file_id in cleaned.gone]
    out += [f"kept {file_id}: its batch is still running" for file_id in cleaned.kept]
    return lines(out) or "nothing to delete"


def interrupted_text(exc: Any, argv: Sequence[str]) -> str:
    """What an interrupted ``run`` left (a ``jobs.runner.JobInterrupted``): the batches
    cancelled or still running, and the command that resumes it (``argv``: its words)."""
    command = shlex.join(["jsonl-batch", *argv]) if argv else "the same command"
    if exc.cancelled:
        what = f"cancelled {len(exc.cancelled)} running batch(es): {', '.join(exc.cancelled)}"
    elif exc.running:
        what = f"{len(exc.running)} batch(es) still running on the server: {', '.join(exc.running)}"
    else:
        what = "no batch running"
    return lines([f"Interrupted: {what}.", f"To resume ({HINT}): {command}"])
