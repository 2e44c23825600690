"""The request core: what a parsed line is, read once, by name.

``read_request(obj, ctx)`` turns a parsed line into ``RequestFacts`` (custom_id, endpoint,
model, embedding inputs, body) or the finding that says why it is no request at all (not a
JSON object). Every reader of requests goes through it: validation's rules (its fast path
is held equal to it by a test), the builder, split's measures, token counting and stats,
and the join's index (``not_a_request``). ``Context`` is what it needs of the profile.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from .profiles import EMBEDDINGS_URLS, ENDPOINTS, Profile
from .schemas import BodySchema, body_schema

Finding = tuple[str, str, "str | None"]
"""``(code, message, param)``: a problem before the engine gives it a line."""


class Context:
    """What line rules need to know about the run: the profile, compiled once, and for
    profiles whose lines are ``{custom_id, body}`` the endpoint the job is created for
    (``endpoint``; the profile's first when not given)."""

    def __init__(self, profile: Profile, endpoint: str | None = None) -> None:
        self.profile = profile
        self.endpoints = frozenset(profile.endpoints)
        self.custom_id_re = profile.custom_id_re
        self.custom_id_rule = re.compile(profile.custom_id_rule or "(?s:.*)")
        self.envelope = profile.envelope
        self.endpoint: str | None = None
        """The endpoint of every line, when lines do not name it."""
        if profile.line_shape == "body":
            self.endpoint = endpoint or profile.endpoints[0]
        self.allow = frozenset(profile.allow_params)

    def url_of(self, req: dict[str, Any]) -> Any:
        """The endpoint a parsed line is for: its ``url``, or the job's."""
        return self.endpoint or req.get("url")

    def schema(self, url: str) -> BodySchema:
        """The endpoint's compiled body schema, as this profile checks it."""
        profile = self.profile
        return body_schema(url, self.allow, profile.closed_bodies, profile.model_in_body)

    def required(self, url: str) -> tuple[str, ...]:
        """The body parameters a request to ``url`` must have: ``model`` (where the profile
        runs one model per file, named in the body) and what the endpoint's definition
        requires."""
        model = ("model",) if self.profile.model_in_body else ()
        return tuple(dict.fromkeys((*model, *self.schema(url).required)))


class RequestFacts(NamedTuple):
    """What the package reads of a request line; each field ``None`` when absent or of
    another type (the line rules say what is wrong)."""

    custom_id: str | None
    url: str | None
    """The line's endpoint as written (or the job's, for ``{custom_id, body}`` lines)."""
    endpoint: str | None
    """``url`` when it is an endpoint of the profile (of any profile, without a context):
    what the file rules take as the batch's endpoint."""
    model: str | None
    """``body.model``."""
    embedding_inputs: int
    """Inputs of an embeddings request (``count_inputs``); 0 for other endpoints."""
    body: dict[str, Any] | None

    @property
    def countable(self) -> bool:
        """Whether its input tokens are counted: a known endpoint's url and a body object."""
        return self.body is not None and self.url in ENDPOINTS


def read_request(obj: Any, ctx: Context | None = None) -> RequestFacts | Finding:
    """A parsed line's facts, or the ``invalid_type`` finding of a line that is no JSON
    object. ``ctx`` gives the profile's endpoints and the job's endpoint of ``{custom_id,
    body}`` lines; without it, lines name their url and any known endpoint counts."""
    if type(obj) is not dict:
        return not_an_object(obj)
    custom_id = obj.get("custom_id")
    url = ctx.url_of(obj) if ctx is not None else obj.get("url")
    body = obj.get("body")
    if type(url) is not str:
        url = None
    model = None
    inputs = 0
    if type(body) is dict:
        model = body.get("model")
        if url in EMBEDDINGS_URLS:
            inputs = count_inputs(body.get("input"))
    else:
        body = None
    endpoints = ctx.endpoints if ctx is not None else ENDPOINTS
    return RequestFacts(
        custom_id if type(custom_id) is str else None,
        url,
        url if url in endpoints else None,
        model if type(model) is str else None,
        inputs,
        body,
    )


def not_an_object(obj: Any) -> Finding:
    """The ``invalid_type`` finding of a line that is no JSON object."""
    kind = "an array" if type(obj) is list else "a scalar value"
    message = f"This line is {kind}, not a JSON object; each line must be one request."
    return ("invalid_type", message, None)


def not_a_request(obj: Any) -> str | None:
    """Why a parsed input line is not a request, or ``None``: a request is an object with a
    string ``custom_id`` and a ``url`` (OpenAI's shape) or a ``body`` (``{custom_id, body}``
    providers'). What join and retry read as a request, in either shape."""
    facts = read_request(obj)
    if not isinstance(facts, RequestFacts):
        return "This line is not a JSON object."
    if facts.custom_id is None:
        return "This line has no string 'custom_id'."
    if facts.url is None and facts.body is None:
        return "This line has no string 'url', so it is not a request (is it a result line?)."
    return None


def request_line(
    profile: Profile, custom_id: str, url: str, body: dict[str, Any]
) -> dict[str, Any]:
    """A request in the profile's line shape (what a builder writes)."""
    if profile.line_shape == "body":
        return {"custom_id": custom_id, "body": body}
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def count_inputs(value: Any) -> int:
    """Embedding inputs in one request: a string or a token array counts 1, a list its length."""
    if isinstance(value, list):
        if value and all(type(v) is int for v in value):
            return 1
        return len(value)
    return 0 if value is None else 1
