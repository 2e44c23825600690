"""``jsonl-batch samples`` and ``jsonl-batch schema``: the files shipped in the package."""

from __future__ import annotations

import click

from ..rules.schemas import load_schema, resource, schema_names
from .options import CliError


@click.command()
@click.argument("name", required=False)
def samples(name: str | None) -> None:
    """List the sample batch files shipped with the package, or print one.

    Example:

        jsonl-batch samples chat.jsonl | jsonl-batch validate -
    """
    folder = resource("samples")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".jsonl"))
    if name is None:
        for found in names:
            click.echo(found)
        return
    if name not in names:
        raise CliError(f"no sample named {name!r} (have: {', '.join(names)})")
    click.echo((folder / name).read_bytes(), nl=False)


@click.command()
@click.argument("name", required=False)
def schema(name: str | None) -> None:
    """List the JSON Schemas shipped with the package, or print one.

    Example:

        jsonl-batch schema chat_completions
    """
    if name is None:
        for found in schema_names():
            click.echo(found)
        return
    try:
        load_schema(name)
    except KeyError as exc:
        raise CliError(str(exc.args[0])) from None
    click.echo((resource("schemas") / f"{name}.json").read_text(encoding="utf-8"), nl=False)
