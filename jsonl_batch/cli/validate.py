"""``jsonl-batch validate``."""

from __future__ import annotations

import sys

import click

from ..render.text import SHOWN_PER_CODE, ReportOutput, SizedProgress, printable
from ..rules.problems import CATALOGUE
from ..validate import validate_file
from .options import (
    endpoint_option,
    format_option,
    jobs_option,
    library_errors,
    limits,
    max_problems_option,
    profile_options,
)


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True, allow_dash=True))
@profile_options
@endpoint_option
@click.option("--model", help="The batch's model (default: the first line's body.model).")
@click.option(
    "--max-enqueued-tokens",
    type=click.IntRange(min=1),
    default=None,
    help="Your organization's enqueued-token cap for the model: estimate input tokens "
    "(tiktoken; slower) and report token_limit_exceeded when over.",
)
@click.option(
    "--count-tokens",
    is_flag=True,
    help="Estimate input tokens (tiktoken; slower) to report requests over their model's "
    "context window (and stats.input_tokens).",
)
@max_problems_option
@click.option(
    "--ignore",
    multiple=True,
    type=click.Choice(sorted(CATALOGUE)),
    metavar="CODE",
    help="Do not check or report this code (repeatable).",
)
@jobs_option
@format_option("text", "json")
@library_errors
def validate(
    files: tuple[str, ...],
    profile: str,
    max_requests: int | None,
    max_bytes: int | None,
    max_embedding_inputs: int | None,
    allow_param: tuple[str, ...],
    endpoint: str | None,
    model: str | None,
    max_enqueued_tokens: int | None,
    count_tokens: bool,
    max_problems: int,
    ignore: tuple[str, ...],
    jobs: int | None,
    fmt: str,
) -> None:
    """Check batch input FILES ("-" for stdin) for everything the Batch API would reject.

    Every problem is reported with its line, code, field and message. Exit status: 0 valid
    (warnings allowed), 1 problems found, 2 usage or I/O error.

    Example:

        jsonl-batch validate requests.jsonl --format json

        jsonl-batch validate big.jsonl --max-enqueued-tokens 2000000
    """
    status = 0
    for path in files:
        # Counting tokens takes seconds on a big file: show progress on a terminal.
        show = (max_enqueued_tokens is not None or count_tokens) and sys.stderr.isatty()
        progress = SizedProgress(sys.stderr, f"checking {path}") if show else None
        # --max-problems 0 lists every problem, in text too; they are rendered as they come.
        out = ReportOutput(fmt, per_code=None if max_problems == 0 else SHOWN_PER_CODE)
        report = validate_file(
            path,
            profile,
            progress=progress,
            max_problems=max_problems or None,
            on_problem=out.add,
            endpoint=endpoint,
            model=model,
            ignore=ignore,
            workers=jobs,
            max_enqueued_tokens=max_enqueued_tokens,
            count_tokens=count_tokens,
            **limits(max_requests, max_bytes, max_embedding_inputs, allow_param),
        )
        if progress is not None:
            progress.close()
        if report.error:
            status = 2
            if fmt == "text":
                click.echo(printable(f"Error: {report.error}"), err=True)
                out.close()
                continue
        elif not report.valid:
            status = max(status, 1)
        for chunk in out.chunks(report):
            click.echo(chunk, nl=False)
        click.echo()
    raise SystemExit(status)
