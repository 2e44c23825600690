"""jsonl_batch.compute gives what pyarrow.compute gives, for the functions and options we use."""

from __future__ import annotations

import math
import sys
from typing import Any

import pyarrow as pa
import pyarrow.compute as arrow
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jsonl_batch import compute

INTS = pa.chunked_array([[3, None, 1], [2, 3]], pa.int64())
TEXT = pa.array(["a", None, "bc", "", "{x"])
FLAGS = pa.array([True, False, None, True, False])
LISTS = pa.array([[1, 2], [], None, [3]], pa.list_(pa.int64()))
STRUCTS = pa.array([{"a": 1, "b": {"c": "x"}}, None, {"a": None, "b": None}])
TABLE = pa.table({"k": ["b", "a", "b"], "n": [1, 2, 3]})

CASES: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("equal", (TEXT, "bc"), {}),
    ("greater_equal", (INTS, 2), {}),
    ("and_kleene", (FLAGS, FLAGS[::-1]), {}),
    ("if_else", (FLAGS, TEXT, "z"), {}),
    ("case_when", (pa.StructArray.from_arrays([FLAGS], ["c"]), TEXT), {}),
    ("coalesce", (TEXT, "-"), {}),
    ("fill_null", (INTS, 0), {}),
    ("fill_null", (FLAGS, False), {}),
    ("is_null", (TEXT,), {}),
    ("cast", (INTS, pa.float64()), {}),
    ("cast", (pa.array([300]), pa.int8()), {"safe": False}),
    ("take", (TABLE, pa.array([2, 0])), {}),
    ("filter", (TEXT, FLAGS), {}),
    ("drop_null", (INTS,), {}),
    ("sort_indices", (INTS,), {}),
    ("sort_indices", (TABLE,), {"sort_keys": [("k", "ascending"), ("n", "descending")]}),
    ("is_in", (TEXT, pa.array(["a", "bc"])), {}),
    ("index_in", (INTS, pa.array([3, 2])), {}),
    ("unique", (INTS,), {}),
    ("value_counts", (TEXT,), {}),
    ("cumulative_sum", (INTS.combine_chunks(),), {}),
    ("cumulative_sum", (pa.array([1, 1, 1]),), {"start": 4}),
    ("sum", (INTS,), {}),
    ("min_max", (INTS,), {}),
    ("all", (FLAGS,), {}),
    ("struct_field", (STRUCTS, "a"), {}),
    ("struct_field", (STRUCTS, ["b", "c"]), {}),
    ("make_struct", (INTS.combine_chunks(), TEXT), {"field_names": ["i", "t"]}),
    ("list_flatten", (LISTS,), {}),
    ("list_parent_indices", (LISTS,), {}),
    ("list_element", (pa.array([[1], [2, 3]]), 0), {}),
    ("binary_join_element_wise", ("http_", TEXT, ""), {}),
    ("min_element_wise", (INTS, 2), {}),
    ("multiply", (INTS, 0.5), {}),
    ("if_else", (FLAGS, TEXT, None), {}),
    ("and_", (FLAGS, True), {}),
    ("equal", (pa.array([b"x", b"y"]), b"x"), {}),
    (
        "replace_with_mask",
        (pa.array([1, 2, 3]), pa.array([True, False, True]), pa.array([7, 8])),
        {},
    ),
]
if "search_sorted" in compute.FUNCTIONS:  # pyarrow 26 and later
    CASES.append(("search_sorted", (pa.array(["a", "c", "e"]), pa.array(["d", "a", "z"])), {}))


@pytest.mark.parametrize(("name", "args", "options"), CASES)
def test_same_as_pyarrow_compute(name: str, args: tuple[Any, ...], options: dict[str, Any]) -> None:
    assert getattr(compute, name)(*args, **options).equals(getattr(arrow, name)(*args, **options))


def test_cast_table_is_table_cast() -> None:
    schema = pa.schema([("k", pa.large_string()), ("n", pa.float64())])
    assert compute.cast_table(TABLE, schema).equals(TABLE.cast(schema))


def test_scatter_when_there() -> None:
    if "scatter" in compute.FUNCTIONS:
        where = pa.array([2, 0])
        expected = arrow.scatter(pa.array([0, 1]), where, max_index=3)
        assert compute.scatter(pa.array([0, 1]), where, max_index=3).equals(expected)


def test_a_function_whose_options_class_this_pyarrow_lacks_is_not_offered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pyarrow 21 and 22 have the ``scatter`` function but not ``ScatterOptions``: the join
    places its answers with a hash table there, the same rows."""
    import importlib

    from pyarrow import _compute

    from jsonl_batch.results import join as joining

    where = pa.array([3, 0, 1])
    expected = [1, 2, None, 0, None]
    assert joining._place(where, 5).to_pylist() == expected
    monkeypatch.delattr(_compute, "ScatterOptions", raising=False)
    try:
        importlib.reload(compute)
        assert "scatter" not in compute.FUNCTIONS and "take" in compute.FUNCTIONS
        assert joining._place(where, 5).to_pylist() == expected
    finally:
        monkeypatch.undo()
        importlib.reload(compute)
    assert "scatter" in compute.FUNCTIONS or not hasattr(_compute, "ScatterOptions")


def test_struct_and_list_arrays_as_from_arrays_with_a_mask() -> None:
    valid = pa.array([True, False, True])
    kind = pa.struct([("i", pa.int64())])
    children = [pa.array([1, 2, 3])]
    expected = pa.StructArray.from_arrays(children, fields=list(kind), mask=arrow.invert(valid))
    assert compute.struct_array(kind, 3, children, valid).equals(expected)
    assert compute.struct_array(kind, 3, children, None).equals(
        pa.StructArray.from_arrays(children, fields=list(kind))
    )
    offsets, values = pa.array([0, 2, 2, 3], pa.int32()), pa.array(["a", "b", "c"])
    expected = pa.ListArray.from_arrays(offsets, values, mask=arrow.invert(valid))
    assert compute.list_array(pa.list_(pa.string()), offsets, values, valid).equals(expected)
    with pytest.raises(ValueError, match="validity"):
        compute.list_array(pa.list_(pa.string()), offsets, values, valid.slice(1))


@settings(max_examples=100, deadline=None)
@given(
    value=st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(),
        st.text(),
        st.binary(),
    )
)
def test_a_bare_value_becomes_the_scalar_pyarrow_makes(value: Any) -> None:
    made, inferred = compute._scalar(value), pa.scalar(value)
    assert made.type == inferred.type
    same = made.as_py() == inferred.as_py() or math.isnan(made.as_py())
    assert same and type(made.as_py()) is type(inferred.as_py())


def test_bare_values_send_pyarrow_looking_for_no_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """pyarrow infers a bare value's type by importing ``dateutil`` first: absent, it is
    searched for again on every call (0.05-0.3 ms each)."""
    looked: list[str] = []

    class Finder:
        def find_spec(self, name: str, path: Any, target: Any = None) -> None:
            looked.append(name)

    monkeypatch.setattr(sys, "meta_path", [Finder(), *sys.meta_path])
    compute.add(INTS, 1)
    compute.if_else(FLAGS, TEXT, None)
    compute.binary_join_element_wise("http_", TEXT, "")
    compute.and_(FLAGS, True)
    compute.multiply(INTS, 0.5)
    compute.cumulative_sum(pa.array([1, 1], pa.int64()), start=2)
    assert looked == []


def test_the_module_never_calls_a_builtin_it_hides() -> None:
    """``compute.sum`` and the like hide Python's builtins inside the module: a bare call
    there to one of them would run Arrow's function on Python values."""
    import ast
    import builtins
    import inspect

    hidden = {name for name in vars(compute) if hasattr(builtins, name)}
    assert {"sum", "min", "max", "any", "all", "filter"} <= hidden
    tree = ast.parse(inspect.getsource(compute))
    calls = [
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    ]
    assert not hidden & set(calls)
