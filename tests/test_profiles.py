"""Profiles as data: lookups, overrides, sizes."""

from __future__ import annotations

import dataclasses

import pytest

from jsonl_batch import get_profile, parse_size
from jsonl_batch.rules.profiles import OPENAI_ENDPOINTS, PROFILES


def test_openai_defaults() -> None:
    p = get_profile()
    assert (p.max_requests, p.max_bytes, p.max_embedding_inputs) == (50_000, 209_715_200, 50_000)
    assert set(p.endpoints) == set(OPENAI_ENDPOINTS) and len(p.endpoints) == 8


def test_azure() -> None:
    p = get_profile("azure")
    assert p.max_requests == 100_000
    spellings = {"/chat/completions", "/embeddings", "/responses"}
    assert set(p.endpoints) == spellings | {f"/v1{url}" for url in spellings}
    assert "learn.microsoft.com" in p.source
    assert p.model_label == "deployment"


def test_overrides_make_a_new_frozen_profile() -> None:
    p = get_profile("openai", max_requests=10, max_bytes=None)
    assert p.max_requests == 10 and p.max_bytes == 209_715_200
    assert PROFILES["openai"].max_requests == 50_000
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.max_requests = 5  # type: ignore[misc]


def test_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("nope")
    with pytest.raises(ValueError, match="unknown profile setting"):
        get_profile("openai", max_widgets=3)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("123", 123),
        ("200MB", 200_000_000),
        ("150MiB", 150 * 2**20),
        ("1.5 kb", 1500),
        ("2GiB", 2 * 2**30),
        ("10b", 10),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MB", "12 parsecs", "-5", "1e3"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)
