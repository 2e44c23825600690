"""``jsonl-batch split``."""

from __future__ import annotations

import click

from ..manifests import manifest_json, manifest_text
from ..render import report_json, report_text
from ..splitting import split_file
from .options import CliError, format_option, library_errors, limits, profile_options


@click.command()
@click.argument("file", type=click.Path(dir_okay=True))
@profile_options
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    default=None,
    help="Estimated input tokens per part (tiktoken; slower): each part stays at or under N.",
)
@click.option(
    "--parts",
    type=click.IntRange(min=1),
    default=None,
    help="Exactly K parts, balanced by requests (still within the limits).",
)
@click.option(
    "--by",
    type=click.Choice(["model", "endpoint"]),
    default=None,
    help="Separate a mixed file: one group per model (and endpoint), or per endpoint.",
)
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for the parts and the manifest (default: the input's folder).",
)
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Write invalid lines, unchanged, to STEM.rejected.jsonl instead of stopping.",
)
@click.option("--force", is_flag=True, help="Replace an earlier split of the same file.")
@click.option(
    "--max-problems",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="List at most N line problems (0: all); counts stay exact.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes for validating (and counting tokens of) large files "
    "(default: one per core).",
)
@format_option("text", "json")
@library_errors
def split(
    file: str,
    profile: str,
    max_requests: int | None,
    max_bytes: int | None,
    max_embedding_inputs: int | None,
    max_tokens: int | None,
    parts: int | None,
    by: str | None,
    output_dir: str | None,
    skip_invalid: bool,
    force: bool,
    max_problems: int,
    jobs: int | None,
    fmt: str,
) -> None:
    """Split FILE into parts that each fit the limits, copying lines byte for byte.

    Writes STEM.part-001-of-00N.jsonl, ... and STEM.manifest.json (sha256, line ranges,
    counts). --max-tokens counts each request's input tokens with tiktoken (an estimate;
    needs jsonl-batch[tokens]) and keeps each part's sum at or under N. A file with problems
    is reported like validate and nothing is written, unless --skip-invalid. Exit status: 0
    written, 1 problems found (nothing written), 2 usage or I/O error.

    Example:

        jsonl-batch split big.jsonl --max-requests 10000 --max-bytes 100MB -o parts/

        jsonl-batch split big.jsonl --max-tokens 2000000
    """
    result = split_file(
        file,
        output_dir,
        profile,
        parts=parts,
        by=by,  # type: ignore[arg-type]
        skip_invalid=skip_invalid,
        force=force,
        max_problems=max_problems or None,
        workers=jobs,
        max_tokens=max_tokens,
        **limits(max_requests, max_bytes, max_embedding_inputs),
    )
    report = result.report
    if report.error:
        raise CliError(report.error)
    if result.manifest is None:
        click.echo(report_json(report) if fmt == "json" else report_text(report))
        if fmt == "text":
            click.echo("Nothing was written; fix the problems or use --skip-invalid.", err=True)
        raise SystemExit(1)
    if fmt == "json":
        click.echo(manifest_json(result.manifest))
        return
    click.echo(manifest_text(result.manifest, result.folder))
    if result.manifest.rejected is not None:
        click.echo(report_text(report), err=True)
