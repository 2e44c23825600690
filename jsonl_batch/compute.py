"""The Arrow compute functions we use, called without importing ``pyarrow.compute``.

``import pyarrow.compute`` builds a Python wrapper, with signature and docstring, for each of
Arrow's ~300 compute functions (~25-35 ms, 5-7% of a 50,000-request join). These functions
call Arrow's function registry directly (``pyarrow._compute.call_function``), with the same
names, arguments and results as ``pyarrow.compute``'s: modules import this one as ``pc``.
pyarrow's own methods that compute (``Array.take``, ``filter``, ``cast``, ``unique``,
``is_null``, ``is_valid``, ``drop_null``, ``fill_null``, ``Table.sort_by`` ...) import
``pyarrow.compute`` on first use: call the functions here instead (``pc.take(a, i)``).

As in ``pyarrow.compute``, ``sum``, ``min``, ``max``, ``any``, ``all`` and ``filter`` here
are Arrow's: inside this module they hide Python's builtins, so code here reaches those as
``builtins.min`` (``tests/test_compute.py`` holds it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
from pyarrow import _compute

Datum = Any
"""An Arrow array, chunked array, scalar, record batch or table (pyarrow has no types), or a
Python value Arrow turns into a scalar."""

_OPTIONS = {"scatter": "ScatterOptions"}
"""Functions called here with an options class that came to pyarrow later than they did."""

FUNCTIONS = frozenset(
    name
    for name in _compute.function_registry().list_functions()
    if hasattr(_compute, _OPTIONS.get(name, "call_function"))
)
"""The names of the compute functions this pyarrow can run here: ``scatter`` from pyarrow 23
(the function is in 21, its ``ScatterOptions`` in 23), ``search_sorted`` from 26."""


_TYPES = {
    bool: pa.bool_(),
    int: pa.int64(),
    float: pa.float64(),
    str: pa.string(),
    bytes: pa.binary(),
    type(None): pa.null(),
}
"""The type pyarrow gives a bare Python value (``pc.add(a, 1)``), given here: to infer it,
pyarrow first tries to import ``dateutil``, which, when not installed, is searched for on
``sys.path`` again on every call: 0.05 ms, 0.3 ms when a folder on the path has changed (the
current folder, where the join writes): ~0.1 s of a 500,000-request join's CPU."""


def _scalar(value: Datum) -> Datum:
    """``value`` as the scalar pyarrow would make of it, if it is a bare Python value."""
    kind = _TYPES.get(type(value))
    return value if kind is None else pa.scalar(value, kind)


def _call(name: str, *args: Datum, options: Any = None) -> Any:
    return _compute.call_function(name, [_scalar(a) for a in args], options)


def _plain(name: str) -> Callable[..., Any]:
    """Arrow's function ``name`` called with data only (its default options, if any)."""

    def call(*args: Datum) -> Any:
        return _compute.call_function(name, [_scalar(a) for a in args])

    call.__name__ = call.__qualname__ = name
    return call


# Element-wise (nulls in, nulls out; ``*_kleene``: Kleene logic; ``if_else(cond, a, b)``,
# ``case_when(struct of conditions, *values)``, ``coalesce(*values)``).
equal = _plain("equal")
not_equal = _plain("not_equal")
greater = _plain("greater")
greater_equal = _plain("greater_equal")
less = _plain("less")
and_ = _plain("and")
and_kleene = _plain("and_kleene")
or_ = _plain("or")
or_kleene = _plain("or_kleene")
invert = _plain("invert")
add = _plain("add")
subtract = _plain("subtract")
multiply = _plain("multiply")
divide = _plain("divide")
min_element_wise = _plain("min_element_wise")
max_element_wise = _plain("max_element_wise")
if_else = _plain("if_else")
case_when = _plain("case_when")
coalesce = _plain("coalesce")
is_valid = _plain("is_valid")
is_null = _plain("is_null")
# Rows: ``drop_null`` (of an array or a table), the positions of true values, distinct values
# and their counts (a struct array of ``values`` and ``counts``).
drop_null = _plain("drop_null")
indices_nonzero = _plain("indices_nonzero")
unique = _plain("unique")
value_counts = _plain("value_counts")
# Aggregates to a scalar (nulls skipped; ``sum``, ``min``, ``max`` of no value: null).
sum = _plain("sum")
min = _plain("min")
max = _plain("max")
min_max = _plain("min_max")
any = _plain("any")
all = _plain("all")
# Lists and strings (``list_element(lists, i)``, ``binary_join(lists, separator)``,
# ``binary_join_element_wise(*strings, separator)``).
list_flatten = _plain("list_flatten")
list_parent_indices = _plain("list_parent_indices")
list_value_length = _plain("list_value_length")
list_element = _plain("list_element")
utf8_length = _plain("utf8_length")
binary_join = _plain("binary_join")
binary_join_element_wise = _plain("binary_join_element_wise")
# ``replace_with_mask(values, mask, replacements)``: the values where ``mask`` is true
# replaced, in order; ``search_sorted(sorted, needles)``: where each needle would go (left).
replace_with_mask = _plain("replace_with_mask")
search_sorted = _plain("search_sorted")


def fill_null(values: Datum, fill_value: Datum) -> Any:
    """``values`` with each null replaced by ``fill_value`` (a value turned into a scalar of
    ``values``' type), as ``pyarrow.compute.fill_null``."""
    if not isinstance(fill_value, (pa.Array, pa.ChunkedArray, pa.Scalar)):
        fill_value = pa.scalar(fill_value, type=values.type)
    elif values.type != fill_value.type:
        fill_value = pa.scalar(fill_value.as_py(), type=values.type)
    return _call("coalesce", values, fill_value)


def cast(x: Datum, target_type: pa.DataType, safe: bool = True) -> Any:
    make = _compute.CastOptions.safe if safe else _compute.CastOptions.unsafe
    return _call("cast", x, options=make(target_type))


def cast_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table.cast(schema)``: each column cast to the type of its field in ``schema`` (the
    same names, in the same order)."""
    columns = [cast(c, field.type) for c, field in zip(table.columns, schema, strict=True)]
    return pa.Table.from_arrays(columns, schema=schema)


def struct_array(
    kind: pa.DataType, length: int, children: list[pa.Array], valid: pa.Array | None
) -> Any:
    """``pa.StructArray.from_arrays(children, fields=list(kind), mask=invert(valid))`` without
    the import of pyarrow.compute that inverting its ``mask`` costs: ``valid`` says which
    structs are not null (``None``: all), a whole boolean array without nulls (as
    ``is_valid`` gives it)."""
    return pa.Array.from_buffers(kind, length, [_bits(valid)], children=children)


def list_array(
    kind: pa.DataType, offsets: pa.Array, values: pa.Array, valid: pa.Array | None
) -> Any:
    """``pa.ListArray.from_arrays(offsets, values, type=kind, mask=invert(valid))``, as
    ``struct_array`` (``offsets``: a whole int32 array)."""
    buffers = [_bits(valid), offsets.buffers()[1]]
    return pa.Array.from_buffers(kind, len(offsets) - 1, buffers, children=[values])


def _bits(valid: pa.Array | None) -> pa.Buffer | None:
    if valid is None:
        return None
    if valid.offset or valid.null_count:  # its buffer is not the bitmap
        raise ValueError("a validity is a whole boolean array without nulls")
    return valid.buffers()[1]


def take(data: Datum, indices: Datum) -> Any:
    """The rows of ``data`` (an array, chunked array, record batch or table) at ``indices``."""
    return _call("take", data, indices)


def filter(data: Datum, mask: Datum) -> Any:
    """The rows of ``data`` where ``mask`` is true (null: dropped)."""
    return _call("filter", data, mask)


def sort_indices(data: Datum, sort_keys: list[tuple[str, str]] | None = None) -> Any:
    """Indices sorting ``data`` (ascending), or a table by ``sort_keys`` ``(column, order)``."""
    options = None if sort_keys is None else _compute.SortOptions(sort_keys)
    return _call("sort_indices", data, options=options)


def is_in(x: Datum, value_set: Datum) -> Any:
    return _call("is_in", x, options=_compute.SetLookupOptions(value_set))


def index_in(x: Datum, value_set: Datum, skip_nulls: bool = False) -> Any:
    return _call("index_in", x, options=_compute.SetLookupOptions(value_set, skip_nulls=skip_nulls))


def scatter(values: Datum, indices: Datum, max_index: int) -> Any:
    """Per ``r`` in ``0..max_index``: the value whose index is ``r`` (pyarrow 23 and later)."""
    options = _compute.ScatterOptions(max_index=max_index)
    return _call("scatter", values, indices, options=options)


def cumulative_sum(x: Datum, start: Any = None) -> Any:
    options = _compute.CumulativeOptions(start=None if start is None else _scalar(start))
    return _call("cumulative_sum", x, options=options)


def struct_field(x: Datum, indices: str | int | list[str] | list[int]) -> Any:
    return _call("struct_field", x, options=_compute.StructFieldOptions(indices))


def make_struct(*args: Datum, field_names: list[str]) -> Any:
    return _call("make_struct", *args, options=_compute.MakeStructOptions(field_names))
