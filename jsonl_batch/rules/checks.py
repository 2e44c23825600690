"""The rules, registered in ``RULES`` with the codes each can emit: every code of the
catalogue has its rule, and ``--ignore`` switches rules off (``active``).

The parse rule (``json``) explains a line that is no JSON. Line rules look at one parsed
request (a dict; ``field_types`` at any value) and return findings ``(code, message,
param)`` or ``None``; the engine adds the line number. File rules keep state across lines
(``FileRules``): duplicates, the batch endpoint and model, an empty file, the limits.
``build``'s rules check its input rows (``build.inputs`` raises their codes).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from orjson import JSONDecodeError

from ..lines.reading import explain_invalid
from .limits import LIMIT_CODES, Limits, Totals
from .models import model_facts, output_over, requested_output
from .profiles import ENDPOINTS, Profile
from .requests import Context, Finding, RequestFacts, not_an_object
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
Kind = Literal["parse", "line", "file", "build"]


@dataclass(frozen=True)
class Rule:
    """A rule: its ``name``, the codes it can emit and what it looks at (``kind``): a raw
    line (``parse``), one parsed line (``line``: ``check(req, ctx)``), the lines of a file
    (``file``: ``FileRules`` runs it) or a row of ``build``'s input (``build.inputs``)."""

    name: str
    codes: tuple[str, ...]
    kind: Kind = "line"
    check: LineCheck | None = None
    any_value: bool = False
    """A line rule that also looks at lines that are no JSON object."""


RULES: dict[str, Rule] = {}
"""Every rule by name, in the order they run: each code of ``CATALOGUE`` has one."""
LINE_RULES: list[Rule] = []


def register(rule: Rule) -> Rule:
    RULES[rule.name] = rule
    if rule.kind == "line":
        LINE_RULES.append(rule)
    return rule


def line_rule(*codes: str, any_value: bool = False) -> Callable[[LineCheck], LineCheck]:
    """Register a line rule (named as its function) under the codes it can emit."""

    def add(check: LineCheck) -> LineCheck:
        register(Rule(check.__name__, codes, "line", check, any_value))
        return check

    return add


def rule_of(code: str) -> Rule:
    """The rule that emits ``code``."""
    return next(rule for rule in RULES.values() if code in rule.codes)


def active(kind: Kind, ignore: Collection[str] = ()) -> list[Rule]:
    """The rules of ``kind`` to run: all of them but those whose every code is ignored (a
    rule switched off is not run at all)."""
    off = set(ignore)
    return [r for r in RULES.values() if r.kind == kind and not set(r.codes) <= off]


register(Rule("json", ("invalid_json_line",), "parse"))


def not_json(raw: bytes, exc: JSONDecodeError) -> Finding:
    """The ``json`` rule: why a raw line is no JSON (orjson's error, explained)."""
    return ("invalid_json_line", explain_invalid(raw, exc), None)


@line_rule("missing_required_parameter")
def required_fields(req: dict[str, Any], ctx: Context) -> list[Finding] | None:
    missing = [f for f in ctx.envelope if f not in req]
    if not missing:
        return None
    return [
        ("missing_required_parameter", f"Missing required parameter: '{f}'.", f) for f in missing
    ]


@line_rule("invalid_type", any_value=True)
def field_types(req: Any, ctx: Context) -> list[Finding] | None:
    """A line is a JSON object (else the request core says what it is) whose custom_id, url
    and body have their types."""
    if type(req) is not dict:
        return [not_an_object(req)]
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
    message = f"The url {url!r} is not a batch endpoint of the {ctx.profile.name} profile.{hint}"
    return [("unsupported_endpoint", message, "url")]


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
    message = f"custom_id {describe(custom_id)} breaks the {ctx.profile.name} rule: {rule}."
    return [("invalid_custom_id", message, "custom_id")]


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


for _rule in (
    Rule("unique_ids", ("duplicate_custom_id",), "file"),
    Rule("one_endpoint", ("invalid_url",), "file"),
    Rule("one_model", ("mismatched_model",), "file"),
    Rule("not_empty", ("empty_file",), "file"),
    Rule("limits", LIMIT_CODES, "file"),
    Rule("input", ("invalid_input",), "build"),
    Rule("columns", ("missing_column",), "build"),
    Rule("cells", ("null_value", "empty_value"), "build"),
):
    register(_rule)


def duplicate_id(custom_id: str, first: str) -> Finding:
    """The one wording of a repeated custom_id; ``first`` says where it was used first
    (``on line 3``; the builder's ``by request 3``, ``by row 3``)."""
    return (
        "duplicate_custom_id",
        f"custom_id {custom_id!r} is already used {first}; custom_ids must be unique in a file.",
        "custom_id",
    )


class Same:
    """A value every request of a file shares (the batch's endpoint, its model): the given
    one, else the first found. ``check`` says where a request differs (``accept`` also
    records the first value); with ``on=False`` the value is only recorded (for the
    report), the rule is off."""

    def __init__(
        self, code: str, param: str, words: str, value: str | None = None, on: bool = True
    ) -> None:
        self.code, self.param, self.words, self.on = code, param, words, on
        self.value = value
        self.line: int | None = None
        """Where ``value`` was found first (``None``: given)."""

    def check(self, found: str | None) -> Finding | None:
        if not self.on or found is None or self.value is None or found == self.value:
            return None
        since = f" (from line {self.line})" if self.line else " (given)"
        message = self.words.format(found=found, value=self.value, since=since)
        return (self.code, message, self.param)

    def accept(self, line: int, found: str | None) -> Finding | None:
        if self.value is None and found is not None:
            self.value, self.line = found, line
        return self.check(found)


def one_endpoint(endpoint: str | None = None, on: bool = True) -> Same:
    """The ``one_endpoint`` rule: every line uses the batch's endpoint."""
    words = (
        "The URL provided for this request does not match the batch endpoint: "
        "found {found!r}, the batch endpoint is {value!r}{since}."
    )
    return Same("invalid_url", "url", words, endpoint, on)


def one_model(profile: Profile, model: str | None = None, on: bool = True) -> Same:
    """The ``one_model`` rule: every line uses one model (Azure: deployment)."""
    label = profile.model_label
    words = f"Every line must use the same {label}: found {{found!r}}, the file's {label} is "
    return Same("mismatched_model", "body.model", words + "{value!r}{since}.", model, on)


class FileRules:
    """The file rules (``unique_ids``, ``one_endpoint``, ``one_model``, ``not_empty``,
    ``limits``): what breaks across the lines of one file, and the totals of the report.

    ``feed(base, chunk)`` takes validation's chunks; ``check(line, facts)`` says what one
    more request would break and ``accept`` records it (the builder); ``finish(size)``
    gives the file-level findings. A rule whose every code is in ``ignore`` is off (not
    run); the batch's ``endpoint`` and ``model`` are still recorded. ``first``: how a
    duplicate names where the custom_id was used first (``on line``, the builder's ``by
    request``).
    """

    codes = tuple(code for rule in RULES.values() if rule.kind == "file" for code in rule.codes)

    def __init__(
        self,
        profile: Profile,
        endpoint: str | None = None,
        model: str | None = None,
        ignore: Collection[str] = (),
        *,
        first: str = "on line",
    ) -> None:
        on = {rule.name for rule in active("file", ignore)}
        self.profile = profile
        self.ignore = frozenset(ignore)
        self.unique = "unique_ids" in on and profile.unique_custom_ids
        self.first = first
        self.batch_endpoint = one_endpoint(endpoint, "one_endpoint" in on and profile.one_endpoint)
        self.batch_model = one_model(profile, model, "one_model" in on and profile.one_model)
        self.not_empty = "not_empty" in on and not profile.empty_file_ok
        self.limits = Limits.of(profile, check=False) if "limits" in on else None
        self._first_use: dict[str, int] = {}
        self.requests = 0
        self.embedding_inputs = 0
        self.tokens: int | None = None

    @property
    def endpoint(self) -> str | None:
        """The batch's endpoint: the given one, or the first request's."""
        return self.batch_endpoint.value

    @property
    def model(self) -> str | None:
        """The batch's model: the given one, or the first request's."""
        return self.batch_model.value

    def first_use(self, custom_id: str) -> int | None:
        """Where ``custom_id`` was used first (a line, or the builder's request number)."""
        return self._first_use.get(custom_id)

    def check(self, line: int, facts: RequestFacts) -> list[Finding]:
        """What one more request would break (recording nothing): another endpoint, another
        model, a custom_id used before."""
        checks = (self.batch_endpoint.check(facts.endpoint), self.batch_model.check(facts.model))
        found = [f for f in checks if f]
        custom_id = facts.custom_id
        if self.unique and custom_id is not None and custom_id in self._first_use:
            found.append(duplicate_id(custom_id, f"{self.first} {self._first_use[custom_id]}"))
        return found

    def accept(self, line: int, facts: RequestFacts) -> list[Finding]:
        """Check one more request and record it (its custom_id, the endpoint and model
        when they are the first); count it."""
        found = self.check(line, facts)
        if facts.custom_id is not None:
            self._first_use.setdefault(facts.custom_id, line)
        self.batch_endpoint.accept(line, facts.endpoint)
        self.batch_model.accept(line, facts.model)
        self.requests += 1
        self.embedding_inputs += facts.embedding_inputs
        return found

    def feed(self, base: int, chunk: Chunk) -> list[tuple[int, Finding]]:
        """Take a chunk that starts after line ``base``; return ``(line, finding)`` pairs for
        what it breaks across the file, in line order."""
        self.requests += chunk.requests
        self.embedding_inputs += chunk.embedding_inputs
        if chunk.tokens is not None:
            self.tokens = (self.tokens or 0) + chunk.tokens
        found: list[tuple[int, Finding]] = []
        ids = chunk.custom_ids
        if self.unique and not self._add_unique(base, ids):
            first_use = self._first_use.setdefault
            for line, custom_id in enumerate(ids, base + 1):
                if custom_id is not None and (first := first_use(custom_id, line)) != line:
                    found.append((line, duplicate_id(custom_id, f"{self.first} {first}")))
        targets = chunk.targets
        stops = [t[0] for t in targets[1:]] + [chunk.lines + 1] if targets else []
        same_url, same_model = self.batch_endpoint.accept, self.batch_model.accept
        for (start, url, model), stop in zip(targets, stops, strict=True):
            for line in range(base + start, base + stop):
                wrong = [f for f in (same_url(line, url), same_model(line, model)) if f]
                if not wrong:
                    break  # the rest of the run has the same url and model
                found += [(line, f) for f in wrong]
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
        if not self._first_use.keys().isdisjoint(unique):
            return False
        lines = range(base + 1, base + 1 + len(ids))
        self._first_use.update(zip(ids, lines, strict=True))  # type: ignore[arg-type]
        self._first_use.pop(None, None)  # type: ignore[call-overload]
        return True

    def finish(self, size: int) -> list[Finding]:
        """File-level findings once every line has been fed; ``size`` is the file's bytes."""
        found: list[Finding] = []
        if self.requests == 0 and self.not_empty:
            found.append(("empty_file", "The file contains no requests.", None))
        if self.limits is not None:
            totals = Totals(self.requests, size, self.embedding_inputs, self.tokens or 0)
            over = self.limits.over(totals)
            found += [breach[:3] for breach in over if breach.code not in self.ignore]
        return found
