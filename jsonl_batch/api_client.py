"""The ``openai`` SDK client and its failures, for ``api``.

The SDK is the optional ``[api]`` extra: it is imported only when a client is made, so the
rest of the package never needs it. Every SDK failure becomes an ``ApiError`` whose message
is one line and never contains an API key: secrets are removed from the full text before it
is shortened (a key cut in half by the length limit would no longer match).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from .errors import UsageError

INSTALL_HINT = "pip install 'jsonl-batch[api]'"
SECRET_VARS = (
    "OPENAI_API_KEY",
    "OPENAI_ADMIN_KEY",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_AD_TOKEN",
)
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_*.\-]{3,}")
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
    401: "; check OPENAI_API_KEY (AZURE_OPENAI_API_KEY with --profile azure)",
    403: "; check that the key's organization and project (OPENAI_ORG_ID, OPENAI_PROJECT_ID) "
    "may use the Batch API",
}
MAX_MESSAGE = 300


class ApiError(Exception):
    """An API call failed; the message is one line, safe to show (no key in it).

    ``status`` is the HTTP status when the server answered, else ``None``.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class MissingSdk(ApiError):
    """The ``openai`` package (the ``[api]`` extra) is not installed."""


def load_sdk() -> ModuleType:
    """Import ``openai``, or raise ``MissingSdk`` saying how to install it."""
    try:
        return importlib.import_module("openai")
    except ImportError:
        raise MissingSdk(
            f"the batches commands need the openai SDK; install it with: {INSTALL_HINT}"
        ) from None


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
    try:
        return factory(**options)
    except sdk.OpenAIError as exc:
        if "credentials" in str(exc).lower() or "api_key" in str(exc):
            var = "AZURE_OPENAI_API_KEY" if profile == "azure" else "OPENAI_API_KEY"
            raise ApiError(f"no API key: set {var}") from None
        raise ApiError(safe_line(str(exc))) from None
    except ValueError as exc:
        raise ApiError(safe_line(str(exc))) from None


def _check_azure_env(base_url: str | None) -> None:
    needed = ["OPENAI_API_VERSION"]
    if base_url is None:
        needed.append("AZURE_OPENAI_ENDPOINT")
    if not (os.environ.get("AZURE_OPENAI_API_KEY") or os.environ.get("AZURE_OPENAI_AD_TOKEN")):
        needed.append("AZURE_OPENAI_API_KEY")
    missing = [name for name in needed if not os.environ.get(name)]
    if missing:
        raise ApiError(f"--profile azure needs {', '.join(missing)} in the environment")


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
        if status == 429 or status >= 500:
            text += after
        return text + _HINTS.get(status, "")
    return safe_line(str(exc), client) or type(exc).__name__


def safe_line(text: str, client: Any = None) -> str:
    """``redact`` then ``one_line``: in this order, so that no key is cut before it is found."""
    return one_line(redact(text, client))


def one_line(text: str) -> str:
    """Collapse whitespace; cut very long messages."""
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def redact(text: str, client: Any = None) -> str:
    """Remove API keys and tokens (the client's, the environment's, ``sk-...``) from ``text``."""
    secrets = {os.environ.get(name, "") for name in SECRET_VARS}
    secrets.add(str(getattr(client, "api_key", "") or ""))
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 8:
            text = text.replace(secret, "***")
    return _KEY_LIKE.sub("sk-***", text)
