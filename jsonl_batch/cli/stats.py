"""``jsonl-batch stats``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from ..lines.reading import regular_size
from ..render.stats import stats_json, stats_text
from ..render.text import ProgressBar, printable
from ..tokens.counting import TokensUnavailable
from ..tokens.pricing import PriceError, load_prices
from ..tokens.stats import Progress, file_stats
from .options import (
    CliError,
    endpoint_option,
    file_option,
    format_option,
    jobs_option,
    library_errors,
    message,
    profile_option,
)


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True, allow_dash=True))
@file_option(
    "--prices",
    help="A price table (JSON, the shape of the packaged data/prices.json) to use instead.",
)
@profile_option
@endpoint_option
@click.option(
    "--model",
    help="The model of requests whose body names none ({custom_id, body} providers that take "
    "it with the job): its encoding and price.",
)
@jobs_option
@format_option("text", "json")
@library_errors
def stats(
    files: tuple[str, ...],
    prices: str | None,
    profile: str,
    endpoint: str | None,
    model: str | None,
    workers: int | None,
    fmt: str,
) -> None:
    """Estimate the input tokens, output ceiling and batch cost of FILES ("-" for stdin).

    Tokens are counted as tiktoken counts them (bpe-openai's exact counter; the encoding
    chosen from body.model) the way OpenAI's cookbook does: message overhead, text parts,
    images, tool definitions. The output ceiling sums max_tokens / max_completion_tokens /
    max_output_tokens. Costs use the packaged price table (or --prices) at batch prices; a
    model without a price gets tokens only. Everything is an estimate. Lines of
    {custom_id, body} (--profile together, mistral, fireworks) are requests to --endpoint.
    Needs: pip install 'jsonl-batch[tokens]'. Exit status: 0 done, 1 a file holds no
    request (empty, or not a batch file), 2 usage or I/O error.

    Example:

        jsonl-batch stats requests.jsonl --format json

        jsonl-batch stats bodies.jsonl --profile together
    """
    try:
        table = load_prices(prices)
        with _progress_bar(files) as progress:
            result = file_stats(
                *files,
                prices=table,
                workers=workers,
                progress=progress,
                profile=profile,
                endpoint=endpoint,
                model=model,
            )
    except (PriceError, TokensUnavailable) as exc:
        raise CliError(message(exc)) from None
    failed = [f for f in result.files if f.error]
    if fmt == "text":
        for found in failed:
            click.echo(printable(f"Error: {found.error}"), err=True)  # the error names the file
    text = stats_json(result) if fmt == "json" else stats_text(result)
    if text:
        click.echo(text)
    raise SystemExit(2 if failed else 1 if result.problems else 0)


@contextmanager
def _progress_bar(files: tuple[str, ...]) -> Iterator[Progress | None]:
    """A progress bar over the files' bytes on stderr, only when stderr is a terminal."""
    total = sum(_size(f) for f in files) if sys.stderr.isatty() else 0
    if not total:
        yield None
        return
    bar = ProgressBar(sys.stderr, total, "Counting tokens")
    try:
        yield bar.update
    finally:
        bar.close()


def _size(path: str) -> int:
    """The size of a regular file (0 for stdin, a pipe, a missing file): opened without
    blocking, so a FIFO with no writer yet does not hang the progress bar."""
    if path == "-":
        return regular_size(sys.stdin.buffer) or 0
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (OSError, ValueError):
        return 0
    with os.fdopen(fd, "rb") as handle:
        return regular_size(handle) or 0
