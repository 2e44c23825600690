"""A manifest (of ``split``, ``build``, ``retry``) as text for people or one JSON line."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from ..outputs.manifests import Manifest
from .text import lines, plural


def manifest_json(manifest: Manifest) -> str:
    """One line of JSON, equal to ``manifest.to_dict()`` (plus ``manifest`` if written)."""
    data = {**manifest.to_dict(), "manifest": manifest.path}
    return orjson.dumps(data).decode()


def manifest_text(manifest: Manifest, folder: str | os.PathLike[str] | None = None) -> str:
    """A short summary: one line per written file."""
    where = f" in {folder}" if folder is not None else ""
    parts = manifest.parts
    head = f"{plural(manifest.requests, 'request')} -> {plural(len(parts), 'part')}{where}"
    if manifest.input is not None:
        head = f"{manifest.input}: {head}"
    out = [head]
    for p in parts:
        ids = f"  {p.first_custom_id} .. {p.last_custom_id}" if p.first_custom_id else ""
        tokens = f", ~{p.input_tokens:,} input tokens" if p.input_tokens is not None else ""
        out.append(f"  {p.path}  {plural(p.requests, 'request')}, {p.bytes:,} bytes{tokens}{ids}")
    if manifest.rejected is not None:
        r = manifest.rejected
        out.append(f"  {r.path}  {plural(r.lines, 'invalid line')}, unchanged")
    if manifest.path is not None:
        out.append(f"  {Path(manifest.path).name}")
    return lines(out)
