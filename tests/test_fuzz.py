"""A short fuzz and fault campaign (``tools/fuzz.py``; the long one is run by hand)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("fuzz", ROOT / "tools" / "fuzz.py")
assert spec is not None and spec.loader is not None
fuzz = sys.modules["fuzz"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fuzz)


def test_short_campaign(tmp_path: Path) -> None:
    messages: list[str] = []
    tally = fuzz.campaign(
        seed=20261126,
        count=3,
        kills=0,
        keep=tmp_path / "failures",
        log=messages.append,
    )
    assert tally.runs["validate"] == 60 and tally.runs["join"] == 3
    assert tally.runs["stats"] == 3 and tally.runs["structured"] == 3
    assert tally.runs["answers"] == 3 and tally.runs["matching"] == 3
    assert tally.runs["parquet"] == 3
    assert not tally.failures, fuzz.report(tally)


def test_short_kills(tmp_path: Path) -> None:
    messages: list[str] = []
    tally = fuzz.campaign(
        seed=20261126,
        count=0,
        kills=1,
        commands=("split", "partition"),
        keep=tmp_path / "failures",
        log=messages.append,
        kill_lines=(2_000,),
    )
    assert tally.runs["kill split"] == 1 and tally.runs["kill partition"] == 1
    assert not tally.failures, fuzz.report(tally)
