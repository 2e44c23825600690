"""``jsonl-batch retry``: a file to re-submit what did not succeed."""

from __future__ import annotations

import click
import orjson

from ..outputs.atomic import is_stdout
from ..render.manifests import manifest_text
from ..render.text import lines, printable, report_text
from ..results.retry import SELECTIONS, RetryResult, write_retry
from .join import ResultsCommand, inputs_and_results
from .options import endpoint_option, format_option, library_errors, limits, profile_options


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
    text = orjson.dumps(result.to_dict()).decode() if fmt == "json" else retry_text(result)
    click.echo(text, err=is_stdout(output))  # the retry file is on standard output
    raise SystemExit(0 if result.ok else 1)


def retry_text(r: RetryResult) -> str:
    """The retry result for people: what was selected and why, then the file's verdict."""
    skipped = f"{r.succeeded:,} succeeded"
    if r.not_selected:
        skipped += f", {r.not_selected:,} not selected"
    if r.output is None:
        return printable(f"nothing to retry ({skipped})")
    reasons = ", ".join(f"{why} {n:,}" for why, n in r.reasons.items())
    out = [
        f"{r.output}: {r.requests:,} request{'s' if r.requests != 1 else ''} to retry "
        f"({r.bytes:,} bytes): {reasons}; {skipped}"
    ]
    if r.split is not None and r.split.manifest is not None:
        out.append("over the limits, so split (upload the parts):")
        out.append(manifest_text(r.split.manifest, r.split.folder))
    elif r.split is not None:
        out.append("over the limits, and could not be split (nothing written):")
        out.append(report_text(r.split.report))
    elif r.report is not None:
        out.append(report_text(r.report))
    return lines(out)
