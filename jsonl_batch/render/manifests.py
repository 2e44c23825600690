"""A manifest (of ``split``, ``build``, ``retry``) and a split's result as text for people
(JSON is their ``to_dict()``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..outputs.manifests import Manifest
from .text import lines, plural, printable, report_text


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


def split_text(result: Any) -> str:
    """A split's result (a ``split.engine.SplitResult``) for people: the files it wrote or,
    when it wrote none, the report of its problems."""
    if result.manifest is None:
        return report_text(result.report)
    return manifest_text(result.manifest, result.folder)


def split_aside(result: Any, file: str, checked: bool = True) -> str:
    """What a split says beside its result, on standard error: why nothing (or no part)
    was written, the problems of the lines it rejected ("" when all went well).
    ``checked``: the lines were checked (not ``--no-check``, which --skip-invalid needs)."""
    manifest = result.manifest
    if manifest is None:
        if not result.report.stats.lines:
            return printable(f"Nothing was written: {file} is empty.")
        if not checked:
            return "Nothing was written; fix the problems or use --skip-invalid without --no-check."
        return "Nothing was written; fix the problems or use --skip-invalid."
    if manifest.rejected is None:
        return ""
    out = [report_text(result.report)]
    if not manifest.parts:
        out.append(
            printable(
                f"No valid request: every line went to {manifest.rejected.path}; "
                "no part was written."
            )
        )
    return "\n".join(out)
