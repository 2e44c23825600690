"""``jsonl-batch join``: results back to their requests, as one table."""

from __future__ import annotations

import functools

import click
import pyarrow as pa

from ..outputs.atomic import is_stdout
from ..render.results import SHOWN_PER_KIND, join_text
from ..render.text import plural
from ..results.join import expand, expand_inputs, join_to
from ..results.tables import FORMATS, PARTITIONS
from .options import ResultsCommand, inputs_and_results, library_errors
from .output import progress_bar, show


@click.command("join", cls=ResultsCommand)
@inputs_and_results
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(allow_dash=True),
    help="Table to write (-: standard output; a folder with --partition-by).",
)
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
@click.option("--include-bodies", is_flag=True, help="Add request_body and response_body (JSON).")
@click.option("--include-tool-calls", is_flag=True, help="Add tool_calls (JSON).")
@click.option("--include-embeddings", is_flag=True, help="Add embedding (list of float32).")
@click.option(
    "--summary-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="How to print the summary.",
)
@click.option(
    "--max-anomalies",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="List at most N anomalies of each kind (0: all); counts stay exact.",
)
@click.option(
    "--schema",
    "schema_file",
    type=click.Path(dir_okay=False),
    help="Check every answer against this JSON Schema (a file; OpenAI's response_format "
    "wrappers work too) instead of the requests' own; parsed answers go in `parsed`.",
)
@click.option("--flatten", is_flag=True, help="Parsed top-level properties as columns.")
@click.option(
    "--exit-on-output-problems",
    is_flag=True,
    help="Exit 1 when an answer is truncated, filtered, refused, not JSON or off-schema.",
)
@click.option(
    "--prices",
    "prices_file",
    type=click.Path(dir_okay=False),
    help="A price table (JSON, the shape of the packaged data/prices.json) for cost_usd.",
)
@click.option(
    "--estimate-tokens",
    is_flag=True,
    help="Count the input lines' tokens (as `stats` does) against the reported prompt tokens.",
)
@click.option("--force", is_flag=True, help="Overwrite the output if it exists.")
@library_errors
def join_command(
    inputs: tuple[str, ...],
    results: tuple[str, ...],
    output: str,
    fmt: str | None,
    partition_by: str | None,
    include_bodies: bool,
    include_tool_calls: bool,
    include_embeddings: bool,
    summary_format: str,
    max_anomalies: int,
    schema_file: str | None,
    flatten: bool,
    exit_on_output_problems: bool,
    prices_file: str | None,
    estimate_tokens: bool,
    force: bool,
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
    if partition_by is not None and fmt not in (None, "parquet"):
        raise click.UsageError("--partition-by writes Parquet files (drop --format)")
    pa.set_memory_pool(pa.system_memory_pool())  # returns freed memory: a lower peak
    files = len(expand_inputs(inputs)) + len(expand(results))
    with progress_bar(f"reading {plural(files, 'file')}") as bar:
        summary = join_to(
            list(inputs),
            list(results),
            output,
            fmt=fmt,
            partition_by=partition_by,
            force=force,
            include_bodies=include_bodies,
            include_tool_calls=include_tool_calls,
            include_embeddings=include_embeddings,
            max_anomalies=max_anomalies or None,
            progress=bar,
            schema=schema_file,
            flatten=flatten,
            prices=prices_file,
            estimate_tokens=estimate_tokens,
        )
    per_kind = None if max_anomalies == 0 else SHOWN_PER_KIND
    text = functools.partial(join_text, per_kind=per_kind)
    # the table on standard output: the summary on standard error
    show(summary, summary_format, text, err=is_stdout(output))
    problems = exit_on_output_problems and bool(summary.output_problems)
    raise SystemExit(0 if summary.complete and not problems else 1)
