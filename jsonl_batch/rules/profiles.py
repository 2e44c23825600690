"""Providers' limits and endpoint facts, as frozen data.

Every limit and endpoint the rest of the package uses comes from here; overrides produce a
new ``Profile`` (``get_profile("openai", max_requests=1000)``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import UsageError


@dataclass(frozen=True)
class Endpoint:
    """One batch endpoint: its url, display name and body schema (a file in ``schemas/``).

    What a body must contain is the schema's root ``required`` list (see ``schemas``).
    """

    url: str
    name: str
    schema: str
    prompt_field: str = "prompt"
    """The body field that holds the prompt (``build --prompt-column`` fills it); for
    ``messages``, the value becomes the user message."""
    system_field: str | None = None
    """Where ``build --system`` goes: ``messages`` (a system message first) or a body field
    (``instructions``); ``None`` where the endpoint has no system prompt."""
    same_as: str | None = None
    """The OpenAI url this one is another spelling of (Azure's ``/chat/completions``)."""

    @property
    def kind(self) -> str:
        """The OpenAI url of what this endpoint does (its own url for the others)."""
        return self.same_as or self.url


def _endpoints(*endpoints: Endpoint) -> dict[str, Endpoint]:
    return {e.url: e for e in endpoints}


_CHAT = Endpoint(
    "/v1/chat/completions", "Chat Completions", "chat_completions", "messages", "messages"
)
_EMBEDDINGS = Endpoint("/v1/embeddings", "Embeddings", "embeddings", "input")
_RESPONSES = Endpoint("/v1/responses", "Responses", "responses", "input", "instructions")
OPENAI_ENDPOINTS = _endpoints(
    _RESPONSES,
    _CHAT,
    _EMBEDDINGS,
    Endpoint("/v1/completions", "Completions", "completions"),
    Endpoint("/v1/moderations", "Moderations", "moderations", "input"),
    Endpoint("/v1/images/generations", "Images", "images_generations"),
    Endpoint("/v1/images/edits", "Image edits", "images_edits"),
    Endpoint("/v1/videos", "Videos", "videos"),
)
"""OpenAI's batch endpoints, with their bodies from OpenAI's API definition."""

ENDPOINTS: dict[str, Endpoint] = {
    **OPENAI_ENDPOINTS,
    **_endpoints(
        # Azure writes the same endpoints without /v1.
        *(
            dataclasses.replace(e, url=e.url.removeprefix("/v1"), same_as=e.url)
            for e in (_CHAT, _EMBEDDINGS, _RESPONSES)
        ),
        # Other servers' endpoints: bodies they define (checked as JSON objects only).
        Endpoint("/v1/audio/transcriptions", "Audio transcriptions", "provider_body"),
        Endpoint("/v1/audio/translations", "Audio translations", "provider_body"),
        Endpoint("/score", "Score", "provider_body"),
        Endpoint("/v1/score", "Score", "provider_body"),
        Endpoint("/rerank", "Rerank", "provider_body"),
        Endpoint("/v1/rerank", "Rerank", "provider_body"),
        Endpoint("/v2/rerank", "Rerank", "provider_body"),
        Endpoint("/v1/fim/completions", "FIM completions", "provider_body"),
    ),
}
"""Every endpoint url a profile may use, by url."""
EMBEDDINGS_URL = "/v1/embeddings"
EMBEDDINGS_URLS = frozenset(u for u, e in ENDPOINTS.items() if e.kind == EMBEDDINGS_URL)
"""The spellings of the embeddings endpoint (whose inputs are counted)."""

LineShape = Literal["request", "body"]


@dataclass(frozen=True)
class Profile:
    """A provider's batch rules. ``None`` for a limit means "no limit"."""

    name: str
    endpoints: tuple[str, ...]
    max_requests: int | None
    max_bytes: int | None
    max_embedding_inputs: int | None
    max_enqueued_tokens: int | None = None
    """The organization's enqueued-token cap for the model: checked (with a tiktoken
    estimate) only when set, as counting costs ~13x validation."""
    model_label: str = "model"
    """What the provider calls ``body.model`` (Azure: the deployment name)."""
    model_names: bool = True
    """Whether ``body.model`` names a model (then its facts apply), not a deployment."""
    portable_custom_id: str = r"[A-Za-z0-9_-]{1,64}"
    """custom_ids outside this pattern get a warning: other providers reject them."""
    custom_id_rule: str | None = None
    """A pattern the provider requires of custom_ids (an error outside it); ``None``: any."""
    custom_id_rule_text: str = ""
    """The rule in words, for messages."""
    unique_custom_ids: bool = True
    """Whether a repeated custom_id is an error (vLLM does not check)."""
    line_shape: LineShape = "request"
    """``request``: ``{custom_id, method, url, body}``; ``body``: ``{custom_id, body}``, the
    endpoint chosen when the job is created (given as ``endpoint``)."""
    model_in_body: bool = True
    """Whether every body names the model (not where the job sets it)."""
    closed_bodies: bool = True
    """Whether a body key OpenAI's definition does not have is an error (OpenAI, Azure); the
    other servers accept their own parameters, so there only types and values are checked."""
    allow_params: tuple[str, ...] = ()
    """Body parameters accepted beyond the definition (newer than it)."""
    one_endpoint: bool = True
    """Whether every line must use the batch's endpoint (vLLM runs each line's own)."""
    one_model: bool = True
    """Whether every line must use the same model (vLLM fails only the other lines)."""
    empty_file_ok: bool = False
    """Whether a file with no requests is accepted (vLLM)."""
    completion_window: str = "24h"
    """The completion windows the provider accepts, in words."""
    max_metadata_pairs: int = 16
    """A batch's metadata: at most this many key-value pairs (the Batch API's), ..."""
    max_metadata_key: int = 64
    """...keys of 1 to this many characters..."""
    max_metadata_value: int = 512
    """...and values of at most this many."""
    source: str = ""
    """Where these facts come from (documentation pages, source files)."""

    def replace(self, **overrides: Any) -> Profile:
        """A copy with the given fields replaced; ``None`` values are ignored."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise UsageError(f"unknown profile setting(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def custom_id_re(self) -> re.Pattern[str]:
        return re.compile(self.portable_custom_id)

    @property
    def envelope(self) -> tuple[str, ...]:
        """The keys every line has."""
        if self.line_shape == "body":
            return ("custom_id", "body")
        return ("custom_id", "method", "url", "body")


OPENAI = Profile(
    name="openai",
    endpoints=tuple(OPENAI_ENDPOINTS),
    max_requests=50_000,
    max_bytes=209_715_200,
    max_embedding_inputs=50_000,
    source=(
        "OpenAI API reference, Batch (platform.openai.com/docs/api-reference/batch) and "
        "CreateBatchRequest in openai/openai-openapi openapi.json; the server's own message "
        "'larger than the 209715200 maximum'"
    ),
)
AZURE = Profile(
    name="azure",
    endpoints=(
        "/chat/completions",
        "/embeddings",
        "/responses",
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/responses",
    ),
    max_requests=100_000,
    max_bytes=200_000_000,
    max_embedding_inputs=None,
    model_label="deployment",
    model_names=False,
    source=(
        "learn.microsoft.com/azure/ai-foundry/openai/how-to/batch (lines written with "
        '"url": "/chat/completions"; one deployment name on every line) and its limits '
        "table (MicrosoftDocs/azure-ai-docs articles/ai-foundry/openai/includes/"
        "global-batch-limits.md: 200 MB input file, 100,000 requests per file, 500 files "
        "per resource); the v1 REST reference (batches-create-batch) repeats OpenAI's "
        "50,000 requests: lower max_requests to be safe there"
    ),
)
VLLM = Profile(
    name="vllm",
    endpoints=(
        "/v1/chat/completions",
        "/v1/embeddings",
        "/score",
        "/v1/score",
        "/rerank",
        "/v1/rerank",
        "/v2/rerank",
        "/v1/audio/transcriptions",
        "/v1/audio/translations",
    ),
    max_requests=None,
    max_bytes=None,
    max_embedding_inputs=None,
    portable_custom_id=r"(?s:.*)",
    unique_custom_ids=False,
    one_endpoint=False,
    one_model=False,
    model_in_body=False,
    closed_bodies=False,
    empty_file_ok=True,
    completion_window="none (runs to the end)",
    source=(
        "vllm-project/vllm vllm/entrypoints/openai/run_batch.py (BatchRequestInput: "
        "custom_id, method, url, body; urls /v1/chat/completions, /v1/embeddings, any "
        "ending in /score or /rerank, audio transcriptions and translations in later "
        "versions; blank lines skipped; no file limits, no duplicate check; model optional) "
        "and tests/entrypoints/openai/test_run_batch.py"
    ),
)
TOGETHER = Profile(
    name="together",
    endpoints=("/v1/chat/completions",),
    max_requests=50_000,
    max_bytes=100_000_000,
    max_embedding_inputs=None,
    custom_id_rule=r"(?s:.{1,64})",
    custom_id_rule_text="1 to 64 characters",
    line_shape="body",
    closed_bodies=False,
    source=(
        "docs.together.ai/docs/inference/batch/overview (50,000 requests per batch, 100 MB "
        "per input file, 30B tokens enqueued per model, 24h window) and "
        "docs.together.ai/docs/inference/batch/tutorial (lines {custom_id, body}, custom_id "
        "at most 64 characters, endpoint /v1/chat/completions given at batch creation)"
    ),
)
MISTRAL = Profile(
    name="mistral",
    endpoints=(
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/fim/completions",
        "/v1/moderations",
    ),
    max_requests=1_000_000,
    max_bytes=512_000_000,
    max_embedding_inputs=None,
    line_shape="body",
    model_in_body=False,
    closed_bodies=False,
    source=(
        "docs.mistral.ai/capabilities/batch (lines {custom_id, body}, the body any valid "
        "request body of the endpoint; endpoint and model chosen when the job is created; "
        "batches of up to 1M requests) and docs.mistral.ai/resources/known-limitations "
        "(batch files up to 512 MB; it also says 100,000 requests per batch: lower "
        "max_requests to be safe)"
    ),
)
FIREWORKS = Profile(
    name="fireworks",
    endpoints=("/v1/chat/completions",),
    max_requests=None,
    max_bytes=500_000_000,
    max_embedding_inputs=None,
    line_shape="body",
    model_in_body=False,
    closed_bodies=False,
    source=(
        "docs.fireworks.ai/guides/batch-inference (JSONL dataset under 500 MB; required "
        "fields custom_id, unique, and body; the model chosen for the job)"
    ),
)
GROQ = Profile(
    name="groq",
    endpoints=("/v1/chat/completions", "/v1/audio/transcriptions", "/v1/audio/translations"),
    max_requests=None,
    max_bytes=100_000_000,
    max_embedding_inputs=None,
    closed_bodies=False,
    completion_window="24h to 7d",
    source=(
        "console.groq.com/docs/batch (OpenAI's envelope; chat completions, audio "
        "transcription and translation; a 24-hour to 7-day processing window; input files "
        "up to 100 MB)"
    ),
)
PROFILES: dict[str, Profile] = {
    p.name: p for p in (OPENAI, AZURE, VLLM, TOGETHER, MISTRAL, FIREWORKS, GROQ)
}


def profile_table() -> str:
    """The README's table of profiles, generated from ``PROFILES``."""

    def number(value: int | None) -> str:
        return "none" if value is None else f"{value:,}"

    rows = [
        "| profile | line | endpoints | max requests | max bytes | custom_id | model | source |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in PROFILES.values():
        line = "`{custom_id, body}`, endpoint given" if p.line_shape == "body" else "OpenAI's"
        endpoints = ", ".join(f"`{e}`" for e in p.endpoints)
        if p.endpoints == tuple(OPENAI_ENDPOINTS):
            endpoints = "the 8 batch endpoints"
        ids = p.custom_id_rule_text or "any string"
        ids += ", unique" if p.unique_custom_ids else ", repeats allowed"
        model = "one per file" if p.one_model else "per line"
        if not p.model_in_body:
            model += " (may be set by the job)"
        extras = []
        if not p.closed_bodies:
            extras.append("provider parameters accepted")
        if p.empty_file_ok:
            extras.append("empty file accepted")
        if p.completion_window != "24h":
            extras.append(f"window {p.completion_window}")
        model += "".join(f"; {e}" for e in extras)
        rows.append(
            f"| `{p.name}`{' (default)' if p is OPENAI else ''} | {line} | {endpoints} | "
            f"{number(p.max_requests)} | {number(p.max_bytes)} | {ids} | {model} | {p.source} |"
        )
    return "\n".join(rows)


def check_endpoint(profile: Profile, endpoint: str | None) -> str | None:
    """``endpoint`` when it is one of the profile's (or ``None``); else ``UsageError``."""
    if endpoint is not None and endpoint not in profile.endpoints:
        raise UsageError(
            f"{endpoint!r} is not an endpoint of the {profile.name} profile "
            f"(choose from {', '.join(profile.endpoints)})"
        )
    return endpoint


def get_profile(profile: str | Profile = "openai", **overrides: Any) -> Profile:
    """Look up a profile by name (or take one) and apply limit overrides."""
    if isinstance(profile, str):
        try:
            profile = PROFILES[profile]
        except KeyError:
            names = ", ".join(PROFILES)
            raise UsageError(f"unknown profile {profile!r} (choose from {names})") from None
    if overrides.get("allow_params"):  # added to the profile's own
        overrides["allow_params"] = (*profile.allow_params, *overrides["allow_params"])
    return profile.replace(**overrides) if overrides else profile


_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def parse_size(text: str) -> int:
    """Parse ``200MB`` (10^6), ``150MiB`` (2^20) or plain bytes into a byte count."""
    match = _SIZE.fullmatch(text)
    unit = match and match.group(2).lower()
    if not match or unit not in _UNITS:
        raise UsageError(f"invalid size {text!r}: use bytes, or a number with KB/MB/GB/KiB/MiB/GiB")
    return int(float(match.group(1)) * _UNITS[unit])
