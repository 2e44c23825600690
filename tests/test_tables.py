"""The join table's schema is a contract; the writers keep it (Parquet) or flatten it (CSV)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import DATA, ROOT

from jsonl_batch import join, read_summary, write_table
from jsonl_batch.outputs.atomic import OutputExists
from jsonl_batch.results.tables import (
    COLUMNS,
    PARQUET_OPTIONS,
    column_table,
    join_schema,
    parquet_writer,
    table_format,
)

J = DATA / "join"
BASE = [
    "custom_id",
    "input_file",
    "line",
    "status",
    "status_code",
    "error_code",
    "error_message",
    "output_problem",
    "model",
    "content",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "request_id",
    "batch_request_id",
]


@pytest.fixture(scope="module")
def chat() -> Any:
    return join([J / "chat.input.jsonl"], [J / "chat.output.jsonl", J / "chat.errors.jsonl"])


def test_base_columns_are_the_documented_ones(chat: Any) -> None:
    assert chat.table.schema.names == BASE
    assert chat.table.schema == join_schema()
    types = {f.name: str(f.type) for f in chat.table.schema}
    assert types["line"] == "int64"
    assert types["status_code"] == "int32"
    assert types["total_tokens"] == "int64"
    assert types["content"] == "string"


def test_options_add_their_columns() -> None:
    names = join_schema(include_bodies=True, include_tool_calls=True, include_embeddings=True)
    assert names.names == [*BASE, "request_body", "response_body", "tool_calls", "embedding"]
    with pytest.raises(ValueError, match="unknown join option"):
        join_schema(include_everything=True)


def test_readme_documents_every_column() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert column_table() in readme
    assert len(COLUMNS) == len(BASE) + 4 + 3  # the include options; parsed, original_*


def test_parquet_keeps_types_descriptions_and_summary(chat: Any, tmp_path: Path) -> None:
    target = tmp_path / "r.parquet"
    assert write_table(chat.table, target, summary=chat.summary.to_dict()) == "parquet"
    back = pq.read_table(target)
    assert back.schema.remove_metadata() == chat.table.schema.remove_metadata()
    assert back.to_pylist() == chat.table.to_pylist()
    assert back.schema.field("status").metadata[b"description"].startswith(b"`succeeded`")
    assert read_summary(target) == orjson.loads(orjson.dumps(chat.summary.to_dict()))
    assert pq.ParquetFile(target).metadata.row_group(0).column(0).compression == "ZSTD"


def test_parquet_dictionary_encodes_the_repeating_columns(tmp_path: Path) -> None:
    """Answers, token counts and costs that repeat (a label per request) are stored once per
    row group; unique ones (custom_id) as plain values."""
    rows = 600
    table = pa.table(
        {
            "custom_id": [f"request-{i}" for i in range(rows)],
            "content": [("positive", "negative", "neutral")[i % 3] for i in range(rows)],
            "prompt_tokens": [12 + i % 2 for i in range(rows)],
        }
    )
    target = tmp_path / "r.parquet"
    write_table(table, target)
    group = pq.ParquetFile(target).metadata.row_group(0)
    encodings = {group.column(i).path_in_schema: group.column(i).encodings for i in range(3)}
    assert "RLE_DICTIONARY" in encodings["content"]
    assert "RLE_DICTIONARY" in encodings["prompt_tokens"]
    assert "RLE_DICTIONARY" not in encodings["custom_id"]
    assert pq.read_table(target).equals(table)


def test_parquet_opens_in_duckdb(chat: Any, tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    target = tmp_path / "r.parquet"
    write_table(chat.table, target)
    with duckdb.connect() as con:
        types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM '{target}'").fetchall()}
        failed = con.execute(f"SELECT count(*) FROM '{target}' WHERE status = 'failed'").fetchone()
    assert types["line"] == "BIGINT"
    assert types["status_code"] == "INTEGER"
    assert failed == (4,)


def test_csv(chat: Any, tmp_path: Path) -> None:
    target = tmp_path / "r.csv"
    assert write_table(chat.table, target) == "csv"
    with open(target, newline="", encoding="utf-8") as handle:
        got = list(csv.DictReader(handle))
    assert list(got[0]) == BASE
    assert [r["status"] for r in got][:4] == ["succeeded", "succeeded", "succeeded", "failed"]
    assert got[7]["status_code"] == ""


def test_csv_writes_vectors_as_json(tmp_path: Path) -> None:
    result = join(
        [J / "embeddings.input.jsonl"], [J / "embeddings.output.jsonl"], include_embeddings=True
    )
    target = tmp_path / "e.csv"
    write_table(result.table, target)
    with open(target, newline="", encoding="utf-8") as handle:
        got = list(csv.DictReader(handle))
    assert orjson.loads(got[1]["embedding"]) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])


def test_jsonl(chat: Any, tmp_path: Path) -> None:
    target = tmp_path / "r.jsonl"
    assert write_table(chat.table, target) == "jsonl"
    lines = [orjson.loads(x) for x in target.read_bytes().splitlines()]
    assert lines == chat.table.to_pylist()


@pytest.mark.parametrize(
    ("name", "fmt", "expected"),
    [
        ("r.parquet", None, "parquet"),
        ("r.CSV", None, "csv"),
        ("r.ndjson", None, "jsonl"),
        ("r.out", None, "parquet"),
        ("r.csv", "jsonl", "jsonl"),
    ],
)
def test_format_follows_extension_unless_given(name: str, fmt: str | None, expected: str) -> None:
    assert table_format(name, fmt) == expected


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown table format"):
        table_format("r.parquet", "xlsx")


def test_writes_are_atomic_and_refuse_to_overwrite(chat: Any, tmp_path: Path) -> None:
    target = tmp_path / "r.parquet"
    target.write_bytes(b"keep")
    with pytest.raises(OutputExists):
        write_table(chat.table, target)
    assert target.read_bytes() == b"keep"
    write_table(chat.table, target, force=True)
    assert pq.read_table(target).num_rows == 9
    assert [p.name for p in tmp_path.iterdir()] == ["r.parquet"]


def test_empty_table_writes(tmp_path: Path) -> None:
    empty = pa.Table.from_pylist([], schema=join_schema())
    for name in ("e.parquet", "e.csv", "e.jsonl"):
        write_table(empty, tmp_path / name)
    assert pq.read_table(tmp_path / "e.parquet").schema.names == BASE
    assert (tmp_path / "e.jsonl").read_bytes() == b""


def test_parquet_writer_writes_what_pyarrow_parquet_writes(chat: Any, tmp_path: Path) -> None:
    """``parquet_writer`` (pyarrow's writer class, without ``pyarrow.parquet``'s imports)
    gives the very bytes of ``pyarrow.parquet.ParquetWriter`` with the same options, to a
    file object and to a path."""
    table = chat.table

    def written(make: Any, where: Any) -> None:
        writer = make(where, table.schema)
        for start in (0, 5):  # two row groups
            part = table.slice(start, 5)
            writer.write_table(part, row_group_size=part.num_rows)
        writer.add_key_value_metadata({b"k": b"v"})
        writer.close()

    public = lambda where, schema: pq.ParquetWriter(where, schema, **PARQUET_OPTIONS)  # noqa: E731
    for name, make in (("ours", parquet_writer), ("public", public)):
        written(make, str(tmp_path / f"{name}.parquet"))
        with open(tmp_path / f"{name}-handle.parquet", "wb") as handle:
            written(make, handle)
    for suffix in ("", "-handle"):
        ours = (tmp_path / f"ours{suffix}.parquet").read_bytes()
        assert ours == (tmp_path / f"public{suffix}.parquet").read_bytes()
    assert pq.read_table(tmp_path / "ours.parquet").equals(table)


def test_parquet_writer_falls_back_to_the_public_class(
    chat: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pyarrow whose private writer takes other arguments (here: one that only
    ``pyarrow.parquet.ParquetWriter`` gives) is a ``TypeError``: the public class then
    writes, the same bytes."""
    import pyarrow._parquet as private

    real, refused = private.ParquetWriter, []

    def changed(*args: Any, **kwargs: Any) -> Any:
        if "compression_level" not in kwargs:  # parquet_writer's call, not pyarrow's own
            refused.append(kwargs)
            raise TypeError("__init__() missing 1 required keyword-only argument")
        return real(*args, **kwargs)

    table = chat.table
    for name in ("normal", "fallback"):
        if name == "fallback":
            monkeypatch.setattr(private, "ParquetWriter", changed)
        writer = parquet_writer(str(tmp_path / f"{name}.parquet"), table.schema)
        writer.write_table(table, row_group_size=table.num_rows)
        writer.add_key_value_metadata({b"k": b"v"})
        writer.close()
    assert len(refused) == 1
    assert (tmp_path / "fallback.parquet").read_bytes() == (
        tmp_path / "normal.parquet"
    ).read_bytes()
