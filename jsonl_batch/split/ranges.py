"""Copying byte ranges of a file into outputs, hashing as it goes (``split``'s writer).

``ByteRanges`` copies a part made of long runs (a part of ``split`` without ``by``: one run)
inside the kernel (``os.copy_file_range``: the bytes never enter this process; ``split``
copies two such parts at a time); a part of many short runs (``by``, rejected lines) goes
through two fixed buffers, hashed as it is written. Memory stays flat. The manifest needs
the whole input's sha256 too: one thread reads the input once, in order, in blocks small
enough to stay in the CPU's cache, and feeds each block to the input's digest and to the
digest of the part it belongs to (parts handed over in file order: every part without
``by``), so both come from one read; the first part, the file's first bytes, is the input's
digest so far (one part: the input's). The part being filled is followed as it grows
(``follow``), so that little is left to hash when the file is validated. A part out of that
order is hashed on its own, and so is one handed over while the walker is busy with another
(parts planned at once, with ``parts``: the two threads share them). Where the parts come
faster than that (``spread``: split measuring only the line sizes), the walker takes the
first part and then the rest of the input alone, and the other thread every other part.
"""

from __future__ import annotations

import errno
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from hashlib import sha256
from pathlib import Path
from typing import IO, Any, NoReturn

from ..lines.reading import ReadError, describe_os_error

COPY_BYTES = 4 << 20
"""Copy through buffers in blocks of 4 MiB; a part whose runs average under ``SMALL_BYTES``
(single lines, with ``by``) is copied through buffers and hashed in the main thread, where
handing each run to the kernel or to a thread would cost more."""
SMALL_BYTES = 256 << 10
HASH_BYTES = 256 << 10
"""Read to hash in blocks of 256 KiB where a block read once is hashed twice (the input's
digest and its part's) while it is still in the cache; else in blocks of ``ALONE_BYTES``
(4 MiB): the thread takes the interpreter's lock once per block, and a thread running
Python beside it (split finding the lines) gives it back only every few milliseconds."""
ALONE_BYTES = 4 << 20
Runs = list[list[int]]
"""Byte runs ``[start, end, first_line, last_line]``."""
_UNSUPPORTED = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF}
"""What ``copy_file_range`` answers where it cannot copy (the buffers then do)."""


class ByteRanges:
    """A file of ``size`` bytes to copy ranges of. ``sha256`` (a future, once asked for) is
    the whole file's digest; a copy or a digest that finds the file changed (or cannot read
    it) is a ``ReadError``."""

    def __init__(self, path: Path, size: int | None = None, *, spread: bool = False) -> None:
        self.path = path
        self.spread = spread
        """Parts come faster than one thread hashes (split measuring only the line sizes):
        the walker hashes the input alone from the first part on (which is the input's
        first bytes: one digest), the pool every other part, each thread on its own core."""
        try:
            self.fd = os.open(path, os.O_RDONLY)
            self.size = os.fstat(self.fd).st_size if size is None else size
        except OSError as exc:
            raise ReadError(describe_os_error(path, exc)) from None
        self.local = threading.local()
        """Each copying thread's two buffers (``_copy_buffered``), made on first use."""
        self.blocks = [memoryview(bytearray(ALONE_BYTES)) for _ in range(2)]
        """The walker's block, and the pool's."""
        self.stopped = False
        self.in_kernel = hasattr(os, "copy_file_range")
        self.walker = ThreadPoolExecutor(1)
        """Hashes the input in file order (``_walk``), with the parts handed over in order."""
        self.pool = ThreadPoolExecutor(1)
        """Hashes a part out of that order, and the blocks of buffered copies."""
        self.input = sha256()
        self.walked = 0
        """How far ``input`` has hashed the file (the walker's thread only)."""
        self.handed = 0
        """Where the last full part handed over in file order ends."""
        self.following = -1
        """Where the part that ``follow`` hands to the walker starts."""
        self.last: Future[str] | None = None
        """The walker's last full part."""
        self.part: tuple[int, Any] | None = None
        """The walker's part under way: where it starts, and its digest (``None`` while the
        part is the file's first bytes: its digest is the input's so far)."""
        self.hashed: dict[tuple[int, ...], Future[str]] = {}
        """Runs' bounds -> their digest, started by ``hash``."""
        self._whole: Future[str] | None = None
        self.error: BaseException | None = None
        """The first failure of a ``follow`` (nobody waits on its future): ``_walk`` raises
        it, so the part and the input's digest are never given from a read that failed."""

    @property
    def sha256(self) -> Future[str]:
        """The whole file's digest: the walker hashes what is left of it once the parts
        before have been handed to ``hash`` (ask for it after them)."""
        if self._whole is None:
            self._whole = self.walker.submit(self._walk, [], whole=True)
        return self._whole

    def follow(self, runs: Runs) -> None:
        """Hash a part still being filled (its runs so far; they grow) with the input, in
        the walker, if it comes in file order: once it is full, ``hash`` has only its last
        bytes left to read (split follows the open part as the chunks come)."""
        start = runs[0][0] if runs else 0
        if self.spread and start:
            return
        if self._whole is None and self.in_kernel_copy(runs) and start >= self.handed:
            self.following = start
            self.walker.submit(self._follow, [run[:2] for run in runs])

    def _follow(self, runs: Runs) -> None:
        if self.error is None:
            try:
                self._advance(runs)
            except BaseException as exc:
                self.error = exc

    def hash(self, runs: Runs) -> None:
        """Start hashing runs that ``copy`` will copy in the kernel, in a thread, before they
        are copied (split hashes each part as soon as it is planned, while the rest of the
        file is validated); ``copy`` gives that digest. Called from one thread only (then
        ``copy`` may run in several)."""
        if not self.in_kernel_copy(runs) or _bounds(runs) in self.hashed:
            return
        in_order = self._whole is None and runs[0][0] >= self.handed
        idle = self.last is None or self.last.done()
        if self.spread:
            idle = runs[0][0] == 0
        if in_order and (runs[0][0] == self.following or idle):  # with the input
            digest = self.last = self.walker.submit(self._walk, runs)
            if self.spread:
                self.sha256  # noqa: B018 (and on through the file)
        else:  # on its own: out of order, or beside a busy walker (parts given at once)
            digest = self.pool.submit(self._hash, runs)
        if in_order:
            self.handed = runs[-1][1]
        self.hashed[_bounds(runs)] = digest

    def _walk(self, runs: Runs, whole: bool = False) -> str:
        """In the walker's thread: hash the input on, through the end of ``runs`` (through
        the end of the file if ``whole``), and the runs' bytes into their part's digest
        from the same reads; that digest, or with ``whole`` the input's."""
        if self.error is not None:
            raise self.error
        if whole:
            self._read(self.walked, self.size, (self.input,))
            if os.fstat(self.fd).st_size != self.size:
                self._changed()
            return self.input.hexdigest()
        part = self._advance(runs)
        self.part = None
        return (self.input if part is None else part).hexdigest()

    def _advance(self, runs: Runs) -> Any:
        """``_walk`` without finishing the part (what ``follow`` hashed of it is not read
        again): the part's digest (``None``: the input's so far)."""
        if self.part is None or self.part[0] != runs[0][0]:  # a new part
            self.part = (runs[0][0], None if self.walked == runs[0][0] == 0 else sha256())
        key, part = self.part
        for start, end, *_lines in runs:
            start = max(start, self.walked)
            if start >= end:
                continue  # followed already
            if start > self.walked:  # the bytes of other outputs between: the input's only
                if part is None:
                    part = self.input.copy()
                    self.part = (key, part)
                self._read(self.walked, start, (self.input,))
            self._read(start, end, (self.input,) if part is None else (self.input, part))
        return part

    def _read(self, start: int, end: int, digests: tuple[Any, ...], turn: int = 0) -> None:
        """Feed bytes ``[start, end)`` of the file to each digest, one cached block at a
        time (``blocks[turn]``); ``walked`` follows each block the input's digest takes."""
        buffer = self.blocks[turn]
        step = HASH_BYTES if len(digests) > 1 else ALONE_BYTES
        walking = digests[0] is self.input
        while start < end and not self.stopped:
            n = self._pread(buffer[: min(end - start, step)], start)
            block = buffer[:n]
            for digest in digests:
                digest.update(block)
            start += n
            if walking:
                self.walked = max(self.walked, start)

    def _pread(self, buffer: memoryview, start: int) -> int:
        """Read into ``buffer`` from ``start``: how many bytes (a ``ReadError`` if none, or
        if the system fails)."""
        try:
            n = os.preadv(self.fd, [buffer], start)
        except OSError as exc:
            raise ReadError(describe_os_error(self.path, exc)) from None
        if not n:
            self._changed()
        return n

    def _hash(self, runs: Runs) -> str:
        """The sha256 of the runs alone, read back from the file (its page cache)."""
        digest = sha256()
        for start, end, _first, _last in runs:
            self._read(start, end, (digest,), 1)
        return digest.hexdigest()

    def in_kernel_copy(self, runs: Runs) -> bool:
        """Whether ``copy`` copies these runs in the kernel (long runs), not through buffers."""
        total = sum(end - start for start, end, _f, _l in runs)
        return self.in_kernel and bool(runs) and total // len(runs) >= SMALL_BYTES

    def copy(self, runs: Runs, out: IO[bytes]) -> Future[str]:
        """Write the byte runs to ``out``; the future gives their sha256."""
        if self.in_kernel_copy(runs):
            self.hash(runs)  # if it was not yet: it reads while the kernel copies
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
                return self.hashed.pop(_bounds(runs))
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
        buffers = getattr(self.local, "buffers", None)
        if buffers is None:
            buffers = self.local.buffers = [memoryview(bytearray(COPY_BYTES)) for _ in range(2)]
        digest = sha256()
        hashing: Future[None] | None = None
        turn = 0
        for start, end, _first, _last in runs:
            while start < end:
                buffer = buffers[turn]
                n = self._pread(buffer[: min(end - start, COPY_BYTES)], start)
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
        self.walker.shutdown(wait=True)
        self.pool.shutdown(wait=True)
        os.close(self.fd)


def _bounds(runs: Runs) -> tuple[int, ...]:
    return tuple(bound for start, end, _first, _last in runs for bound in (start, end))
