"""The streaming join (index, then answers read back by byte range) equals the whole-table
join it replaced (``legacy_join``): same table, same summary, same errors."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import legacy_join
import orjson
import pytest
from helpers import DATA, jsonl, request
from hypothesis import given, settings
from hypothesis import strategies as st
from legacy_join import ADDED_COLUMNS, ADDED_SUMMARY

from jsonl_batch.results import join as joining
from jsonl_batch.results.join import JoinError, join, join_into

J = DATA / "join"


def outcome(run: Any) -> Any:
    try:
        result = run()
    except JoinError as exc:
        return "error", str(exc)
    table = result.table.drop_columns(list(ADDED_COLUMNS))
    summary = {k: v for k, v in result.summary.to_dict().items() if k not in ADDED_SUMMARY}
    return table.schema, table.to_pylist(), summary


def same(inputs: list[Any], results: list[Any], **options: Any) -> None:
    new = outcome(lambda: join(inputs, results, **options))
    old = outcome(lambda: legacy_join.join(inputs, results, **options))
    assert new == old


def answer(custom_id: str, kind: str, n: int) -> Any:
    if kind == "ok":
        message = {"role": "assistant", "content": f"answer {n}", "tool_calls": [{"id": n}]}
        usage = {"prompt_tokens": n, "completion_tokens": 2, "total_tokens": n + 2}
        body = {"model": "m", "choices": [{"message": message, "finish_reason": "stop"}]}
        body["usage"] = usage
        return {
            "id": f"b{n}",
            "custom_id": custom_id,
            "response": {"status_code": 200, "body": body},
        }
    if kind == "parts":
        message = {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
        body = {"choices": [{"message": message}]}
        return {"custom_id": custom_id, "response": {"status_code": 200, "body": body}}
    if kind == "embedding":
        body = {"data": [{"index": 0, "embedding": [0.5, n]}]}
        return {"custom_id": custom_id, "response": {"status_code": 200, "body": body}}
    if kind == "http":
        error = {"message": "no", "type": "t", "code": None}
        return {
            "custom_id": custom_id,
            "response": {"status_code": 400 + n % 100, "body": {"error": error}},
        }
    if kind == "expired":
        return {"custom_id": custom_id, "response": None, "error": {"code": "batch_expired"}}
    if kind == "no_status":
        return {"custom_id": custom_id, "response": {"body": {}}}
    return kind.encode()  # raw bytes: not a result line


KINDS = st.sampled_from(
    ["ok", "ok", "parts", "embedding", "http", "expired", "no_status", "null", "", "[1]", "{"]
)
IDS = st.sampled_from([f"r{i}" for i in range(8)] + ["other"])


@st.composite
def case(draw: Any) -> tuple[list[bytes], list[bytes]]:
    ids = draw(st.lists(st.sampled_from([f"r{i}" for i in range(8)]), min_size=0, max_size=8))
    if draw(st.booleans()):
        ids = list(dict.fromkeys(ids))  # mostly unique; sometimes a custom_id used twice
    files = draw(st.integers(1, 2))
    cut = draw(st.integers(0, len(ids)))
    inputs = [ids[:cut], ids[cut:]][:files] if files == 2 else [ids]
    input_bytes = [jsonl(*(request(i) for i in part)) for part in inputs]
    results = []
    n = 0
    for _ in range(draw(st.integers(0, 3))):
        lines = []
        for custom_id, kind in draw(st.lists(st.tuples(IDS, KINDS), max_size=8)):
            n += 1
            line = answer(custom_id, kind, n)
            lines.append(line if isinstance(line, bytes) else orjson.dumps(line))
        end = b"\n" if draw(st.booleans()) else b""
        results.append(b"\n".join(lines) + (end if lines else b""))
    return input_bytes, results


@settings(max_examples=120, deadline=None)
@given(
    data=case(),
    options=st.fixed_dictionaries(
        {
            "include_bodies": st.booleans(),
            "include_tool_calls": st.booleans(),
            "include_embeddings": st.booleans(),
            "max_anomalies": st.sampled_from([None, 1, 100]),
        }
    ),
)
def test_streaming_join_equals_the_whole_table_join(data: Any, options: dict[str, Any]) -> None:
    input_bytes, result_bytes = data
    with tempfile.TemporaryDirectory() as tmp:
        inputs = []
        for i, content in enumerate(input_bytes):
            (Path(tmp) / f"in{i}.jsonl").write_bytes(content)
            inputs.append(Path(tmp) / f"in{i}.jsonl")
        results = []
        for i, content in enumerate(result_bytes):
            (Path(tmp) / f"out{i}.jsonl").write_bytes(content)
            results.append(Path(tmp) / f"out{i}.jsonl")
        same(inputs, results, **options)


@pytest.mark.parametrize("name", ["chat", "completions", "responses", "embeddings"])
def test_fixtures_join_the_same(name: str) -> None:
    results = sorted(J.glob(f"{name}.*.jsonl"))
    results = [p for p in results if "input" not in p.name]
    for options in ({}, {"include_bodies": True, "include_tool_calls": True}):
        same([J / f"{name}.input.jsonl"], results, **options)
    same([J / f"{name}.input.jsonl"], [*results, J / "malformed.output.jsonl"], max_anomalies=2)


def test_worker_processes_give_the_same_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(joining, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(joining, "BLOCK_ROWS", 7)
    monkeypatch.setattr("jsonl_batch.results.index.RANGE_BYTES", 4096)
    kinds = ["ok", "http", "expired", "parts", "null"]
    ids = [f"r{i}" for i in range(300)]
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(jsonl(*(request(i) for i in ids)))
    outs = []
    for k in range(3):
        lines = [answer(i, kinds[(n + k) % 5], n) for n, i in enumerate(ids[k::2])]
        out = tmp_path / f"out{k}.jsonl"
        out.write_bytes(
            b"\n".join(x if isinstance(x, bytes) else orjson.dumps(x) for x in lines[::-1])
        )
        outs.append(out)
    blocks: list[Any] = []
    for workers in (1, 2):
        collect = joining.Collect()
        summary = join_into(collect, [inp], outs, include_bodies=True, workers=workers)
        done = joining.Join(collect.table(), summary)
        blocks.append(outcome(lambda done=done: done))
    old = outcome(lambda: legacy_join.join([inp], outs, include_bodies=True))
    assert blocks[0] == blocks[1] == old


def test_blocks_of_long_answers_hold_fewer_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block's answers are taken into memory as one row group: past ``BLOCK_BYTES`` (as
    the spill files' sizes say) a block is cut into equal ones, short answers' blocks not;
    the same table either way."""
    import pyarrow.parquet as pq

    monkeypatch.setattr(joining, "BLOCK_BYTES", 20_000)
    inputs, outputs = [], []
    for k, size in enumerate((2_000, 1)):  # long answers to the first file's requests
        ids = [f"r{k}-{i}" for i in range(30)]
        lines = [answer(i, "ok", n) for n, i in enumerate(ids[:-2])]
        for n, line in enumerate(lines):
            line["response"]["body"]["choices"][0]["message"]["content"] = "x" * size + str(n)
        inputs.append(tmp_path / f"in{k}.jsonl")
        inputs[-1].write_bytes(jsonl(*(request(i) for i in ids)))
        outputs.append(tmp_path / f"out{k}.jsonl")
        outputs[-1].write_bytes(jsonl(*lines[::-1]))
    same(inputs, outputs)
    joining.join_to(inputs, outputs, tmp_path / "t.parquet")
    meta = pq.ParquetFile(tmp_path / "t.parquet").metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    *long, short = sizes  # ~60 KB of answers (and their spill files' other bytes) cut
    assert sum(long) == short == 30 and len(long) >= 3 and max(long) - min(long) <= 2
    assert pq.read_table(tmp_path / "t.parquet") == joining.join(inputs, outputs).table


@pytest.mark.parametrize(
    ("requests", "groups"),
    [
        (10, [1, 2, 3, 3, 1]),  # 3+3+3+1, the first block's quarter (at least 1) first
        (12, [1, 2, 3, 3, 1, 2]),  # 3+3+3+3: the last block, twice the first's rows, halved
    ],
)
def test_a_small_join_in_several_blocks_gives_the_same_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, requests: int, groups: list[int]
) -> None:
    """A join of fewer than ``MIN_BLOCKS`` full blocks is cut into about that many (taking
    one block's answers overlaps writing the one before), the first one in two (writing
    starts sooner), the last in halves when it is large enough (both encoding threads finish
    it): the same table, a row group each."""
    import pyarrow.parquet as pq

    monkeypatch.setattr(joining, "MIN_BLOCK_ROWS", 1)
    ids = [f"r{i}" for i in range(requests)]
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(jsonl(*(request(i) for i in ids)))
    out = tmp_path / "out.jsonl"
    out.write_bytes(jsonl(*(answer(i, "ok", n) for n, i in enumerate(ids[:-1][::-1]))))
    same([inp], [out])
    joining.join_to([inp], [out], tmp_path / "t.parquet")
    row_groups = pq.ParquetFile(tmp_path / "t.parquet").metadata
    sizes = [row_groups.row_group(i).num_rows for i in range(row_groups.num_row_groups)]
    assert sizes == groups
