"""Helpers shared by the tests: fixture paths and small JSONL builders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

DATA = Path(__file__).resolve().parent / "data"
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = DATA / "examples"  # real API payloads, see data/README.md


def request(
    custom_id: str = "r-1",
    model: str = "gpt-4o-mini",
    url: str = "/v1/chat/completions",
    **body: Any,
) -> dict[str, Any]:
    """A valid chat request line (as a dict); keyword arguments go into the body."""
    payload = {"model": model, "messages": [{"role": "user", "content": "Hi"}], **body}
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": payload}


def jsonl(*objects: Any) -> bytes:
    return b"".join(orjson.dumps(o) + b"\n" for o in objects)


NO_COUNTER = "Error: token counting needs bpe-openai: pip install 'jsonl-batch[tokens]'\n"
"""What a command prints when ``without_token_counter`` is in effect."""


def without_token_counter(monkeypatch: Any) -> None:
    """Make token counting unavailable (as without the ``tokens`` extra) for one test."""
    import sys

    from jsonl_batch.tokens import encodings

    for name in ("bpe_openai", encodings.BINDINGS, "tiktoken"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(encodings, "_COUNTERS", {})
    monkeypatch.setattr(encodings, "_ENCODINGS", {})
