"""One Parquet file from row groups encoded in parallel: each row group is written as a
whole Parquet file of its own (``make_writer``, in a thread: pyarrow encodes and compresses
without the GIL) into memory, and the parts are stitched together in order: their row
groups' bytes appended to the output, their footers' row groups kept (encoded at once) with
every file offset shifted, one footer at the end. The file is byte for byte the one a single
writer makes of the same row groups and metadata (a test holds it).

The footer is Thrift's compact protocol; ``decode``/``encode`` keep every field, known or
not, in its order, so an unchanged footer encodes to its own bytes. A footer with a field
that may hold an offset this module does not shift (page indexes, bloom filters,
encryption, fields it does not know) is refused (``Unstitchable``): the first part's
refusal makes the writer write every row group with one plain writer instead.
"""

from __future__ import annotations

import queue
import struct
import threading
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from typing import IO, Any

import pyarrow as pa

from ..errors import JsonlBatchError

MAGIC = b"PAR1"
IN_FLIGHT = 2
"""Row groups encoded at once (each holds its table until it is encoded, then its bytes
until it is appended): the join's 2 cores, with the block the join is taking meanwhile."""
RELEASE_EVERY = 8
"""Each thread gives back the allocator's unused pages after every this many parts: they
would otherwise stay with the process (2M join, never: peaks 391-455 MB). A release purges
every thread's freed pages, the next block's among them, which are then faulted in again:
the program's large joins run in small pages (``lines.parallel.small_pages``), and after
every 2nd part the 2M join's writing took 330-350k page faults and 1.0-1.3 sys-s, after
every 8th 135k and 0.5 (peaks 410-433 MB instead of 359-384; in huge pages, as a library
caller's join: 32-38k faults instead of 98-102k, 0.5 sys-s instead of 1.2-1.5)."""

# -- Thrift compact protocol: a struct is a list of [field id, type, value]

_BOOL_TRUE, _BOOL_FALSE, _I16, _I32, _I64, _DOUBLE, _BINARY = 1, 2, 4, 5, 6, 7, 8
_LIST, _STRUCT = 9, 12  # not 3 (byte), 10 (set), 11 (map), a list's booleans: no footer has them
_INTS = (_I16, _I32, _I64)

Field = list[Any]


class Encoded:
    """A list's items already encoded (``count`` of them, ``data``): ``encode`` writes the
    list's header and the bytes as they are."""

    def __init__(self) -> None:
        self.count, self.data = 0, bytearray()

    def add(self, items: list[Any], elem: int) -> None:
        for item in items:
            _put(self.data, elem, item)
        self.count += len(items)


class Unstitchable(JsonlBatchError):
    """A part's footer holds what stitching would have to change and cannot (caught: the
    first part's makes one plain writer write; a later one cannot happen, the parts being
    alike)."""

    code = "unstitchable"


def decode(data: bytes, pos: int = 0) -> tuple[list[Field], int]:
    """The struct at ``data[pos:]`` and the position past it."""
    fields: list[Field] = []
    last = 0
    while True:
        head = data[pos]
        pos += 1
        if head == 0:
            return fields, pos
        kind, delta = head & 0x0F, head >> 4
        if delta:
            last += delta
        else:
            raw, pos = _varint(data, pos)
            last = _unzigzag(raw)
        if kind in (_BOOL_TRUE, _BOOL_FALSE):  # the value is the type
            fields.append([last, kind, None])
        else:
            value, pos = _value(data, pos, kind)
            fields.append([last, kind, value])


def _value(data: bytes, pos: int, kind: int) -> tuple[Any, int]:
    if kind in _INTS:
        raw, pos = _varint(data, pos)
        return _unzigzag(raw), pos
    if kind == _BINARY:
        size, pos = _varint(data, pos)
        if pos + size > len(data):
            raise Unstitchable("a binary value runs past the footer")
        return data[pos : pos + size], pos + size
    if kind == _STRUCT:
        return decode(data, pos)
    if kind == _LIST:
        head = data[pos]
        pos += 1
        size, elem = head >> 4, head & 0x0F
        if size == 15:
            size, pos = _varint(data, pos)
        items = []
        for _ in range(size):
            item, pos = _value(data, pos, elem)
            items.append(item)
        return (elem, items), pos
    if kind == _DOUBLE:
        return data[pos : pos + 8], pos + 8
    raise Unstitchable(f"a Thrift type {kind} no Parquet footer holds")


def encode(fields: list[Field]) -> bytes:
    """The compact encoding of a struct ``decode`` returned (changed or not)."""
    out = bytearray()
    _struct(out, fields)
    return bytes(out)


def _struct(out: bytearray, fields: list[Field]) -> None:
    last = 0
    for fid, kind, value in fields:
        if 0 < fid - last <= 15:
            out.append((fid - last) << 4 | kind)
        else:
            out.append(kind)
            _put_varint(out, _zigzag(fid))
        last = fid
        if kind not in (_BOOL_TRUE, _BOOL_FALSE):
            _put(out, kind, value)
    out.append(0)


def _put(out: bytearray, kind: int, value: Any) -> None:
    if kind in _INTS:
        _put_varint(out, _zigzag(value))
    elif kind == _BINARY:
        _put_varint(out, len(value))
        out += value
    elif kind == _STRUCT:
        _struct(out, value)
    elif kind == _LIST:
        elem, items = value
        count = items.count if isinstance(items, Encoded) else len(items)
        if count < 15:
            out.append(count << 4 | elem)
        else:
            out.append(0xF0 | elem)
            _put_varint(out, count)
        if isinstance(items, Encoded):
            out += items.data
            return
        for item in items:
            _put(out, elem, item)
    else:  # _DOUBLE
        out += value


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _put_varint(out: bytearray, n: int) -> None:
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _unzigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


# -- Parquet's footer (parquet.thrift's field ids)

_FILE_NUM_ROWS, _FILE_ROW_GROUPS, _FILE_KEY_VALUES = 3, 4, 5
_FILE_KNOWN = {1, 2, 3, 4, 5, 6, 7}  # not 8-9: encryption
_GROUP_COLUMNS, _GROUP_FILE_OFFSET, _GROUP_ORDINAL = 1, 5, 7
_GROUP_KNOWN = {1, 2, 3, 4, 5, 6, 7}
_CHUNK_FILE_OFFSET, _CHUNK_META = 2, 3
_CHUNK_KNOWN = {2, 3}  # not 1 (another file), 4-7 (page indexes), 8-9 (encryption)
_META_OFFSETS = {9, 10, 11}  # data, index, dictionary page
_META_KNOWN = set(range(1, 14)) | {16, 17}  # not 14-15: bloom filter


def split_part(data: bytes | memoryview) -> tuple[memoryview, list[Field]]:
    """A one-file Parquet part's row-group bytes (after its leading magic) and its footer."""
    view = memoryview(data)
    if len(view) < 12 or view[:4] != MAGIC or view[-4:] != MAGIC:
        raise Unstitchable("not a Parquet file")
    (size,) = struct.unpack("<I", view[-8:-4])
    start = len(view) - 8 - size
    footer = bytes(view[start:-8])
    try:
        meta, end = decode(footer)
    except IndexError:
        raise Unstitchable("the footer ends within a value") from None
    if end != size or encode(meta) != footer:
        raise Unstitchable("the footer does not encode to its own bytes")
    return view[4:start], meta


def shifted_groups(meta: list[Field], shift: int, first: int) -> list[list[Field]]:
    """The row groups of a part's footer, every offset moved by ``shift`` bytes and numbered
    from ``first``. An offset 0 is none (no offset is before the magic bytes): an empty
    column chunk's page offset. A chunk's deprecated ``file_offset`` must be 0 (pyarrow 26
    writes 0): pyarrow 17 and older point it at a copy of the chunk's metadata after its
    pages, which would keep the old offsets."""
    _only(meta, _FILE_KNOWN, "file")
    groups = _get(meta, _FILE_ROW_GROUPS)[1]
    for ordinal, group in enumerate(groups, first):
        _only(group, _GROUP_KNOWN, "row group")
        for f in group:
            if f[0] == _GROUP_FILE_OFFSET and f[2]:
                f[2] += shift
            elif f[0] == _GROUP_ORDINAL:
                f[2] = ordinal
        for chunk in _get(group, _GROUP_COLUMNS)[1]:
            _only(chunk, _CHUNK_KNOWN, "column chunk")
            for f in chunk:
                if f[0] == _CHUNK_FILE_OFFSET and f[2]:
                    raise Unstitchable("a column chunk's metadata is copied after its pages")
                if f[0] == _CHUNK_META:
                    _only(f[2], _META_KNOWN, "column metadata")
                    for g in f[2]:
                        if g[0] in _META_OFFSETS and g[2]:
                            g[2] += shift
    return groups


def _get(fields: list[Field], fid: int) -> Any:
    for f in fields:
        if f[0] == fid:
            return f[2]
    raise Unstitchable(f"no field {fid}")


def _only(fields: list[Field], known: set[int], what: str) -> None:
    for f in fields:
        if f[0] not in known:
            raise Unstitchable(f"a {what} field {f[0]} stitching does not handle")


class StitchedWriter:
    """A Parquet writer (``write_table``, ``add_key_value_metadata``, ``close``) to a binary
    file ``handle``: each table is one row group, encoded by its own ``make_writer(stream,
    schema)`` in ``IN_FLIGHT`` threads and appended in order. An encoding's error is raised
    by the call that appends it; after an error, ``abort()`` ends the threads."""

    def __init__(
        self, handle: IO[bytes], schema: pa.Schema, make_writer: Callable[[Any, pa.Schema], Any]
    ) -> None:
        self.handle, self.schema, self.make_writer = handle, schema, make_writer
        self._pending: deque[_Part] = deque()
        self._jobs: queue.SimpleQueue[_Part | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._plain: Any = None  # make_writer's, once the parts cannot be stitched
        self._groups = Encoded()  # the row groups' footer entries, shifted
        self._first: list[Field] | None = None  # the first part's footer, its row groups left out
        self._rows = 0
        self._offset = len(MAGIC)
        self._added: dict[bytes, bytes] = {}

    def write_table(self, table: pa.Table) -> None:
        # the first part is appended before another is encoded: if it cannot be stitched,
        # its table is written plainly (later parts drop their tables once encoded)
        while len(self._pending) >= (IN_FLIGHT if self._first is not None else 1):
            self._append(self._pending.popleft())
        if self._plain is not None:
            _write(self._plain, table)
            return
        part = _Part(table, keep=self._first is None)
        self._pending.append(part)
        self._jobs.put(part)
        if len(self._threads) < IN_FLIGHT:
            self._threads.append(threading.Thread(target=self._encode, daemon=True))
            self._threads[-1].start()

    def add_key_value_metadata(self, pairs: dict[bytes, bytes]) -> None:
        """Stored in the footer before the parts' own (as pyarrow's writer does)."""
        self._added.update(pairs)

    def close(self) -> None:
        try:
            while self._pending:
                self._append(self._pending.popleft())
        finally:
            self._stop()
        if self._first is None:  # no row group, or the parts cannot be stitched
            self._plain = self._plain or self.make_writer(self.handle, self.schema)
            if self._added:
                self._plain.add_key_value_metadata(self._added)
            self._plain.close()
            return
        footer = encode(self._footer(self._first))
        self.handle.write(footer + struct.pack("<I", len(footer)) + MAGIC)

    def abort(self) -> None:
        """End the threads (once the row groups given them are done) and drop the parts."""
        self._stop()
        self._pending.clear()
        if self._plain is not None:
            with suppress(Exception):  # the error is news, not the footer it cannot write
                self._plain.close()

    def _encode(self) -> None:
        for n, part in enumerate(iter(self._jobs.get, None), 1):
            part.encode(self.schema, self.make_writer)
            if n % RELEASE_EVERY == 0:
                pa.default_memory_pool().release_unused()

    def _stop(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def _append(self, part: _Part) -> None:
        try:
            body, meta = part.result()
            groups = shifted_groups(meta, self._offset - len(MAGIC), self._groups.count)
            rest = [f for f in meta if f[0] not in (_FILE_NUM_ROWS, _FILE_ROW_GROUPS)]
            if self._first is not None and rest != self._first:
                raise Unstitchable("the parts' footers differ")
        except Unstitchable:
            if self._first is not None:
                raise
            assert part.table is not None  # the first part keeps it
            self._plain = self.make_writer(self.handle, self.schema)  # nothing written yet
            _write(self._plain, part.table)
            return
        if self._first is None:
            self.handle.write(MAGIC)
            self._first = rest
        self.handle.write(body)
        self._offset += len(body)
        self._groups.add(groups, _STRUCT)
        self._rows += _get(meta, _FILE_NUM_ROWS)

    def _footer(self, first: list[Field]) -> list[Field]:
        fields = {f[0]: f for f in first}
        fields[_FILE_NUM_ROWS] = [_FILE_NUM_ROWS, _I64, self._rows]
        fields[_FILE_ROW_GROUPS] = [_FILE_ROW_GROUPS, _LIST, (_STRUCT, self._groups)]
        if self._added:
            own = fields.get(_FILE_KEY_VALUES, [0, 0, (_STRUCT, [])])[2][1]
            pairs = [[[1, _BINARY, k], [2, _BINARY, v]] for k, v in self._added.items()]
            pairs += [p for p in own if _get(p, 1) not in self._added]
            fields[_FILE_KEY_VALUES] = [_FILE_KEY_VALUES, _LIST, (_STRUCT, pairs)]
        return [fields[fid] for fid in sorted(fields)]


def _write(writer: Any, table: pa.Table) -> None:
    writer.write_table(table, row_group_size=max(1, table.num_rows))


class _Part:
    """One row group to write as a Parquet file in memory (``encode``, in a thread)."""

    def __init__(self, table: pa.Table, keep: bool) -> None:
        self.table: pa.Table | None = table
        self.keep = keep
        self.done = threading.Event()
        self._out: tuple[memoryview, list[Field]] | BaseException | None = None

    def encode(self, schema: pa.Schema, make_writer: Callable[[Any, pa.Schema], Any]) -> None:
        try:
            stream = pa.BufferOutputStream()
            writer = make_writer(stream, schema)
            assert self.table is not None
            _write(writer, self.table)
            writer.close()
            self._out = split_part(stream.getvalue())
            if not self.keep:
                self.table = None  # its memory back as soon as it is encoded
        except BaseException as exc:  # raised by ``result``, in the appending thread
            self._out = exc
        finally:
            self.done.set()

    def result(self) -> tuple[memoryview, list[Field]]:
        self.done.wait()
        out = self._out
        if isinstance(out, BaseException):
            raise out
        assert out is not None
        return out
