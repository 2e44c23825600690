"""Many files, one command: folders and glob patterns for inputs and results, a table
written as it is built, and partitioned Parquet folders other tools read as one table."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from helpers import DATA, jsonl, request

from jsonl_batch import join, read_summary
from jsonl_batch.cli import main
from jsonl_batch.results.join import join_to

J = DATA / "join"


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def ok(custom_id: str, text: str = "hi") -> dict[str, Any]:
    body = {"choices": [{"message": {"content": text}, "finish_reason": "stop"}]}
    return {"custom_id": custom_id, "response": {"status_code": 200, "body": body}}


def failed(custom_id: str) -> dict[str, Any]:
    return {"custom_id": custom_id, "response": None, "error": {"code": "batch_expired"}}


@pytest.fixture
def batches(tmp_path: Path) -> Path:
    """Three parts and their results, in folders ``parts/`` and ``results/``."""
    (tmp_path / "parts").mkdir()
    (tmp_path / "results").mkdir()
    for p in range(3):
        ids = [f"p{p}-{i}" for i in range(4)]
        (tmp_path / "parts" / f"part-{p}.jsonl").write_bytes(jsonl(*(request(i) for i in ids)))
        (tmp_path / "results" / f"part-{p}.output.jsonl").write_bytes(
            jsonl(*(ok(i) for i in ids[:2]))
        )
        (tmp_path / "results" / f"part-{p}.errors.jsonl").write_bytes(jsonl(failed(ids[2])))
    (tmp_path / "results" / "notes.txt").write_text("not a result file")
    return tmp_path


def explicit(folder: Path) -> tuple[list[Path], list[Path]]:
    return sorted((folder / "parts").glob("*.jsonl")), sorted((folder / "results").glob("*.jsonl"))


def test_folders_and_globs_are_their_files_in_name_order(batches: Path) -> None:
    inputs, results = explicit(batches)
    expected = join(inputs, results)
    for given_inputs, given_results in [
        ([batches / "parts"], [batches / "results"]),
        ([str(batches / "parts" / "*.jsonl")], [str(batches / "results" / "part-*")]),
    ]:
        found = join(given_inputs, given_results)
        assert found.table.equals(expected.table)
        assert found.summary.to_dict() == expected.summary.to_dict()
    assert expected.summary.to_dict()["succeeded"] == 6


def test_cli_globs_and_written_table_equals_join(batches: Path) -> None:
    target = batches / "t.parquet"
    parts, results = str(batches / "parts" / "*.jsonl"), str(batches / "results" / "*.jsonl")
    result = run("join", parts, "-r", results, "-o", str(target))
    assert result.exit_code == 1, result.output
    assert result.output.startswith("12 requests: 6 succeeded, 3 failed, 3 missing")
    assert "\r" not in result.output and "[#" not in result.output  # no bar off a terminal
    inputs, outs = explicit(batches)
    expected = join(inputs, outs)
    assert pq.read_table(target).equals(expected.table)
    assert read_summary(target) == expected.summary.to_dict()


def test_a_pattern_or_folder_without_files_is_an_error(batches: Path) -> None:
    target = str(batches / "t.parquet")
    result = run("join", str(batches / "no-*.jsonl"), "-r", str(batches / "results"), "-o", target)
    assert result.exit_code == 2
    assert "no file matches this pattern" in result.output
    (batches / "empty").mkdir()
    result = run("join", str(batches / "parts"), "-r", str(batches / "empty"), "-o", target)
    assert result.exit_code == 2
    assert "a folder with no JSONL file" in result.output


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_streamed_formats_hold_the_join(tmp_path: Path, fmt: str) -> None:
    inp = J / "chat.input.jsonl"
    outs = [J / "chat.output.jsonl", J / "chat.errors.jsonl"]
    target = tmp_path / f"t.{fmt}"
    summary = join_to([inp], outs, target, workers=1)
    expected = join([inp], outs)
    where = {"output": str(target), "format": fmt}  # join_to's summary says where it wrote
    assert summary.to_dict() == {**expected.summary.to_dict(), **where}
    if fmt == "jsonl":
        rows = [orjson.loads(line) for line in target.read_bytes().splitlines()]
        assert rows == expected.table.to_pylist()
    elif fmt == "parquet":
        assert pq.read_table(target).equals(expected.table)


@pytest.mark.parametrize("by", ["status", "input_file"])
def test_partitioned_folder_reads_as_one_table(batches: Path, by: str) -> None:
    target = batches / "table"
    parts, results = str(batches / "parts"), str(batches / "results")
    result = run("join", parts, "-r", results, "-o", str(target), "--partition-by", by)
    assert result.exit_code == 1, result.output
    inputs, outs = explicit(batches)
    keys = [("input_file", "ascending"), ("line", "ascending")]
    expected = join(inputs, outs).table.sort_by(keys)
    names = sorted(p.name for p in target.iterdir())
    if by == "status":
        assert names == ["failed", "missing", "succeeded"]
    else:
        assert names == ["part-0.jsonl", "part-1.jsonl", "part-2.jsonl"]
    table = pq.read_table(target).sort_by(keys)
    assert table.equals(expected)
    duckdb = pytest.importorskip("duckdb")
    pattern = str(target / "**" / "*.parquet")
    found = duckdb.sql(f"select * from read_parquet('{pattern}') order by input_file, line")
    assert found.fetchall() == [tuple(r.values()) for r in expected.to_pylist()]
    polars = pytest.importorskip("polars")
    assert polars.read_parquet(pattern).height == expected.num_rows
    assert read_summary(next(target.glob("*/part-0.parquet")))["requests"] == 12


def test_partitioned_folder_is_replaced_only_with_force(batches: Path) -> None:
    target = batches / "table"
    target.mkdir()
    (target / "mine.txt").write_text("keep")
    args = ["join", str(batches / "parts"), "-r", str(batches / "results"), "-o", str(target)]
    result = run(*args, "--partition-by", "status")
    assert result.exit_code == 2
    assert "already exists" in result.output
    assert (target / "mine.txt").read_text() == "keep"
    assert run(*args, "--partition-by", "status", "--force").exit_code == 1
    assert sorted(p.name for p in target.iterdir()) == ["failed", "missing", "succeeded"]
    assert not [p for p in batches.iterdir() if p.name.startswith(".table.")]  # no leftovers


def test_failed_partitioned_join_leaves_nothing(batches: Path) -> None:
    shutil.copy(J / "malformed.output.jsonl", batches / "parts" / "zz.jsonl")  # not requests
    target = batches / "table"
    args = ["join", str(batches / "parts"), "-r", str(batches / "results"), "-o", str(target)]
    result = run(*args, "--partition-by", "status")
    assert result.exit_code == 2
    assert not target.exists()
    assert not [p for p in batches.iterdir() if p.name.startswith(".table.")]


def test_retry_takes_folders_and_globs(batches: Path) -> None:
    target = batches / "retry.jsonl"
    args = [str(batches / "parts" / "*.jsonl"), "-r", str(batches / "results")]
    result = run("retry", *args, "-o", str(target), "--format", "json")
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.output)
    assert data["requests"] == 6
    assert data["reasons"] == {"batch_expired": 3, "missing": 3}


def test_an_unwritable_temporary_folder_is_one_line(
    batches: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(batches / "no-such-folder"))
    args = ["join", str(batches / "parts"), "-r", str(batches / "results")]
    result = run(*args, "-o", str(batches / "t.parquet"))
    assert result.exit_code == 2
    assert "temporary" in result.output and "Traceback" not in result.output
