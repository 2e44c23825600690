"""``jsonl-batch validate``."""

from __future__ import annotations

from typing import Any

import click

from ..render.text import SHOWN_PER_CODE, ReportOutput, printable
from ..rules.problems import VALIDATION_CODES
from ..validate import validate_file
from .options import (
    endpoint_option,
    flag,
    format_option,
    jobs_option,
    library_errors,
    max_problems_option,
    profile_options,
    whole_number,
)
from .output import progress_bar


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True, allow_dash=True))
@profile_options
@endpoint_option
@click.option("--model", help="The batch's model (default: the first line's body.model).")
@whole_number(
    "--max-enqueued-tokens",
    help="Your organization's enqueued-token cap for the model: estimate input tokens "
    "(tiktoken; slower) and report token_limit_exceeded when over.",
)
@flag(
    "--count-tokens",
    help="Estimate input tokens (tiktoken; slower) to report requests over their model's "
    "context window (and stats.input_tokens).",
)
@max_problems_option
@click.option(
    "--ignore",
    multiple=True,
    type=click.Choice(sorted(VALIDATION_CODES)),
    metavar="CODE",
    help="Do not check or report this code (repeatable).",
)
@jobs_option
@format_option("text", "json")
@library_errors
def validate(
    files: tuple[str, ...],
    profile: str,
    overrides: dict[str, Any],
    max_problems: int | None,
    fmt: str,
    **options: Any,
) -> None:
    """Check batch input FILES ("-" for stdin) for everything the Batch API would reject.

    Every problem is reported with its line, code, field and message. Exit status: 0 valid
    (warnings allowed), 1 problems found, 2 usage or I/O error.

    Example:

        jsonl-batch validate requests.jsonl --format json

        jsonl-batch validate big.jsonl --max-enqueued-tokens 2000000
    """
    # Counting tokens takes seconds on a big file: show progress on a terminal.
    counting = options["max_enqueued_tokens"] is not None or options["count_tokens"]
    status = 0
    for path in files:
        # --max-problems 0 lists every problem, in text too; they are rendered as they come.
        out = ReportOutput(fmt, per_code=None if max_problems is None else SHOWN_PER_CODE)
        with progress_bar(f"checking {path}", counting) as progress:
            report = validate_file(
                path,
                profile,
                progress=progress,
                max_problems=max_problems,
                on_problem=out.add,
                **options,
                **overrides,
            )
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
