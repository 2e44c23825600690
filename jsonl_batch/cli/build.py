"""``jsonl-batch build``."""

from __future__ import annotations

import sys
from typing import TextIO

import click

from ..build.inputs import build_file, load_template, parse_params
from ..build.writer import BuildError
from ..render.manifests import manifest_text
from ..render.text import printable
from ..rules.profiles import ENDPOINTS, PROFILES
from .options import format_option, library_errors, limits, message, profile_options
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
@click.option(
    "--template",
    type=click.Path(dir_okay=False),
    help="A JSON body with {{column}} placeholders, instead of --prompt-column/--system.",
)
@click.option("--id-column", metavar="COLUMN", help="The column of custom_ids (else request-N).")
@click.option(
    "--input-format",
    type=click.Choice(["csv", "tsv", "jsonl", "parquet"]),
    help="The input's format (default: from its extension).",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    default=None,
    help="Estimated input tokens per file (tiktoken; slower): a new part (or, to standard "
    "output, an error) before a request would go over N.",
)
@click.option("--split", is_flag=True, help="Always write parts and a manifest.")
@click.option(
    "--force",
    is_flag=True,
    help="Replace existing outputs; parts or a manifest an earlier build left are removed.",
)
@profile_options
@format_option("text", "json")
@library_errors
def build(
    source: str,
    output: str,
    endpoint: str,
    model: str | None,
    prompt_column: str | None,
    system: str | None,
    params: tuple[str, ...],
    template: str | None,
    id_column: str | None,
    input_format: str | None,
    max_tokens: int | None,
    split: bool,
    force: bool,
    profile: str,
    max_requests: int | None,
    max_bytes: int | None,
    max_embedding_inputs: int | None,
    allow_param: tuple[str, ...],
    fmt: str,
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
    if template is None and model is None and PROFILES[profile].model_in_body:
        raise click.UsageError("give --model (or a --template that sets the model)")
    terminal = _terminal()
    to_stdout = output == "-"
    try:
        with progress_bar("building", terminal is not None, terminal) as progress:
            manifest = build_file(
                source,
                sys.stdout.buffer if to_stdout else output,
                endpoint,
                model=model,
                prompt_column=prompt_column,
                system=system,
                params=parse_params(params),
                template=load_template(template) if template else None,
                id_column=id_column,
                input_format=input_format,
                profile=profile,
                split=split,
                force=force,
                progress=progress,
                max_tokens=max_tokens,
                **limits(max_requests, max_bytes, max_embedding_inputs, allow_param),
            )
    except BuildError as exc:
        raise click.ClickException(printable(message(exc))) from None
    if not to_stdout:
        show(manifest, fmt, manifest_text)


def _terminal() -> TextIO | None:
    """Standard error, if it is a terminal (where a progress bar helps)."""
    return sys.stderr if sys.stderr.isatty() else None
