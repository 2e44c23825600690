"""The library's errors: one base, ``JsonlBatchError``, that every exception it raises derives from.

An error is data: a ``code`` (stable, snake_case), a message, and the options it names as
structured hints. A message never names a command-line flag: it marks the option with
``option("force")``; ``str(error)`` words it for Python callers (``force=True``) and the CLI
words it as a flag (``--force``) through ``error.worded(...)``, so each audience reads its own
spelling. ``UsageError`` means the arguments cannot work (an unknown name, an impossible
combination, a bad option value): the CLI shows it as a usage error (exit 2). It is a
``ValueError``, so code that catches that keeps working.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_MARK = "\x00"  # no path or text of a message holds NUL; not whitespace
_OPTION = re.compile(f"{_MARK}(\\w+){_MARK}")

PARAMETERS = {
    "force": "force=True",
    "parts": "parts=",
    "by": "by=",
    "endpoint": "endpoint=",
    "input_format": "input_format=",
    "template": "template=",
    "prompt_column": "prompt_column=",
    "system": "system=",
    "param": "params",
    "split": "split=True",
    "output": "output=",
    "profile_azure": "profile='azure'",
    "skip_invalid": "skip_invalid=True",
    "no_check": "check=False",
}
"""How a Python caller reads each option a message names (the CLI has its own table)."""


def option(name: str) -> str:
    """Name option ``name`` inside a message: worded per audience (see ``JsonlBatchError``)."""
    return f"{_MARK}{name}{_MARK}"


def _word(message: str, words: Mapping[str, str]) -> str:
    return _OPTION.sub(lambda m: words.get(m.group(1), m.group(1)), message)


class JsonlBatchError(Exception):
    """Base of every error the library raises: ``code``, the message, ``hints`` (the options
    the message names, e.g. ``("force",)``; ``hint`` is the first) and ``to_dict()``."""

    code: str = "error"

    def __init__(self, message: str = "", *args: Any, code: str | None = None) -> None:
        self.template = message
        self.hints: tuple[str, ...] = tuple(_OPTION.findall(message))
        if code is not None:
            self.code = code
        super().__init__(_word(message, PARAMETERS), *args)

    @property
    def hint(self) -> str | None:
        """The first option the message names (e.g. ``"force"``), else ``None``."""
        return self.hints[0] if self.hints else None

    def worded(self, words: Mapping[str, str]) -> str:
        """The message with each option it names in the wording of ``words``."""
        return _word(self.template, words) if self.hints else Exception.__str__(self)

    def to_dict(self) -> dict[str, Any]:
        """``{"code", "message", "hint"}``."""
        return {"code": self.code, "message": str(self), "hint": self.hint}


class UsageError(JsonlBatchError, ValueError):
    """The call's arguments cannot work; the message says why and what to give instead."""

    code = "usage_error"
