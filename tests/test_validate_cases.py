"""The fixture corpus: each file in tests/data/validate/ with its expected (line, code) pairs."""

from __future__ import annotations

import orjson
import pytest
from helpers import DATA

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
