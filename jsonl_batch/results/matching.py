"""Which request each result line answers: the requests' custom_ids sorted once (the sort
also finds one given twice), then each result file's custom_ids placed as soon as that file
is indexed (a long one ``index.PLACE_ROWS`` lines at a time), while the workers still index
the next ones.

A result file mostly answers one stretch of the requests (its batch's input file, in any
order). A few of its custom_ids, found by binary search in the sorted ones, say which
stretch; the file is then looked up in a hash table of that stretch alone, small enough to
stay in the processor's cache (one table of every request, built at the end, did not: at
2,000,000 requests it took 0.8 s while both cores but one waited). What the stretch does not
hold (orphans, answers to other stretches) is found by binary search, as is a whole file
that answers requests from all over the inputs.
"""

from __future__ import annotations

import pyarrow as pa

from .. import compute as pc

SEARCH = "search_sorted" in pc.FUNCTIONS
"""pyarrow 26 and later (not in 21 to 25): without it, ``Requests.positions`` gives ``None``
and the caller looks every result up in one hash table of the requests (``pc.index_in``)."""
SAMPLE = 64
"""custom_ids of a result file searched for to find its stretch of the requests."""
SPAN = 8
"""A stretch longer than this many times the file's lines is not worth a table of its own:
the file is searched for line by line."""
STRING_BYTES = 2**31 - 1
"""The most bytes of strings one ``string`` array holds (32-bit offsets)."""


class Requests:
    """The requests' custom_ids (``ids``, in input order, unique or not: ``twice``), sorted."""

    def __init__(self, ids: pa.ChunkedArray) -> None:
        self.ids, self.size = ids, len(ids)
        whole = one_array(ids)  # taking from one chunk is several times faster
        self.order = pc.sort_indices(whole)  # a sort holds less memory than a hash table
        self.sorted = pc.take(whole, self.order)

    def twice(self) -> bool:
        """Whether a custom_id appears more than once."""
        ordered = self.sorted
        return len(ordered) > 1 and pc.any(pc.equal(ordered[1:], ordered[:-1])).as_py()

    def positions(self, custom_ids: pa.ChunkedArray) -> pa.Array | None:
        """Per custom_id, the row of the request that has it (int32, as ``pc.index_in``
        gives it), null for none; ``None`` when this pyarrow cannot search (``SEARCH``).
        The requests' custom_ids must be unique."""
        if not SEARCH:
            return None
        wanted = custom_ids.combine_chunks()
        n = len(wanted)
        if not n or not self.size:
            return pa.nulls(n, pa.int32())
        step = max(1, n // SAMPLE)
        seen = pc.drop_null(self._search(pc.take(wanted, pa.array(range(0, n, step), pa.int64()))))
        if not len(seen):
            return self._search(wanted)
        span = pc.min_max(seen).as_py()
        low, high = span["min"], span["max"]
        slack = 4 * (high - low) // len(seen) + 16  # a stretch's ends the sample missed
        low, high = max(0, low - slack), min(self.size, high + slack + 1)
        if high - low > SPAN * n:
            return self._search(wanted)
        stretch = self.ids.slice(low, high - low)
        found = pc.index_in(wanted, value_set=stretch, skip_nulls=True)  # as ``_search``
        found = pc.add(found, pa.scalar(low, pa.int32()))
        elsewhere = pc.is_null(found)
        if not found.null_count:
            return found
        return pc.replace_with_mask(found, elsewhere, self._search(pc.filter(wanted, elsewhere)))

    def _search(self, wanted: pa.Array) -> pa.Array:
        """``positions`` by binary search in the sorted custom_ids."""
        last = pa.scalar(self.size - 1, pa.uint64())  # past the end: compared with the last
        wanted = pc.cast(wanted, self.sorted.type)  # ``large_string`` past 2 GiB of ids
        at = pc.min_element_wise(pc.search_sorted(self.sorted, wanted), last)
        hit = pc.equal(pc.take(self.sorted, at), wanted)  # null for a null custom_id
        rows = pc.cast(pc.take(self.order, at), pa.int32())
        return pc.if_else(hit, rows, pa.scalar(None, pa.int32()))


def one_array(ids: pa.ChunkedArray) -> pa.Array:
    """``ids`` (strings) joined into one array: ``string`` while their bytes fit its 32-bit
    offsets, else ``large_string`` (joining them as ``string`` would overflow)."""
    if ids.nbytes < STRING_BYTES:  # at least the strings' bytes
        return ids.combine_chunks()
    return pc.cast(ids, pa.large_string()).combine_chunks()
