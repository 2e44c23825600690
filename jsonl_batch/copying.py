"""Copying byte ranges of a file into outputs, hashing as it goes (``split``'s writer).

``ByteRanges`` reads the input by offset into two fixed buffers (memory stays flat) and
hashes in threads while the main thread copies: hashlib and file I/O release the GIL. It
also hashes the whole input, in a thread of its own, for the manifest.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from hashlib import sha256
from pathlib import Path
from typing import IO

from .reading import ReadError, describe_os_error

COPY_BYTES = 4 << 20
"""Copy and hash in blocks of 4 MiB; blocks under ``SMALL_BYTES`` (single lines, with ``by``)
are hashed in the main thread, where handing them to a thread would cost more."""
SMALL_BYTES = 256 << 10


class ByteRanges:
    """A file to copy ranges of. ``sha256`` (a future) is the whole file's digest."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise ReadError(describe_os_error(path, exc)) from None
        self.buffers = [memoryview(bytearray(COPY_BYTES)) for _ in range(2)]
        self.stopped = False
        self.pool = ThreadPoolExecutor(2)
        self.sha256 = self.pool.submit(self._hash_all)

    def _hash_all(self) -> str:
        digest = sha256()
        buffer = memoryview(bytearray(COPY_BYTES))
        offset = 0
        while not self.stopped and (n := os.preadv(self.fd, [buffer], offset)):
            digest.update(buffer[:n])
            offset += n
        return digest.hexdigest()

    def copy(self, runs: list[list[int]], out: IO[bytes]) -> str:
        """Write the byte runs (``[start, end, first_line, last_line]``) to ``out``; return
        their sha256. Two buffers take turns, so a block is hashed (in a thread) and written
        while the next one is read."""
        digest = sha256()
        hashing: Future[None] | None = None
        turn = 0
        for start, end, _first, _last in runs:
            while start < end:
                buffer = self.buffers[turn]
                n = os.preadv(self.fd, [buffer[: min(end - start, COPY_BYTES)]], start)
                if not n:
                    raise ReadError(f"{self.path}: the file changed while it was being split")
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

    def read(self, start: int, end: int) -> bytes:
        return os.pread(self.fd, end - start, start)

    def close(self) -> None:
        self.stopped = True
        self.pool.shutdown(wait=True)
        os.close(self.fd)
