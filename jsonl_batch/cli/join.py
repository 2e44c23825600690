"""``jsonl-batch join``: results back to their requests, as one table."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

import click
import orjson
import pyarrow as pa

from ..outputs.atomic import check_folder_target, check_writable, is_stdout
from ..render.text import SizedProgress, lines, plural, printable
from ..results.join import JoinSummary, expand, expand_inputs, join_to
from ..results.tables import FORMATS, PARTITIONS, table_format
from .options import library_errors

SHOWN_PER_KIND = 5
RESULT_FLAGS = ("--results", "-r")


class ResultsCommand(click.Command):
    """A command with INPUTS and ``-r/--results FILE`` (one file each, repeatable).

    A word right after ``-r FILE`` is refused: ``-r out.jsonl err.jsonl in.jsonl`` would
    otherwise read the error file as requests. INPUTS go before the options (or after
    another option's value, or after ``--``).
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        value: str | None = None  # -r's value, when it was the previous word
        waiting = False  # the previous word was -r itself
        for arg in args:
            if arg == "--":
                break
            if waiting:
                value, waiting = arg, False
                continue
            if arg in RESULT_FLAGS:
                waiting = True
                continue
            if arg.startswith("--results="):
                value = arg.partition("=")[2]
                continue
            if arg.startswith("-r") and len(arg) > 2:
                value = arg[2:]
                continue
            if value is not None and (arg == "-" or not arg.startswith("-")):
                raise click.UsageError(
                    f"-r/--results takes one file, and {arg!r} follows {value!r}: repeat it "
                    f"for each result file (-r {value} -r {arg}), or give a folder or a quoted "
                    "pattern; put the INPUTS before the options.",
                    ctx,
                )
            value = None
        return super().parse_args(ctx, args)


def inputs_and_results(fn: Any) -> Any:
    """``INPUT...`` (request files or a split manifest) and ``-r/--results FILE`` (output and
    error files, any mix, in any order; one per ``-r``, repeated): what join and retry read."""
    fn = click.option(
        *RESULT_FLAGS,
        "results",
        multiple=True,
        required=True,
        type=click.Path(allow_dash=True),
        help="An output or error file of the batch (repeat for each, any mix, any order; "
        "a folder or a quoted glob pattern names several).",
    )(fn)
    return click.argument("inputs", nargs=-1, required=True, type=click.Path())(fn)


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
    read = [*inputs, *expand_inputs(inputs), *results, *expand(results)]  # never written over
    if partition_by is None:
        fmt = table_format(output, fmt)
        check_writable(output, force, inputs=read)
    else:
        if fmt not in (None, "parquet"):
            raise click.UsageError("--partition-by writes Parquet files (drop --format)")
        fmt = "parquet"
        check_folder_target(output, force, inputs=read)
    pa.set_memory_pool(pa.system_memory_pool())  # returns freed memory: a lower peak
    bar = progress_bar(len(expand_inputs(inputs)) + len(expand(results)))
    try:
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
    finally:
        if bar is not None:
            bar.close()
    written = f"{output} ({fmt}, {plural(summary.requests, 'row')})"
    if partition_by is not None:
        written = f"{output}/ (parquet files by {partition_by}, {plural(summary.requests, 'row')})"
    aside = is_stdout(output)  # the table is on standard output: the summary on stderr
    if summary_format == "json":
        data = {**summary.to_dict(), "output": output, "format": fmt}
        click.echo(orjson.dumps(data).decode(), err=aside)
    else:
        per_kind = None if max_anomalies == 0 else SHOWN_PER_KIND
        click.echo(summary_text(summary, per_kind), err=aside)
        click.echo(printable(f"wrote {written}"), err=aside)
    problems = exit_on_output_problems and bool(summary.output_problems)
    raise SystemExit(0 if summary.complete and not problems else 1)


def cost_lines(cost: dict[str, Any]) -> list[str]:
    """The cost part of the summary: total, per 1,000 requests, token drift, notes."""
    out = []
    if cost.get("total") is not None:
        per = cost["per_1000_requests"]
        prices = cost["prices"]
        out.append(
            f"  cost at batch prices: {usd(cost['total'])} ({cost['priced_answers']:,} answers; "
            f"{usd(per)} per 1,000), prices as of {prices['as_of']}"
        )
    estimate = cost.get("token_estimate")
    if estimate:
        out.append(
            f"  prompt tokens: {estimate['reported_prompt_tokens']:,} reported, "
            f"{estimate['estimated_input_tokens']:,} estimated from the input "
            f"({estimate['drift_percent']:+g}%)"
        )
    out += [f"  note: {note}" for note in cost.get("notes", ())]
    return out


def usd(amount: float) -> str:
    """``$1,234.57``, or six decimals under a dollar (``$0.000013``)."""
    return f"${amount:,.2f}" if amount >= 1 else f"${amount:.6f}"


def structured_lines(found: dict[str, Any] | None) -> list[str]:
    """How answers were parsed: typed or JSON text (and why), fallbacks, flattening."""
    if not found:
        return []
    shape = "flattened into columns" if found["flattened"] else "in `parsed`"
    out = [f"  structured output: {'typed' if found['typed'] else 'JSON text'}, {shape}"]
    if found["reason"]:
        out.append(f"    JSON text because {found['reason']}")
    if found.get("not_flattened"):
        out.append(f"    not flattened: {found['not_flattened']}")
    for f in found["fallbacks"][:SHOWN_PER_KIND]:
        out.append(f"    {f['path']} kept as JSON text: {f['reason']}")
    for why in found["invalid_schemas"][:SHOWN_PER_KIND]:
        out.append(f"    not checked: {why}")
    return out


def progress_bar(files: int) -> SizedProgress | None:
    """A progress bar on standard error when it is a terminal (never otherwise)."""
    if not sys.stderr.isatty():
        return None
    return SizedProgress(sys.stderr, f"reading {plural(files, 'file')}")


def summary_text(s: JoinSummary, per_kind: int | None = SHOWN_PER_KIND) -> str:
    """The join summary for people: counts, error codes, tokens, then anomalies by kind (the
    first ``per_kind`` of each; ``None``: all listed)."""
    out = [
        f"{plural(s.requests, 'request')}: {s.succeeded:,} succeeded, {s.failed:,} failed, "
        f"{s.missing:,} missing"
    ]
    if s.error_codes:
        codes = ", ".join(f"{code} {n:,}" for code, n in s.error_codes.items())
        out.append(f"  failed by error code: {codes}")
    if s.output_problems:
        found = ", ".join(f"{p} {n:,}" for p, n in s.output_problems.items())
        out.append(f"  succeeded but not usable (output_problem): {found}")
    if s.total_tokens or s.prompt_tokens:
        details = [
            f"{n:,} {name}"
            for name, n in (("cached", s.cached_tokens), ("reasoning", s.reasoning_tokens))
            if n
        ]
        out.append(
            f"  tokens: {s.prompt_tokens:,} prompt, {s.completion_tokens:,} completion, "
            f"{s.total_tokens:,} total" + (f" ({', '.join(details)})" if details else "")
        )
    out += cost_lines(s.cost) + structured_lines(s.structured)
    counts = {
        "orphan": s.orphans,
        "duplicate": s.duplicates,
        "invalid_line": s.invalid_lines,
        "not_copied": s.not_copied,
    }
    shown: Counter[str] = Counter()
    labels = {
        "orphan": "result lines answering no request",
        "duplicate": "result lines not kept (custom_id answered twice)",
        "invalid_line": "lines that are not results",
        "not_copied": "values left null (could not be copied)",
    }
    for kind, total in counts.items():
        if not total:
            continue
        out.append(f"  {labels[kind]} ({total:,}):")
        for a in s.anomalies:
            if a.kind == kind and (per_kind is None or shown[kind] < per_kind):
                shown[kind] += 1
                out.append(f"    {a.file} line {a.line}: {a.message}")
        if total > shown[kind]:
            out.append(f"    ... and {total - shown[kind]:,} more")
    return lines(out)
