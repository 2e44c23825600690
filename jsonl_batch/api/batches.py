"""Managing batches through the API with the official ``openai`` SDK (the ``[api]`` extra).

Each function takes an SDK client (``make_client``) and returns plain data: a batch is the
API's JSON object as a dict, unchanged. Failures raise ``ApiError`` (one line, never the key).
``create_batch`` validates the file with our validator before uploading anything.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import JsonlBatchError, UsageError, option
from ..lines.reading import ReadError, parse_line, read_lines
from ..outputs.atomic import WriteError, check_writable
from ..rules.problems import Report
from ..rules.profiles import Profile, get_profile
from ..validate import validate_file
from .answers import BATCH, FILE, batch_answer, file_answer, page_answer, pages, safe_id
from .client import INSTALL_HINT, ApiError, MissingSdk, calling, load_sdk, make_client
from .downloads import download_file

if TYPE_CHECKING:
    from ..results.join import JoinSummary

__all__ = [
    "INSTALL_HINT",
    "STATUSES",
    "TERMINAL",
    "ApiError",
    "BatchPage",
    "Created",
    "Download",
    "InvalidBatchFile",
    "MissingSdk",
    "Run",
    "WaitTimeout",
    "cancel_batch",
    "check_metadata",
    "create_batch",
    "delete_file",
    "download_results",
    "get_batch",
    "iter_batches",
    "iter_files",
    "list_batches",
    "load_sdk",
    "make_client",
    "result_paths",
    "run_batch",
    "start_batch",
    "upload_file",
    "wait_for_batch",
]

STATUSES = (
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
)
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
BACKOFF = 1.5
MIN_INTERVAL = 1.0
"""The floor of the pause between two polls of ``wait_for_batch``: never a busy loop."""
"""Each poll of ``wait_for_batch`` waits this much longer than the last, up to a cap."""

Batch = dict[str, Any]


@dataclass
class BatchPage:
    """One page of ``GET /v1/batches`` (or every batch, with ``has_more`` false)."""

    data: list[Batch]
    first_id: str | None
    last_id: str | None
    has_more: bool

    @property
    def next_after(self) -> str | None:
        """The ``after`` cursor of the next page, or ``None`` on the last page."""
        return self.last_id if self.has_more else None

    def to_dict(self) -> dict[str, Any]:
        """The API's list object."""
        return {
            "object": "list",
            "data": self.data,
            "first_id": self.first_id,
            "last_id": self.last_id,
            "has_more": self.has_more,
        }


class InvalidBatchFile(JsonlBatchError):
    """The file failed validation, so it was not uploaded; ``report`` says why."""

    code = "invalid_batch_file"

    def __init__(self, report: Report) -> None:
        super().__init__(f"{report.file}: invalid batch file; not uploaded")
        self.report = report


class WaitTimeout(ApiError):
    """``wait_for_batch`` gave up; ``batch`` is the last state seen."""

    code = "wait_timeout"

    def __init__(self, message: str, batch: Batch) -> None:
        super().__init__(message)
        self.batch = batch


def list_batches(
    client: Any,
    *,
    limit: int = 20,
    after: str | None = None,
    all: bool = False,
    status: Collection[str] = (),
) -> BatchPage:
    """One page of the organization's batches, newest first (``limit`` 1..100, ``after`` cursor).

    ``all=True``: every batch (pages of ``limit``), with ``has_more`` false. ``status`` keeps
    only batches in those statuses (the API cannot filter; the cursors stay the page's).
    """
    if all:
        data = list(iter_batches(client, limit=limit, after=after))
        page = BatchPage(
            data, data[0]["id"] if data else None, data[-1]["id"] if data else None, False
        )
    else:
        _check_limit(limit)
        call = _batches_page(client, limit)
        raw = page_answer(client, "list batches", lambda: call(after), BATCH, "batch")
        page = BatchPage(
            raw["data"], raw.get("first_id"), raw.get("last_id"), bool(raw.get("has_more"))
        )
    if status:
        page.data = [b for b in page.data if b["status"] in status]
    return page


def iter_batches(client: Any, *, limit: int = 100, after: str | None = None) -> Iterator[Batch]:
    """Every batch, newest first, fetching pages of ``limit`` as needed (SDK auto-pagination)."""
    _check_limit(limit)
    yield from pages(client, "list batches", _batches_page(client, limit), BATCH, "batch", after)


def _batches_page(client: Any, limit: int) -> Callable[[str | None], Any]:
    def call(after: str | None) -> Any:
        cursor = {"after": after} if after else {}
        return client.batches.with_raw_response.list(limit=limit, **cursor)

    return call


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= 100:
        raise UsageError(f"limit must be between 1 and 100, not {limit}")


def get_batch(client: Any, batch_id: str) -> Batch:
    """One batch, every field."""
    _given(batch_id)
    return batch_answer(
        client, f"get {batch_id}", lambda: client.batches.with_raw_response.retrieve(batch_id)
    )


def _given(batch_id: str) -> None:
    if not batch_id:
        raise UsageError("the batch id is empty")


def cancel_batch(client: Any, batch_id: str) -> Batch:
    """Ask the API to cancel a batch; returns it (status ``cancelling``)."""
    _given(batch_id)
    try:
        return batch_answer(
            client, f"cancel {batch_id}", lambda: client.batches.with_raw_response.cancel(batch_id)
        )
    except ApiError as exc:
        if exc.status == 409:
            hint = "only a validating, in_progress or finalizing batch can be cancelled"
            raise ApiError(f"{exc}; {hint}", 409) from None
        raise


def check_metadata(
    metadata: Mapping[str, str] | None, profile: str | Profile = "openai"
) -> dict[str, str]:
    """Metadata within the profile's limits (OpenAI: 16 pairs, keys 64 characters, values
    512), or ``ValueError``."""
    limits = get_profile(profile)
    pairs, key_chars, value_chars = (
        limits.max_metadata_pairs,
        limits.max_metadata_key,
        limits.max_metadata_value,
    )
    metadata = dict(metadata or {})
    if len(metadata) > pairs:
        raise UsageError(f"metadata has {len(metadata)} pairs; at most {pairs}")
    for key, value in metadata.items():
        if not key or len(key) > key_chars:
            raise UsageError(f"metadata key {key[:20]!r}... must have 1 to {key_chars} characters")
        if len(value) > value_chars:
            raise UsageError(
                f"metadata value of {key!r} has {len(value)} characters; at most {value_chars}"
            )
    return metadata


@dataclass
class Created:
    """What ``create_batch`` did: the uploaded file, the new batch, the validation report."""

    file: dict[str, Any]
    batch: Batch
    report: Report | None

    def to_dict(self) -> dict[str, Any]:
        """The new batch, the API's object (the uploaded file is its ``input_file_id``)."""
        return dict(self.batch)


def create_batch(
    client: Any,
    path: str | os.PathLike[str],
    *,
    endpoint: str | None = None,
    window: str = "24h",
    metadata: Mapping[str, str] | None = None,
    validate: bool = True,
    profile: str = "openai",
) -> Created:
    """Validate ``path`` (unless ``validate=False``), upload it for ``batch``, create the batch.

    ``endpoint`` defaults to the file's. An invalid file raises ``InvalidBatchFile`` before any
    call; metadata over the profile's limits raises ``ValueError``.
    """
    meta = check_metadata(metadata, profile)
    path = Path(path)
    report = None
    if validate:
        report = validate_file(path, profile, endpoint=endpoint)
        if report.error:
            raise ReadError(report.error)
        if not report.valid:
            raise InvalidBatchFile(report)
        endpoint = endpoint or report.stats.endpoint
    endpoint = endpoint or _first_url(path)
    uploaded = upload_file(client, path)
    batch = start_batch(client, uploaded["id"], endpoint, window=window, metadata=meta)
    return Created(uploaded, batch, report)


def upload_file(
    client: Any, path: str | os.PathLike[str], *, filename: str | None = None
) -> dict[str, Any]:
    """Upload ``path`` for ``batch`` (as ``filename``, default its name); the file object."""
    path = Path(path)
    name = filename or path.name
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise ReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with handle:
        create = client.files.with_raw_response.create
        return file_answer(
            client, f"upload {path.name}", lambda: create(file=(name, handle), purpose="batch")
        )


def start_batch(
    client: Any,
    file_id: str,
    endpoint: str,
    *,
    window: str = "24h",
    metadata: Mapping[str, str] | None = None,
    output_expires_after: int | None = None,
) -> Batch:
    """Create a batch from an uploaded file; ``output_expires_after``: seconds its result
    files are kept (from their creation)."""
    meta = check_metadata(metadata)
    extra: dict[str, Any] = {"metadata": meta} if meta else {}
    if output_expires_after is not None:
        extra["output_expires_after"] = {"anchor": "created_at", "seconds": output_expires_after}
    create = client.batches.with_raw_response.create
    return batch_answer(
        client,
        "create the batch",
        lambda: create(input_file_id=file_id, endpoint=endpoint, completion_window=window, **extra),
    )


def iter_files(client: Any, *, purpose: str = "batch") -> Iterator[dict[str, Any]]:
    """Every file of ``purpose`` the organization has uploaded (file objects)."""

    def call(after: str | None) -> Any:
        cursor = {"extra_query": {"after": after}} if after else {}
        return client.files.with_raw_response.list(purpose=purpose, **cursor)

    yield from pages(client, "list files", call, FILE, "file")


def delete_file(client: Any, file_id: str) -> bool:
    """Delete a file on the server; ``False`` when it was already gone (HTTP 404)."""
    try:
        with calling(client, f"delete {file_id}"):
            client.files.delete(file_id)
    except ApiError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _first_url(path: Path) -> str:
    for _, _, raw in read_lines(path):
        value, _ = parse_line(raw)
        if isinstance(value, dict) and isinstance(value.get("url"), str):
            return value["url"]
        break
    raise UsageError(
        f"{path}: cannot tell the endpoint from the first line; give {option('endpoint')}"
    )


def wait_for_batch(
    client: Any,
    batch_id: str,
    *,
    interval: float = 5.0,
    max_interval: float = 60.0,
    timeout: float | None = None,
    on_poll: Callable[[Batch, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Batch:
    """Poll a batch until its status is terminal; return it.

    The pause starts at ``interval`` (at least ``MIN_INTERVAL``) and grows by ``BACKOFF`` up
    to ``max_interval``.
    ``on_poll(batch, elapsed_seconds)`` sees every poll. Past ``timeout`` seconds it raises
    ``WaitTimeout``.
    """
    start = clock()
    delay = max(interval, MIN_INTERVAL)
    cap = max(delay, max_interval)
    while True:
        batch = get_batch(client, batch_id)
        elapsed = clock() - start
        if on_poll:
            on_poll(batch, elapsed)
        if batch["status"] in TERMINAL:
            return batch
        if timeout is not None and elapsed >= timeout:
            raise WaitTimeout(
                f"{batch_id} is still {batch['status']} after {timeout:g}s; "
                f"wait again with: jsonl-batch batches wait {batch_id}",
                batch,
            )
        sleep(delay if timeout is None else max(0.0, min(delay, timeout - elapsed)))
        delay = min(delay * BACKOFF, cap)


@dataclass
class Download:
    """What ``download_results`` wrote (``None``: the batch has no such file)."""

    batch: Batch
    output: Path | None
    errors: Path | None

    def to_dict(self) -> dict[str, Any]:
        """The batch's id and status, and the paths written (``None``: no such file)."""
        paths = {"output": self.output, "errors": self.errors}
        return {
            "batch_id": self.batch["id"],
            "status": self.batch["status"],
            **{k: str(v) if v else None for k, v in paths.items()},
        }


def result_paths(batch_id: str, directory: str | os.PathLike[str] = ".") -> tuple[Path, Path]:
    """Where a batch's output and error files go: ``<id>.output.jsonl``, ``<id>.errors.jsonl``
    (an id that is not plain is an ``ApiError``: ``safe_id``)."""
    return batch_file(batch_id, ".output.jsonl", directory), batch_file(
        batch_id, ".errors.jsonl", directory
    )


def batch_file(batch_id: str, suffix: str, directory: str | os.PathLike[str] = ".") -> Path:
    """``directory/<batch_id><suffix>``, the one way a batch id becomes a file name."""
    return Path(directory) / f"{safe_id(batch_id, 'the batch id')}{suffix}"


def download_results(
    client: Any,
    batch: str | Batch,
    directory: str | os.PathLike[str] = ".",
    *,
    force: bool = False,
    inputs: Iterable[object] = (),
) -> Download:
    """Stream a batch's output and error files into ``directory``, each written atomically.

    A missing file id (every request failed, or none did) is skipped. Existing files are
    refused before anything is downloaded unless ``force``; ``inputs`` (local files of the
    run) are never written over. A batch still running raises
    ``ApiError``: its results are not ready.
    """
    if isinstance(batch, str):
        batch = get_batch(client, batch)
    batch_id, status = batch["id"], batch["status"]
    output_path, errors_path = result_paths(batch_id, directory)
    targets = {"output_file_id": output_path, "error_file_id": errors_path}
    wanted = {
        safe_id(batch[key], f"the {key}"): path for key, path in targets.items() if batch.get(key)
    }
    if not wanted and status not in TERMINAL:
        raise ApiError(
            f"{batch_id} is {status}: no results yet; "
            f"wait for it with: jsonl-batch batches wait {batch_id}"
        )
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(f"{directory}: cannot create folder ({exc.strerror or exc})") from None
    for path in wanted.values():
        check_writable(path, force, inputs=inputs)
    for file_id, path in wanted.items():
        download_file(client, file_id, path, force=force, inputs=inputs)
    output = targets["output_file_id"] if batch.get("output_file_id") else None
    errors = targets["error_file_id"] if batch.get("error_file_id") else None
    return Download(batch, output, errors)


@dataclass
class Run:
    """What ``run_batch`` did: the batch as it ended, its result files, the joined table."""

    created: Created
    batch: Batch
    download: Download
    table: Path
    summary: JoinSummary

    def to_dict(self) -> dict[str, Any]:
        """The batch as it ended (the API's object), the result files, the table and the
        join's summary."""
        return {
            "batch": dict(self.batch),
            "download": self.download.to_dict(),
            "table": str(self.table),
            "summary": self.summary.to_dict(),
        }


def run_batch(
    client: Any,
    path: str | os.PathLike[str],
    directory: str | os.PathLike[str] = ".",
    *,
    force: bool = False,
    on_created: Callable[[Created], None] | None = None,
    wait: Mapping[str, Any] | None = None,
    **create: Any,
) -> Run:
    """Create a batch from ``path``, wait for it, download its results, join them to the input.

    Writes ``<id>.output.jsonl``, ``<id>.errors.jsonl`` and the table ``<id>.parquet`` (one row
    per request: succeeded, failed or missing) into ``directory``. ``create`` holds the options
    of ``create_batch``, ``wait`` those of ``wait_for_batch``. A batch that failed, expired or
    was cancelled still gets its table, from whatever results it has.
    """
    from ..results.join import join  # pyarrow: imported only when a run needs it
    from ..results.tables import write_table

    folder = Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(f"{folder}: cannot create folder ({exc.strerror or exc})") from None
    created = create_batch(client, path, **create)
    if on_created:
        on_created(created)
    batch = wait_for_batch(client, created.batch["id"], **(wait or {}))
    download = download_results(client, batch, folder, force=force, inputs=[path])
    results = [p for p in (download.output, download.errors) if p]
    joined = join([path], results)
    table = batch_file(batch["id"], ".parquet", folder)
    summary = joined.summary.to_dict()
    write_table(joined.table, table, summary=summary, force=force, inputs=[path, *results])
    return Run(created, batch, download, table, joined.summary)
