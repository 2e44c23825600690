"""``jsonl-batch batches run``, ``status`` and ``clean``: whole jobs (``jobs.runner``).

Imported by ``cli/batches.py``, whose group these commands join.
"""

from __future__ import annotations

import sys

import click

from ..render.text import printable, report_text
from .batches import ApiSettings, batch_command, parse_metadata
from .options import Size, format_option, jobs_option, max_problems_option
from .output import show


@batch_command("run")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output-dir",
    required=True,
    type=click.Path(file_okay=False),
    help="The job's folder: its ledger, parts, results and results.parquet. "
    "Run the same command again to resume.",
)
@click.option("--max-requests", type=click.IntRange(min=1), help="Requests per part.")
@click.option("--max-bytes", type=Size(), help="Bytes per part (200MB, 150MiB or bytes).")
@click.option(
    "--max-embedding-inputs", type=click.IntRange(min=1), help="Embedding inputs per part."
)
@click.option(
    "--max-tokens", type=click.IntRange(min=1), help="Estimated input tokens per part (tiktoken)."
)
@click.option(
    "--max-enqueued-tokens",
    type=click.IntRange(min=1),
    help="The organization's enqueued-token cap for the model: the estimated input tokens "
    "of the batches in flight stay under it.",
)
@click.option("--max-active", type=click.IntRange(min=1), help="At most K batches in flight.")
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Rounds of retries of the requests that failed for a retryable cause "
    "(HTTP 408/429/5xx, expired, missing).",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="First pause between polls (at least 1s); it grows up to 60s.",
)
@click.option("--window", default="24h", show_default=True, help="The completion window.")
@click.option(
    "--metadata",
    multiple=True,
    metavar="KEY=VALUE",
    callback=parse_metadata,
    help="Metadata for every batch (repeatable; 13 pairs: 3 name the job's parts).",
)
@click.option(
    "--output-expires-after",
    type=click.IntRange(min=1),
    metavar="SECONDS",
    help="How long the server keeps the result files.",
)
@click.option(
    "--cancel-on-interrupt",
    is_flag=True,
    help="On Ctrl-C, cancel the running batches (default: leave them running).",
)
@max_problems_option
@jobs_option
@format_option("text", "json")
def run(
    settings: ApiSettings,
    inputs: tuple[str, ...],
    output_dir: str,
    max_requests: int | None,
    max_bytes: int | None,
    max_embedding_inputs: int | None,
    max_tokens: int | None,
    max_enqueued_tokens: int | None,
    max_active: int | None,
    retries: int,
    interval: float,
    window: str,
    metadata: dict[str, str],
    output_expires_after: int | None,
    cancel_on_interrupt: bool,
    max_problems: int,
    jobs: int | None,
    fmt: str,
) -> None:
    """Run batch files (or split manifests) to the end: one table, resumable.

    Each INPUT is validated (invalid lines stop the run before any upload), split into
    parts within the limits, and the parts are sent as batches under the quotas. Requests
    that fail for a retryable cause are sent again. The end: OUTPUT_DIR/results.parquet,
    one row per request in input order, with `attempts` and `batch_id`. If the run is
    stopped (Ctrl-C, a crash), the same command resumes it: no part is ever sent twice.

    Exit status: 0 every request succeeded, 1 some failed (or invalid input), 2 on usage,
    API or I/O errors, 130 interrupted.

    Example:

        jsonl-batch batches run big.jsonl -o job/ --max-enqueued-tokens 2000000
    """
    from ..jobs.prepare import InvalidInputs
    from ..jobs.runner import JobInterrupted, run_job
    from ..render.jobs import JobView, interrupted_text, job_text

    view = JobView(sys.stderr, tty=sys.stderr.isatty())
    try:
        result = run_job(
            inputs,
            output_dir,
            client=settings.client(),
            profile=settings.profile,
            max_tokens=max_tokens,
            max_enqueued_tokens=max_enqueued_tokens,
            max_active=max_active,
            retries=retries,
            interval=interval,
            window=window,
            metadata=metadata,
            output_expires_after=output_expires_after,
            cancel_on_interrupt=cancel_on_interrupt,
            max_problems=max_problems or None,
            workers=jobs,
            progress=view,
            max_requests=max_requests,
            max_bytes=max_bytes,
            max_embedding_inputs=max_embedding_inputs,
        )
    except InvalidInputs as exc:
        view.close()
        click.echo(printable(f"Error: {exc}"), err=True)
        for report in exc.reports:
            click.echo(report_text(report), err=True)
        raise SystemExit(1) from None
    except JobInterrupted as exc:
        view.close()
        click.echo(interrupted_text(exc, sys.argv[1:]), err=True)
        raise SystemExit(130) from None
    finally:
        view.close()
    show(result, fmt, job_text, indent=True)
    raise SystemExit(0 if result.summary.ok else 1)


@batch_command("status")
@click.argument("output_dir", type=click.Path(file_okay=False))
@click.option("--offline", is_flag=True, help="Show the ledger as it is, without the API.")
@format_option("text", "json")
def status(settings: ApiSettings, output_dir: str, offline: bool, fmt: str) -> None:
    """Show a job (the folder of `batches run`) from its ledger, refreshed from the API.

    Example:

        jsonl-batch batches status job/
    """
    from ..jobs.status import job_status
    from ..render.jobs import status_text

    client = None if offline else settings.client()
    found = job_status(output_dir, client=client, offline=offline)
    show(found, fmt, status_text, indent=True)


@batch_command("clean")
@click.argument("output_dir", type=click.Path(file_okay=False))
@format_option("text", "json")
def clean(settings: ApiSettings, output_dir: str, fmt: str) -> None:
    """Delete a job's uploaded input files and result files on the server (local copies stay).

    Files of batches still running are kept.

    Example:

        jsonl-batch batches clean job/
    """
    from ..jobs.status import clean_job
    from ..render.jobs import cleaned_text

    cleaned = clean_job(output_dir, client=settings.client())
    show(cleaned, fmt, cleaned_text, indent=True)
