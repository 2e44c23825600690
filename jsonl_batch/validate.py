"""Validation: reading + rules -> problems, lazily (``iter_problems``) or as a ``Report``.

Per-line work (parse, envelope, body schema) is independent from line to line, so it runs a
chunk at a time through ``parallel.LineChunks`` (worker processes for large files); this
process takes the chunks in line order and applies the rules that span lines. In-process or
not, the problems and their order are the same.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from heapq import merge
from typing import Any

import jsonschema_rs
from orjson import JSONDecodeError, loads

from .errors import UsageError
from .lines.parallel import LineChunks
from .lines.reading import ReadError, Source, open_source, source_name
from .rules.checks import (
    Chunk,
    FileRules,
    active,
    clean_line_schema,
    context_overflow,
    not_json,
)
from .rules.models import model_facts
from .rules.problems import VALIDATION_CODES, Problem, Report, Stats, problem
from .rules.profiles import EMBEDDINGS_URLS, Profile, check_endpoint, get_profile
from .rules.requests import Context, Finding, RequestFacts, count_inputs, read_request
from .tokens.counting import TokenCounter, request_tokens

BODY_CODES = frozenset({"invalid_request", "invalid_body"})
"""Findings about a body, checked against its own url's schema: on a line whose url is not
the batch endpoint the url is the one problem (one problem per cause, as the server)."""


@dataclass
class Measured(Chunk):
    """A ``Chunk`` that also measured each line, for ``split``'s cut points: its bytes (ending
    included), and the running totals of estimated input tokens and embedding inputs before
    each line and after the last (line ``i``'s own are ``tokens[i + 1] - tokens[i]``)."""

    sizes: array[int] = field(default_factory=lambda: array("q"))
    tokens_before: array[int] = field(default_factory=lambda: array("q"))
    inputs_before: array[int] = field(default_factory=lambda: array("q"))


class LineChecker:
    """The per-line half of validation: parse once, check, extract the facts.

    A line that passes its endpoint's clean-line schema (one jsonschema-rs call) has no
    line problems; only the others go through the rules, which say what is wrong.
    ``measure``: return ``Measured`` chunks.
    """

    def __init__(
        self,
        profile: Profile,
        ignore: Collection[str] = (),
        endpoint: str | None = None,
        count_tokens: bool = False,
        *,
        measure: bool = False,
    ) -> None:
        self.ctx = ctx = Context(profile, endpoint)
        self.measure = measure
        rules = active("line", ignore)
        self.rules = [r.check for r in rules if r.check is not None]
        self.any_value = [r.check for r in rules if r.any_value and r.check is not None]
        self.partly = frozenset(ignore) & {code for r in rules for code in r.codes}
        """Ignored codes of rules that run for their other codes."""
        self.parse = bool(active("parse", ignore))
        self.clean = _CleanValidators(ctx)
        self.counter: TokenCounter | None = None
        capped = profile.max_enqueued_tokens is not None and "token_limit_exceeded" not in ignore
        if capped or count_tokens:
            self.counter = TokenCounter()
        self.check_output = profile.model_names and "invalid_body" not in ignore
        self.caps: dict[Any, int] = {}
        """model -> its maximum output tokens (0: unknown), for the fast path."""

    def check(self, raw: bytes) -> tuple[RequestFacts | None, list[Finding] | None]:
        """Check one raw line: its facts (``None`` unless it is a JSON object) and findings."""
        chunk = self.check_lines([raw])
        found = chunk.findings[0][1] if chunk.findings else None
        if not chunk.requests:
            return None, found
        facts = read_request(loads(raw), self.ctx)
        assert isinstance(facts, RequestFacts)  # the line is an object
        return facts, found

    def check_lines(self, lines: Iterable[bytes]) -> Chunk:
        """Check raw lines (their endings may be kept) into one ``Chunk``.

        The hot loop, kept flat: a clean line costs one parse and one schema call; the rest
        go through ``explain``.
        """
        chunk = Measured() if self.measure else Chunk()
        ids, targets, findings = chunk.custom_ids, chunk.targets, chunk.findings
        clean_for, explain, counter = self.clean, self.explain, self.counter
        ctx, check_output, caps, parse = self.ctx, self.check_output, self.caps, self.parse
        fixed = ctx.endpoint  # the endpoint of lines that do not name one
        n = requests = inputs = tokens = 0
        last: tuple[str | None, str | None] | None = None
        measured = chunk if isinstance(chunk, Measured) else None
        if measured is not None:
            size, tokens_at, inputs_at = (
                a.append for a in (measured.sizes, measured.tokens_before, measured.inputs_before)
            )
        for raw in lines:
            n += 1
            if measured is not None:
                size(len(raw))
                tokens_at(tokens)
                inputs_at(inputs)
            try:
                req = loads(raw)
            except JSONDecodeError as exc:
                line_facts: RequestFacts | None = None
                found: list[Finding] | None = [not_json(raw, exc)] if parse else None
            else:
                url = (fixed or req.get("url")) if type(req) is dict else None
                overflow: Finding | None = None
                if counter is not None:
                    line_tokens = request_tokens(counter, req, ctx) or 0
                    tokens += line_tokens
                    if line_tokens and check_output:
                        overflow = context_overflow(req["body"], line_tokens, ctx)
                clean = clean_for[url] if type(url) is str else None
                try:
                    ok = clean is not None and clean(req)  # then url is a str, body a dict
                except ValueError:  # jsonschema-rs: too deep to check; the rules explain
                    ok = False
                if ok and check_output:  # then the model is a string: the output cap
                    body = req["body"]
                    model = body.get("model")
                    cap = caps.get(model)
                    if cap is None:
                        facts = model_facts(model) if type(model) is str else None
                        cap = caps[model] = facts.max_output_tokens if facts else 0
                    if overflow or (  # the clean schema made these integers or null
                        cap
                        and (
                            (body.get("max_tokens") or 0) > cap
                            or (body.get("max_completion_tokens") or 0) > cap
                            or (body.get("max_output_tokens") or 0) > cap
                        )
                    ):
                        ok = False
                if ok:
                    body = req["body"]
                    ids.append(req["custom_id"])
                    requests += 1
                    if url in EMBEDDINGS_URLS:
                        inputs += count_inputs(body.get("input"))
                    target = url, body.get("model")
                    if target != last:
                        targets.append((n, *target))
                        last = target
                    continue
                line_facts, found = explain(req)
                if overflow is not None:
                    found = [*(found or ()), overflow]
            if found:
                findings.append((n, found))
            if line_facts is None:
                ids.append(None)
                target = (None, None)
            else:
                ids.append(line_facts.custom_id)
                requests += 1
                inputs += line_facts.embedding_inputs
                target = line_facts.endpoint, line_facts.model
            if target != last:
                targets.append((n, *target))
                last = target
        chunk.lines, chunk.requests, chunk.embedding_inputs = n, requests, inputs
        chunk.tokens = tokens if counter is not None else None
        if measured is not None:
            tokens_at(tokens)
            inputs_at(inputs)
        return chunk

    def explain(self, req: Any) -> tuple[RequestFacts | None, list[Finding] | None]:
        """Run every line rule on a parsed line that is not clean: its facts (the request
        core's, ``rules.requests.read_request``) and findings."""
        ctx = self.ctx
        facts = read_request(req, ctx)
        line_facts = facts if isinstance(facts, RequestFacts) else None
        found: list[Finding] | None = None
        for rule in self.rules if line_facts is not None else self.any_value:
            out = rule(req, ctx)
            if out:
                found = [*found, *out] if found else list(out)
        if found and self.partly:  # a rule with some codes ignored runs; drop those
            found = [f for f in found if f[0] not in self.partly] or None
        return line_facts, found


class _CleanValidators(dict[str, Callable[[Any], bool]]):
    """url -> compiled clean-line check, compiled on first use (a file has one endpoint)."""

    def __init__(self, ctx: Context) -> None:
        super().__init__()
        self.ctx = ctx

    def __missing__(self, url: str) -> Callable[[Any], bool] | None:
        if url not in self.ctx.endpoints:
            return None
        check = jsonschema_rs.validator_for(clean_line_schema(url, self.ctx)).is_valid
        self[url] = check
        return check


class Validation:
    """One validation run over one source: iterate it for problems, then read ``stats``.

    ``profile`` is a name or a ``Profile``; ``overrides`` replace its limits
    (``max_requests``, ``max_bytes``, ``max_embedding_inputs``). ``endpoint`` and ``model``
    fix the batch's endpoint and model instead of taking them from the first line. Codes in
    ``ignore`` are neither checked nor reported. ``workers``: processes for large files
    (``None``: one per core; ``1``: in-process). ``progress(bytes_done, size)`` is called
    after each chunk (``size`` is ``None`` for a stream). ``count_tokens`` estimates input
    tokens (as ``max_enqueued_tokens`` does, without a cap): a request whose estimate plus its
    requested output is over its model's context window is ``invalid_body``.
    ``on_chunk(base, chunk, errors)`` sees each chunk of lines (``Measured`` with
    ``measure``) once its problems are yielded, with the numbers of its lines that have an
    error: ``split`` plans its cuts from them, with no second pass over the file.
    """

    def __init__(
        self,
        source: Source,
        profile: str | Profile = "openai",
        *,
        endpoint: str | None = None,
        model: str | None = None,
        ignore: Collection[str] = (),
        workers: int | None = None,
        progress: Callable[[int, int | None], None] | None = None,
        count_tokens: bool = False,
        measure: bool = False,
        on_chunk: Callable[[int, Chunk, list[int]], None] | None = None,
        **overrides: Any,
    ) -> None:
        self.source = source
        self.count_tokens = count_tokens
        self.measure, self.on_chunk = measure, on_chunk
        self.progress = progress
        self.profile = get_profile(profile, **overrides)
        unknown = sorted(set(ignore) - set(VALIDATION_CODES))
        if unknown:
            raise UsageError(f"unknown problem code(s) to ignore: {', '.join(unknown)}")
        self.endpoint = check_endpoint(self.profile, endpoint)
        self.model = model
        self.ignore = frozenset(ignore)
        self.workers = workers
        self.stats = Stats()

    def __iter__(self) -> Iterator[Problem]:
        stats = self.stats = Stats()
        checker = LineChecker(
            self.profile, self.ignore, self.endpoint, self.count_tokens, measure=self.measure
        )
        endpoint = checker.ctx.endpoint or self.endpoint
        rules = FileRules(self.profile, endpoint, self.model, self.ignore)
        emit = self._emit
        base = 0
        with open_source(self.source) as handle:
            chunks = LineChunks(
                self.source,
                handle,
                checker.check_lines,
                workers=self.workers,
                prime=checker.counter is not None,
            )
            for chunk in chunks:
                cross = rules.feed(base, chunk)
                wrong_url = {line for line, f in cross if f[0] == "invalid_url"}
                own = [
                    (base + rel, f)
                    for rel, found in chunk.findings
                    for f in found
                    if not (base + rel in wrong_url and f[0] in BODY_CODES)
                ]
                errors: list[int] = []  # the lines with an error, for on_chunk
                for line, finding in merge(own, cross, key=lambda pair: pair[0]):
                    for found in emit(line, [finding]):
                        if found.severity == "error":
                            errors.append(line)
                        yield found
                if self.on_chunk is not None:
                    self.on_chunk(base, chunk, errors)
                base += chunk.lines
                if self.progress is not None:
                    self.progress(chunks.done, chunks.size)
        size = chunks.size or 0
        stats.lines = base
        stats.bytes = size
        stats.requests = rules.requests
        stats.endpoint = rules.endpoint
        stats.model = rules.model
        stats.embedding_inputs = rules.embedding_inputs
        stats.input_tokens = rules.tokens
        yield from emit(None, rules.finish(size))

    def _emit(self, line: int | None, found: list[Finding]) -> Iterator[Problem]:
        counts = self.stats.counts
        for code, message, param in found:  # (an ignored rule is not run)
            counts[code] = counts.get(code, 0) + 1
            yield problem(code, line, message, param)


def iter_problems(
    source: Source, profile: str | Profile = "openai", **options: Any
) -> Iterator[Problem]:
    """Yield every problem in a JSONL batch file, lazily, in line order (file-level last).

    Options are those of ``Validation``. Raises ``ReadError`` if the file cannot be read.
    """
    return iter(Validation(source, profile, **options))


def validate_file(
    source: Source,
    profile: str | Profile = "openai",
    *,
    max_problems: int | None = 100,
    on_problem: Callable[[Problem], None] | None = None,
    **options: Any,
) -> Report:
    """Validate a JSONL batch file and return a ``Report`` (never raises for I/O problems;
    with ``max_enqueued_tokens``, raises ``TokensUnavailable`` if tokens cannot be counted).

    At most ``max_problems`` line problems are listed (``None``: all); file-level problems
    are always listed, and ``report.stats.counts`` stays exact. ``on_problem`` receives each
    listed problem instead of ``report.problems`` (to render a million of them in bounded
    memory). Other options are those of ``Validation`` (``endpoint``, ``model``, ``ignore``,
    ``workers``, limit overrides).
    """
    run = Validation(source, profile, **options)
    report = Report(file=source_name(source))
    keep = report.problems.append if on_problem is None else on_problem
    line_problems = 0
    try:
        for found in run:
            if found.line is None:
                keep(found)
            elif max_problems is None or line_problems < max_problems:
                line_problems += 1
                keep(found)
    except ReadError as exc:
        report.error = str(exc)
    report.stats = run.stats
    return report
