"""Problems, the catalogue of problem codes, and the validation ``Report``.

A problem has OpenAI's batch-error shape (``code``, ``line``, ``message``, ``param``) plus a
``severity``. The codes are a contract: each is listed once in ``CATALOGUE`` and in the
README's table (a test keeps the two equal).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a file: ``line`` is 1-based, or ``None`` for the whole file."""

    code: str
    line: int | None
    message: str
    param: str | None = None
    severity: Severity = "error"

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "line": self.line,
            "message": self.message,
            "param": self.param,
            "severity": self.severity,
        }


@dataclass(frozen=True)
class Code:
    """A catalogue entry: what a code means and whether it makes a file invalid;
    ``build``: a code of ``build``'s input rows, not of a batch file."""

    code: str
    meaning: str
    severity: Severity = "error"
    file_level: bool = False
    build: bool = False


CATALOGUE: dict[str, Code] = {
    c.code: c
    for c in (
        Code(
            "invalid_json_line",
            "The line is not parseable JSON: includes a blank line, a "
            "byte-order mark, invalid UTF-8 and nesting deeper than 1024 levels.",
        ),
        Code(
            "invalid_type",
            "The line is JSON but not an object (param null), or a top-level "
            "field has the wrong type (`custom_id`, `url` not a string, `body` not an object).",
        ),
        Code(
            "missing_required_parameter",
            "`custom_id`, `method`, `url` or `body` is absent (param names it).",
        ),
        Code(
            "duplicate_custom_id",
            "The custom_id was already used; reported on the later line, "
            "the message names the first.",
        ),
        Code("invalid_method", "`method` is not `POST`."),
        Code("unsupported_endpoint", "`url` is not a batch endpoint of the profile."),
        Code(
            "invalid_url",
            "`url` differs from the batch endpoint (the first valid line's url, or `--endpoint`).",
        ),
        Code(
            "mismatched_model",
            "`body.model` differs from the file's model (the first seen, or `--model`).",
        ),
        Code("streaming_unsupported", "`body.stream` is true."),
        Code(
            "invalid_request",
            "The body lacks a parameter the batch or its endpoint's definition requires: "
            "`model` (every line); `messages` (chat), `input` (embeddings, moderations), "
            "`prompt` (completions, images, videos), `images` (image edits). The server "
            "rejects the whole file. Not checked on a line with `invalid_url`.",
        ),
        Code(
            "invalid_body",
            "The body fails its endpoint's schema, generated from OpenAI's API definition: "
            "a wrong type, an unknown role, a value out of range, or a key the definition "
            "does not have (a body parameter, or one in a message or tool: 'did you mean "
            "...?'); more output than the model writes (`max_tokens`, `max_completion_tokens`, "
            "`max_output_tokens`, from the shipped model facts); with `--count-tokens`, input "
            "plus output over the model's context window. The server accepts the file and "
            "fails this request with HTTP 400. param is the path, e.g. `body.messages[1].role`. "
            "Not checked on a line with `invalid_url`.",
        ),
        Code("empty_file", "The file contains no requests.", file_level=True),
        Code("too_many_tasks", "More requests than the profile allows.", file_level=True),
        Code("file_too_large", "More bytes than the profile allows.", file_level=True),
        Code(
            "too_many_embedding_inputs",
            "More embedding inputs than the profile allows (a "
            "string or a token array counts 1, an array of them its length).",
            file_level=True,
        ),
        Code(
            "token_limit_exceeded",
            "The estimated input tokens (tiktoken) are over `--max-enqueued-tokens`, the "
            "organization's enqueued-token cap: the server fails the batch at validation. "
            "(`split`/`build --max-tokens` report it on the line of a request alone over it.)",
            file_level=True,
        ),
        Code(
            "invalid_custom_id",
            "The custom_id breaks a rule of the profile's provider (Together: at most 64 "
            "characters).",
        ),
        Code(
            "unknown_parameter",
            "A top-level key other than custom_id, method, url, body.",
            severity="warning",
        ),
        Code(
            "nonportable_custom_id",
            "The custom_id is not `^[A-Za-z0-9_-]{1,64}$`; other "
            "providers (Anthropic, Together) reject it.",
            severity="warning",
        ),
        Code(
            "missing_column",
            "`build`: the input has no column named by an option (`--prompt-column`, "
            "`--id-column`, a template's `{column}`), or a row lacks it.",
            build=True,
        ),
        Code("null_value", "`build`: a row's value in a used column is null (empty).", build=True),
        Code(
            "empty_value",
            "`build`: a prompt or custom_id is empty or only whitespace.",
            build=True,
        ),
        Code(
            "invalid_input",
            "`build`: the input cannot be read as its format (a line that is not a JSON "
            "object, a CSV or Parquet file that does not parse), or a value is not text or a "
            "number where one is needed, or a NaN or infinite number.",
            build=True,
        ),
    )
}
VALIDATION_CODES = tuple(c.code for c in CATALOGUE.values() if not c.build)
"""The codes ``validate`` can report (and ``ignore``)."""


def code_table() -> str:
    """The README's table of problem codes, generated from the catalogue."""
    rows = ["| code | severity | scope | meaning |", "|---|---|---|---|"]
    for c in CATALOGUE.values():
        scope = "build (row)" if c.build else "file (line null)" if c.file_level else "line"
        rows.append(f"| `{c.code}` | {c.severity} | {scope} | {c.meaning} |")
    return "\n".join(rows)


def problem(code: str, line: int | None, message: str, param: str | None = None) -> Problem:
    """Make a problem with the severity its code has in the catalogue."""
    return Problem(code, line, message, param, CATALOGUE[code].severity)


@dataclass
class Stats:
    """What validation learned about a file."""

    lines: int = 0
    requests: int = 0
    bytes: int = 0
    endpoint: str | None = None
    model: str | None = None
    embedding_inputs: int = 0
    input_tokens: int | None = None
    """Estimated input tokens (tiktoken), when ``max_enqueued_tokens`` asked for them."""
    counts: dict[str, int] = field(default_factory=dict)
    """Problems per code; exact even when the listed problems are capped."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # (``counts`` copied)


@dataclass
class Report:
    """The result of validating one file.

    ``error`` is set when the file could not be read at all (missing, a directory, permission
    denied); then ``valid`` is false and ``problems`` holds what was found before the failure.
    """

    file: str
    stats: Stats = field(default_factory=Stats)
    problems: list[Problem] = field(default_factory=list)
    error: str | None = None

    @property
    def valid(self) -> bool:
        """True when the file was read and has no error-severity problems (warnings are fine)."""
        if self.error:
            return False
        return not any(
            CATALOGUE[code].severity == "error" for code, n in self.stats.counts.items() if n
        )

    @property
    def truncated(self) -> bool:
        """True when more problems were found than are listed."""
        return sum(self.stats.counts.values()) > len(self.problems)

    def flatten(self, keys: Sequence[str] = ("line", "code")) -> list[list[Any]]:
        """Problems as rows, e.g. ``[[37, "duplicate_custom_id"]]``; handy in tests."""
        return [[getattr(p, k) for k in keys] for p in self.problems]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "file": self.file,
            "valid": self.valid,
            "stats": self.stats.to_dict(),
            "problems": [p.to_dict() for p in self.problems],
        }
        if self.error:
            data["error"] = self.error
        return data


def plural(n: int, word: str) -> str:
    """``1 request``, ``0 requests``, ``2,000 requests``."""
    return f"{n:,} {word}{'s' if n != 1 else ''}"
