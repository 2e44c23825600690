"""The fixture corpus: each file in tests/data/validate/ with its expected (line, code) pairs."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import DATA, request

from jsonl_batch import validate_file
from jsonl_batch.lines import parallel

FOLDER = DATA / "validate"
CASES = orjson.loads((FOLDER / "cases.json").read_bytes())


@pytest.mark.parametrize("name", sorted(CASES))
def test_case(name: str) -> None:
    case = CASES[name]
    report = validate_file(FOLDER / name, **case.get("options", {}))
    assert report.flatten(["line", "code"]) == case["expected"]
    errors = [p for p in report.problems if p.severity == "error"]
    assert report.valid == (not errors)
    for p in report.problems:
        assert p.message.endswith((".", ")")), p.message


@pytest.mark.parametrize("name", sorted(CASES))
def test_parallel_engine_agrees(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker processes over tiny chunks give the same report as the in-process path."""
    case = CASES[name]
    options = case.get("options", {})
    alone = validate_file(FOLDER / name, workers=1, **options)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(parallel, "CHUNK_BYTES", 64)
    split = validate_file(FOLDER / name, workers=2, **options)
    assert split.to_dict() == alone.to_dict()


def test_every_code_has_a_fixture() -> None:
    from jsonl_batch import CATALOGUE
    from jsonl_batch.rules.problems import VALIDATION_CODES

    covered = {code for case in CASES.values() for _, code in case["expected"]}
    assert covered == set(VALIDATION_CODES)
    assert set(CATALOGUE) - covered == {c for c, e in CATALOGUE.items() if e.build}


def test_the_last_chunks_shrink_and_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Near the end of a file the chunks hold a share of what is left (the workers finish
    together): their sizes shrink to the end, and the report is the in-process one."""
    path = tmp_path / "f.jsonl"
    lines = [orjson.dumps(request(f"r{i % 250}")) for i in range(300)]  # 50 duplicates
    lines[77] = b'{"custom_id": "x"'
    path.write_bytes(b"\n".join(lines) + b"\n")
    alone = validate_file(path, workers=1)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(parallel, "MIN_CHUNK_BYTES", 1 << 20)  # one chunk per worker, but...
    monkeypatch.setattr(parallel, "TAIL_MIN_BYTES", 16)  # ...a share of what is left
    cuts: list[int] = []
    next_line = parallel._next_line

    def noted(handle: Any, target: int, size: int) -> int:
        cuts.append(next_line(handle, target, size))
        return cuts[-1]

    monkeypatch.setattr(parallel, "_next_line", noted)
    shared = validate_file(path, workers=2)
    assert shared.to_dict() == alone.to_dict() and not alone.valid
    sizes = [b - a for a, b in pairwise([0, *cuts])]
    assert len(sizes) > 8 and sizes[0] > sizes[4] > sizes[-2]
