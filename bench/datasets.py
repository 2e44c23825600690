"""Synthetic batch files for the benchmark, generated once into bench/data/ (gitignored)."""

from __future__ import annotations

import random
from pathlib import Path

import orjson

DATA = Path(__file__).resolve().parent / "data"
WORDS = (
    "batch request model token answer question summary document context assistant "
    "system user review classify translate extract reason step value result data"
).split()


def _text(rng: random.Random, chars: int) -> str:
    out: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(WORDS)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)


def chat_file(name: str, lines: int, user_chars: int, seed: int = 1) -> Path:
    """A valid chat-completions batch file of ``lines`` requests, made once and reused."""
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
    return chat_file("chat-200mb.jsonl", 50_000, 3_880)


def small_chat() -> Path:
    """~25 MB, 50,000 lines (short lines)."""
    return chat_file("chat-25mb.jsonl", 50_000, 330)
