"""Manifests and part names, shared by the builder and ``split``.

A manifest lists the files a run wrote (``parts``, and for ``split`` the ``rejected`` lines)
with what a user or a program needs to trust and upload them: request counts, bytes, sha256,
the first and last custom_id and, for ``split``, the input lines each part holds.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .output import atomic_output

_PAIR = re.compile(rb"\[\n *(\d+),\n *(\d+)\n *\]")  # raw newlines: never inside a JSON string


def split_part_name(stem: str, index: int, total: int) -> str:
    """``requests.part-001-of-005.jsonl``: zero-padded so the names sort."""
    width = max(3, len(str(total)))
    return f"{stem}.part-{index:0{width}d}-of-{total:0{width}d}.jsonl"


def writer_part_name(path: str | os.PathLike[str], index: int) -> Path:
    """``out.jsonl`` -> ``out.part-001.jsonl`` (the total is not known while writing)."""
    target = Path(path)
    return target.with_name(f"{target.stem}.part-{index:03d}{target.suffix or '.jsonl'}")


def manifest_path(folder: str | os.PathLike[str], stem: str) -> Path:
    """``<folder>/<stem>.manifest.json``."""
    return Path(folder) / f"{stem}.manifest.json"


@dataclass
class Part:
    """One written file: ``path`` is its name, relative to the manifest's folder."""

    path: str
    requests: int = 0
    bytes: int = 0
    sha256: str = ""
    first_custom_id: str | None = None
    last_custom_id: str | None = None
    endpoint: str | None = None
    model: str | None = None
    embedding_inputs: int = 0
    lines: int = 0
    """Lines in the file (equal to ``requests`` for a part)."""
    line_ranges: list[tuple[int, int]] | None = None
    """``split`` only: the input lines it holds, as inclusive ``(first, last)`` runs."""
    input_tokens: int | None = None
    """Estimated input tokens (tiktoken), when a token budget had them counted."""

    def to_dict(self) -> dict[str, Any]:
        data = {
            "path": self.path,
            "requests": self.requests,
            "lines": self.lines,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "first_custom_id": self.first_custom_id,
            "last_custom_id": self.last_custom_id,
            "endpoint": self.endpoint,
            "model": self.model,
            "embedding_inputs": self.embedding_inputs,
        }
        if self.input_tokens is not None:
            data["input_tokens"] = self.input_tokens
        if self.line_ranges is not None:
            data["line_ranges"] = [list(r) for r in self.line_ranges]
        return data


@dataclass
class Manifest:
    """What a build or split wrote. ``input``/``sha256``/``bytes`` describe the input (split)."""

    parts: list[Part] = field(default_factory=list)
    input: str | None = None
    sha256: str | None = None
    bytes: int | None = None
    lines: int | None = None
    profile: str | None = None
    limits: dict[str, int | None] = field(default_factory=dict)
    rejected: Part | None = None
    """``split --skip-invalid``: the invalid lines, copied unchanged."""
    path: str | None = None
    """Where this manifest was written, if it was."""

    @property
    def requests(self) -> int:
        return sum(p.requests for p in self.parts)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.input is not None:
            data.update(input=self.input, sha256=self.sha256, bytes=self.bytes, lines=self.lines)
        data.update(
            profile=self.profile,
            limits=dict(self.limits),
            requests=self.requests,
            parts=[p.to_dict() for p in self.parts],
            rejected=self.rejected.to_dict() if self.rejected else None,
        )
        return data

    def write(self, path: str | os.PathLike[str], *, force: bool = False) -> Path:
        """Write the manifest as indented JSON, atomically; remember where."""
        text = orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2)
        text = _PAIR.sub(rb"[\1, \2]", text)  # a line range on one line: [3, 7]
        with atomic_output(path, force=force) as out:
            out.write(text + b"\n")
        self.path = os.fspath(path)
        return Path(path)


def manifest_json(manifest: Manifest) -> str:
    """One line of JSON, equal to ``manifest.to_dict()`` (plus ``manifest`` if written)."""
    data = {**manifest.to_dict(), "manifest": manifest.path}
    return orjson.dumps(data).decode()


def manifest_text(manifest: Manifest, folder: str | os.PathLike[str] | None = None) -> str:
    """A short summary: one line per written file."""
    where = f" in {folder}" if folder is not None else ""
    parts = manifest.parts
    head = f"{_plural(manifest.requests, 'request')} -> {_plural(len(parts), 'part')}{where}"
    if manifest.input is not None:
        head = f"{manifest.input}: {head}"
    out = [head]
    for p in parts:
        ids = f"  {p.first_custom_id} .. {p.last_custom_id}" if p.first_custom_id else ""
        tokens = f", ~{p.input_tokens:,} input tokens" if p.input_tokens is not None else ""
        out.append(f"  {p.path}  {_plural(p.requests, 'request')}, {p.bytes:,} bytes{tokens}{ids}")
    if manifest.rejected is not None:
        r = manifest.rejected
        out.append(f"  {r.path}  {_plural(r.lines, 'invalid line')}, unchanged")
    if manifest.path is not None:
        out.append(f"  {Path(manifest.path).name}")
    return "\n".join(out)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'s' if n != 1 else ''}"
