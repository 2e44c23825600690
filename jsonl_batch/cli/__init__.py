"""The ``jsonl-batch`` command: a thin layer over the library, one module per command."""

from __future__ import annotations

import atexit
import gc
import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import IO, Any, NoReturn

import click

from .. import interrupts

COMMANDS = {
    "validate": "validate:validate",
    "build": "build:build",
    "split": "split:split",
    "join": "join:join_command",
    "retry": "retry:retry_command",
    "stats": "stats:stats",
    "batches": "batches:batches",
    "samples": "resources:samples",
    "schema": "resources:schema",
}
"""Every command, by name -> ``module:attribute`` in this package, imported when used, so
``jsonl-batch validate`` never pays for pyarrow, tiktoken or the openai SDK."""

# At the very end (the first handler registered runs last: every output is closed by then),
# the objects of the process are frozen: the interpreter's collections at exit would walk
# them all again, some 25 ms after a join (pyarrow's modules), for nothing.
atexit.register(gc.freeze)


class Main(click.Group):
    """The top-level group: commands load lazily; a bug, an interrupt or a broken standard
    output ends in one line, never a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attribute = target.split(":")
        name = f"{__name__}.{module}"
        with interrupts.handler(interrupts.exit_now), _uncollected(name):  # nothing to clean up
            loaded = importlib.import_module(name)
        command: click.Command = getattr(loaded, attribute)
        return command

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Outside the command (parsing, help, exit), Ctrl-C ends the process at once, and
        standard output is flushed here so that its faults are reported like the others."""
        with interrupts.handler(interrupts.exit_now):
            try:
                return super().main(*args, **kwargs)
            except OSError as exc:  # click re-raises what it does not handle (help text)
                stream_fault(exc)
                raise
            finally:
                try:
                    sys.stdout.flush()
                except OSError as exc:
                    stream_fault(exc, sys.stdout)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with interrupts.raising():
                return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, SystemExit, click.Abort):
            raise
        except KeyboardInterrupt:
            interrupted()
        except BaseException as exc:  # pyo3's PanicException is not an Exception
            if interrupts.interrupted():  # a library turned the KeyboardInterrupt into this
                interrupted()
            if isinstance(exc, OSError):
                stream_fault(exc)
            if os.environ.get("JSONL_BATCH_DEBUG"):
                raise
            from ..api.client import redact  # a bug's message may hold the key: never shown
            from ..render.text import printable

            click.echo(
                f"Error: internal error ({type(exc).__name__}: {printable(redact(str(exc)))}); "
                "please report it (set JSONL_BATCH_DEBUG=1 to see the traceback).",
                err=True,
            )
            sys.exit(2)


@contextmanager
def _uncollected(module: str) -> Iterator[None]:
    """Load a command's ``module`` with the collector paused, then freeze what loaded: its
    objects (pyarrow's: tens of thousands, none garbage) live as long as the process, and
    made the collector run some fifty times while they loaded and walk them all again
    later (every join paid ~15 ms; forked workers' collections touched their pages). Only
    a first load freezes (a process running several commands, tests, freezes a few times)."""
    first = module not in sys.modules
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if first:
            gc.freeze()
        if enabled:
            gc.enable()


def interrupted() -> NoReturn:
    """After Ctrl-C (the command's ``finally`` blocks have run): one line, exit 130."""
    interrupts.settle()
    with suppress(OSError):
        click.echo(interrupts.MESSAGE, err=True)
    sys.exit(interrupts.EXIT_INTERRUPTED)


def stream_fault(exc: OSError, stream: IO[Any] | None = None) -> None:
    """Exit if ``exc`` was raised writing standard output or error (a closed pipe, a full
    disk): quietly with status 1 for a closed pipe, as Unix tools do, else with a one-line
    I/O error and status 2. Returns if the fault is elsewhere."""
    fd = _writer_fd(exc) if stream is None else stream.fileno()
    if fd not in (1, 2):
        return
    _discard(fd)
    if fd == 1 and not isinstance(exc, BrokenPipeError):
        with suppress(OSError):
            click.echo(f"Error: cannot write to standard output: {exc.strerror or exc}", err=True)
    sys.exit(1 if isinstance(exc, BrokenPipeError) else 2)


def _writer_fd(exc: BaseException) -> int | None:
    """The descriptor of the stream the failing write was called on: a value in the
    innermost frame of ``exc`` (``file`` in ``click.echo``) whose ``fileno()`` is 1 or 2."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return None
    for value in tb.tb_frame.f_locals.values():
        fileno = getattr(value, "fileno", None)
        if callable(fileno):
            try:
                fd = fileno()
            except (OSError, ValueError):
                continue
            if fd in (1, 2):
                return int(fd)
    return None


def _discard(fd: int) -> None:
    """Point a broken standard stream at /dev/null, so that what it still buffers, and the
    flush at exit, go nowhere instead of failing again."""
    with suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="jsonl-batch", prog_name="jsonl-batch")
def main() -> None:
    """Validate, build, split and join the JSONL files of OpenAI-style Batch APIs.

    Example:

    \b
        jsonl-batch validate requests.jsonl
        jsonl-batch join requests.jsonl -r output.jsonl -r errors.jsonl -o results.parquet
    """


__all__ = ["main"]
