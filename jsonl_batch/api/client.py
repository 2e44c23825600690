"""The ``openai`` SDK client and its failures, for ``api``.

The SDK is the optional ``[api]`` extra: it is imported only when a client is made, so the
rest of the package never needs it. Every SDK failure becomes an ``ApiError`` whose message
is one line and never contains an API key: secrets are removed, in every form a message may
show them (raw, escaped, as bytes, URL-quoted), from the full text before it is shortened (a
key cut in half by the length limit would no longer match). A key an HTTP header cannot
carry (spaces or a line break around it, non-ASCII) is refused before any request.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any
from urllib.parse import quote, quote_plus

import orjson

from ..errors import JsonlBatchError, UsageError, option

INSTALL_HINT = "pip install 'jsonl-batch[api]'"
SECRET_VARS = (
    "OPENAI_API_KEY",
    "OPENAI_ADMIN_KEY",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_AD_TOKEN",
)
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_*.\-]{3,}")
SHORT_SECRET = 8
"""A secret shorter than this is redacted only where it stands alone (not inside a word)."""
_STATUS = {
    400: "bad request",
    401: "authentication failed",
    403: "permission denied",
    404: "not found",
    409: "conflict",
    422: "unprocessable request",
    429: "rate limited",
}
_HINTS = {
    401: f"; check OPENAI_API_KEY (AZURE_OPENAI_API_KEY with {option('profile_azure')})",
    403: "; check that the key's organization and project (OPENAI_ORG_ID, OPENAI_PROJECT_ID) "
    "may use the Batch API",
}
MAX_MESSAGE = 300


class ApiError(JsonlBatchError):
    """An API call failed; the message is one line, safe to show (no key in it).

    ``status`` is the HTTP status when the server answered, else ``None``.
    """

    code = "api_error"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class MissingSdk(ApiError):
    """The ``openai`` package (the ``[api]`` extra) is not installed."""

    code = "missing_sdk"


def load_sdk() -> ModuleType:
    """Import ``openai``, or raise ``MissingSdk`` saying how to install it.

    Ctrl-C during the import stays a ``KeyboardInterrupt``, even where Python wrapped it
    (``RuntimeError: Error calling __set_name__`` while a class was being made)."""
    try:
        return importlib.import_module("openai")
    except Exception as exc:
        if _interrupted(exc):
            raise KeyboardInterrupt from None
        if isinstance(exc, ImportError):
            raise MissingSdk(
                f"the batches commands need the openai SDK; install it with: {INSTALL_HINT}"
            ) from None
        raise


def _interrupted(exc: BaseException | None) -> bool:
    """Whether ``exc`` was caused by a ``KeyboardInterrupt`` (its chain holds one)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def make_client(
    profile: str = "openai",
    *,
    base_url: str | None = None,
    max_retries: int | None = None,
    timeout: float | None = None,
) -> Any:
    """An SDK client configured as the SDK's users expect.

    ``openai`` reads ``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``OPENAI_ORG_ID`` and
    ``OPENAI_PROJECT_ID``; ``azure`` builds ``AzureOpenAI`` from ``AZURE_OPENAI_ENDPOINT``,
    ``OPENAI_API_VERSION`` and ``AZURE_OPENAI_API_KEY`` (or ``AZURE_OPENAI_AD_TOKEN``).
    ``base_url`` overrides the environment; ``max_retries``/``timeout`` default to the SDK's.
    """
    sdk = load_sdk()
    options: dict[str, Any] = {"base_url": base_url}
    if max_retries is not None:
        options["max_retries"] = max_retries
    if timeout is not None:
        options["timeout"] = timeout
    if profile == "azure":
        _check_azure_env(base_url)
        if base_url is None:
            del options["base_url"]
        factory = sdk.AzureOpenAI
    elif profile == "openai":
        factory = sdk.OpenAI
    else:
        raise UsageError(f"unknown API profile {profile!r} (choose from openai, azure)")
    var = "AZURE_OPENAI_API_KEY" if profile == "azure" else "OPENAI_API_KEY"
    try:
        client = factory(**options)
    except sdk.OpenAIError as exc:
        if "credentials" in str(exc).lower() or "api_key" in str(exc):
            raise ApiError(f"no API key: set {var}") from None
        raise ApiError(safe_line(str(exc))) from None
    except ValueError as exc:
        raise ApiError(safe_line(str(exc))) from None
    except Exception as exc:  # the HTTP library's InvalidURL (not a ValueError): no I/O yet
        why = safe_line(str(exc)) or type(exc).__name__
        raise ApiError(f"cannot make the API client: {why}; check the API's base URL") from None
    check_headers(client, var)
    return client


def check_headers(client: Any, key_var: str = "OPENAI_API_KEY") -> None:
    """Refuse what the client would send in a header and HTTP cannot carry: a key (or the
    organization, project, Azure token) with spaces or a line break around it, or with
    non-ASCII or control characters. The message names the variable, never the value."""
    values = [
        ("the API key", key_var, getattr(client, "api_key", None)),
        ("the organization", "OPENAI_ORG_ID", getattr(client, "organization", None)),
        ("the project", "OPENAI_PROJECT_ID", getattr(client, "project", None)),
        ("the token", "AZURE_OPENAI_AD_TOKEN", os.environ.get("AZURE_OPENAI_AD_TOKEN")),
    ]
    for what, var, value in values:
        if not isinstance(value, str) or not value:
            continue
        if value != value.strip():
            raise ApiError(f"{what} in {var} has spaces or a line break around it; remove them")
        if not (value.isascii() and value.isprintable()):
            raise ApiError(
                f"{what} in {var} holds characters a request header cannot carry "
                "(non-ASCII or control characters); check its value"
            )


def _check_azure_env(base_url: str | None) -> None:
    needed = ["OPENAI_API_VERSION"]
    if base_url is None:
        needed.append("AZURE_OPENAI_ENDPOINT")
    if not (os.environ.get("AZURE_OPENAI_API_KEY") or os.environ.get("AZURE_OPENAI_AD_TOKEN")):
        needed.append("AZURE_OPENAI_API_KEY")
    missing = [name for name in needed if not os.environ.get(name)]
    if missing:
        raise ApiError(f"{option('profile_azure')} needs {', '.join(missing)} in the environment")


@contextmanager
def calling(client: Any, action: str) -> Iterator[None]:
    """Turn an SDK failure inside the block into ``ApiError("cannot <action>: <why>")``."""
    try:
        yield
    except ApiError:
        raise
    except Exception as exc:
        sdk = sys.modules.get("openai")
        if sdk is None or not isinstance(exc, sdk.OpenAIError):
            raise
        status = getattr(exc, "status_code", None)
        why = describe(exc, sdk, client)
        raise ApiError(redact(f"cannot {action}: {why}", client), status) from None


def describe(exc: Exception, sdk: ModuleType, client: Any) -> str:
    """Why an SDK call failed, in words; what the server or the SDK said is redacted, then
    shortened (``safe_line``). The caller redacts the whole again (the base url)."""
    retries = getattr(client, "max_retries", 0)
    after = f" after {retries} retr{'y' if retries == 1 else 'ies'}" if retries else ""
    if isinstance(exc, sdk.APITimeoutError):
        return f"the request to {client.base_url} timed out{after}"
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        reason = f" ({safe_line(str(cause), client)})" if cause and str(cause) else ""
        return f"cannot connect to {client.base_url}{reason}{after}"
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        label = _STATUS.get(status) or ("server error" if status >= 500 else "HTTP error")
        body = exc.body
        detail = body.get("message") if isinstance(body, dict) else None
        text = f"{label} (HTTP {status})"
        if detail:
            text += f": {safe_line(str(detail), client).rstrip('.')}"
        elif not isinstance(body, dict) and exc.response is not None:
            text += f"; {not_json(exc.response)}"
        if status == 429 or status >= 500:
            text += after
        return text + _HINTS.get(status, "")
    return safe_line(str(exc), client) or type(exc).__name__


def not_json(response: Any) -> str:
    """Where an answer that is not JSON came from, what it was, and the likely cause."""
    content = response.content or b""
    kind = response.headers.get("content-type", "").split(";")[0].strip()
    if "html" in kind or content.lstrip()[:15].lower().startswith((b"<!doctype", b"<html")):
        what = "an HTML page"
    elif not content:
        what = "nothing"
    else:
        what = f"{kind or 'something'} ({len(content):,} bytes)"
    return f"{response.request.url} answered {what}, not JSON; check the API's base URL"


def safe_line(text: str, client: Any = None) -> str:
    """``redact`` then ``one_line``: in this order, so that no key is cut before it is found."""
    return one_line(redact(text, client))


def one_line(text: str) -> str:
    """Collapse whitespace; cut very long messages."""
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def redact(text: str, client: Any = None) -> str:
    """Remove API keys and tokens (the client's, the environment's, ``sk-...``) from ``text``,
    in every form a message may show them: raw or stripped, escaped as Python or JSON does,
    as a ``bytes`` repr, URL-quoted. A short secret is removed where it stands alone."""
    pattern = _secrets_pattern(_secrets(client))
    if pattern is not None:
        text = pattern.sub("***", text)
    return _KEY_LIKE.sub("sk-***", text)


def redact_value(value: Any, client: Any = None) -> Any:
    """``value`` (a server's JSON answer) with ``redact`` applied to every string in it, keys
    included: a key the server echoes back (in metadata, in errors) is never shown."""
    pattern = _secrets_pattern(_secrets(client))

    def clean(text: str) -> str:
        return _KEY_LIKE.sub("sk-***", pattern.sub("***", text) if pattern else text)

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return clean(item)
        if isinstance(item, dict):
            return {clean(k) if isinstance(k, str) else k: walk(v) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        return item

    return walk(value)


def _secrets(client: Any) -> frozenset[str]:
    found = {os.environ.get(name, "") for name in SECRET_VARS}
    found.add(str(getattr(client, "api_key", "") or ""))
    return frozenset(s for s in found if s.strip())


@functools.lru_cache(maxsize=16)
def _secrets_pattern(secrets: frozenset[str]) -> re.Pattern[str] | None:
    forms = {form for secret in secrets for form in _forms(secret) if form.strip()}
    parts = []
    for form in sorted(forms, key=len, reverse=True):
        part = re.escape(form)
        if len(form.strip()) < SHORT_SECRET:
            part = rf"(?<![A-Za-z0-9]){part}(?![A-Za-z0-9])"
        parts.append(part)
    return re.compile("|".join(parts)) if parts else None


def _forms(secret: str) -> set[str]:
    """How ``secret`` may appear in a message."""
    forms = set()
    for text in {secret, secret.strip()}:
        forms |= {text, repr(text)[1:-1], orjson.dumps(text).decode()[1:-1]}
        forms |= {quote(text, safe=""), quote(text), quote_plus(text)}
        forms.add(text.encode("unicode_escape").decode("ascii"))
        for encoding in ("utf-8", "latin-1"):
            forms.add(repr(text.encode(encoding, "backslashreplace"))[2:-1])
    return forms
