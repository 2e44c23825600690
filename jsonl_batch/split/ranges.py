"""Copying byte ranges of a file into outputs, hashing as it goes (``split``'s writer).

``ByteRanges`` copies a part made of long runs (a part of ``split`` without ``by``: one run)
inside the kernel (``os.copy_file_range``: the bytes never enter this process) and hashes
it in a thread, from the page cache, while the next part is copied; a part of many short
runs (``by``, rejected lines) goes through two fixed buffers, hashed as it is written.
Memory stays flat. The whole input is hashed too, in a thread of its own, for the manifest.
"""

from __future__ import annotations

import errno
import os
from concurrent.futures import Future, ThreadPoolExecutor
from hashlib import sha256
from pathlib import Path
from typing import IO, NoReturn

from ..lines.reading import ReadError, describe_os_error

COPY_BYTES = 4 << 20
"""Copy and hash in blocks of 4 MiB; a part whose runs average under ``SMALL_BYTES`` (single
lines, with ``by``) is copied through buffers and hashed in the main thread, where handing
each run to the kernel or to a thread would cost more."""
SMALL_BYTES = 256 << 10
Runs = list[list[int]]
"""Byte runs ``[start, end, first_line, last_line]``."""
_UNSUPPORTED = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF}
"""What ``copy_file_range`` answers where it cannot copy (the buffers then do)."""


class ByteRanges:
    """A file of ``size`` bytes to copy ranges of. ``sha256`` (a future) is the whole file's
    digest; a copy that finds the file changed is a ``ReadError``."""

    def __init__(self, path: Path, size: int | None = None) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDONLY)
            self.size = os.fstat(self.fd).st_size if size is None else size
        except OSError as exc:
            raise ReadError(describe_os_error(path, exc)) from None
        self.buffers = [memoryview(bytearray(COPY_BYTES)) for _ in range(2)]
        self.stopped = False
        self.in_kernel = hasattr(os, "copy_file_range")
        self.pool = ThreadPoolExecutor(2)
        self.sha256 = self.pool.submit(self._hash, [[0, self.size, 0, 0]], whole=True)
        self.hashed: dict[tuple[int, ...], Future[str]] = {}
        """Runs' bounds -> their digest, started by ``hash``."""

    def _hash(self, runs: Runs, whole: bool = False) -> str:
        """The sha256 of the runs, read back from the file (its page cache, just copied)."""
        digest = sha256()
        buffer = memoryview(bytearray(COPY_BYTES))
        for start, end, _first, _last in runs:
            while start < end and not self.stopped:
                n = os.preadv(self.fd, [buffer[: min(end - start, COPY_BYTES)]], start)
                if not n:
                    self._changed()
                digest.update(buffer[:n])
                start += n
        if whole and os.fstat(self.fd).st_size != self.size:
            self._changed()
        return digest.hexdigest()

    def hash(self, runs: Runs) -> None:
        """Start hashing runs that ``copy`` will copy in the kernel, in a thread, before they
        are copied (split hashes each part as soon as it is planned, while the rest of the
        file is validated); ``copy`` gives that digest."""
        if self._in_kernel(runs):
            self.hashed[_bounds(runs)] = self.pool.submit(self._hash, runs)

    def _in_kernel(self, runs: Runs) -> bool:
        total = sum(end - start for start, end, _f, _l in runs)
        return self.in_kernel and bool(runs) and total // len(runs) >= SMALL_BYTES

    def copy(self, runs: Runs, out: IO[bytes]) -> Future[str]:
        """Write the byte runs to ``out``; the future gives their sha256."""
        if self._in_kernel(runs):
            out.flush()
            try:
                self._copy_in_kernel(runs, out.fileno())
            except OSError as exc:  # e.g. a file system that cannot: copy through buffers
                if exc.errno not in _UNSUPPORTED:
                    raise
                self.in_kernel = False
                out.seek(0)
                out.truncate()
            else:
                return self.hashed.pop(_bounds(runs), None) or self.pool.submit(self._hash, runs)
        done: Future[str] = Future()
        done.set_result(self._copy_buffered(runs, out))
        return done

    def _copy_in_kernel(self, runs: Runs, out: int) -> None:
        for start, end, _first, _last in runs:
            while start < end:
                n = os.copy_file_range(self.fd, out, end - start, start)
                if not n:
                    self._changed()
                start += n

    def _copy_buffered(self, runs: Runs, out: IO[bytes]) -> str:
        """Two buffers take turns, so a block is hashed (in a thread) and written while the
        next one is read."""
        digest = sha256()
        hashing: Future[None] | None = None
        turn = 0
        for start, end, _first, _last in runs:
            while start < end:
                buffer = self.buffers[turn]
                n = os.preadv(self.fd, [buffer[: min(end - start, COPY_BYTES)]], start)
                if not n:
                    self._changed()
                if hashing is not None:
                    hashing.result()
                    hashing = None
                if n < SMALL_BYTES:
                    digest.update(buffer[:n])
                else:
                    hashing = self.pool.submit(digest.update, buffer[:n])
                out.write(buffer[:n])
                start += n
                turn ^= 1
        if hashing is not None:
            hashing.result()
        return digest.hexdigest()

    def _changed(self) -> NoReturn:
        raise ReadError(f"{self.path}: the file changed while it was being split")

    def read(self, start: int, end: int) -> bytes:
        return os.pread(self.fd, end - start, start)

    def close(self) -> None:
        self.stopped = True
        self.pool.shutdown(wait=True)
        os.close(self.fd)


def _bounds(runs: Runs) -> tuple[int, ...]:
    return tuple(bound for start, end, _first, _last in runs for bound in (start, end))
