"""The rules: one small function per check, registered with the codes it can emit.

Line rules look at one parsed request (a dict) and return findings ``(code, message, param)``
or ``None``; the engine adds the line number. File rules keep state across lines
(``FileRules``): duplicates, the batch endpoint and model, and the limits.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from .limits import LIMIT_CODES, Limits, Totals
from .models import model_facts, output_over, requested_output
from .profiles import ENDPOINTS, Profile
from .requests import Context, Finding
from .schemas import describe

TEXT_MESSAGE = {
    "type": "object",
    "properties": {
        "role": {"enum": ["system", "developer", "user", "assistant"]},
        "content": {"type": "string"},
    },
    "required": ["role", "content"],
    "additionalProperties": False,
}
SHORTCUTS = {"/v1/chat/completions": "messages", "/v1/responses": "input"}
"""The long lists of common lines, whose items are tried as ``TEXT_MESSAGE`` first (a role
and a string: what most batch lines hold) and only then against the full definition, in one
``anyOf``: what passes is what passed before, and a clean line costs about what it did with
hand-written schemas."""


def _first(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """``node`` with each array's items checked as ``TEXT_MESSAGE`` first."""
    while set(node) == {"$ref"}:
        node = defs[node["$ref"].removeprefix("#/$defs/")]
    if "anyOf" in node:
        return {**node, "anyOf": [_first(branch, defs) for branch in node["anyOf"]]}
    if node.get("type") == "array":
        return {**node, "items": {"anyOf": [TEXT_MESSAGE, node["items"]]}}
    return node


def clean_line_schema(url: str, ctx: Context) -> dict[str, Any]:
    """A schema that a line of endpoint ``url`` passes exactly when no line rule finds
    anything in it: the fast path checks this in one jsonschema-rs call and runs the rules
    (for their messages) only on lines that fail it. A test holds the two equal."""
    body = dict(ctx.schema(url).schema)
    defs = body.pop("$defs", {})  # its "#/$defs/..." refs resolve against our root
    if url in SHORTCUTS:
        name = SHORTCUTS[url]
        body["properties"] = {**body["properties"], name: _first(body["properties"][name], defs)}
    profile = ctx.profile
    custom_id: dict[str, Any] = {
        "type": "string",
        "pattern": f"^(?:{profile.portable_custom_id})$",
    }
    if profile.custom_id_rule:
        custom_id["allOf"] = [{"pattern": f"^(?:{profile.custom_id_rule})$"}]
    envelope: dict[str, Any] = {"custom_id": custom_id, "method": {"const": "POST"}}
    if ctx.endpoint is None:
        envelope["url"] = {"const": url}
    return {
        "$defs": defs,
        "type": "object",
        "required": list(ctx.envelope),
        "additionalProperties": False,
        "properties": {
            **{k: v for k, v in envelope.items() if k in ctx.envelope},
            "body": {
                "allOf": [
                    body,
                    {"properties": {"stream": {"not": {"const": True}}}},
                    {
                        "required": list(ctx.required(url)),
                        "properties": {f: {"not": {"type": "null"}} for f in ctx.required(url)},
                    },
                ],
            },
        },
    }


LineCheck = Callable[[dict[str, Any], Context], "Iterable[Finding] | None"]


@dataclass(frozen=True)
class Rule:
    codes: tuple[str, ...]
    check: LineCheck


LINE_RULES: list[Rule] = []


def line_rule(*codes: str) -> Callable[[LineCheck], LineCheck]:
    """Register a line rule under the codes it can emit."""

    def register(check: LineCheck) -> LineCheck:
        LINE_RULES.append(Rule(codes, check))
        return check

    return register


def active_rules(ignore: Collection[str] = ()) -> list[LineCheck]:
    """The line checks to run: all of them, minus rules whose every code is ignored."""
    return [r.check for r in LINE_RULES if not set(r.codes) <= set(ignore)]


@line_rule("missing_required_parameter")
def required_fields(req: dict[str, Any], ctx: Context) -> list[Finding] | None:
    missing = [f for f in ctx.envelope if f not in req]
    if not missing:
        return None
    return [
        ("missing_required_parameter", f"Missing required parameter: '{f}'.", f) for f in missing
    ]


@line_rule("invalid_type")
def field_types(req: dict[str, Any], ctx: Context) -> list[Finding] | None:
    found: list[Finding] = []
    for name, wanted, word in (
        ("custom_id", str, "a string"),
        ("url", str, "a string"),
        ("body", dict, "an object"),
    ):
        value = req.get(name)
        if name in req and name in ctx.envelope and type(value) is not wanted:
            found.append(("invalid_type", f"{name} must be {word}, found {describe(value)}.", name))
    return found or None


@line_rule("invalid_method")
def method(req: dict[str, Any], ctx: Context) -> list[Finding] | None:
    value = req.get("method", "POST")
    if value == "POST" or ctx.endpoint is not None:
        return None
    hint = " (upper case)" if isinstance(value, str) and value.upper() == "POST" else ""
    return [
        ("invalid_method", f"The method must be POST{hint}, found {describe(value)}.", "method")
    ]


@line_rule("unsupported_endpoint")
def endpoint(req: dict[str, Any], ctx: Context) -> list[Finding] | None:
    url = req.get("url")
    if type(url) is not str or url in ctx.endpoints or ctx.endpoint is not None:
        return None
    path = "/v1/" + url.split("/v1/", 1)[1] if "/v1/" in url else None
    hint = (
        f" Use the path only: {path!r}."
        if path in ctx.endpoints and path != url
        else f" Use one of: {', '.join(ctx.profile.endpoints)}."
    )
    return [
        (
            "unsupported_endpoint",
            f"The url {url!r} is not a batch endpoint of the {ctx.profile.name} profile.{hint}",
            "url",
        )
    ]


@line_rule("streaming_unsupported")
def streaming(req: dict[str, Any], ctx: Context) -> list[Finding] | None:
    body = req.get("body")
    if type(body) is not dict or body.get("stream") is not True:
        return None
    url = ctx.url_of(req)
    known = ENDPOINTS.get(url) if type(url) is str else None
    name = f"{known.name}: " if known else ""
    return [
        (
            "streaming_unsupported",
            f'{name}Streaming is not supported in the Batch API; remove "stream": true.',
            "body.stream",
        )
    ]


@line_rule("invalid_request", "invalid_body")
def body_against_schema(req: dict[str, Any], ctx: Context) -> list[Finding] | None:
    """Required body parameters (the server fails the whole file), the rest of the
    endpoint's schema and the model's output limit (the server fails only this request, with
    HTTP 400)."""
    body = req.get("body")
    if type(body) is not dict:
        return None
    url = ctx.url_of(req)
    known = url if type(url) is str and url in ctx.endpoints else None
    schema = ctx.schema(known) if known else None
    required = ctx.required(known) if known else ("model",) if ctx.profile.model_in_body else ()
    missing = [f for f in required if body.get(f) is None]
    found: list[Finding] = [
        ("invalid_request", f"{f.capitalize()} parameter is required.", f"body.{f}")
        for f in missing
    ]
    if schema and not schema.is_valid(body):
        skip = {f"body.{f}" for f in missing}
        found += [
            ("invalid_body", message, param)
            for param, message in schema.failures(body)
            if param not in skip
        ]
    elif over := output_limit(body, ctx):
        found.append(over)
    return found or None


def output_limit(body: dict[str, Any], ctx: Context) -> Finding | None:
    """More output asked for than the model writes (from the shipped model facts)."""
    over = output_over(body.get("model"), body) if ctx.profile.model_names else None
    if over is None:
        return None
    param, tokens, facts = over
    return (
        "invalid_body",
        f"body.{param} asks for {tokens:,} output tokens; {facts.name} writes at most "
        f"{facts.max_output_tokens:,} (its model page, as of {facts.as_of}).",
        f"body.{param}",
    )


def context_overflow(body: dict[str, Any], input_tokens: int, ctx: Context) -> Finding | None:
    """Estimated input plus requested output over the model's context window (when tokens
    are counted)."""
    model = body.get("model")
    if not ctx.profile.model_names or type(model) is not str:
        return None
    facts = model_facts(model)
    if facts is None:
        return None
    asked = requested_output(body)
    output = asked[1] if asked else 0
    if input_tokens + output <= facts.context_window or output > facts.max_output_tokens:
        return None  # (too much output is output_limit's problem: one problem per cause)
    return (
        "invalid_body",
        f"The request needs an estimated {input_tokens:,} input tokens (tiktoken) plus "
        f"{output:,} requested output tokens, {input_tokens + output:,} in all: over "
        f"{facts.name}'s context window of {facts.context_window:,}.",
        "body",
    )


@line_rule("unknown_parameter")
def unknown_keys(req: dict[str, Any], ctx: Context) -> list[Finding] | None:
    envelope = ctx.envelope
    if len(req) <= len(envelope) and all(k in envelope for k in req):
        return None
    reads = ", ".join(envelope[:-1]) + " and " + envelope[-1]
    return [
        (
            "unknown_parameter",
            f"Unknown top-level key {key!r}; the {ctx.profile.name} batch lines hold only {reads}.",
            key,
        )
        for key in req
        if key not in envelope
    ] or None


@line_rule("invalid_custom_id")
def custom_id_rule(req: dict[str, Any], ctx: Context) -> list[Finding] | None:
    custom_id = req.get("custom_id")
    if type(custom_id) is not str or ctx.custom_id_rule.fullmatch(custom_id):
        return None
    rule = ctx.profile.custom_id_rule_text
    return [
        (
            "invalid_custom_id",
            f"custom_id {describe(custom_id)} breaks the {ctx.profile.name} rule: {rule}.",
            "custom_id",
        )
    ]


@line_rule("nonportable_custom_id")
def portable_custom_id(req: dict[str, Any], ctx: Context) -> list[Finding] | None:
    custom_id = req.get("custom_id")
    if type(custom_id) is not str or ctx.custom_id_re.fullmatch(custom_id):
        return None
    if not ctx.custom_id_rule.fullmatch(custom_id):
        return None  # invalid_custom_id says it
    return [
        (
            "nonportable_custom_id",
            f"custom_id {describe(custom_id)} is not 1-64 letters, digits, '_' or '-'; "
            "OpenAI accepts it, other providers reject it.",
            "custom_id",
        )
    ]


@dataclass(slots=True)
class Chunk:
    """What the line checks found in a run of lines, compact enough to cross processes.

    Line numbers here are relative to the chunk (from 1); the engine adds the base.
    """

    lines: int = 0
    requests: int = 0
    embedding_inputs: int = 0
    tokens: int | None = None
    """Estimated input tokens of the requests, when counting (``max_enqueued_tokens``)."""
    custom_ids: list[str | None] = field(default_factory=list)
    """One per line: its custom_id, or ``None``."""
    targets: list[tuple[int, str | None, str | None]] = field(default_factory=list)
    """``(line, url, model)`` wherever the pair changes: a run lasts until the next entry."""
    findings: list[tuple[int, list[Finding]]] = field(default_factory=list)
    """Line-rule findings, by line."""


class FileRules:
    """Rules across lines: duplicate custom_ids, one endpoint, one model, and the limits."""

    codes = ("duplicate_custom_id", "invalid_url", "mismatched_model", "empty_file", *LIMIT_CODES)

    def __init__(
        self, profile: Profile, endpoint: str | None = None, model: str | None = None
    ) -> None:
        self.profile = profile
        self.limits = Limits.of(profile, check=False)
        self.endpoint = endpoint
        self.model = model
        self.endpoint_line: int | None = None
        self.model_line: int | None = None
        self.first_use: dict[str, int] = {}
        self.requests = 0
        self.embedding_inputs = 0
        self.tokens: int | None = None

    def feed(self, base: int, chunk: Chunk) -> list[tuple[int, Finding]]:
        """Take a chunk that starts after line ``base``; return ``(line, finding)`` pairs for
        what it breaks across the file, in line order."""
        self.requests += chunk.requests
        self.embedding_inputs += chunk.embedding_inputs
        if chunk.tokens is not None:
            self.tokens = (self.tokens or 0) + chunk.tokens
        found: list[tuple[int, Finding]] = []
        ids = chunk.custom_ids
        if self.profile.unique_custom_ids and not self._add_unique(base, ids):
            for line, custom_id in enumerate(ids, base + 1):
                if custom_id is not None and (f := self.duplicate(line, custom_id)):
                    found.append((line, f))
        targets = chunk.targets
        stops = [t[0] for t in targets[1:]] + [chunk.lines + 1] if targets else []
        for (start, url, model), stop in zip(targets, stops, strict=True):
            for line in range(base + start, base + stop):
                wrong_url = url is not None and self.other_url(line, url)
                wrong_model = model is not None and self.other_model(line, model)
                if not self.profile.one_endpoint:
                    wrong_url = None
                if not self.profile.one_model:
                    wrong_model = None
                if not (wrong_url or wrong_model):
                    break  # the rest of the run has the same url and model
                found += [(line, f) for f in (wrong_url, wrong_model) if f]
        found.sort(key=lambda pair: pair[0])  # stable: duplicate, url, model within a line
        return found

    def _add_unique(self, base: int, ids: list[str | None]) -> bool:
        """Record every custom_id at once when none repeats; ``False`` if one might.
        (Set operations in C: this runs in the main process while workers check lines.)"""
        unique = set(ids)
        nones = ids.count(None)
        if len(unique) != len(ids) - nones + (1 if nones else 0):
            return False
        unique.discard(None)
        if not self.first_use.keys().isdisjoint(unique):
            return False
        lines = range(base + 1, base + 1 + len(ids))
        self.first_use.update(zip(ids, lines, strict=True))  # type: ignore[arg-type]
        self.first_use.pop(None, None)  # type: ignore[call-overload]
        return True

    def duplicate(self, line: int, custom_id: str) -> Finding | None:
        first = self.first_use.setdefault(custom_id, line)
        if first == line:
            return None
        return (
            "duplicate_custom_id",
            f"custom_id {custom_id!r} is already used on line {first}; "
            "custom_ids must be unique in a file.",
            "custom_id",
        )

    def other_url(self, line: int, url: str) -> Finding | None:
        if self.endpoint is None:
            self.endpoint, self.endpoint_line = url, line
        if url == self.endpoint:
            return None
        return (
            "invalid_url",
            "The URL provided for this request does not match the batch endpoint: "
            f"found {url!r}, the batch endpoint is {self.endpoint!r}"
            f"{self._since(self.endpoint_line)}.",
            "url",
        )

    def other_model(self, line: int, model: str) -> Finding | None:
        if self.model is None:
            self.model, self.model_line = model, line
        if model == self.model:
            return None
        label = self.profile.model_label
        return (
            "mismatched_model",
            f"Every line must use the same {label}: found {model!r}, the file's "
            f"{label} is {self.model!r}{self._since(self.model_line)}.",
            "body.model",
        )

    @staticmethod
    def _since(line: int | None) -> str:
        return f" (from line {line})" if line else " (given)"

    def finish(self, size: int) -> list[Finding]:
        """File-level findings once every line has been fed; ``size`` is the file's bytes."""
        found: list[Finding] = []
        if self.requests == 0 and not self.profile.empty_file_ok:
            found.append(("empty_file", "The file contains no requests.", None))
        totals = Totals(self.requests, size, self.embedding_inputs, self.tokens or 0)
        found += [breach[:3] for breach in self.limits.over(totals)]
        return found
