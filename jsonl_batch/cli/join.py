"""``jsonl-batch join``: results back to their requests, as one table."""

from __future__ import annotations

import functools
from typing import Any

import click

from ..outputs.atomic import is_stdout
from ..render.results import SHOWN_PER_KIND, join_text
from ..render.text import plural
from ..results.join import expand, expand_inputs, join_to
from ..results.tables import FORMATS, PARTITIONS
from .options import (
    ResultsCommand,
    cap_option,
    file_option,
    flag,
    force_option,
    inputs_and_results,
    library_errors,
    output_option,
)
from .output import progress_bar, show


@click.command("join", cls=ResultsCommand)
@inputs_and_results
@output_option("Table to write (-: standard output; a folder with --partition-by).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="Table format (default: from the output's extension, else parquet).",
)
@click.option(
    "--partition-by",
    type=click.Choice(PARTITIONS),
    default=None,
    help="Write a folder of Parquet files, one subfolder per status or input file, that "
    "DuckDB, polars and pyarrow read as one table.",
)
@flag("--include-bodies", help="Add request_body and response_body (JSON).")
@flag("--include-tool-calls", help="Add tool_calls (JSON).")
@flag("--include-embeddings", help="Add embedding (list of float32).")
@click.option(
    "--summary-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="How to print the summary.",
)
@cap_option(
    "--max-anomalies", help="List at most N anomalies of each kind (0: all); counts stay exact."
)
@file_option(
    "--schema",
    help="Check every answer against this JSON Schema (a file; OpenAI's response_format "
    "wrappers work too) instead of the requests' own; parsed answers go in `parsed`.",
)
@flag("--flatten", help="Parsed top-level properties as columns.")
@flag(
    "--exit-on-output-problems",
    help="Exit 1 when an answer is truncated, filtered, refused, not JSON or off-schema.",
)
@file_option(
    "--prices",
    help="A price table (JSON, the shape of the packaged data/prices.json) for cost_usd.",
)
@flag(
    "--estimate-tokens",
    help="Count the input lines' tokens (as `stats` does) against the reported prompt tokens.",
)
@force_option("Overwrite the output if it exists.")
@library_errors
def join_command(
    inputs: tuple[str, ...],
    results: tuple[str, ...],
    output: str,
    summary_format: str,
    exit_on_output_problems: bool,
    **options: Any,
) -> None:
    """Join batch results to their INPUTS: one row per request, in input order.

    INPUTS are the request files in order (e.g. split's parts), folders or glob patterns
    (their files in name order), or a split manifest; results likewise. Result lines are
    matched by custom_id and classified by their own error and status code. Requests in no
    result file are `missing`. Answers to requests that asked for a JSON schema (or checked
    with --schema) are parsed into `parsed`; answers cut off, filtered, refused, not JSON or
    off-schema get an `output_problem`; `cost_usd` is each answer's cost at batch prices.
    Memory does not grow with the answers: the table is written as it is built. Exit status:
    0 every request succeeded, 1 some failed or are missing (or there is no request; with
    --exit-on-output-problems, or an answer has an output problem), 2 usage or I/O error.

    Example:

    \b
        jsonl-batch join requests.jsonl -r output.jsonl -r errors.jsonl -o results.parquet
        jsonl-batch join 'parts/*.jsonl' -r 'results/*.jsonl' -o table/ --partition-by status
    """
    if options["partition_by"] is not None and options["fmt"] not in (None, "parquet"):
        raise click.UsageError("--partition-by writes Parquet files (drop --format)")
    files = len(expand_inputs(inputs)) + len(expand(results))
    with progress_bar(f"reading {plural(files, 'file')}") as bar:
        summary = join_to(list(inputs), list(results), output, progress=bar, **options)
    all_listed = options["max_anomalies"] is None
    text = functools.partial(join_text, per_kind=None if all_listed else SHOWN_PER_KIND)
    # the table on standard output: the summary on standard error
    show(summary, summary_format, text, err=is_stdout(output))
    problems = exit_on_output_problems and bool(summary.output_problems)
    raise SystemExit(0 if summary.complete and not problems else 1)
