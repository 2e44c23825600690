"""Placing result lines on their requests (``results.matching``) agrees with one hash table of
every request (``pc.index_in``), whichever way a file's custom_ids are found."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from helpers import jsonl, request
from hypothesis import given, settings
from hypothesis import strategies as st
from test_join_engine import same

from jsonl_batch.results import index, matching
from jsonl_batch.results import join as joining
from jsonl_batch.results.matching import Requests

SEARCHES = pytest.mark.skipif(not matching.SEARCH, reason="search_sorted: pyarrow 26 and later")


def chunked(values: list[str | None], pieces: int = 3) -> pa.ChunkedArray:
    size = max(1, -(-len(values) // pieces))
    parts = [values[i : i + size] for i in range(0, len(values), size)] or [[]]
    return pa.chunked_array([pa.array(p, pa.string()) for p in parts], pa.string())


def expected(ids: pa.ChunkedArray, wanted: pa.ChunkedArray) -> list[int | None]:
    return pc.index_in(wanted, value_set=ids).to_pylist()


@SEARCHES
@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(0, 300),
    picks=st.lists(st.integers(-20, 320), max_size=200),
    shuffle=st.randoms(use_true_random=False),
    sample=st.sampled_from([1, 2, 64]),
    span=st.sampled_from([1, 8]),
)
def test_positions_are_index_in(
    n: int, picks: list[int], shuffle: Any, sample: int, span: int
) -> None:
    names = [f"id-{i:04d}" for i in range(n)]
    shuffle.shuffle(names)  # any order: the sort is by custom_id, the rows by position
    ids = chunked(names, 4)
    wanted_values = [None if p < 0 else f"id-{p:04d}" for p in picks]  # some not requests
    wanted = chunked(wanted_values)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(matching, "SAMPLE", sample)
        patch.setattr(matching, "SPAN", span)
        found = Requests(ids).positions(wanted)
    assert found is not None
    assert found.type == pa.int32()
    assert found.to_pylist() == expected(ids, wanted)


ODD = st.lists(
    st.sampled_from(["", "a", "ab", "\x00", "\x7f", "\x80", "é", "\ue000", "\uffff", "\U0001f600"]),
    max_size=4,
).map("".join)
"""custom_ids that sort oddly: empty, prefixes of each other, NUL, and code points whose UTF-8
bytes sort otherwise than they (U+E000..U+FFFF against U+10000 and above)."""


@SEARCHES
@settings(max_examples=60, deadline=None)
@given(
    names=st.lists(ODD | st.text(max_size=3), unique=True, max_size=80),
    others=st.lists(st.none() | ODD, max_size=60),
    picks=st.lists(st.integers(0, 79), max_size=60),
    sample=st.sampled_from([1, 3, 64]),
    span=st.sampled_from([1, 8]),
)
def test_positions_of_custom_ids_that_sort_oddly(
    names: list[str], others: list[str | None], picks: list[int], sample: int, span: int
) -> None:
    """Found by byte order (the sort, the binary search) as by the hash table."""
    ids = chunked(names, 3)
    wanted = chunked([names[p] for p in picks if p < len(names)] + others)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(matching, "SAMPLE", sample)
        patch.setattr(matching, "SPAN", span)
        found = Requests(ids).positions(wanted)
    assert found is not None
    assert found.to_pylist() == expected(ids, wanted)


@SEARCHES
def test_a_stretch_with_answers_from_elsewhere_and_orphans(monkeypatch: Any) -> None:
    """A file answering one stretch (its table) and, beyond it, other requests and none
    (found by search)."""
    monkeypatch.setattr(matching, "SAMPLE", 4)
    ids = chunked([f"r{i:05d}" for i in range(10_000)], 7)
    values = [f"r{i:05d}" for i in range(5_000, 5_400)][::-1]
    values[5::45] = ["r00003", "r09999", "nobody", None, "r04999", "r05400", "zzz", "", "r1"]
    wanted = chunked(values)
    searched: list[int] = []
    search = Requests._search
    spy = lambda self, w: searched.append(len(w)) or search(self, w)  # noqa: E731
    monkeypatch.setattr(Requests, "_search", spy)
    assert Requests(ids).positions(wanted).to_pylist() == expected(ids, wanted)  # type: ignore[union-attr]
    assert searched == [4, 7]  # the sample, then what the stretch (and its slack) did not hold


@SEARCHES
@pytest.mark.parametrize("values", [[], ["a"], ["a", "b"]])
def test_no_requests_or_nothing_wanted(values: list[str]) -> None:
    empty = chunked([])
    assert Requests(empty).positions(chunked(values)).to_pylist() == [None] * len(values)  # type: ignore[union-attr]
    ids = chunked(["b", "a"])
    assert Requests(ids).positions(chunked(values)).to_pylist() == expected(ids, chunked(values))  # type: ignore[union-attr]


def test_twice() -> None:
    assert not Requests(chunked([])).twice()
    assert not Requests(chunked(["a"])).twice()
    assert not Requests(chunked(["b", "a", "c"])).twice()
    assert Requests(chunked(["b", "a", "c", "b"])).twice()


def test_a_pyarrow_without_search_joins_the_same(monkeypatch: Any, tmp_path: Any) -> None:
    """Without ``search_sorted`` (pyarrow before 26) the join looks every result up at once."""
    monkeypatch.setattr(matching, "SEARCH", False)
    assert Requests(chunked(["a"])).positions(chunked(["a"])) is None
    inputs = tmp_path / "in.jsonl"
    inputs.write_bytes(jsonl(*(request(f"r{i}") for i in range(6))))
    results = tmp_path / "out.jsonl"
    lines = [{"custom_id": c, "response": None, "error": {"code": "x"}} for c in ["r3", "r9", "r3"]]
    results.write_bytes(jsonl(*lines))
    same([inputs], [results])


def test_a_file_is_placed_a_group_of_ranges_at_a_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A long result file is placed as its ranges come, in groups of about ``PLACE_ROWS``
    lines (then its last group), in the workers' order: the join is the same."""
    monkeypatch.setattr(joining, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(index, "RANGE_BYTES", 2048)
    monkeypatch.setattr(index, "PLACE_ROWS", 40)
    groups: list[int] = []
    positions = Requests.positions

    def spy(self: Requests, custom_ids: pa.ChunkedArray) -> pa.Array | None:
        groups.append(len(custom_ids))
        return positions(self, custom_ids)

    monkeypatch.setattr(Requests, "positions", spy)
    ids = [f"r{i}" for i in range(200)]
    inputs = tmp_path / "in.jsonl"
    inputs.write_bytes(jsonl(*(request(i) for i in ids)))
    results = [tmp_path / "out.jsonl", tmp_path / "more.jsonl"]
    lines = [{"custom_id": c, "response": None, "error": {"code": "x"}} for c in ids[::-1]]
    results[0].write_bytes(jsonl(*lines, {**lines[0], "custom_id": "nobody"}))
    results[1].write_bytes(jsonl(*lines[:3]))
    summary = joining.join_into(joining.Collect(), [inputs], results, workers=2)
    assert summary.orphans == 1 and summary.duplicates == 3
    assert len(groups) > 3 and sum(groups) == 204 and groups[-1] == 3
    assert all(g >= 40 for g in groups[:-1])  # groups of PLACE_ROWS lines at least...
    same([inputs], results)  # ... and the same join


@SEARCHES
def test_custom_ids_past_32_bit_offsets(monkeypatch: Any) -> None:
    """custom_ids whose bytes would overflow one ``string`` array are sorted and searched as
    ``large_string``: the same positions, duplicates still found."""
    monkeypatch.setattr(matching, "STRING_BYTES", 16)
    monkeypatch.setattr(matching, "SAMPLE", 2)
    names = [f"id-{i:03d}" for i in range(50)][::-1]
    ids = chunked(names, 5)
    found = Requests(ids)
    assert found.sorted.type == pa.large_string()
    wanted = chunked([*names[10:20], "nobody", None, *names[::7]])
    assert found.positions(wanted).to_pylist() == expected(ids, wanted)  # type: ignore[union-attr]
    assert not found.twice() and Requests(chunked([*names, "id-007"])).twice()
