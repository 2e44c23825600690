"""``jsonl-batch build``."""

from __future__ import annotations

import sys
from typing import Any, TextIO

import click

from ..build.inputs import build_file, load_template, parse_params
from ..build.writer import BuildError
from ..render.manifests import manifest_text
from ..render.text import printable
from ..rules.profiles import ENDPOINTS, PROFILES, get_profile
from .options import (
    file_option,
    flag,
    force_option,
    format_option,
    library_errors,
    message,
    profile_options,
    whole_number,
)
from .output import progress_bar, show


@click.command()
@click.argument("source", type=click.Path(dir_okay=True, allow_dash=True))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    help="The batch file to write (default: standard output).",
)
@click.option(
    "--endpoint",
    type=click.Choice(list(ENDPOINTS)),
    default="/v1/chat/completions",
    show_default=True,
    help="The batch endpoint.",
)
@click.option("--model", help="body.model of every request (unless the template sets it).")
@click.option("--prompt-column", metavar="COLUMN", help="The column that holds the prompt.")
@click.option("--system", help="A system message (chat) or instructions (responses).")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="An extra body parameter, typed as JSON when it parses (repeatable; a.b=1 nests).",
)
@file_option(
    "--template",
    help="A JSON body with {{column}} placeholders, instead of --prompt-column/--system.",
)
@click.option("--id-column", metavar="COLUMN", help="The column of custom_ids (else request-N).")
@click.option(
    "--input-format",
    type=click.Choice(["csv", "tsv", "jsonl", "parquet"]),
    help="The input's format (default: from its extension).",
)
@whole_number(
    "--max-tokens",
    help="Estimated input tokens per file (tiktoken; slower): a new part (or, to standard "
    "output, an error) before a request would go over N.",
)
@flag("--split", help="Always write parts and a manifest.")
@force_option("Replace existing outputs; parts or a manifest an earlier build left are removed.")
@profile_options
@format_option("text", "json")
@library_errors
def build(
    source: str,
    output: str,
    params: tuple[str, ...],
    template: str | None,
    profile: str,
    overrides: dict[str, Any],
    fmt: str,
    **options: Any,
) -> None:
    """Build a valid batch file from the rows of SOURCE (CSV, TSV, JSONL, Parquet; - for stdin).

    Each row becomes one request, checked against the same rules as validate. When a limit
    is hit (or with --split), the output becomes parts (NAME.part-001.jsonl, ...) and
    NAME.manifest.json. --max-tokens is such a limit, on input tokens counted with tiktoken
    (an estimate; needs jsonl-batch[tokens]). Exit status: 0 written, 1 bad data (nothing
    written), 2 usage or I/O error.

    Example:

    \b
        jsonl-batch build questions.csv -o batch.jsonl --model gpt-4o-mini \\
            --prompt-column question --system "Answer briefly." --param temperature=0
    """
    if template is None and options["model"] is None and PROFILES[profile].model_in_body:
        raise click.UsageError("give --model (or a --template that sets the model)")
    terminal = _terminal()
    to_stdout = output == "-"
    try:
        with progress_bar("building", terminal is not None, terminal) as progress:
            manifest = build_file(
                source,
                sys.stdout.buffer if to_stdout else output,
                params=parse_params(params),
                template=load_template(template) if template else None,
                profile=get_profile(profile, **overrides),  # --allow-param too
                progress=progress,
                **options,
            )
    except BuildError as exc:
        raise click.ClickException(printable(message(exc))) from None
    if not to_stdout:
        show(manifest, fmt, manifest_text)


def _terminal() -> TextIO | None:
    """Standard error, if it is a terminal (where a progress bar helps)."""
    return sys.stderr if sys.stderr.isatty() else None
