"""``jsonl-batch split``."""

from __future__ import annotations

from typing import Any

import click

from ..render.manifests import split_aside, split_text
from ..rules.profiles import get_profile
from ..split.engine import SplitError, split_file
from .options import (
    CliError,
    endpoint_option,
    flag,
    force_option,
    format_option,
    jobs_option,
    library_errors,
    max_problems_option,
    message,
    profile_options,
    whole_number,
)
from .output import progress_bar, show


@click.command()
@click.argument("file", type=click.Path(dir_okay=True))
@profile_options
@endpoint_option
@whole_number(
    "--max-tokens",
    help="Estimated input tokens per part (tiktoken; slower): each part stays at or under N.",
)
@whole_number("--parts", help="Exactly K parts, balanced by requests (still within the limits).")
@click.option(
    "--by",
    type=click.Choice(["model", "endpoint"]),
    default=None,
    help="Separate a mixed file: one group per model (and endpoint), or per endpoint.",
)
@click.option(
    "-o",
    "--output-dir",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for the parts and the manifest (default: the input's folder).",
)
@flag(
    "--skip-invalid",
    help="Write invalid lines, unchanged, to STEM.rejected.jsonl instead of stopping "
    "(every line ends up in exactly one file).",
)
@click.option(
    "--no-check",
    "check",
    is_flag=True,
    flag_value=False,
    default=True,
    help="For a file validated before: copy its lines unchecked, near the speed of a "
    "plain copy (the limits that need line content, --max-tokens, --by and embedding "
    "inputs, still read every line).",
)
@force_option("Replace an earlier split of the same file (its parts, rejected lines, manifest).")
@max_problems_option
@jobs_option
@format_option("text", "json")
@library_errors
def split(file: str, profile: str, overrides: dict[str, Any], fmt: str, **options: Any) -> None:
    """Split FILE into parts that each fit the limits, copying lines byte for byte.

    Writes STEM.part-001-of-00N.jsonl, ... and STEM.manifest.json (sha256, line ranges,
    counts). --max-tokens counts each request's input tokens with tiktoken (an estimate;
    needs jsonl-batch[tokens]) and keeps each part's sum at or under N. A file with problems
    is reported like validate and nothing is written, unless --skip-invalid. --no-check
    skips the validation, for a file validated before: every line is taken as a request and
    only measured (its size, or with --max-tokens, --by or embeddings, its content). All
    files are written under temporary names and renamed together, so a failure leaves an
    earlier split as it was.

    Exit status: 0 parts written; 1 no part written: problems found (nothing written, or with
    --skip-invalid only STEM.rejected.jsonl and the manifest, when no line is valid) or an
    empty file; 2 usage or I/O error, or the file cannot be cut as asked (--parts).

    Example:

    \b
        jsonl-batch split big.jsonl --max-requests 10000 --max-bytes 100MB -o parts/
        jsonl-batch split big.jsonl --max-tokens 2000000
        jsonl-batch validate big.jsonl --ignore too_many_tasks --ignore file_too_large \\
            && jsonl-batch split big.jsonl --no-check
    """
    try:
        with progress_bar("counting tokens", options["max_tokens"] is not None) as progress:
            profiled = get_profile(profile, **overrides)
            result = split_file(file, profile=profiled, progress=progress, **options)
    except SplitError as exc:  # the file's requests cannot be cut as asked: not a usage error
        raise CliError(message(exc)) from None
    if result.report.error:
        raise CliError(result.report.error)
    show(result, fmt, split_text)
    aside = split_aside(result, file, options["check"]) if fmt == "text" else ""
    if aside:
        click.echo(aside, err=True)
    raise SystemExit(0 if result.manifest is not None and result.manifest.parts else 1)
