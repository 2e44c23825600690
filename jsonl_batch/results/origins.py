"""Where a split's parts came from: each part line's line in the file that was split.

``split`` writes a manifest beside its parts; each part lists the input lines it holds as
``line_ranges``. ``find_origins(paths)`` finds, for each input file of a join, the manifest
beside it that lists it (by name and size, so a stale manifest is not believed) and returns
its ``Origin``: the original file's name and ``lines(n)``, the original line of each of the
part's first ``n`` lines.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from .. import compute as pc
from ..lines.reading import Source

MANIFEST_GLOB = "*.manifest.json"


@dataclass(frozen=True)
class Origin:
    """A part's original file and the inclusive ``(first, last)`` runs of lines it holds."""

    input: str
    ranges: tuple[tuple[int, int], ...]

    @property
    def lines_held(self) -> int:
        return sum(last - first + 1 for first, last in self.ranges)

    def lines(self, count: int) -> pa.Array:
        """The original line of each of the part's first ``count`` lines (null past the
        ranges: the part does not match its manifest)."""
        runs = [
            pc.add(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), last - first + 1)),
                   first - 1)
            for first, last in self.ranges
        ]  # fmt: skip
        found = pa.concat_arrays(runs) if runs else pa.array([], pa.int64())
        if len(found) >= count:
            return found.slice(0, count)
        return pa.concat_arrays([found, pa.nulls(count - len(found), pa.int64())])


def find_origins(sources: Sequence[Source]) -> list[Origin | None]:
    """For each input (a path; other sources have none), the ``Origin`` a split manifest
    beside it gives, or ``None``."""
    folders: dict[Path, dict[str, tuple[int | None, Origin]]] = {}
    out: list[Origin | None] = []
    for source in sources:
        if not isinstance(source, (str, os.PathLike)) or os.fspath(source) == "-":
            out.append(None)
            continue
        path = Path(source)
        listed = folders.get(path.parent)
        if listed is None:
            listed = folders[path.parent] = _listed_parts(path.parent)
        entry = listed.get(path.name)
        try:
            fits = entry is not None and entry[0] in (None, path.stat().st_size)
        except OSError:
            fits = False
        out.append(entry[1] if fits and entry is not None else None)
    return out


def _listed_parts(folder: Path) -> dict[str, tuple[int | None, Origin]]:
    """Part name -> (its size in bytes if given, its origin), from the split manifests in
    ``folder``."""
    found: dict[str, tuple[int | None, Origin]] = {}
    try:
        manifests = sorted(folder.glob(MANIFEST_GLOB))
    except OSError:
        return found
    for manifest in manifests:
        try:
            data = orjson.loads(manifest.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        for name, size, origin in _parts(data):
            found[name] = (size, origin)
    return found


def _parts(data: Any) -> list[tuple[str, int | None, Origin]]:
    if type(data) is not dict or type(data.get("input")) is not str:
        return []
    parts = data.get("parts")
    out = []
    for part in parts if type(parts) is list else ():
        if type(part) is not dict or type(part.get("path")) is not str:
            continue
        ranges = part.get("line_ranges")
        size = part.get("bytes")
        if type(ranges) is not list or (size is not None and type(size) is not int):
            continue
        runs = tuple(
            (r[0], r[1])
            for r in ranges
            if type(r) is list and len(r) == 2 and all(type(x) is int and x > 0 for x in r)
            and r[0] <= r[1]
        )  # fmt: skip
        if len(runs) == len(ranges) and "/" not in part["path"] and "\\" not in part["path"]:
            out.append((part["path"], size, Origin(data["input"], runs)))
    return out
