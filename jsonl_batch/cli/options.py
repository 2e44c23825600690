"""Options shared by several commands, as small decorators, and click parameter types."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..errors import JsonlBatchError, UsageError
from ..lines.reading import ReadError
from ..outputs.atomic import OutputExists, WriteError
from ..render.text import printable
from ..rules.profiles import PROFILES, parse_size
from ..tokens.encodings import TokensUnavailable

F = TypeVar("F", bound=Callable[..., Any])

FLAGS = {
    "force": "--force",
    "parts": "--parts",
    "by": "--by",
    "endpoint": "--endpoint",
    "input_format": "--input-format",
    "template": "--template",
    "prompt_column": "--prompt-column",
    "system": "--system",
    "param": "--param",
    "split": "--split",
    "output": "-o",
    "profile_azure": "--profile azure",
    "skip_invalid": "--skip-invalid",
    "no_check": "--no-check",
}
"""How the command line words each option a library error names (its hints)."""


def message(exc: BaseException) -> str:
    """A library error's message in the command line's words (its options as flags)."""
    return exc.worded(FLAGS) if isinstance(exc, JsonlBatchError) else str(exc)


class CliError(click.ClickException):
    """A usage or I/O problem: one line on stderr (control characters escaped), exit status 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(printable(message))


def library_errors(fn: F) -> F:
    """Turn the library's "cannot run at all" exceptions into one-line errors (exit 2)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ReadError, WriteError, OutputExists, TokensUnavailable) as exc:
            raise CliError(message(exc)) from None
        except UsageError as exc:
            raise click.UsageError(printable(message(exc))) from None
        except BrokenPipeError as exc:  # `-o -` read by a command that stopped (`| head`)
            from . import stream_fault

            stream_fault(exc, sys.stdout)
            raise

    return wrapper  # type: ignore[return-value]


class Size(click.ParamType):
    """A byte size: ``200MB``, ``150MiB`` or plain bytes."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def stack(*options: Callable[[F], F]) -> Callable[[F], F]:
    """The decorators ``options`` as one, applied as if written in this order, top first."""

    def decorate(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def whole_number(*decls: str, help: str, minimum: int = 1, **extra: Any) -> Callable[[F], F]:
    """An option taking a whole number of at least ``minimum`` (``None`` when not given)."""
    return click.option(*decls, type=click.IntRange(min=minimum), default=None, help=help, **extra)


def file_option(*decls: str, help: str) -> Callable[[F], F]:
    """An option naming a file to read (``None`` when not given)."""
    return click.option(*decls, type=click.Path(dir_okay=False), help=help)


def flag(*decls: str, help: str) -> Callable[[F], F]:
    """An on/off option (``False`` when not given)."""
    return click.option(*decls, is_flag=True, help=help)


def force_option(help: str) -> Callable[[F], F]:
    """``--force``: what it replaces is the command's to say."""
    return flag("--force", help=help)


def cap_option(*decls: str, help: str) -> Callable[[F], F]:
    """At most N things listed (100 by default); ``0``, no cap, is passed on as ``None``, as
    the library says it."""
    return click.option(
        *decls,
        type=click.IntRange(min=0),
        default=100,
        show_default=True,
        callback=lambda ctx, param, value: value or None,
        help=help,
    )


def output_option(help: str, *, dir_okay: bool = True) -> Callable[[F], F]:
    """``-o/--output``, required; ``-`` is standard output."""
    return click.option(
        "-o",
        "--output",
        required=True,
        type=click.Path(dir_okay=dir_okay, allow_dash=True),
        help=help,
    )


profile_option = click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default="openai",
    show_default=True,
    help="Provider whose rules and limits apply.",
)


def profile_options(fn: F) -> F:
    """``--profile``, the limit overrides and ``--allow-param``, passed on as ``profile`` and
    ``overrides`` (the overrides given, as keyword arguments for the library: ``limits``)."""

    @stack(
        profile_option,
        whole_number("--max-requests", help="Override the profile's request limit."),
        click.option(
            "--max-bytes",
            type=Size(),
            default=None,
            help="Override the byte limit (200MB, 150MiB or bytes).",
        ),
        whole_number("--max-embedding-inputs", help="Override the embedding-input limit."),
        click.option(
            "--allow-param",
            multiple=True,
            metavar="NAME",
            help="Accept this body parameter although OpenAI's definition lacks it (newer "
            "than the definition; repeatable).",
        ),
    )
    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        max_requests: int | None,
        max_bytes: int | None,
        max_embedding_inputs: int | None,
        allow_param: tuple[str, ...],
        **kwargs: Any,
    ) -> Any:
        given = limits(max_requests, max_bytes, max_embedding_inputs, allow_param)
        return fn(*args, overrides=given, **kwargs)

    return wrapper  # type: ignore[return-value]


def limits(
    max_requests: int | None,
    max_bytes: int | None,
    max_embedding_inputs: int | None,
    allow_param: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The profile overrides that were given, as keyword arguments for the library."""
    given: dict[str, Any] = {
        "max_requests": max_requests,
        "max_bytes": max_bytes,
        "max_embedding_inputs": max_embedding_inputs,
        "allow_params": tuple(allow_param) or None,
    }
    return {k: v for k, v in given.items() if v is not None}


def format_option(*choices: str) -> Callable[[F], F]:
    """``--format`` with the given renderers (the first is the default)."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=choices[0],
        show_default=True,
        help="Output format.",
    )


endpoint_option = click.option(
    "--endpoint",
    default=None,
    help="The batch endpoint (default: the first valid line's url; for {custom_id, body} "
    "lines, the profile's first endpoint).",
)
"""``--endpoint URL``: the batch's endpoint (``validate_file(endpoint=...)``), which a
``{custom_id, body}`` file (``--profile together``, ...) does not name."""


jobs_option = whole_number(
    "--jobs", "workers", help="Worker processes for large files (default: one per core)."
)
"""``--jobs N``, passed on as ``workers``: processes for the per-line work on large files
(``parallel.LineChunks``)."""


max_problems_option = cap_option(
    "--max-problems", help="List at most N line problems per file (0: all); counts stay exact."
)
"""``--max-problems N``: the cap on listed problems (``validate_file(max_problems=...)``;
0 is passed on as ``None``: all)."""


RESULT_FLAGS = ("--results", "-r")


class ResultsCommand(click.Command):
    """A command with INPUTS and ``-r/--results FILE`` (one file each, repeatable): join, retry.

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


def inputs_and_results(fn: F) -> F:
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
