"""``jsonl-batch batches run``, ``status`` and ``clean``: whole jobs (``jobs.runner``).

Imported by ``cli/batches.py``, whose group these commands join.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from .batches import ApiSettings, batch_command, interval_option, metadata_option, window_option
from .options import Size, flag, format_option, jobs_option, max_problems_option, whole_number
from .output import refuse, show


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
@whole_number("--max-requests", help="Requests per part.")
@click.option("--max-bytes", type=Size(), help="Bytes per part (200MB, 150MiB or bytes).")
@whole_number("--max-embedding-inputs", help="Embedding inputs per part.")
@whole_number("--max-tokens", help="Estimated input tokens per part (tiktoken).")
@whole_number(
    "--max-enqueued-tokens",
    help="The organization's enqueued-token cap for the model: the estimated input tokens "
    "of the batches in flight stay under it.",
)
@whole_number("--max-active", help="At most K batches in flight.")
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Rounds of retries of the requests that failed for a retryable cause "
    "(HTTP 408/429/5xx, expired, missing).",
)
@interval_option
@window_option
@metadata_option("Metadata for every batch (repeatable; 13 pairs: 3 name the job's parts).")
@whole_number(
    "--output-expires-after",
    metavar="SECONDS",
    help="How long the server keeps the result files.",
)
@flag(
    "--cancel-on-interrupt",
    help="On Ctrl-C, cancel the running batches (default: leave them running).",
)
@max_problems_option
@jobs_option
@format_option("text", "json")
def run(
    settings: ApiSettings,
    inputs: tuple[str, ...],
    output_dir: str,
    fmt: str,
    **options: Any,
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
            progress=view,
            **options,
        )
    except InvalidInputs as exc:
        view.close()
        refuse(exc, exc.reports)
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
@flag("--offline", help="Show the ledger as it is, without the API.")
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
