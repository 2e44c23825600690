"""Parquet files stitched from row groups encoded apart (``outputs.parquet_parts``): the very
bytes of one writer, read by pyarrow, DuckDB and polars; failures leave nothing behind."""

from __future__ import annotations

import copy
import io
import itertools
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from answer_bodies import chat_body
from helpers import jsonl, request
from hypothesis import given, settings
from hypothesis import strategies as st

from jsonl_batch.outputs import parquet_parts
from jsonl_batch.outputs.atomic import WriteError
from jsonl_batch.outputs.parquet_parts import StitchedWriter, Unstitchable, decode, encode
from jsonl_batch.results.join import join_to
from jsonl_batch.results.tables import SUMMARY_KEY, TableWriter, join_schema, parquet_writer

PARSED = pa.field(
    "parsed",
    pa.struct(
        [
            ("score", pa.int64()),
            ("tags", pa.list_(pa.string())),
            ("kind", pa.dictionary(pa.int32(), pa.string())),
        ]
    ),
)
SCHEMA = join_schema(parsed=[PARSED], include_embeddings=True, include_tool_calls=True)
WORDS = st.sampled_from(["", "a", "succeeded", "failed", "é", "x" * 40])


def _column(field: pa.Field) -> st.SearchStrategy[Any]:
    kind = field.type
    if pa.types.is_integer(kind):
        value: st.SearchStrategy[Any] = st.integers(-(2**31), 2**31 - 1)
    elif pa.types.is_floating(kind):
        value = st.floats(allow_nan=False, width=32)
    elif pa.types.is_list(kind):
        value = st.lists(st.floats(allow_nan=False, width=32), max_size=3)
    elif pa.types.is_struct(kind):  # never null itself: pyarrow makes an invalid
        return st.fixed_dictionaries(  # dictionary child of a null struct from Python
            {"score": st.none() | st.integers(-(2**40), 2**40)},
            optional={"tags": st.none() | st.lists(WORDS, max_size=2), "kind": st.none() | WORDS},
        )
    else:
        value = WORDS
    return st.none() | value


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    rows = draw(st.integers(0, 40))
    columns = {f.name: draw(st.lists(_column(f), min_size=rows, max_size=rows)) for f in SCHEMA}
    return pa.Table.from_pydict(columns, schema=SCHEMA)


@st.composite
def blocks(draw: st.DrawFn) -> list[pa.Table]:
    table = draw(tables())
    cuts = sorted(draw(st.lists(st.integers(0, table.num_rows), max_size=5)))
    edges = [0, *cuts, table.num_rows]
    return [table.slice(a, b - a) for a, b in itertools.pairwise(edges)]


def one_writer(parts: list[pa.Table], schema: pa.Schema, summary: bytes | None) -> bytes:
    out = io.BytesIO()
    writer = parquet_writer(out, schema)
    for part in parts:
        writer.write_table(part, row_group_size=max(1, part.num_rows))
    if summary is not None:
        writer.add_key_value_metadata({SUMMARY_KEY: summary})
    writer.close()
    return out.getvalue()


def stitched(
    parts: list[pa.Table], schema: pa.Schema, summary: bytes | None, make: Any = parquet_writer
) -> bytes:
    out = io.BytesIO()
    writer = StitchedWriter(out, schema, make)
    for part in parts:
        writer.write_table(part)
    if summary is not None:
        writer.add_key_value_metadata({SUMMARY_KEY: summary})
    writer.close()
    return out.getvalue()


@settings(max_examples=40, deadline=None)
@given(blocks(), st.none() | st.binary(max_size=30))
def test_stitched_file_is_the_one_writers_bytes(parts: list[pa.Table], summary: Any) -> None:
    """Row groups of every join column type (dictionary, list, struct, nulls), empty ones,
    one or many, with and without the summary: the same bytes as one writer's."""
    data = stitched(parts, SCHEMA, summary)
    assert data == one_writer(parts, SCHEMA, summary)
    rows = pa.concat_tables([SCHEMA.empty_table(), *parts]).to_pylist()
    assert pq.read_table(io.BytesIO(data)).to_pylist() == rows


def test_stitched_file_reads_in_duckdb_and_polars(tmp_path: Path) -> None:
    n = 3000
    table = pa.table(
        {
            "custom_id": [f"r{i}" for i in range(n)],
            "status": pa.array(["succeeded", "failed", None] * (n // 3)),
            "model": pa.array(["m"] * n).dictionary_encode(),
            "embedding": [[float(i), 0.5] if i % 4 else None for i in range(n)],
        }
    )
    parts = [table.slice(0, 700), table.slice(700, 0), table.slice(700, 1000), table.slice(1700)]
    target = tmp_path / "t.parquet"
    target.write_bytes(stitched(parts, table.schema, b'{"requests": 3000}'))
    assert pq.ParquetFile(target).metadata.num_row_groups == 4
    query = (
        f"SELECT count(*), count(embedding), max(custom_id) FROM '{target}' WHERE status = 'failed'"
    )
    assert duckdb.sql(query).fetchall() == [(1000, 750, "r997")]
    frame = pl.read_parquet(target)
    assert frame.height == n and frame["custom_id"].to_list() == table["custom_id"].to_pylist()


def test_a_footer_stitching_cannot_shift_makes_one_plain_writer() -> None:
    """Page indexes hold offsets stitching does not move: the first part is refused and every
    row group goes through one writer, the same bytes as that writer alone."""
    table = pa.table({"status": ["a", "b", None] * 50, "n": list(range(150))})
    parts = [table.slice(0, 60), table.slice(60, 40), table.slice(100)]

    def indexed(where: Any, schema: pa.Schema) -> Any:
        return pq.ParquetWriter(where, schema, write_page_index=True)

    data = stitched(parts, table.schema, b"{}", indexed)
    out = io.BytesIO()
    writer = indexed(out, table.schema)
    for part in parts:
        writer.write_table(part, row_group_size=part.num_rows)
    writer.add_key_value_metadata({SUMMARY_KEY: b"{}"})
    writer.close()
    assert data == out.getvalue()
    with pytest.raises(Unstitchable):
        parquet_parts.split_part(b"PAR1 not a footer PAR1")


VALUES = st.deferred(
    lambda: st.one_of(
        st.tuples(st.sampled_from([1, 2]), st.none()),  # booleans: no value
        st.tuples(st.sampled_from([4, 5, 6]), st.integers(-(2**63), 2**63 - 1)),
        st.tuples(st.just(8), st.binary(max_size=20)),
        st.tuples(st.just(7), st.binary(min_size=8, max_size=8)),
        st.tuples(st.just(12), STRUCTS),
        st.tuples(st.just(9), st.tuples(st.just(5), st.lists(st.integers(0, 99), max_size=20))),
        st.tuples(st.just(9), st.tuples(st.just(12), st.lists(STRUCTS, max_size=3))),
    )
)
STRUCTS = st.lists(st.tuples(st.integers(-300, 300), VALUES), max_size=4).map(
    lambda fields: [[fid, kind, value] for fid, (kind, value) in fields]
)


@settings(max_examples=60, deadline=None)
@given(STRUCTS)
def test_thrift_structs_round_trip(struct: list[Any]) -> None:
    data = encode(struct)
    assert decode(data) == (struct, len(data))
    assert encode(decode(data)[0]) == data


def test_an_encoding_error_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row group failing in its thread (here: the disk full on the third) is raised by
    the writer (a ``WriteError`` naming the file); the file it replaces is untouched, no
    temporary file is left, no thread."""
    target = tmp_path / "t.parquet"
    target.write_bytes(b"old")
    table = pa.table({"n": list(range(100))})
    calls = []

    def failing(where: Any, schema: pa.Schema) -> Any:
        calls.append(threading.current_thread())
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return parquet_writer(where, schema)

    monkeypatch.setattr("jsonl_batch.results.tables.parquet_writer", failing)
    threads = threading.active_count()
    with (
        pytest.raises(WriteError, match=r"t\.parquet: No space left"),
        TableWriter(target, force=True) as writer,
    ):
        writer.begin(table.schema)
        for start in range(0, 100, 10):
            writer.write(table.slice(start, 10))
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]
    assert threading.active_count() == threads
    assert calls[2] is not threading.main_thread()


def test_ctrl_c_while_a_join_writes_parquet_keeps_the_old_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the join's thread while row groups are being encoded (at the fourth block,
    two still in the threads): the old table stays, no temporary file, no thread left."""
    n = 40_000
    inputs, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inputs.write_bytes(jsonl(*(request(f"r{i}") for i in range(n))))
    answer = {"status_code": 200, "body": chat_body("an answer " * 20)}
    results.write_bytes(
        jsonl(*({"id": f"b{i}", "custom_id": f"r{i}", "response": answer} for i in range(n)))
    )
    output = tmp_path / "t.parquet"
    output.write_bytes(b"old")
    write, blocks = StitchedWriter.write_table, []

    def interrupted(self: StitchedWriter, table: pa.Table) -> None:
        blocks.append(len(self._pending))
        if len(blocks) == 4:
            raise KeyboardInterrupt
        write(self, table)

    monkeypatch.setattr(StitchedWriter, "write_table", interrupted)
    threads = threading.active_count()
    with pytest.raises(KeyboardInterrupt):
        join_to([inputs], [results], output, force=True)
    assert blocks[-1] == 2  # two row groups given to the threads
    assert output.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl", "t.parquet"]
    assert threading.active_count() == threads


def test_appended_row_groups_are_kept_as_their_bytes() -> None:
    """Memory per row group kept until ``close`` is its footer entry's encoded bytes (~3 KB
    here), not the decoded Python lists (~75 KB each): measured by tracemalloc between the
    100th and 300th one-row part."""
    table = pa.Table.from_pylist([{"custom_id": "r", "parsed": {"score": 1}}], schema=SCHEMA)
    out = io.BytesIO()
    writer = StitchedWriter(out, SCHEMA, parquet_writer)
    tracemalloc.start()
    try:
        for i in range(300):
            writer.write_table(table)
            if i == 100:
                before = tracemalloc.get_traced_memory()[0]
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        writer.close()
    assert grown / 200 < 8_000
    assert out.getvalue() == one_writer([table] * 300, SCHEMA, None)  # a list of 15 or more


def test_a_column_chunks_file_offset_is_refused() -> None:
    """pyarrow 17 and older point a chunk's ``file_offset`` at a copy of its metadata after
    its pages; stitching would shift the pointer, not the copy: such a part is refused
    (pyarrow 26 writes 0, and its parts stitch)."""
    data = one_writer([pa.table({"n": [1, 2]})], pa.schema([("n", pa.int64())]), None)
    _, meta = parquet_parts.split_part(data)
    chunk = meta[3][2][1][0][0][2][1][0]  # row groups, the first, its columns, the first
    assert chunk[0] == [2, 6, 0]
    parquet_parts.shifted_groups(copy.deepcopy(meta), 10, 0)
    chunk[0][2] = 40
    with pytest.raises(Unstitchable, match="copied"):
        parquet_parts.shifted_groups(meta, 10, 0)


@pytest.mark.parametrize(
    "data",
    [
        b"\x13\x07\x00",  # field 1: a byte
        b"\x1a\x25\x02\x04\x00",  # field 1: a set of two i32
        b"\x1b\x01\x55\x02\x04\x00",  # field 1: a map of one i32 to i32
        b"\x19\x21\x01\x02\x00",  # field 1: a list of two booleans
    ],
)
def test_thrift_types_no_footer_holds_are_refused(data: bytes) -> None:
    """Bytes, sets, maps and lists of booleans are in no Parquet footer: refused, not kept
    by a code path no footer exercises."""
    with pytest.raises(Unstitchable, match="no Parquet footer"):
        decode(data)


def test_freed_memory_is_given_back_every_few_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each thread releases the allocator's unused pages after every ``RELEASE_EVERY``th part
    of its own, not after each (each release faults the pages in again)."""
    releases = []

    class Pool:
        def release_unused(self) -> None:
            releases.append(1)

    monkeypatch.setattr(parquet_parts.pa, "default_memory_pool", Pool)
    table = pa.table({"n": [1]})
    stitched([table] * 2 * parquet_parts.RELEASE_EVERY, table.schema, None)
    assert 0 < len(releases) <= 2  # a thread of the two encoded RELEASE_EVERY parts at least
