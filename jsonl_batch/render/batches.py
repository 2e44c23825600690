"""Renderers of batches (``jsonl-batch batches``): tables and text for people, JSON for programs.

JSON output is the API's objects unchanged; times in text are UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from .text import BAR_WIDTH, ProgressLine, bar, lines, printable, report_text

Batch = Mapping[str, Any]
METADATA_WIDTH = 32
FIELD_ORDER = (
    "id",
    "object",
    "status",
    "endpoint",
    "model",
    "input_file_id",
    "output_file_id",
    "error_file_id",
    "completion_window",
    "created_at",
    "in_progress_at",
    "expires_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
    "request_counts",
    "usage",
    "metadata",
    "errors",
)
"""The order of ``batch_text``'s fields (the API reference's); other fields follow."""


def to_jsonl(objs: Iterable[Any]) -> str:
    """One compact JSON object per line."""
    return "\n".join(orjson.dumps(obj).decode() for obj in objs)


def when(ts: Any, seconds: bool = True) -> str:
    """A Unix timestamp as a readable UTC time; ``-`` for none; as it is when it is not one
    (not an integer, or out of the calendar's range)."""
    if ts is None:
        return "-"
    fmt = "%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M"
    if not _is_int(ts):
        return str(ts)
    try:
        return datetime.fromtimestamp(ts, UTC).strftime(fmt)
    except (OverflowError, OSError, ValueError):
        return str(ts)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(value: Any) -> int:
    """A count from a server for arithmetic: 0 unless it is an integer."""
    return value if _is_int(value) else 0


def _num(value: Any) -> str:
    """A count from a server for display: ``1,234``, or the value as it is."""
    return f"{value:,}" if _is_int(value) else str(value)


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def duration(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``12s``."""
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def counts(batch: Batch) -> str:
    """Request counts as ``completed/failed/total``."""
    c = batch.get("request_counts") or {}
    return f"{c.get('completed', 0)}/{c.get('failed', 0)}/{c.get('total', 0)}"


def short_metadata(metadata: Mapping[str, str] | None, width: int = METADATA_WIDTH) -> str:
    text = ", ".join(f"{k}={v}" for k, v in (metadata or {}).items())
    return text if len(text) <= width else text[: width - 3] + "..."


def batches_table(batches: Sequence[Batch]) -> str:
    """The ``list`` table: one row per batch."""
    if not batches:
        return "no batches"
    head = ("ID", "STATUS", "ENDPOINT", "MODEL", "CREATED (UTC)", "DONE/FAILED/TOTAL", "METADATA")
    rows = [
        (
            _cell(b["id"]),
            _cell(b["status"]),
            _cell(b.get("endpoint")),
            _cell(b.get("model")),
            when(b.get("created_at"), seconds=False),
            counts(b),
            short_metadata(b.get("metadata")),
        )
        for b in batches
    ]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    return lines(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (head, *rows)
    )


def error_lines(batch: Batch) -> list[str]:
    """``errors.data`` as ``line N code [param]: message`` lines."""
    out = []
    for e in (batch.get("errors") or {}).get("data") or []:
        where = f"line {e['line']}" if e.get("line") is not None else "file"
        param = f" [{e['param']}]" if e.get("param") else ""
        out.append(f"{where} {e.get('code')}{param}: {e.get('message')}")
    return out


def _usage(u: Mapping[str, Any]) -> str:
    cached = _dict(u.get("input_tokens_details")).get("cached_tokens", 0)
    reasoning = _dict(u.get("output_tokens_details")).get("reasoning_tokens", 0)
    return (
        f"input {_num(u.get('input_tokens', 0))} (cached {_num(cached)}), "
        f"output {_num(u.get('output_tokens', 0))} (reasoning {_num(reasoning)}), "
        f"total {_num(u.get('total_tokens', 0))}"
    )


def _field(key: str, value: Any) -> list[str]:
    if key.endswith("_at") and (value is None or isinstance(value, int)):
        return [when(value)]
    if value is None:
        return ["-"]
    if key == "request_counts":
        done, failed = value.get("completed", 0), value.get("failed", 0)
        return [f"{done} completed, {failed} failed, {value.get('total', 0)} total"]
    if key == "usage":
        return [_usage(value)]
    if key == "metadata":
        return [f"{k}: {v}" for k, v in value.items()] or ["-"]
    if key == "errors":
        return error_lines({"errors": value}) or ["-"]
    if isinstance(value, (dict, list)):
        return [orjson.dumps(value).decode()]
    return [str(value)]


def batch_text(batch: Batch) -> str:
    """Every field of one batch, one per line; times readable, errors listed."""
    width = max(len(k) for k in batch)
    keys = [k for k in FIELD_ORDER if k in batch] + [k for k in batch if k not in FIELD_ORDER]
    out = []
    for key in keys:
        shown = _field(key, batch[key])
        out.append(f"{key.ljust(width)}  {shown[0]}")
        out.extend(f"{'':{width}}  {line}" for line in shown[1:])
    return lines(out)


def status_line(batch: Batch) -> str:
    """``batch_abc: completed (95 completed, 5 failed, 100 total)``."""
    c = batch.get("request_counts") or {}
    return printable(
        f"{batch['id']}: {batch['status']} ({c.get('completed', 0)} completed, "
        f"{c.get('failed', 0)} failed, {c.get('total', 0)} total)"
    )


def final_text(batch: Batch, hint: bool = True) -> str:
    """The end of ``wait``: the status line, the batch's errors, what to do next."""
    out = [status_line(batch), *(f"  {line}" for line in error_lines(batch))]
    if hint and (batch.get("output_file_id") or batch.get("error_file_id")):
        out.append(f"download the results with: jsonl-batch batches download {batch['id']}")
    return lines(out)


def progress_bar(batch: Batch, elapsed: float, width: int = BAR_WIDTH) -> str:
    """A one-line bar of finished requests (completed + failed) out of the total."""
    c = _dict(batch.get("request_counts"))
    total, done = _int(c.get("total")), _int(c.get("completed")) + _int(c.get("failed"))
    return printable(
        f"{batch['id']} {bar(done, total, width)} {done}/{total} ({c.get('failed', 0)} failed) "
        f"{batch['status']} {duration(elapsed)}"
    )


class Progress:
    """``wait``'s ``on_poll``: a redrawn bar on a terminal, else a line per change.

    Plain lines are printed when the status or counts change, and at least every ``every``
    seconds so logs show the wait is alive.
    """

    def __init__(self, stream: IO[str], tty: bool, every: float = 300.0) -> None:
        self.stream, self.tty, self.every = stream, tty, every
        self.line = ProgressLine(stream)
        self.last: tuple[Any, ...] | None = None
        self.printed_at = 0.0

    def __call__(self, batch: Batch, elapsed: float) -> None:
        if self.tty:
            self.line.draw(progress_bar(batch, elapsed))
            return
        state = (batch["status"], counts(batch))
        if state == self.last and elapsed - self.printed_at < self.every:
            return
        self.last, self.printed_at = state, elapsed
        self.stream.write(f"[{duration(elapsed)}] {status_line(batch)}\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        self.line.close()


def download_text(result: Any) -> str:
    """What ``download`` wrote, and why a file is absent (an ``api.Download``)."""
    if not (result.output or result.errors):
        batch = result.batch
        found = [f"{batch['id']} is {batch['status']}: it has no result files"]
        return lines([*found, *(f"  {line}" for line in error_lines(batch))])
    out = []
    for path, what, absent in (
        (result.output, "output", "no output file: no request succeeded"),
        (result.errors, "errors", "no error file: no request failed"),
    ):
        out.append(f"wrote {path} ({what})" if path else absent)
    return lines(out)


def created_text(file: str, created: Any) -> str:
    """What ``create`` did (an ``api.Created``): warnings found, the upload, the new batch."""
    out = []
    if created.report and created.report.stats.counts:
        out.append(report_text(created.report))  # already printable, a line per problem
    batch = created.batch
    out.append(
        printable(
            f"uploaded {file} as {created.file['id']}; created {batch['id']} ({batch['status']})"
        )
    )
    return "\n".join(out)


def created_id(created: Any) -> str:
    """``create``'s text output: the new batch's id alone, for scripts."""
    return str(created.batch["id"])


def next_page_text(page: Any) -> str:
    """After one page of ``list`` (an ``api.BatchPage`` with more): the command for the next."""
    return printable(f"next page: jsonl-batch batches list --after {page.next_after}")
