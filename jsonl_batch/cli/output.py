"""What every command does at its end: print the library's result (``--format json``:
exactly its ``to_dict()``; text: its renderer), with a progress bar on a terminal meanwhile."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, NoReturn, TypeVar

import click
import orjson

from ..render.text import SizedProgress, printable, report_text
from ..rules.problems import Report

R = TypeVar("R")


def show(
    result: R,
    fmt: str,
    text: Callable[[R], str],
    *,
    err: bool = False,
    indent: bool = False,
) -> None:
    """Print ``result``: with ``fmt`` ``json`` exactly ``result.to_dict()`` as one line (or
    indented: the ``batches`` commands; an API object, a plain dict, is printed as it is),
    else ``text(result)``. ``err``: on standard error (standard output holds a table)."""
    if fmt == "json":
        data = result if isinstance(result, dict) else result.to_dict()  # type: ignore[attr-defined]
        option = orjson.OPT_INDENT_2 if indent else 0
        click.echo(orjson.dumps(data, option=option).decode(), err=err)
    else:
        click.echo(text(result), err=err)


@contextmanager
def progress_bar(
    label: str, show: bool = True, stream: IO[str] | None = None
) -> Iterator[SizedProgress | None]:
    """A ``(done, total)`` progress bar on ``stream`` (standard error) when ``show`` and the
    stream is a terminal, else ``None``; its line is ended whatever happens."""
    stream = sys.stderr if stream is None else stream
    bar = SizedProgress(stream, label) if show and stream.isatty() else None
    try:
        yield bar
    finally:
        if bar is not None:
            bar.close()


def refuse(exc: Exception, reports: Iterable[Report]) -> NoReturn:
    """Inputs found invalid before anything was done: the error, then each file's problems
    as validate shows them, on standard error; exit status 1."""
    click.echo(printable(f"Error: {exc}"), err=True)
    for report in reports:
        click.echo(report_text(report), err=True)
    raise SystemExit(1)
