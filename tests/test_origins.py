"""A split's parts know their lines in the original file (``origins``)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from helpers import request

from jsonl_batch.results.origins import Origin, find_origins
from jsonl_batch.split.engine import split_file


def split_by_model(write: Any, tmp_path: Path) -> list[Path]:
    lines = [request(f"r{i}", model="gpt-4o" if i % 3 else "gpt-4o-mini") for i in range(8)]
    split_file(write(lines, "in.jsonl"), tmp_path / "parts", by="model")
    return sorted((tmp_path / "parts").glob("*.jsonl"))


def test_parts_of_a_split_give_their_original_lines(write: Any, tmp_path: Path) -> None:
    parts = split_by_model(write, tmp_path)
    origins = find_origins(parts)
    assert all(o is not None and o.input.endswith("in.jsonl") for o in origins)
    lines = [o.lines(o.lines_held).to_pylist() for o in origins if o is not None]
    assert sorted(n for run in lines for n in run) == list(range(1, 9))
    assert [1, 4, 7] in lines and [2, 3, 5, 6, 8] in lines


def test_a_part_changed_since_the_split_has_no_origin(write: Any, tmp_path: Path) -> None:
    parts = split_by_model(write, tmp_path)
    with parts[0].open("ab") as handle:
        handle.write(b'{"custom_id": "extra"}\n')
    assert find_origins(parts)[0] is None and find_origins(parts)[1] is not None


def test_files_without_a_manifest_and_streams_have_none(write: Any, tmp_path: Path) -> None:
    (tmp_path / "broken.manifest.json").write_bytes(b"{not json")
    (tmp_path / "other.manifest.json").write_bytes(b'{"input": "x", "parts": [{"path": 5}]}')
    path = write([request()], "plain.jsonl")
    assert find_origins([path, "-", io.BytesIO(b"")]) == [None, None, None]


def test_lines_past_the_ranges_are_null() -> None:
    origin = Origin("in.jsonl", ((3, 4), (9, 9)))
    assert origin.lines_held == 3
    assert origin.lines(4).to_pylist() == [3, 4, 9, None]
    assert origin.lines(2).to_pylist() == [3, 4]
