"""What one batch file may hold: ``Limits``, for the whole file and for each part.

``Limits`` is the profile's per-file limits plus a token budget (``Limits.of(profile)``).
It answers every question asked of a limit, each in the one wording of ``LIMITS``: is the
file over a limit (``over``: validation's file rules), does a request fit in any part at
all (``alone``), and does it still fit in the current part (``breaks``/``overflows``: the
builder's rotation and split's plan)?
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..errors import UsageError
from .profiles import Profile


class Limit(NamedTuple):
    """One limit: its problem ``code``, the ``Limits`` field that sets it, the ``Totals``
    field it bounds, what that counts (``noun``), the limit's scope (``per``) and the
    problem's ``param``."""

    code: str
    field: str
    """The ``Limits`` field (``max_requests``, ...)."""
    total: str
    """The ``Totals`` field (``requests``, ...)."""
    noun: str
    per: str = " per file"
    param: str | None = None

    def amount(self, value: int) -> str:
        """``60,001 requests``, ``an estimated 58 input tokens``."""
        estimated = "an estimated " if self.total == "tokens" else ""
        return f"{estimated}{value:,} {self.noun}"

    def says(self, subject: str, value: int, limit: int) -> str:
        """The one wording of a broken limit (no final period): ``{subject} {amount}; the
        limit is {limit} {noun}{per}``."""
        return f"{subject} {self.amount(value)}; the limit is {limit:,} {self.noun}{self.per}"


LIMITS = (
    Limit("too_many_tasks", "max_requests", "requests", "requests"),
    Limit("file_too_large", "max_bytes", "bytes", "bytes"),
    Limit("too_many_embedding_inputs", "max_embedding_inputs", "inputs", "embedding inputs",
          param="body.input"),
    Limit("token_limit_exceeded", "max_tokens", "tokens", "input tokens", per=""),
)  # fmt: skip
"""Every limit, in the order they are checked and reported."""

LIMIT_CODES = tuple(limit.code for limit in LIMITS)
"""The codes of a broken limit, the file's or a part's (``FileRules.codes`` and split's are
derived from it). Not problems for ``split``: breaking these is why one splits."""

SPLIT_IT = "Split it (jsonl-batch split)."
ENQUEUED = (
    "The server fails a batch over the organization's enqueued-token limit at validation: "
    "split it (jsonl-batch split --max-tokens) or wait for running batches to finish."
)


@dataclass
class Totals:
    """What a part holds so far: requests, bytes, embedding inputs, estimated input tokens."""

    requests: int = 0
    bytes: int = 0
    inputs: int = 0
    tokens: int = 0


class Breach(NamedTuple):
    """A broken limit: the problem ``code``, a sentence (a clause without a final period
    from ``breaks``: a caller may add what to do about it), the ``param`` and the amount
    found (``value``). Its first three fields are a finding."""

    code: str
    message: str
    param: str | None
    value: int


@dataclass(frozen=True)
class Limits:
    """Per-file limits (``None``: no limit). ``max_tokens`` is a budget of estimated input
    tokens (tiktoken) per file."""

    max_requests: int | None = None
    max_bytes: int | None = None
    max_embedding_inputs: int | None = None
    max_tokens: int | None = None

    @classmethod
    def of(cls, profile: Profile, max_tokens: int | None = None, *, check: bool = True) -> Limits:
        """The profile's limits; ``max_tokens`` defaults to its ``max_enqueued_tokens``.
        ``check``: refuse a limit below 1 (``UsageError``), as a part could hold nothing."""
        budget = max_tokens if max_tokens is not None else profile.max_enqueued_tokens
        limits = cls(profile.max_requests, profile.max_bytes, profile.max_embedding_inputs, budget)
        for name, value in limits.to_dict().items():
            if check and value is not None and value < 1:
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

    def over(self, totals: Totals) -> list[Breach]:
        """The limits a whole file of ``totals`` breaks (validation's file rules)."""
        found = []
        for limit in LIMITS:
            cap: int | None = getattr(self, limit.field)
            value: int = getattr(totals, limit.total)
            if cap is not None and value > cap:
                then = ENQUEUED if limit.total == "tokens" else SPLIT_IT
                message = f"{limit.says('The file has', value, cap)}. {then}"
                found.append(Breach(limit.code, message, None, value))
        return found

    def alone(self, size: int, inputs: int, tokens: int) -> Breach | None:
        """The limit a request of ``size`` bytes, ``inputs`` embedding inputs and ``tokens``
        tokens breaks on its own (so no part can hold it), or ``None``."""
        for limit, value in zip(LIMITS[1:], (size, inputs, tokens), strict=True):
            cap: int | None = getattr(self, limit.field)
            if cap is not None and value > cap:
                says = limit.says("This request alone has", value, cap)
                message = f"{says}, so no part can hold it."
                return Breach(limit.code, message, limit.param, value)
        return None

    def breaks(self, part: Totals, size: int, inputs: int, tokens: int) -> Breach | None:
        """The limit adding the request to ``part`` breaks, else ``None``; the message is a
        clause without a final period."""
        if not self.overflows(part, size, inputs, tokens):
            return None
        for limit, own in zip(LIMITS, (1, size, inputs, tokens), strict=True):
            cap: int | None = getattr(self, limit.field)
            value = getattr(part, limit.total) + own
            if cap is not None and value > cap:
                this = "This request"
                if limit.total != "requests":
                    this += f" ({limit.amount(own)})"
                message = limit.says(f"{this} would give the file", value, cap)
                return Breach(limit.code, message, limit.param, value)
        raise AssertionError("overflows and breaks disagree")  # pragma: no cover

    def overflows(self, part: Totals, size: int, inputs: int, tokens: int) -> bool:
        """True if adding the request to ``part`` breaks a limit (``breaks``, without words:
        split's plan asks this of every line)."""
        return (
            (self.max_requests is not None and part.requests >= self.max_requests)
            or (self.max_bytes is not None and part.bytes + size > self.max_bytes)
            or (
                self.max_embedding_inputs is not None
                and part.inputs + inputs > self.max_embedding_inputs
            )
            or (self.max_tokens is not None and part.tokens + tokens > self.max_tokens)
        )
