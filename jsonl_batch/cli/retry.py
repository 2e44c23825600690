"""``jsonl-batch retry``: a file to re-submit what did not succeed."""

from __future__ import annotations

from typing import Any

import click

from ..outputs.atomic import is_stdout
from ..render.results import retry_text
from ..results.retry import SELECTIONS, write_retry
from .options import (
    ResultsCommand,
    endpoint_option,
    file_option,
    force_option,
    format_option,
    inputs_and_results,
    library_errors,
    output_option,
    profile_options,
)
from .output import show


@click.command("retry", cls=ResultsCommand)
@inputs_and_results
@output_option("Retry file to write (-: standard output).", dir_okay=False)
@click.option(
    "--only",
    type=click.Choice(SELECTIONS[1:]),
    default=None,
    help="failed, missing, retryable (missing, expired, cancelled, timeouts, 408/429/5xx; "
    "not 4xx errors), or output-problems (succeeded, but truncated, filtered, refused, not "
    "JSON or off-schema). Default: every request that did not succeed.",
)
@file_option(
    "--schema",
    help="With --only output-problems: the JSON Schema answers must match (as join --schema).",
)
@profile_options
@endpoint_option
@force_option(
    "Replace an earlier retry of the same name (file, or parts and manifest); with "
    "nothing to retry, remove it."
)
@format_option("text", "json")
@library_errors
def retry_command(
    inputs: tuple[str, ...],
    results: tuple[str, ...],
    output: str,
    only: str | None,
    profile: str,
    overrides: dict[str, Any],
    fmt: str,
    **options: Any,
) -> None:
    """Write the request lines of INPUTS that did not succeed, byte-identical, to a new file.

    The retry file is validated; over the profile's limits, only its parts and a manifest are
    written (OUTPUT's stem, named as `split` names them). Exit status: 0 written and valid,
    or nothing to retry (as join's 0, lines of the result files that are not results are
    only listed then), 1 the retry file has problems, or requests are retried while lines of
    the result files are not results (their answers may be among them), 2 usage or I/O error.

    Example:

    \b
        jsonl-batch retry requests.jsonl -r output.jsonl -r errors.jsonl -o retry.jsonl
    """
    result = write_retry(
        list(inputs),
        list(results),
        output,
        only=only or "all",
        profile=profile,
        **options,
        **overrides,
    )
    show(result, fmt, retry_text, err=is_stdout(output))  # the retry file on standard output
    doubtful = result.output is not None and result.not_results > 0
    raise SystemExit(0 if result.ok and not doubtful else 1)
