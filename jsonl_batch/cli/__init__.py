"""The ``jsonl-batch`` command: a thin layer over the library, one module per command."""

from __future__ import annotations

import click

from .validate import validate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="jsonl-batch", prog_name="jsonl-batch")
def main() -> None:
    """Validate, build, split and join the JSONL files of OpenAI-style Batch APIs."""


main.add_command(validate)

__all__ = ["main"]
