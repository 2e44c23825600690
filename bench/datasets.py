"""Synthetic batch files for the benchmark, generated once into bench/data/ (gitignored)."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

DATA = Path(__file__).resolve().parent / "data"
WORDS = [
    "the",
    "batch",
    "request",
    "model",
    "token",
    "answer",
    "question",
    "summary",
    "document",
    "context",
    "assistant",
    "review",
    "classify",
    "translate",
    "extract",
    "reason",
    "step",
    "value",
    "result",
    "data",
    "customer",
    "order",
    "invoice",
    "date",
    "price",
    "total",
    "shipping",
    "address",
    "product",
    "rating",
    "comment",
    "café",
    "naïve",
    "Zürich",
    "résumé",
    "東京",
    "données",
    "straße",
    "😀",
    "#42",
    "3.14",
    "2026-11-23",
    "e-mail",
]


def _text(rng: random.Random, chars: int) -> str:
    """Prose-like text: sentences, quotes, paragraphs and a little non-ASCII, as prompts have."""
    out: list[str] = []
    size = 0
    while size < chars:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))
        if rng.random() < 0.2:
            sentence = f'"{sentence}"'
        sentence = sentence[0].upper() + sentence[1:] + rng.choice(".?!:")
        out.append(sentence + ("\n\n" if rng.random() < 0.15 else " "))
        size += len(sentence) + 1
    return "".join(out).strip()


def chat_file(name: str, lines: int, user_chars: int, seed: int = 1, **extra: Any) -> Path:
    """A valid chat-completions batch file of ``lines`` requests, made once and reused;
    ``extra`` goes into every body."""
    path = DATA / name
    if path.exists():
        return path
    DATA.mkdir(exist_ok=True)
    rng = random.Random(seed)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        for i in range(lines):
            body = {
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "You are a careful assistant."},
                    {"role": "user", "content": _text(rng, user_chars)},
                ],
                "max_tokens": 256,
                "temperature": round(rng.random(), 2),
                **extra,
            }
            line = {
                "custom_id": f"request-{i + 1}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": body,
            }
            out.write(orjson.dumps(line) + b"\n")
    tmp.rename(path)
    return path


def large_chat() -> Path:
    """~200 MB, 50,000 lines (long lines)."""
    return chat_file("chat-200mb.jsonl", 50_000, 3_600)


def small_chat() -> Path:
    """~25 MB, 50,000 lines (short lines)."""
    return chat_file("chat-25mb.jsonl", 50_000, 230)


Answer = Callable[[random.Random], tuple[str | None, str, str | None]]
"""Makes one answer: ``(content, finish_reason, refusal)``."""


def chat_output(
    name: str, requests: int, answer_chars: int, seed: int = 2, answer: Answer | None = None
) -> Path:
    """A chat-completions output file answering ``request-1..N`` in shuffled order (prose
    answers of ``answer_chars``, or what ``answer`` makes)."""
    path = DATA / name
    if path.exists():
        return path
    DATA.mkdir(exist_ok=True)
    rng = random.Random(seed)
    order = list(range(1, requests + 1))
    rng.shuffle(order)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        for i in order:
            prompt, completion = rng.randint(40, 120), rng.randint(60, 250)
            content, finish, refusal = (
                (_text(rng, answer_chars), "stop", None) if answer is None else answer(rng)
            )
            body = {
                "id": f"chatcmpl-{rng.getrandbits(64):x}",
                "object": "chat.completion",
                "created": 1711475054 + i,
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": content,
                            "refusal": refusal,
                            "annotations": [],
                        },
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                    "completion_tokens_details": {
                        "reasoning_tokens": 0,
                        "audio_tokens": 0,
                        "accepted_prediction_tokens": 0,
                        "rejected_prediction_tokens": 0,
                    },
                },
                "service_tier": "default",
                "system_fingerprint": "fp_0ba0d124f1",
            }
            line = {
                "id": f"batch_req_{rng.getrandbits(64):x}",
                "custom_id": f"request-{i}",
                "response": {"status_code": 200, "request_id": f"req_{i:x}", "body": body},
                "error": None,
            }
            out.write(orjson.dumps(line) + b"\n")
    tmp.rename(path)
    return path


def small_chat_output() -> Path:
    """~56 MB, 50,000 results for ``small_chat()``'s requests, in shuffled order."""
    return chat_output("chat-25mb.output.jsonl", 50_000, 350)


TICKET_SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["bug", "feature", "question", "other"]},
        "confidence": {"type": "number"},
        "priority": {"type": "integer"},
        "summary": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "owner": {
            "type": ["object", "null"],
            "properties": {"team": {"type": "string"}, "oncall": {"type": "boolean"}},
            "required": ["team", "oncall"],
            "additionalProperties": False,
        },
    },
    "required": ["label", "confidence", "priority", "summary", "tags", "owner"],
    "additionalProperties": False,
}
"""The structured-output case's schema: an enum, numbers, a list and a nullable object."""


def _ticket(rng: random.Random) -> tuple[str | None, str, str | None]:
    """A structured answer: 96% matching, 2% off-schema, 1% cut off, 1% refused."""
    roll = rng.random()
    if roll < 0.01:
        return None, "stop", "I'm sorry, I can't help with that."
    value: dict[str, Any] = {
        "label": rng.choice(["bug", "feature", "question", "other"]),
        "confidence": round(rng.random(), 3),
        "priority": rng.randint(1, 5),
        "summary": _text(rng, 120),
        "tags": [rng.choice(WORDS) for _ in range(rng.randint(0, 4))],
        "owner": None if rng.random() < 0.3 else {"team": rng.choice(WORDS), "oncall": True},
    }
    if roll < 0.03:
        del value["priority"]
    text = orjson.dumps(value).decode()
    if 0.03 <= roll < 0.04:
        return text[: len(text) // 2], "length", None
    return text, "stop", None


def structured_requests() -> Path:
    """50,000 chat requests asking for ``TICKET_SCHEMA`` (``response_format``), ~56 MB."""
    fmt = {"type": "json_schema", "json_schema": {"name": "ticket", "strict": True,
                                                   "schema": TICKET_SCHEMA}}  # fmt: skip
    return chat_file("structured-50k.jsonl", 50_000, 230, response_format=fmt)


def structured_output() -> Path:
    """The structured requests' answers (shuffled), ~51 MB."""
    return chat_output("structured-50k.output.jsonl", 50_000, 0, answer=_ticket)
