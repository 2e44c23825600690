"""``jsonl-batch batches``: list, get, cancel, create, wait for, download and run batches.

Each command is a thin layer over one function of ``jsonl_batch.api.batches``; the ``openai`` SDK
is only imported when a command runs (``pip install 'jsonl-batch[api]'``).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from ..api import batches as api
from ..render.batches import (
    Progress,
    batch_text,
    batches_table,
    created_id,
    created_text,
    download_text,
    final_text,
    next_page_text,
    status_line,
    to_jsonl,
)
from ..rules.profiles import PROFILES
from .options import CliError, flag, format_option, library_errors, message, stack, whole_number
from .output import refuse, show

__all__ = ["batches"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class ApiSettings:
    """The client options of every ``batches`` command."""

    profile: str
    base_url: str | None
    max_retries: int | None
    request_timeout: float | None

    def client(self) -> Any:
        return api.make_client(
            self.profile,
            base_url=self.base_url,
            max_retries=self.max_retries,
            timeout=self.request_timeout,
        )


def api_options(fn: F) -> F:
    """``--profile``, ``--base-url``, ``--max-retries``, ``--request-timeout`` -> ``settings``."""

    @click.option(
        "--profile",
        type=click.Choice(sorted(PROFILES)),
        default="openai",
        show_default=True,
        help="openai: OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_ORG_ID, OPENAI_PROJECT_ID. "
        "azure: AZURE_OPENAI_ENDPOINT, OPENAI_API_VERSION, AZURE_OPENAI_API_KEY.",
    )
    @click.option("--base-url", metavar="URL", help="API base URL (overrides OPENAI_BASE_URL).")
    @whole_number(
        "--max-retries", minimum=0, help="Retries of a failed request (default: the SDK's, 2)."
    )
    @click.option(
        "--request-timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        metavar="SECONDS",
        help="Timeout of each request (default: the SDK's).",
    )
    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        profile: str,
        base_url: str | None,
        max_retries: int | None,
        request_timeout: float | None,
        **kwargs: Any,
    ) -> Any:
        settings = ApiSettings(profile, base_url, max_retries, request_timeout)
        return fn(*args, settings=settings, **kwargs)

    return wrapper  # type: ignore[return-value]


def api_errors(fn: F) -> F:
    """API failures -> one-line errors (exit 2); an invalid file -> its problems (exit 1)."""

    @functools.wraps(fn)
    @library_errors
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except api.ApiError as exc:
            raise CliError(message(exc)) from None
        except api.InvalidBatchFile as exc:
            refuse(exc, [exc.report])

    return wrapper  # type: ignore[return-value]


def batch_command(name: str) -> Callable[[F], click.Command]:
    """A ``batches`` subcommand with the client options and error handling."""

    def decorate(fn: F) -> click.Command:
        return batches.command(name)(api_options(api_errors(fn)))

    return decorate


@click.group()
def batches() -> None:
    """Manage batches through the API (needs: pip install 'jsonl-batch[api]').

    Authentication and endpoints come from the environment, as for the openai SDK:
    OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_ORG_ID, OPENAI_PROJECT_ID (or, with
    --profile azure, AZURE_OPENAI_ENDPOINT, OPENAI_API_VERSION, AZURE_OPENAI_API_KEY).

    Example:

    \b
        jsonl-batch batches create requests.jsonl --metadata job=nightly
        jsonl-batch batches run big.jsonl -o job/
    """


@batch_command("list")
@click.option(
    "--limit", type=click.IntRange(1, 100), default=20, show_default=True, help="Batches per page."
)
@click.option("--after", metavar="ID", help="Start after this batch (the next-page cursor).")
@flag("--all", "all_", help="Every batch, page after page.")
@click.option(
    "--status",
    multiple=True,
    type=click.Choice(api.STATUSES),
    help="Only batches in this status (repeatable; filtered after fetching).",
)
@format_option("table", "json", "jsonl")
def list_(
    settings: ApiSettings,
    limit: int,
    after: str | None,
    all_: bool,
    status: tuple[str, ...],
    fmt: str,
) -> None:
    """List the organization's batches, newest first: one page, or every batch with --all.

    Example:

        jsonl-batch batches list --limit 50 --status in_progress
    """
    page = api.list_batches(settings.client(), limit=limit, after=after, all=all_, status=status)
    if fmt == "json":
        show(page, fmt, str, indent=True)
        return
    if fmt == "jsonl":
        if page.data:
            click.echo(to_jsonl(page.data))
    else:
        click.echo(batches_table(page.data))
    if page.next_after:
        click.echo(next_page_text(page), err=fmt == "jsonl")


@batch_command("get")
@click.argument("batch_id")
@format_option("table", "json", "jsonl")
def get(settings: ApiSettings, batch_id: str, fmt: str) -> None:
    """Show every field of one batch: times readable, errors listed.

    Example:

        jsonl-batch batches get batch_abc123
    """
    batch = api.get_batch(settings.client(), batch_id)
    show(batch, fmt, batch_text if fmt == "table" else lambda b: to_jsonl([b]), indent=True)


@batch_command("cancel")
@click.argument("batch_id")
@format_option("table", "json")
def cancel(settings: ApiSettings, batch_id: str, fmt: str) -> None:
    """Cancel a batch; prints its new status (cancelling).

    Example:

        jsonl-batch batches cancel batch_abc123
    """
    batch = api.cancel_batch(settings.client(), batch_id)
    show(batch, fmt, status_line, indent=True)


def parse_metadata(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    """``key=value`` pairs -> a dict (a key given twice is an error)."""
    metadata: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not key=value", ctx, param)
        if key in metadata:
            raise click.BadParameter(f"key {key!r} given twice", ctx, param)
        metadata[key] = value
    return metadata


def output_dir_options(what: str) -> Callable[[F], F]:
    """``-o/--output-dir`` (default: here) and ``--force`` for commands that write ``what``."""

    def decorate(fn: F) -> F:
        fn = flag("--force", help=f"Overwrite {what} if they exist.")(fn)
        return click.option(
            "-o",
            "--output-dir",
            default=".",
            show_default=True,
            type=click.Path(file_okay=False),
            help=f"Folder for {what}.",
        )(fn)

    return decorate


window_option = click.option(
    "--window", default="24h", show_default=True, help="The completion window."
)


def metadata_option(help: str) -> Callable[[F], F]:
    """``--metadata KEY=VALUE`` (repeatable), passed on as a dict."""
    return click.option(
        "--metadata", multiple=True, metavar="KEY=VALUE", callback=parse_metadata, help=help
    )


create_options = stack(
    click.argument("file", type=click.Path(dir_okay=False)),
    click.option(
        "--endpoint",
        default="auto",
        show_default=True,
        help="The batch endpoint (auto: the file's).",
    ),
    window_option,
    metadata_option("Metadata to attach (repeatable; 16 pairs, 64/512 chars)."),
    flag("--no-validate", help="Upload without validating the file first."),
)
"""The options of ``create``."""


def create_args(
    settings: ApiSettings, endpoint: str, window: str, metadata: dict[str, str], no_validate: bool
) -> dict[str, Any]:
    """The options of ``create`` as keyword arguments of ``api.create_batch``."""
    return {
        "endpoint": None if endpoint == "auto" else endpoint,
        "window": window,
        "metadata": metadata,
        "validate": not no_validate,
        "profile": settings.profile,
    }


@batch_command("create")
@create_options
@format_option("text", "json")
def create(
    settings: ApiSettings,
    file: str,
    endpoint: str,
    window: str,
    metadata: dict[str, str],
    no_validate: bool,
    fmt: str,
) -> None:
    """Validate FILE, upload it and create a batch; prints the batch id.

    An invalid file is refused (its problems are shown, exit 1) unless --no-validate.

    Example:

        jsonl-batch batches create requests.jsonl --metadata job=nightly
    """
    options = create_args(settings, endpoint, window, metadata, no_validate)
    created = api.create_batch(settings.client(), file, **options)
    click.echo(created_text(file, created), err=True)
    show(created, fmt, created_id, indent=True)


interval_option = click.option(
    "--interval",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="First pause between polls (at least 1s); it grows up to 60s.",
)
"""``--interval SECONDS``: the first pause between polls (``wait``, ``run``)."""


wait_options = stack(
    interval_option,
    click.option(
        "--timeout",
        type=click.FloatRange(min=0),
        default=None,
        metavar="SECONDS",
        help="Give up after this long (exit 2).",
    ),
)
"""The options of ``wait``."""


def _wait(client: Any, batch_id: str, interval: float, timeout: float | None) -> dict[str, Any]:
    progress = Progress(sys.stderr, tty=sys.stderr.isatty())
    try:
        return api.wait_for_batch(
            client, batch_id, interval=interval, timeout=timeout, on_poll=progress
        )
    finally:
        progress.close()


@batch_command("wait")
@click.argument("batch_id")
@wait_options
@format_option("text", "json")
def wait(
    settings: ApiSettings, batch_id: str, interval: float, timeout: float | None, fmt: str
) -> None:
    """Poll a batch until it finishes, showing its progress.

    Exit status: 0 completed, 1 failed, expired or cancelled (its errors are shown), 2 on an
    API error or --timeout.

    Example:

        jsonl-batch batches wait batch_abc123 --timeout 3600
    """
    batch = _wait(settings.client(), batch_id, interval, timeout)
    show(batch, fmt, final_text, indent=True)
    raise SystemExit(0 if batch["status"] == "completed" else 1)


@batch_command("download")
@click.argument("batch_id")
@output_dir_options("the result files")
@format_option("text", "json")
def download(settings: ApiSettings, batch_id: str, output_dir: str, force: bool, fmt: str) -> None:
    """Download a batch's output and error files: <id>.output.jsonl, <id>.errors.jsonl.

    Example:

        jsonl-batch batches download batch_abc123 -o results/
    """
    result = api.download_results(settings.client(), batch_id, output_dir, force=force)
    show(result, fmt, download_text, indent=True)


# ``run``, ``status`` and ``clean`` (whole jobs) live in ``cli/jobs.py``; importing it adds them
from . import jobs as _jobs  # noqa: E402, F401
