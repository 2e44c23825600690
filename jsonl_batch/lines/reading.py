"""The one JSONL line reader: bytes in, ``(line number, byte offset, raw line)`` out.

Every command reads JSONL through this module, so line endings, blank lines, a byte-order
mark and invalid UTF-8 are treated the same way everywhere:

- ``\\n`` and ``\\r\\n`` endings are stripped from the raw line; a missing final newline is fine;
- a blank line is a line (it fails to parse, like a BOM or invalid UTF-8 does);
- byte offsets are exact, so a line's bytes, ending included, are ``data[offset:next_offset]``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import sys
import tempfile
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, Union

import orjson

from ..errors import JsonlBatchError

BUFFER_SIZE = 1 << 20
"""Read buffer: 1 MiB. Python's default 4 KiB costs ~20% on large files."""

BOM = b"\xef\xbb\xbf"
MAX_DEPTH = 1024  # orjson's nesting limit

Source = Union[str, "os.PathLike[str]", IO[bytes]]
"""A path, ``"-"`` for standard input, or a binary file object."""


class ReadError(JsonlBatchError):
    """A file cannot be opened or read: missing, a directory, permission denied, I/O error."""

    code = "read_error"


def source_name(source: Source) -> str:
    """The name to show for a source in reports and messages."""
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        return "<stdin>" if name == "-" else name
    return str(getattr(source, "name", "<stream>"))


@contextmanager
def open_source(source: Source) -> Iterator[IO[bytes]]:
    """Open a source for buffered binary reading; turn OS errors into ``ReadError``.

    A gzip or zstd file (known by its first bytes, whatever its name) is read decompressed;
    such a stream has no size and cannot seek, so per-line work on it stays in-process.
    """
    if not isinstance(source, (str, os.PathLike)):
        yield source
        return
    if os.fspath(source) == "-":
        yield _decompressing(sys.stdin.buffer, "<stdin>")
        return
    try:
        handle = open(source, "rb", buffering=BUFFER_SIZE)  # noqa: SIM115
    except OSError as exc:
        raise ReadError(describe_os_error(source, exc)) from None
    with handle:
        yield _decompressing(handle, os.fspath(source))


GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def compression(handle: IO[bytes]) -> str | None:
    """``"gzip"`` or ``"zstd"`` when an open buffered file starts like one, else ``None``."""
    try:
        head = handle.peek(4)[:4]  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return None
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    return "zstd" if head.startswith(ZSTD_MAGIC) else None


def is_compressed(path: str | os.PathLike[str]) -> bool:
    """True for a gzip or zstd file (its first bytes say so)."""
    try:
        with open(path, "rb") as handle:
            return compression(handle) is not None
    except OSError:
        return False


def _decompressing(handle: IO[bytes], name: str) -> IO[bytes]:
    """``handle`` itself, or a buffered stream of its decompressed bytes."""
    kind = compression(handle)
    if kind is None:
        return handle
    if kind == "gzip":
        import gzip

        reader: Any = gzip.GzipFile(fileobj=handle, mode="rb")
    else:
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(handle, read_across_frames=True)
    stream = io.BufferedReader(_Decompressed(reader, name, kind), BUFFER_SIZE)
    return stream


class _Decompressed(io.RawIOBase):
    """A decompressing reader as a raw stream without a file number (so nothing takes it
    for the file it reads) whose corrupt data is an ``OSError`` naming the file."""

    def __init__(self, reader: Any, name: str, kind: str) -> None:
        self.reader, self.name, self.kind = reader, name, kind

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self.reader.read(len(buffer))
        except Exception as exc:  # gzip: OSError, EOFError; zstandard: ZstdError
            raise OSError(f"not valid {self.kind} data ({exc})") from None
        buffer[: len(data)] = data
        return len(data)


@contextmanager
def as_file(source: Source) -> Iterator[str]:
    """The path of a regular file holding ``source``'s bytes, for readers that seek: a plain
    file's own path, else (standard input, a stream, a compressed file: decompressed) a
    temporary copy removed afterwards."""
    if isinstance(source, (str, os.PathLike)) and os.fspath(source) != "-":
        path = os.fspath(source)
        try:
            regular = stat.S_ISREG(os.stat(path).st_mode)
        except OSError as exc:
            raise ReadError(describe_os_error(source, exc)) from None
        if regular and not is_compressed(path):
            yield path
            return
    with tempfile.TemporaryDirectory(prefix="jsonl-batch-") as folder:
        copy = os.path.join(folder, "source.jsonl")
        with open_source(source) as handle, open(copy, "wb") as out:
            try:
                shutil.copyfileobj(handle, out, BUFFER_SIZE)
            except OSError as exc:
                raise ReadError(describe_os_error(source, exc)) from None
        yield copy


def describe_os_error(path: Source, exc: OSError) -> str:
    """A one-line message for an OS error on ``path``, without a traceback."""
    name = source_name(path)
    if isinstance(exc, FileNotFoundError):
        return f"{name}: no such file"
    if isinstance(exc, IsADirectoryError):
        return f"{name}: is a directory, not a file"
    if isinstance(exc, PermissionError):
        return f"{name}: permission denied"
    return f"{name}: {exc.strerror or exc}"


class LineReader:
    """Iterate ``(line_no, offset, raw)`` over the lines that start in ``[start, end)``.

    ``raw`` excludes the ``\\n`` or ``\\r\\n`` ending. ``start`` must be the first byte of a
    line (0, or a boundary from ``chunk_bounds``); ``first_line`` is its line number. After
    iteration, ``offset`` is the byte offset just past the last line read (the size read).
    """

    def __init__(
        self, handle: IO[bytes], *, start: int = 0, end: int | None = None, first_line: int = 1
    ) -> None:
        self.handle = handle
        self.start = start
        self.end = end
        self.first_line = first_line
        self.offset = start

    def __iter__(self) -> Iterator[tuple[int, int, bytes]]:
        handle, start = self.handle, self.start
        end = self.end if self.end is not None else float("inf")
        if start:
            handle.seek(start)
        offset = start
        line_no = self.first_line
        try:
            for line in handle:
                if offset >= end:
                    break
                size = len(line)
                if line.endswith(b"\n"):
                    line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
                yield line_no, offset, line
                offset += size
                line_no += 1
        except OSError as exc:
            raise ReadError(describe_os_error(source_name(handle), exc)) from None
        finally:
            self.offset = offset

    def raw(self) -> Iterator[bytes]:
        """The same lines as raw bytes with their endings kept, and no numbers or offsets:
        for hot loops that parse and nothing else (orjson reads the ending as whitespace, and
        ``explain_invalid`` says the same of a line with or without it)."""
        handle, start = self.handle, self.start
        end = self.end if self.end is not None else float("inf")
        if start:
            handle.seek(start)
        offset = start
        try:
            for line in handle:
                if offset >= end:
                    break
                offset += len(line)
                yield line
        except OSError as exc:
            raise ReadError(describe_os_error(source_name(handle), exc)) from None
        finally:
            self.offset = offset


def strip_ending(raw: bytes) -> bytes:
    """A raw line without its ``\\n`` or ``\\r\\n`` ending, as ``LineReader`` yields it."""
    if raw.endswith(b"\n"):
        return raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
    return raw


def iter_lines(
    handle: IO[bytes], *, start: int = 0, end: int | None = None, first_line: int = 1
) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(line_no, offset, raw)`` for the lines of an open binary file; see ``LineReader``."""
    return iter(LineReader(handle, start=start, end=end, first_line=first_line))


def read_lines(source: Source) -> Iterator[tuple[int, int, bytes]]:
    """Open ``source`` and yield its lines; see ``iter_lines``."""
    with open_source(source) as handle:
        yield from iter_lines(handle)


def regular_size(handle: IO[bytes]) -> int | None:
    """The size of an open regular file, or ``None`` for a pipe, a terminal or a stream."""
    try:
        info = os.fstat(handle.fileno())
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def chunk_bounds(path: str | os.PathLike[str], size: int, chunks: int) -> list[int]:
    """Split a file of ``size`` bytes into about ``chunks`` ranges that start on line starts.

    Returns the sorted start offsets followed by ``size``; consecutive pairs are ranges. Each
    cut reads only from its target to the next newline (small ``pread``s, no buffer filled).
    """
    bounds = [0]
    with open(path, "rb", buffering=0) as handle:
        fd = handle.fileno()
        for i in range(1, chunks):
            target = size * i // chunks
            if target <= bounds[-1]:
                continue
            cut = line_end(fd, target - 1, size)  # the end of the line covering target - 1
            if bounds[-1] < cut < size:
                bounds.append(cut)
    bounds.append(size)
    return bounds


def line_end(fd: int, at: int, size: int) -> int:
    """The offset past the first newline at or after ``at`` in file ``fd`` (``size`` when
    there is none; more if the file grew past ``size``): small ``pread``s, no seek."""
    while at < size:
        block = os.pread(fd, _PEEK, at)
        found = block.find(b"\n")
        if found != -1:
            return at + found + 1
        if not block:
            break
        at += len(block)
    return size


_PEEK = 1 << 16


def newlines(data: Any, start: int = 0, end: int | None = None) -> array[int]:
    """Where each ``\\n`` of ``data[start:end]`` is (offsets in ``data``, which may be an
    ``mmap``): ``find`` (``memchr``) from one to the next, no line copied."""
    found = array("q")
    find, add, newline = data.find, found.append, b"\n"
    stop = len(data) if end is None else end
    at = find(newline, start, stop)
    while at >= 0:
        add(at)
        at = find(newline, at + 1, stop)
    return found


def read_range(path: str | os.PathLike[str], start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` of a file, in one ``pread`` (no buffer filled, no seek)."""
    with open(path, "rb", buffering=0) as handle:
        return os.pread(handle.fileno(), end - start, start)


def loads_wide(raw: bytes) -> Any:
    """``orjson.loads``, but a line whose fault for orjson is a number out of its range (an
    integer over 64 bits too big for a double, ``1e999``) is read by Python's ``json`` (big
    integers, infinite floats), as pyarrow's reader takes it: the join reads such a line the
    same way whichever reader gets it. Raises ``orjson.JSONDecodeError`` for any other fault,
    a lone surrogate escape (``"\\ud800"``, which ``json`` takes and orjson and pyarrow refuse)
    included."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "number" not in exc.msg:
            raise
        try:
            value = json.loads(raw, parse_constant=_no_constant)
            json.dumps(value, ensure_ascii=False).encode()  # refuses a lone surrogate
        except (ValueError, RecursionError):
            raise exc from None
        return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_line(raw: bytes) -> tuple[Any, str | None]:
    """Parse one raw line: ``(value, None)``, or ``(None, reason)`` when it is not JSON."""
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError as exc:
        return None, explain_invalid(raw, exc)


def explain_invalid(raw: bytes, exc: orjson.JSONDecodeError, kind: str = "request") -> str:
    """Say why ``raw`` is not a JSON line, in words a user can act on (``kind``: what each
    line of its file must be, ``request`` or ``result``)."""
    if not raw.strip():
        return f"This line is blank; remove blank lines (every line must be one JSON {kind})."
    if raw.startswith(BOM):
        return (
            "This line starts with a UTF-8 byte-order mark (BOM); "
            "save the file as UTF-8 without BOM."
        )
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        byte = raw[bad.start]
        return (
            f"This line is not valid UTF-8 (byte 0x{byte:02x} at column {bad.start + 1}); "
            "re-encode the file as UTF-8."
        )
    if "depth" in exc.msg:
        return f"This line nests JSON deeper than {MAX_DEPTH} levels, which cannot be parsed."
    return f"This line is not parseable as valid JSON: {exc.msg} at column {exc.pos + 1}."
