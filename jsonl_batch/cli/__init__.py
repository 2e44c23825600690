"""The ``jsonl-batch`` command: a thin layer over the library, one module per command."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from .batches import batches
from .build import build
from .join import join_command
from .resources import samples, schema
from .retry import retry_command
from .split import split
from .stats import stats
from .validate import validate


class Main(click.Group):
    """The top-level group: a bug or an interrupt ends in one line, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, SystemExit, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        except Exception as exc:
            if os.environ.get("JSONL_BATCH_DEBUG"):
                raise
            click.echo(
                f"Error: internal error ({type(exc).__name__}: {exc}); please report it "
                "(set JSONL_BATCH_DEBUG=1 to see the traceback).",
                err=True,
            )
            sys.exit(2)


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="jsonl-batch", prog_name="jsonl-batch")
def main() -> None:
    """Validate, build, split and join the JSONL files of OpenAI-style Batch APIs."""


main.add_command(validate)
main.add_command(build)
main.add_command(split)
main.add_command(samples)
main.add_command(schema)
main.add_command(batches)
main.add_command(join_command)
main.add_command(retry_command)
main.add_command(stats)

__all__ = ["main"]
