"""What one part (one batch file) may hold, shared by the builder and ``split``.

``PartLimits`` is the profile's per-file limits plus a token budget. It answers the two
questions both writers ask of each request: does it fit in any part at all (``alone``), and
does it still fit in the current one (``breaks``/``overflows``)? The messages live here
once, so ``build`` and ``split`` word a breach the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..errors import UsageError
from .profiles import Profile

LIMIT_CODES = (
    "too_many_tasks",
    "file_too_large",
    "too_many_embedding_inputs",
    "token_limit_exceeded",
)
"""The codes of a broken limit, the file's or a part's: the one list (``FileRules.codes`` and
split's are derived from it). Not problems for ``split``: breaking these is why one splits."""


@dataclass
class Totals:
    """What a part holds so far: requests, bytes, embedding inputs, estimated input tokens."""

    requests: int = 0
    bytes: int = 0
    inputs: int = 0
    tokens: int = 0


class Breach(NamedTuple):
    """A request that no part can hold: the problem ``code``, a sentence, the ``param`` and
    the amount found (``value``)."""

    code: str
    message: str
    param: str | None
    value: int


@dataclass(frozen=True)
class PartLimits:
    """Per-file limits (``None``: no limit). ``max_tokens`` is a budget of estimated input
    tokens (tiktoken) per file."""

    max_requests: int | None = None
    max_bytes: int | None = None
    max_embedding_inputs: int | None = None
    max_tokens: int | None = None

    @classmethod
    def of(cls, profile: Profile, max_tokens: int | None = None) -> PartLimits:
        """The profile's limits; ``max_tokens`` defaults to its ``max_enqueued_tokens``."""
        budget = max_tokens if max_tokens is not None else profile.max_enqueued_tokens
        limits = cls(profile.max_requests, profile.max_bytes, profile.max_embedding_inputs, budget)
        for name, value in limits.to_dict().items():
            if value is not None and value < 1:
                raise UsageError(f"{name} must be at least 1, not {value}")
        return limits

    def to_dict(self) -> dict[str, int | None]:
        """The manifest's ``limits`` (``max_tokens`` only when there is a budget)."""
        data = {
            "max_requests": self.max_requests,
            "max_bytes": self.max_bytes,
            "max_embedding_inputs": self.max_embedding_inputs,
        }
        if self.max_tokens is not None:
            data["max_tokens"] = self.max_tokens
        return data

    def alone(self, size: int, inputs: int, tokens: int) -> Breach | None:
        """The limit a request of ``size`` bytes, ``inputs`` embedding inputs and ``tokens``
        tokens breaks on its own (so no part can hold it), or ``None``."""
        if self.max_bytes is not None and size > self.max_bytes:
            return _alone("file_too_large", f"{size:,} bytes", f"{self.max_bytes:,} bytes", size)
        limit = self.max_embedding_inputs
        if limit is not None and inputs > limit:
            what = f"{inputs:,} embedding inputs"
            return _alone("too_many_embedding_inputs", what, f"{limit:,}", inputs, "body.input")
        if self.max_tokens is not None and tokens > self.max_tokens:
            what = f"an estimated {tokens:,} input tokens"
            return _alone("token_limit_exceeded", what, f"{self.max_tokens:,} tokens", tokens)
        return None

    def breaks(self, part: Totals, size: int, inputs: int, tokens: int) -> tuple[str, str] | None:
        """``(code, clause)`` if adding the request to ``part`` breaks a limit, else ``None``.
        The clause has no final period: a caller may add what to do about it."""
        if self.max_requests is not None and part.requests >= self.max_requests:
            return (
                "too_many_tasks",
                f"The file already has the limit of {self.max_requests:,} requests",
            )
        if self.max_bytes is not None and part.bytes + size > self.max_bytes:
            return "file_too_large", (
                f"This request ({size:,} bytes) would take the file past the limit of "
                f"{self.max_bytes:,} bytes"
            )
        limit = self.max_embedding_inputs
        if limit is not None and part.inputs + inputs > limit:
            return "too_many_embedding_inputs", (
                f"This request's {inputs:,} embedding inputs would take the file past the "
                f"limit of {limit:,}"
            )
        budget = self.max_tokens
        if budget is not None and part.tokens + tokens > budget:
            return "token_limit_exceeded", (
                f"This request's estimated {tokens:,} input tokens would take the file past "
                f"the limit of {budget:,} tokens (it has {part.tokens:,})"
            )
        return None

    def overflows(self, part: Totals, size: int, inputs: int, tokens: int) -> bool:
        """True if adding the request to ``part`` breaks a limit (``breaks``, without words)."""
        return self.breaks(part, size, inputs, tokens) is not None


def _alone(code: str, what: str, limit: str, value: int, param: str | None = None) -> Breach:
    message = (
        f"This request alone has {what}, more than the limit of {limit} per file; "
        "no part can hold it."
    )
    return Breach(code, message, param, value)
