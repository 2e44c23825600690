"""``jsonl-batch retry``: a file to re-submit what did not succeed."""

from __future__ import annotations

import click

from ..outputs.atomic import is_stdout
from ..render.results import retry_text
from ..results.retry import SELECTIONS, write_retry
from .options import (
    ResultsCommand,
    endpoint_option,
    format_option,
    inputs_and_results,
    library_errors,
    limits,
    profile_options,
)
from .output import show


@click.command("retry", cls=ResultsCommand)
@inputs_and_results
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Retry file to write (-: standard output).",
)
@click.option(
    "--only",
    type=click.Choice(SELECTIONS[1:]),
    default=None,
    help="failed, missing, retryable (missing, expired, cancelled, timeouts, 408/429/5xx; "
    "not 4xx errors), or output-problems (succeeded, but truncated, filtered, refused, not "
    "JSON or off-schema). Default: every request that did not succeed.",
)
@click.option(
    "--schema",
    "schema_file",
    type=click.Path(dir_okay=False),
    help="With --only output-problems: the JSON Schema answers must match (as join --schema).",
)
@profile_options
@endpoint_option
@click.option(
    "--force",
    is_flag=True,
    help="Replace an earlier retry of the same name (file, or parts and manifest); with "
    "nothing to retry, remove it.",
)
@format_option("text", "json")
@library_errors
def retry_command(
    inputs: tuple[str, ...],
    results: tuple[str, ...],
    output: str,
    only: str | None,
    schema_file: str | None,
    profile: str,
    max_requests: int | None,
    max_bytes: int | None,
    max_embedding_inputs: int | None,
    allow_param: tuple[str, ...],
    endpoint: str | None,
    force: bool,
    fmt: str,
) -> None:
    """Write the request lines of INPUTS that did not succeed, byte-identical, to a new file.

    The retry file is validated; over the profile's limits, only its parts and a manifest are
    written (OUTPUT's stem, named as `split` names them). Exit status: 0 written and valid
    (or nothing to retry), 1 the retry file has problems, 2 usage or I/O error.

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
        force=force,
        schema=schema_file,
        endpoint=endpoint,
        **limits(max_requests, max_bytes, max_embedding_inputs, allow_param),
    )
    show(result, fmt, retry_text, err=is_stdout(output))  # the retry file on standard output
    raise SystemExit(0 if result.ok else 1)
