"""The ``jsonl-batch`` command: a thin layer over the library, one module per command."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

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


class Main(click.Group):
    """The top-level group: commands load lazily, and a bug or an interrupt ends in one
    line, never a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attribute = target.split(":")
        command: click.Command = getattr(importlib.import_module(f".{module}", __name__), attribute)
        return command

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


__all__ = ["main"]
