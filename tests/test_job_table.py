"""A job's table (``jobs.table``): written by the streaming join a block at a time, the same
table and summary as the whole-table join; ``part`` and ``part_line`` name the bytes sent,
and a split manifest's parts keep their original lines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from fake_openai import FakeOpenAI
from helpers import request
from test_jobs import make_input, run, table

from jsonl_batch import join, split_file
from jsonl_batch.jobs import runner as jobs
from jsonl_batch.jobs.ledger import PartRecord
from jsonl_batch.jobs.prepare import input_paths
from jsonl_batch.jobs.table import JOB_FIELDS
from jsonl_batch.results import join as joining
from jsonl_batch.results.tables import TableWriter, read_summary, write_table

FLAKY = {"a-0": 1, "a-2": 1, "a-3": 2, "a-5": 1, "b-1": 1, "b-4": 2}
"""Requests answered with HTTP 500 that many times: two retry rounds, the first one's
retries of ``a`` split in two parts (``max_requests=2``)."""


def whole_table(folder: Path, inputs: list[Path], parts: list[PartRecord]) -> pa.Table:
    """The job's table as it was made before the streaming join: ``join`` in memory, then
    ``attempts`` and ``batch_id`` from each round's custom_ids (the reference)."""
    results = [folder / r for p in parts for r in (p.output, p.errors) if r]
    joined = join(inputs, results)
    t = joined.table
    first = [p for p in parts if p.round == 0]
    batch_ids = pa.array([p.batch_id for p in first for _ in range(p.requests)], pa.string())
    attempts = pa.array([min(p.attempt, 1) for p in first for _ in range(p.requests)], pa.int32())
    ids = t.column("custom_id")
    for round_ in sorted({p.round for p in parts if p.round > 0}):
        sent, batches = [], []
        for p in parts:
            if p.round == round_:
                for raw in (folder / p.path).read_bytes().splitlines():
                    sent.append(orjson.loads(raw)["custom_id"])
                    batches.append(p.batch_id)
        where = pc.index_in(ids, value_set=pa.array(sent))
        hit = pc.is_valid(where)
        batch_ids = pc.if_else(hit, pc.take(pa.array(batches, pa.string()), where), batch_ids)
        attempts = pc.add(attempts, pc.cast(hit, pa.int32()))
    t = t.append_column("attempts", attempts).append_column("batch_id", batch_ids)
    path = folder / "whole.parquet"
    write_table(t, path, summary=joined.summary.to_dict())
    return pq.read_table(path)


@pytest.mark.parametrize("block", [3, joining.BLOCK_ROWS])
def test_the_streamed_table_is_the_whole_table_join(
    fake: FakeOpenAI,
    write: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    block: int,
) -> None:
    monkeypatch.setattr(joining, "BLOCK_ROWS", block)  # 3: blocks across parts and rounds
    written: list[int] = []
    write_block = TableWriter.write
    monkeypatch.setattr(
        TableWriter, "write", lambda self, t: written.append(t.num_rows) or write_block(self, t)
    )
    fake.simulate(flaky=FLAKY)
    a = write([request(f"a-{i}") for i in range(7)], "a.jsonl")
    b = write([request(f"b-{i}") for i in range(5)], "b.jsonl")
    result = run([a, b], tmp_path / "job", max_requests=2)
    folder = tmp_path / "job"
    assert result.summary.ok and result.summary.rounds == 3
    assert [p.path for p in result.parts if p.round == 1] == [
        "retries/round-1/001/retry.part-001-of-002.jsonl",
        "retries/round-1/001/retry.part-002-of-002.jsonl",
        "retries/round-1/002/retry.jsonl",
    ]
    streamed = pq.read_table(result.table)
    reference = whole_table(folder, input_paths([a, b]), result.parts)
    job_names = [f.name for f in JOB_FIELDS[2:]]
    assert streamed.drop_columns(job_names).to_pydict() == reference.to_pydict()
    assert streamed.schema.names == [*reference.schema.names, *job_names]
    assert read_summary(result.table) == read_summary(folder / "whole.parquet")
    rows = streamed.to_pydict()
    assert rows["custom_id"] == [f"a-{i}" for i in range(7)] + [f"b-{i}" for i in range(5)]
    assert rows["attempts"] == [2, 1, 2, 3, 1, 2, 1, 1, 2, 1, 1, 3]  # a-0..a-6, b-0..b-4
    assert_sent_lines(folder, result.parts, rows)
    if block == 3:  # the job's rows were written as they came, never held whole
        assert written[:5] == [1, 2, 3, 1, 3]  # the first block cut in two (FIRST_SHARE)


def assert_sent_lines(folder: Path, parts: list[PartRecord], rows: dict[str, list[Any]]) -> None:
    """Each row's ``part_line`` of its ``part`` is its request, and that part's batch is the
    row's ``batch_id``."""
    batch_of = {p.path: p.batch_id for p in parts}
    for custom_id, part, line, batch_id in zip(
        rows["custom_id"], rows["part"], rows["part_line"], rows["batch_id"], strict=True
    ):
        sent = (folder / part).read_bytes().splitlines()[line - 1]
        assert orjson.loads(sent)["custom_id"] == custom_id
        assert batch_of[part] == batch_id


def test_parts_and_their_lines_are_in_the_table(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path
) -> None:
    fake.simulate(flaky={"r-3": 1})
    result = run([make_input(write, 5)], tmp_path / "job", max_requests=2)
    rows = table(result)
    assert rows["line"] == [1, 2, 3, 4, 5]  # the input's own lines
    assert rows["part"] == [
        "parts/001/in.part-001-of-003.jsonl",
        "parts/001/in.part-001-of-003.jsonl",
        "parts/001/in.part-002-of-003.jsonl",
        "retries/round-1/001/retry.jsonl",
        "parts/001/in.part-003-of-003.jsonl",
    ]
    assert rows["part_line"] == [1, 2, 1, 1, 1]
    assert_sent_lines(tmp_path / "job", result.parts, rows)
    meanings = pq.read_schema(result.table).field("part_line").metadata
    assert meanings == {b"description": b"The request's line in that part file."}


def test_a_manifest_input_keeps_the_original_lines(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path
) -> None:
    """A job given a split's manifest reports, as ``join`` does, each request's part of the
    split and line there, the file that was split and the line in it; ``part`` and
    ``part_line``, the job's own part that was sent."""
    fake.simulate(flaky={"r-4": 1})
    original = make_input(write, 7, "big.jsonl")
    split = split_file(original, tmp_path / "split", max_requests=3)
    assert split.manifest is not None and split.manifest.path is not None
    result = run([Path(split.manifest.path)], tmp_path / "job", max_requests=2)
    rows = table(result)
    assert rows["original_file"] == [str(original)] * 7
    assert rows["original_line"] == [1, 2, 3, 4, 5, 6, 7]
    assert [Path(f).name for f in rows["input_file"]] == ["big.part-001-of-003.jsonl"] * 3 + [
        "big.part-002-of-003.jsonl"
    ] * 3 + ["big.part-003-of-003.jsonl"]
    assert rows["line"] == [1, 2, 3, 1, 2, 3, 1]
    assert rows["part"][4] == "retries/round-1/002/retry.jsonl"
    assert rows["part"][:2] == ["parts/001/big.part-001-of-003.part-001-of-002.jsonl"] * 2
    assert_sent_lines(tmp_path / "job", result.parts, rows)


def test_cli_table_names_the_parts_sent(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_cli_jobs import job

    monkeypatch.setattr(jobs, "MIN_INTERVAL", 0.0)  # the simulated clock: no pause needed
    fake.simulate(flaky={"r-1": 1})
    out = tmp_path / "job"
    result = job(make_input(write, 3), out, "--max-requests", "2")
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out / "results.parquet").to_pydict()
    assert list(zip(rows["part"], rows["part_line"], rows["attempts"], strict=True)) == [
        ("parts/001/in.part-001-of-002.jsonl", 1, 1),
        ("retries/round-1/001/retry.jsonl", 1, 2),
        ("parts/001/in.part-002-of-002.jsonl", 1, 1),
    ]
