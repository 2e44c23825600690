"""``gather.AnswerTaker``: a block's answers taken from spill files, held ones reused."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from jsonl_batch.results import gather
from jsonl_batch.results.gather import AnswerTaker

SCHEMA = pa.schema([("content", pa.string()), ("tokens", pa.int64())])


def spill_files(tmp_path: Path, sizes: list[int]) -> list[str]:
    paths = []
    for number, size in enumerate(sizes):
        path = str(tmp_path / f"answers-{number}.arrow")
        rows = [f"{number}:{r}" for r in range(size)]
        table = pa.table([rows, [100 * number + r for r in range(size)]], schema=SCHEMA)
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, SCHEMA) as writer:
            writer.write_table(table)
        paths.append(path)
    return paths


@pytest.mark.parametrize("limit", [None, 0, 20])
def test_blocks_take_the_same_rows_with_spill_files_held_or_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int | None
) -> None:
    """With a small ``HOLD_BYTES`` (spill tables of long answers) the rows are taken per
    spill file, held apart: the same rows in the same order."""
    if limit is not None:
        monkeypatch.setattr(gather, "HOLD_BYTES", limit)
    taker = AnswerTaker(spill_files(tmp_path, [3, 2, 4]), SCHEMA)
    blocks = [
        ([0, None, 2, 0], [2, None, 1, 0]),
        ([2, 0], [3, 1]),  # files held: reused
        ([1, 2, None], [1, 0, None]),  # file 1 was not held: read again
        ([None], [None]),  # no answer at all
        ([0], [0]),
    ]
    expected = [
        ["0:2", None, "2:1", "0:0"],
        ["2:3", "0:1"],
        ["1:1", "2:0", None],
        [None],
        ["0:0"],
    ]
    for keep in (False, True):
        for (spill, row), contents in zip(blocks, expected, strict=True):
            taken = taker.take(pa.array(spill, pa.int32()), pa.array(row, pa.int32()), keep)
            assert taken.schema == SCHEMA and taken.column("content").to_pylist() == contents
            tokens = [None if s is None else 100 * s + r for s, r in zip(spill, row, strict=True)]
            assert taken.column("tokens").to_pylist() == tokens
    apart = limit is not None  # apart, the files held are added to, else replaced
    assert taker.held == ({0, 1, 2} if apart else {0}) and bool(taker.parts) == apart


def test_the_last_block_of_an_input_file_lets_go_of_held_spill_files(tmp_path: Path) -> None:
    taker = AnswerTaker(spill_files(tmp_path, [3, 2]), SCHEMA)
    int32 = pa.int32()
    taker.take(pa.array([0, 1], int32), pa.array([0, 0], int32), keep=True)
    assert taker.held == {0, 1} and taker.table.num_rows == 5
    taken = taker.take(pa.array([0], int32), pa.array([1], int32), keep=False)  # held: reused
    assert taken.column("content").to_pylist() == ["0:1"]
    assert taker.held == set() and taker.table.num_rows == 0
    taker.take(pa.array([0, 1], int32), pa.array([0, 0], int32), keep=True)
    taken = taker.take(pa.array([None], int32), pa.array([None], int32), keep=False)  # no answer
    assert taken.column("content").to_pylist() == [None]
    assert taker.held == set() and taker.table.num_rows == 0


def test_spill_files_held_apart_are_kept_and_added_to_not_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``HOLD_BYTES`` the blocks of one input file add the spill files they need to
    those held (mapped, not copied): a block needing one more file does not read again
    (nor join) all the others, as a file of long answers in small blocks would."""
    monkeypatch.setattr(gather, "HOLD_BYTES", 0)
    paths = spill_files(tmp_path, [3, 2, 4])
    taker = AnswerTaker(paths, SCHEMA)
    int32 = pa.int32()
    taker.take(pa.array([0, 2], int32), pa.array([1, 3], int32), keep=True)
    held = dict(taker.parts)
    assert set(held) == taker.held == {0, 2}
    taken = taker.take(pa.array([1, None, 0], int32), pa.array([0, None, 2], int32), keep=True)
    assert taken.column("content").to_pylist() == ["1:0", None, "0:2"]
    assert taker.held == {0, 1, 2} and all(taker.parts[n] is held[n] for n in held)
    taken = taker.take(pa.array([2, 1], int32), pa.array([0, 1], int32), keep=False)
    assert taken.column("tokens").to_pylist() == [200, 101]
    assert taker.held == set() and not taker.parts
