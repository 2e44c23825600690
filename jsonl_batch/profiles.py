"""Providers' limits and endpoint facts, as frozen data.

Every limit and endpoint the rest of the package uses comes from here; overrides produce a
new ``Profile`` (``get_profile("openai", max_requests=1000)``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from .errors import UsageError


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


ENDPOINTS: dict[str, Endpoint] = {
    e.url: e
    for e in (
        Endpoint("/v1/responses", "Responses", "responses", "input", "instructions"),
        Endpoint(
            "/v1/chat/completions", "Chat Completions", "chat_completions", "messages", "messages"
        ),
        Endpoint("/v1/embeddings", "Embeddings", "embeddings", "input"),
        Endpoint("/v1/completions", "Completions", "completions"),
        Endpoint("/v1/moderations", "Moderations", "moderations", "input"),
        Endpoint("/v1/images/generations", "Images", "images_generations"),
        Endpoint("/v1/images/edits", "Image edits", "images_edits"),
        Endpoint("/v1/videos", "Videos", "videos"),
    )
}
EMBEDDINGS_URL = "/v1/embeddings"


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
    portable_custom_id: str = r"[A-Za-z0-9_-]{1,64}"
    """custom_ids outside this pattern get a warning: other providers reject them."""

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


OPENAI = Profile(
    name="openai",
    endpoints=tuple(ENDPOINTS),
    max_requests=50_000,
    max_bytes=209_715_200,
    max_embedding_inputs=50_000,
)
AZURE = Profile(
    name="azure",
    endpoints=("/v1/chat/completions", "/v1/responses"),
    max_requests=100_000,
    max_bytes=200_000_000,
    max_embedding_inputs=None,
    model_label="deployment",
)
PROFILES: dict[str, Profile] = {p.name: p for p in (OPENAI, AZURE)}


def get_profile(profile: str | Profile = "openai", **overrides: Any) -> Profile:
    """Look up a profile by name (or take one) and apply limit overrides."""
    if isinstance(profile, str):
        try:
            profile = PROFILES[profile]
        except KeyError:
            names = ", ".join(PROFILES)
            raise UsageError(f"unknown profile {profile!r} (choose from {names})") from None
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
