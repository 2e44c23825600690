"""Running a whole job to the end: parts under the quotas, resumable, retried, one table.

``run_job(inputs, out_dir)`` validates and splits the inputs into ``out_dir``'s parts
(``preparing``), then loops: poll the batches in flight, download what finished, submit
queued parts while there is room (``max_active`` batches, ``max_enqueued_tokens`` estimated
input tokens), sleep (from ``interval``, backing off to a minute). When a round is over, the
requests that failed for a retryable cause are copied byte-identical into retry parts
(``results.retry.write_retry``) and sent again, up to ``retries`` rounds. Last, the streaming
join writes ``out_dir/results.parquet`` (``jobs.table``).

Never twice: every step is written to the ledger before the call it prepares, each batch
carries metadata naming the run, the part and the attempt, and a resumed run that finds a
part "creating" looks for a batch carrying its tag before creating one (the crash may have
come right after ``create``); an upload cut short is found by its file name and reused.
A create whose outcome is unknown (timeout, 5xx) is never repeated blindly: the search runs
first. The clock and sleep are parameters, so tests drive time.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api import batches as api
from ..api.batches import MIN_INTERVAL  # the floor of every pause between polls
from ..api.client import ApiError
from ..errors import JsonlBatchError, UsageError
from ..lines.reading import read_lines
from ..results.join import JoinSummary
from ..results.retry import write_retry
from ..rules.limits import Limits
from ..rules.problems import plural
from ..rules.profiles import Profile, get_profile
from .ledger import FINAL, IN_FLIGHT, Ledger, PartRecord
from .prepare import InvalidInputs, input_paths, prepare
from .table import TABLE, write_job_table

__all__ = [
    "InvalidInputs",
    "JobInterrupted",
    "JobProgress",
    "JobResult",
    "JobSummary",
    "run_job",
]

MAX_INTERVAL = 60.0
BACKOFF = 1.5
RESUBMIT_AFTER = 60.0
"""A part failed for the enqueued-token cap waits this long, doubled each time (to 16x)."""
STALL_AFTER = 1800.0
"""A batch whose counts have not moved for this long is reported as stalled."""
MAX_TROUBLE = 30
"""Steps in a row ended by a failure that may pass (a server down) before the run stops."""
SEARCH_MARGIN = 3600.0
"""Clock skew allowed when searching the server for what a crashed run left."""
RUN_KEY, PART_KEY, ATTEMPT_KEY = "jsonl_batch_run", "jsonl_batch_part", "jsonl_batch_attempt"
RESULTS = "results"
RETRIES = "retries"
TOKEN_LIMIT = "token_limit_exceeded"


class JobInterrupted(JsonlBatchError):
    """The run was interrupted (Ctrl-C); ``running`` batches go on (unless ``cancelled``)."""

    code = "interrupted"

    def __init__(self, folder: Path, running: list[str], cancelled: list[str]) -> None:
        super().__init__(f"{folder}: interrupted")
        self.folder = folder
        self.running = running
        self.cancelled = cancelled


@dataclass
class JobProgress:
    """What the progress callback sees: after every poll round, and at each state change
    (``event``: one line saying what changed, else ``None``)."""

    event: str | None
    round: int
    queued: int
    active: int
    done: int
    failed: int
    requests: int
    completed: int
    """Requests answered (succeeded or failed) in this round's finished and running batches."""
    round_requests: int
    elapsed: float
    eta: float | None
    stalled: list[str] = field(default_factory=list)
    expires_in: float | None = None
    """Seconds until the first running batch's ``expires_at``."""

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class JobSummary:
    """A job's outcome: requests by status (the table's), parts by state, batches made."""

    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    missing: int = 0
    rounds: int = 0
    parts: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    resubmits: int = 0
    """Batches sent again after failing for the enqueued-token cap."""
    failed_batches: list[dict[str, Any]] = field(default_factory=list)
    """Batches that failed for good: their part, id and the server's errors."""
    join: JoinSummary | None = None

    @property
    def ok(self) -> bool:
        return self.requests > 0 and self.succeeded == self.requests

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in vars(self).items() if k != "join"}
        data["ok"] = self.ok
        data["join"] = self.join.to_dict() if self.join else None
        return data


@dataclass
class JobResult:
    """What ``run_job`` did: the table, the summary, every part as the ledger holds it."""

    folder: Path
    table: Path
    summary: JobSummary
    parts: list[PartRecord]

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": os.fspath(self.folder),
            "table": os.fspath(self.table),
            "summary": self.summary.to_dict(),
            "parts": [p.to_dict() for p in self.parts],
        }


def run_job(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    client: Any = None,
    profile: str | Profile = "openai",
    max_tokens: int | None = None,
    max_enqueued_tokens: int | None = None,
    max_active: int | None = None,
    retries: int = 2,
    interval: float = 5.0,
    window: str = "24h",
    metadata: Mapping[str, str] | None = None,
    output_expires_after: int | None = None,
    cancel_on_interrupt: bool = False,
    max_problems: int | None = 100,
    workers: int | None = None,
    progress: Callable[[JobProgress], None] | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    **limits: int | None,
) -> JobResult:
    """Run the batch files ``inputs`` (or split manifests) to the end in ``out_dir``.

    Rerunning with the same inputs and folder resumes; other inputs are refused
    (``UsageError``). Invalid inputs raise ``InvalidInputs`` before anything is uploaded.
    ``max_tokens`` and ``limits`` (``max_requests``, ...) bound each part as ``split``'s do;
    ``max_enqueued_tokens`` bounds the estimated input tokens in flight (and so each part).
    ``client``: an SDK client (default: ``api.make_client`` for ``profile``). ``progress``
    sees a ``JobProgress`` after each poll and state change. Ctrl-C raises
    ``JobInterrupted``, after cancelling the running batches with ``cancel_on_interrupt``.
    Raises ``ApiError``, ``ReadError``, ``WriteError`` when it cannot go on; the ledger
    keeps every step, so the same call resumes.
    """
    profile = get_profile(profile, **limits)
    if max_active is not None and max_active < 1:
        raise UsageError(f"max_active must be at least 1, not {max_active}")
    if retries < 0:
        raise UsageError(f"retries must be at least 0, not {retries}")
    budget = _smallest(max_tokens, max_enqueued_tokens)
    part_limits = Limits.of(profile, budget)
    user_metadata = dict(metadata or {})
    api.check_metadata({**user_metadata, RUN_KEY: "x", PART_KEY: "x", ATTEMPT_KEY: "x"}, profile)
    paths = input_paths(inputs)
    folder = Path(out_dir)
    with Ledger.open(folder) as ledger:
        prepare(
            ledger,
            paths,
            profile,
            part_limits,
            workers=workers,
            max_problems=max_problems,
            now=clock(),
        )
        sending = Sending(
            max_enqueued_tokens,
            max_active,
            retries,
            interval,
            window,
            user_metadata,
            output_expires_after,
        )
        runner = Runner(
            ledger,
            client if client is not None else api.make_client(profile.name),
            profile,
            sending,
            progress=progress,
            clock=clock,
            sleep=sleep,
        )
        try:
            runner.run()
        except KeyboardInterrupt:
            raise runner.interrupted(cancel_on_interrupt) from None
        return runner.finish(paths)


def _smallest(*values: int | None) -> int | None:
    given = [v for v in values if v is not None]
    return min(given) if given else None


@dataclass(frozen=True)
class Sending:
    """How a job sends its parts: ``run_job``'s quotas, retries, polling and batch options."""

    max_enqueued_tokens: int | None = None
    max_active: int | None = None
    retries: int = 2
    interval: float = 5.0
    window: str = "24h"
    metadata: dict[str, str] = field(default_factory=dict)
    output_expires_after: int | None = None


class Runner:
    """The loop of one job over its ledger (``run_job`` builds it)."""

    def __init__(
        self,
        ledger: Ledger,
        client: Any,
        profile: Profile,
        sending: Sending,
        *,
        progress: Callable[[JobProgress], None] | None,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self.ledger = ledger
        self.folder = ledger.folder
        self.client = client
        self.profile = profile
        self.sending = sending
        self.max_tokens = sending.max_enqueued_tokens
        self.progress = progress
        self.clock = clock
        self.sleep = sleep
        self.run_id: str = ledger.get("run_id")
        self.start = clock()
        self.answered_at_start: int | None = None
        self.moved: dict[int, tuple[Any, float]] = {}  # part -> (counts, when they last moved)
        self.changed = False
        self.trouble = 0  # steps in a row that ended with a failure that may pass

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        """Until every round is over: reconcile, poll, submit, sleep."""
        delay = self._floor()
        while True:
            self.changed = False
            self.step()
            round_ = self.ledger.get("round", 0)
            if all(p.state in FINAL for p in self.ledger.parts(round=round_)):
                if round_ < self.sending.retries and self.next_round(round_):
                    continue
                self.report(None)
                return
            self.report(None)
            delay = self._floor() if self.changed else min(delay * BACKOFF, MAX_INTERVAL)
            self.sleep(self._pause(delay))

    def step(self) -> None:
        """One round of calls. A failure that may pass (no answer, 408, 409, 429, 5xx) ends
        the step and is tried again at the next (up to ``MAX_TROUBLE`` steps in a row): the
        ledger says where each part is, and a part cut short is reconciled first."""
        try:
            self.reconcile()
            self.poll()
            self.submit()
        except ApiError as exc:
            if not _passing(exc) or self.trouble >= MAX_TROUBLE:
                raise
            self.trouble += 1
            self.report(f"{exc}; trying again")
            return
        self.trouble = 0

    def _floor(self) -> float:
        return max(self.sending.interval, MIN_INTERVAL)

    def _pause(self, delay: float) -> float:
        """``delay``, or less when a part waiting out a backoff may go sooner (not below the
        floor), or when nothing is in flight."""
        now = self.clock()
        queued = self.ledger.parts(states=("queued", "uploaded"))
        waiting = [p.not_before for p in queued if p.not_before > now]
        if waiting:
            soonest = min(waiting) - now
            if not self.ledger.parts(states=IN_FLIGHT):
                return max(soonest, MIN_INTERVAL)
            return max(min(delay, soonest), MIN_INTERVAL)
        return max(delay, MIN_INTERVAL)

    # -- reconciling what a crash left ----------------------------------------------------

    def reconcile(self) -> None:
        """Parts left "uploading" or "creating": find their file or batch on the server."""
        uploading = self.ledger.parts(states=("uploading",))
        if uploading:
            self._find_uploads(uploading)
        creating = self.ledger.parts(states=("creating",))
        if creating:
            self._find_batches(creating)

    def _find_uploads(self, parts: list[PartRecord]) -> None:
        names = {self._file_name(p): p for p in parts}
        floor = min(p.since for p in parts) - SEARCH_MARGIN
        found: dict[str, list[dict[str, Any]]] = {}
        for file in api.iter_files(self.client):
            if file.get("filename") in names:
                found.setdefault(file["filename"], []).append(file)
            if (file.get("created_at") or 0) < floor:
                break
        for name, part in names.items():
            files = [f for f in found.get(name, []) if f.get("bytes") == part.bytes]
            for extra in files[1:] + [f for f in found.get(name, []) if f not in files]:
                api.delete_file(self.client, extra["id"])  # never used by a batch of ours
            if files:
                self._set(
                    part, f"found its upload {files[0]['id']}", "uploaded", file_id=files[0]["id"]
                )
            else:
                self._set(part, None, "queued")

    def _find_batches(self, parts: list[PartRecord]) -> None:
        wanted = {self._tag(p): p for p in parts}
        floor = min(p.since for p in parts) - SEARCH_MARGIN
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for batch in api.iter_batches(self.client):
            meta = batch.get("metadata") or {}
            key = (str(meta.get(PART_KEY)), str(meta.get(ATTEMPT_KEY)))
            if meta.get(RUN_KEY) == self.run_id and key in wanted and key not in found:
                found[key] = batch
            if len(found) == len(wanted) or (batch.get("created_at") or 0) < floor:
                break
        for key, part in wanted.items():
            if key not in found:  # the create never reached the server: do it again
                self._set(part, None, "uploaded", attempt=part.attempt - 1)
            else:
                batch = found[key]
                self._attach(part, batch, f"reattached to {batch['id']} ({batch['status']})")

    def _tag(self, part: PartRecord) -> tuple[str, str]:
        return f"{part.id}:{part.sha256[:12]}", str(part.attempt)

    def _file_name(self, part: PartRecord) -> str:
        return f"{Path(part.path).stem}.{self.run_id}-{part.id}.jsonl"

    # -- polling --------------------------------------------------------------------------

    def poll(self) -> None:
        """Look at every batch in flight; download what ended; finish interrupted downloads."""
        for part in self.ledger.parts(states=("submitted",)):
            batch = api.get_batch(self.client, part.batch_id or "")
            self._watch(part, batch)
            if batch == part.batch:
                continue  # nothing new: nothing to write
            self.ledger.record_batch(part, batch)
            status = batch["status"]
            if status not in api.TERMINAL:
                event = None
                if status != part.status:
                    event = f"{batch['id']} {status}{_counts(batch)}"
                self._set(part, event, "submitted", status=status, batch=batch)
            elif status == "failed" and _token_limited(batch):
                wait = RESUBMIT_AFTER * 2 ** min(part.resubmits, 4)
                self._set(
                    part,
                    f"{batch['id']} failed: {TOKEN_LIMIT}; sending it again in {wait:g}s",
                    "uploaded",
                    status=status,
                    batch=batch,
                    resubmits=part.resubmits + 1,
                    not_before=self.clock() + wait,
                )
            elif status == "failed":
                why = "; ".join(_errors(batch)) or "no reason given"
                self._set(
                    part, f"{batch['id']} failed: {why}", "failed", status=status, batch=batch
                )
            else:
                self._set(part, None, "downloading", status=status, batch=batch)
        for part in self.ledger.parts(states=("downloading",)):
            self.download(part)

    def _watch(self, part: PartRecord, batch: dict[str, Any]) -> None:
        counts = (batch["status"], batch.get("request_counts"))
        seen = self.moved.get(part.id)
        if seen is None or seen[0] != counts:
            self.moved[part.id] = (counts, self.clock())

    def download(self, part: PartRecord) -> None:
        batch = part.batch or {}
        got = api.download_results(self.client, batch, self.folder / RESULTS, force=True)
        output, errors = (
            os.fspath(p.relative_to(self.folder)) if p else None for p in (got.output, got.errors)
        )
        event = f"{batch.get('id')} {batch.get('status')}{_counts(batch)}; results downloaded"
        self._set(part, event, "done", output=output, errors=errors)

    # -- submitting -----------------------------------------------------------------------

    def submit(self) -> None:
        """Send queued parts, in order, while there is room."""
        flying = self.ledger.parts(states=IN_FLIGHT)
        active = len(flying)
        tokens = sum(p.tokens or 0 for p in flying)
        now = self.clock()
        for part in self.ledger.parts(states=("queued", "uploaded")):
            if self.sending.max_active is not None and active >= self.sending.max_active:
                return
            if part.not_before > now:
                continue
            if self.max_tokens is not None and tokens + (part.tokens or 0) > self.max_tokens:
                return  # in order: a later, smaller part does not overtake it
            self.send(part)
            if part.state in IN_FLIGHT:
                active += 1
                tokens += part.tokens or 0

    def send(self, part: PartRecord) -> None:
        """Upload (once) and create a batch, each step written down before it is made."""
        if part.file_id is None:
            self._set(part, None, "uploading")
            uploaded = api.upload_file(
                self.client, self.folder / part.path, filename=self._file_name(part)
            )
            self._set(part, f"uploaded as {uploaded['id']}", "uploaded", file_id=uploaded["id"])
        self._set(part, None, "creating", attempt=part.attempt + 1)
        tag_part, tag_attempt = self._tag(part)
        tags = {RUN_KEY: self.run_id, PART_KEY: tag_part, ATTEMPT_KEY: tag_attempt}
        meta = {**self.sending.metadata, **tags}
        try:
            batch = api.start_batch(
                self.client.with_options(max_retries=0),  # a blind retry could create twice
                part.file_id or "",
                part.endpoint or "",
                window=self.sending.window,
                metadata=meta,
                output_expires_after=self.sending.output_expires_after,
            )
        except ApiError as exc:
            if _passing(exc):
                self.report(f"{self._label(part)}: {exc}; will look for it before trying again")
                self._find_batches([part])  # "creating" with an unknown outcome: look first
                return
            raise
        attempt = f" (attempt {part.attempt})" if part.attempt > 1 else ""
        self._attach(part, batch, f"submitted as {batch['id']}{attempt}")

    def _attach(self, part: PartRecord, batch: dict[str, Any], event: str) -> None:
        self.ledger.record_batch(part, batch)
        self._set(
            part, event, "submitted", batch_id=batch["id"], status=batch["status"], batch=batch
        )

    # -- rounds ---------------------------------------------------------------------------

    def next_round(self, round_: int) -> bool:
        """Write the retryable requests of ``round_`` into the next round's parts: one retry
        file per input (its endpoint and model), split as needed."""
        groups: dict[str, list[PartRecord]] = {}
        for part in self.ledger.parts(round=round_):
            if part.state == "done":
                groups.setdefault(Path(part.path).parent.name, []).append(part)
        limits: dict[str, Any] = {}
        if self.max_tokens:
            limits["max_enqueued_tokens"] = self.max_tokens
        made: list[tuple[Path, str | None]] = []
        requests = 0
        for group, parts in groups.items():
            target = self.folder / RETRIES / f"round-{round_ + 1}" / group / "retry.jsonl"
            target.parent.mkdir(parents=True, exist_ok=True)
            retry = write_retry(
                [self.folder / p.path for p in parts],
                [self.folder / r for p in parts for r in (p.output, p.errors) if r],
                target,
                only="retryable",
                profile=self.profile,
                force=True,
                **limits,
            )
            if retry.output is None:
                continue
            if not retry.ok:  # lines that were valid once are valid again: never
                raise RuntimeError(f"{target}: the retry file cannot be sent")
            requests += retry.requests
            made += [(Path(path), parts[0].endpoint) for path in retry.files]
        if not made:
            return False
        with self.ledger.transaction():
            for path, endpoint in made:
                self.ledger.add_part(
                    round=round_ + 1,
                    path=os.fspath(path.relative_to(self.folder)),
                    endpoint=endpoint,
                    since=self.clock(),
                    **_describe(path, self.max_tokens is not None),
                )
            self.ledger.set("round", round_ + 1)
        files = plural(len(made), "part")
        self.report(f"round {round_ + 2}: {plural(requests, 'request')} to retry in {files}")
        return True

    # -- state, progress, the end ---------------------------------------------------------

    def _set(self, part: PartRecord, event: str | None, state: str, **changes: Any) -> None:
        if state != part.state:
            changes["since"] = self.clock()
            self.changed = True
        self.ledger.update(part, state=state, **changes)
        if event:
            self.changed = True
            self.report(f"{self._label(part)}: {event}")

    def _label(self, part: PartRecord) -> str:
        return Path(part.path).name

    def report(self, event: str | None) -> None:
        if self.progress is not None:
            self.progress(self.snapshot(event))

    def snapshot(self, event: str | None) -> JobProgress:
        round_ = self.ledger.get("round", 0)
        parts = self.ledger.parts()
        now = self.clock()
        states = [p.state for p in parts if p.round == round_]
        current = [p for p in parts if p.round == round_]
        answered = sum(_answered(p) for p in current)
        total_answered = sum(_answered(p) for p in parts)
        if self.answered_at_start is None:
            self.answered_at_start = total_answered
        elapsed = now - self.start
        gained = total_answered - self.answered_at_start
        left = sum(p.requests for p in current) - answered
        eta = left * elapsed / gained if gained > 0 and elapsed > 0 else None
        running = [p for p in parts if p.state == "submitted"]
        stalled = [
            p.batch_id or ""
            for p in running
            if p.id in self.moved and now - self.moved[p.id][1] >= STALL_AFTER
        ]
        expiries = [(p.batch or {}).get("expires_at") for p in running]
        soonest = min((e for e in expiries if e), default=None)
        return JobProgress(
            event=event,
            round=round_ + 1,
            queued=sum(s in ("queued", "uploading", "uploaded") for s in states),
            active=sum(s in IN_FLIGHT for s in states),
            done=sum(s in ("downloading", "done") for s in states),
            failed=states.count("failed"),
            requests=sum(p.requests for p in parts if p.round == 0),
            completed=answered,
            round_requests=sum(p.requests for p in current),
            elapsed=elapsed,
            eta=eta,
            stalled=stalled,
            expires_in=None if soonest is None else soonest - time.time(),
        )

    def interrupted(self, cancel: bool) -> JobInterrupted:
        running = [p for p in self.ledger.parts(states=IN_FLIGHT) if p.batch_id]
        cancelled = []
        if cancel:
            for part in running:
                try:
                    api.cancel_batch(self.client, part.batch_id or "")
                    cancelled.append(part.batch_id or "")
                except ApiError:
                    pass  # it ended meanwhile
        return JobInterrupted(self.folder, [p.batch_id or "" for p in running], cancelled)

    def finish(self, inputs: list[Path]) -> JobResult:
        parts = self.ledger.parts()
        joined = write_job_table(self.folder, inputs, parts)
        summary = JobSummary(
            requests=joined.requests,
            succeeded=joined.succeeded,
            failed=joined.failed,
            missing=joined.missing,
            rounds=self.ledger.get("round", 0) + 1,
            join=joined,
        )
        for part in parts:
            summary.parts[part.state] = summary.parts.get(part.state, 0) + 1
            summary.batches += part.attempt
            summary.resubmits += part.resubmits
            if part.state == "failed":
                summary.failed_batches.append(
                    {
                        "part": part.path,
                        "batch_id": part.batch_id,
                        "errors": _errors(part.batch or {}),
                    }
                )
        return JobResult(self.folder, self.folder / TABLE, summary, parts)


def _passing(exc: ApiError) -> bool:
    """A failure that may pass: no answer (connection, timeout), 408, 409, 429 or 5xx."""
    return exc.status is None or exc.status in (408, 409, 429) or exc.status >= 500


def _answered(part: PartRecord) -> int:
    counts = (part.batch or {}).get("request_counts") or {}
    if part.state == "done":
        return part.requests
    return int(counts.get("completed") or 0) + int(counts.get("failed") or 0)


def _counts(batch: dict[str, Any]) -> str:
    c = batch.get("request_counts") or {}
    if not c.get("total"):
        return ""
    failed = f", {c.get('failed')} failed" if c.get("failed") else ""
    return f" ({c.get('completed', 0)}/{c['total']} done{failed})"


def _errors(batch: dict[str, Any]) -> list[str]:
    errors = (batch.get("errors") or {}).get("data") or []
    return [f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict)]


def _token_limited(batch: dict[str, Any]) -> bool:
    errors = (batch.get("errors") or {}).get("data") or []
    return any(isinstance(e, dict) and e.get("code") == TOKEN_LIMIT for e in errors)


def _describe(path: Path, count_tokens: bool) -> dict[str, Any]:
    """A retry part's sha256, size, requests and (when quotas need them) tokens."""
    digest = hashlib.sha256()
    requests = 0
    with open(path, "rb") as handle:
        for line in handle:
            digest.update(line)
            requests += bool(line.strip())
    tokens = None
    if count_tokens:
        from ..tokens.counting import TokenCounter, tokens_of_lines

        tokens = sum(tokens_of_lines(TokenCounter(), _raw_lines(path)))
    return {
        "sha256": digest.hexdigest(),
        "bytes": path.stat().st_size,
        "requests": requests,
        "tokens": tokens,
    }


def _raw_lines(path: Path) -> Iterable[bytes]:
    return (raw for _, _, raw in read_lines(path))
