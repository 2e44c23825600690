"""Per-line work over a whole file, a chunk of lines at a time, in file order.

Work on one line never depends on another (parse, check, count tokens), so a large regular
file is cut into line-aligned byte ranges that forked worker processes handle, while the
caller consumes their results in order; a small file or a stream is handled in-process, a
block of lines at a time. Either way ``work`` gets raw lines (endings kept) and returns one
result per chunk.
"""

from __future__ import annotations

import ctypes
import fcntl
import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from itertools import chain, islice
from multiprocessing.pool import AsyncResult, Pool
from typing import IO, Any, Generic, TypeVar

from .reading import (
    BUFFER_SIZE,
    LineReader,
    ReadError,
    Source,
    describe_os_error,
    line_end,
    regular_size,
)

T = TypeVar("T")
Work = Callable[[Iterable[bytes]], T]

PARALLEL_MIN_BYTES = 16 << 20
"""Files at least this big go to worker processes (when there are cores to use)."""
CHUNK_BYTES = 2 << 20
"""The most a worker gets at a time, while the caller keeps up..."""
MIN_CHUNK_BYTES = 1 << 19
"""...and the least: the first chunks, and while the caller falls behind (a chunk full of
problems stays some 25 MB; one chunk per worker is kept ahead of the caller then)."""
TAIL_SHARES = 2
TAIL_MIN_BYTES = 1 << 18
"""Near the end of a file a chunk holds at most 1/(TAIL_SHARES * workers) of what is left,
and at least TAIL_MIN_BYTES."""
BLOCK_LINES = 4096
"""Lines per chunk in-process (a stream's results come a block at a time)."""


class LineChunks(Generic[T]):
    """Iterate ``work``'s results over the lines of ``handle`` (opened from ``source``).

    ``workers``: processes for a file of at least ``min_parallel_bytes`` (``None``: one per
    core; 1: in-process). Sizes left ``None`` take the module's defaults when called.
    ``prime``: run ``work`` on the first line before forking, so that what it loads on first
    use (a tokenizer) is loaded once and inherited. After iteration ``size`` is the number of
    bytes (for a regular file it is known from the start).
    """

    def __init__(
        self,
        source: Source,
        handle: IO[bytes],
        work: Work[T],
        *,
        workers: int | None = None,
        min_parallel_bytes: int | None = None,
        prime: bool = False,
        block_lines: int | None = None,
        chunk_bytes: int | None = None,
    ) -> None:
        self.path = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
        if self.path == "-":
            self.path = None
        self.size = regular_size(handle) if self.path is not None else None
        self.handle = handle
        self.work = work
        min_bytes = PARALLEL_MIN_BYTES if min_parallel_bytes is None else min_parallel_bytes
        self.workers = _worker_count(self.size, workers, min_bytes)
        self.prime = prime
        self.done = 0
        """Bytes of the file whose results have been yielded so far (for progress)."""
        self.block_lines = block_lines or BLOCK_LINES
        self.chunk_bytes = chunk_bytes or CHUNK_BYTES

    def __iter__(self) -> Iterator[T]:
        if self.path is not None and self.size is not None and self.workers > 1:
            yield from self._forked(self.path, self.size)
            return
        reader = LineReader(self.handle)
        lines = reader.raw()
        for first in lines:
            result = self.work(chain((first,), islice(lines, self.block_lines - 1)))
            with suppress(OSError, ValueError):  # a pipe cannot tell; its size is unknown anyway
                self.done = self.handle.tell()
            yield result
        if self.size is None:
            self.size = reader.offset

    def _forked(self, path: str, size: int) -> Iterator[T]:
        try:
            if self.prime:
                with open(path, "rb") as handle:
                    self.work(islice(handle, 1))
            handle = open(path, "rb")  # noqa: SIM115  # closed with the pool, below
        except OSError as exc:
            raise ReadError(describe_os_error(path, exc)) from None
        global _inherited
        _inherited = self.work
        try:
            pool = fork_pool(self.workers)
        finally:
            _inherited = None
        # Chunks are cut as they are handed out. While the caller keeps up, two per worker
        # are in flight and they grow (to chunk_bytes: few chunks, little overhead); when it
        # falls behind (every result in flight was ready before it asked: the workers wait
        # for it; many problems, say), one per worker and they shrink (to MIN_CHUNK_BYTES).
        # Results wait here only while the caller is busy, so memory stays flat however slow
        # it is. The last chunks shrink (``_tail``).
        window: deque[tuple[int, AsyncResult[object]]] = deque()
        start, step = 0, MIN_CHUNK_BYTES
        with pool, handle:
            try:
                while True:
                    behind = bool(window) and all(pending.ready() for _, pending in window)
                    room = (1 if behind else 2) * self.workers - len(window)
                    while room > 0 and start < size:
                        cut = min(step, self.chunk_bytes, self._tail(size - start))
                        end = _next_line(handle, start + cut, size)
                        window.append((end, pool.apply_async(_run_range, ((path, start, end),))))
                        start, room = end, room - 1
                    if not window:
                        return
                    end, pending = window.popleft()
                    result = pending.get()
                    self.done = end
                    yield result  # type: ignore[misc]  # _run_range returns work's T
                    step = max(MIN_CHUNK_BYTES, step // 2) if behind else step * 2
                    step = min(step, self.chunk_bytes)
            except OSError as exc:
                raise ReadError(describe_os_error(path, exc)) from None

    def _tail(self, left: int) -> int:
        """The most bytes of the next chunk when ``left`` bytes remain: a share of them, so
        that the last chunks shrink and the workers finish together (one big last chunk
        kept one worker busy while the other waited)."""
        return max(TAIL_MIN_BYTES, left // (TAIL_SHARES * self.workers))


def _next_line(handle: IO[bytes], target: int, size: int) -> int:
    """The start of the first line at or after ``target`` (``size`` at the end)."""
    if target >= size:
        return size
    return min(line_end(handle.fileno(), target - 1, size), size)  # the line covering target - 1


_inherited: Work[object] | None = None
"""The work, set in the parent just before forking so that workers inherit it as it is."""


def fork_pool(processes: int) -> Pool:
    """A pool of forked workers that never see Ctrl-C: SIGINT is blocked while they are
    forked (one landing in a child's first instants printed a traceback there) and ignored
    in them; a SIGINT meanwhile reaches this process once the pool is made."""
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is not None:
        mask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        pool = multiprocessing.get_context("fork").Pool(processes, _quiet_worker, (os.getpid(),))
    finally:
        if mask is not None:
            mask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _widen(pool)
    return pool


RESULT_PIPE_BYTES = 1 << 20
"""What the pipe bringing the workers' results back holds (Linux; 64 KiB by default, and 1 MiB
is what any user may ask for): a result of a few hundred KB (a piece of the join's index) is
written at once, and its worker goes on with its next task instead of waiting, 64 KiB at a
time, for this process to read it (the workers of a 500k join spent ~8% of their time so)."""


def _widen(pool: Pool) -> None:
    """Give ``pool``'s result pipe ``RESULT_PIPE_BYTES``, where the system allows it."""
    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None)
    writer = getattr(getattr(pool, "_outqueue", None), "_writer", None)  # multiprocessing's
    if setpipe is None or writer is None:
        return
    with suppress(OSError):  # a lower /proc/sys/fs/pipe-max-size: the pipe stays as it is
        fcntl.fcntl(writer.fileno(), setpipe, RESULT_PIPE_BYTES)


def _quiet_worker(parent: int) -> None:
    """Workers die with their parent, ignore Ctrl-C (the terminal sends it to them too: the
    parent stops them) and print nothing: a task's error reaches the parent with its result,
    and a parent gone while a result is sent (killed: the worker ends on the broken pipe) is
    no news."""
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115  (for the worker's lifetime)


PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal this process gets when the thread that forked it ends."""
PR_SET_THP_DISABLE = 41
"""prctl(2) option: no transparent huge pages for this process, even where its memory was
madvised for them; inherited by the processes it forks."""


def _prctl(option: int, value: int) -> bool:
    """``prctl(option, value)`` on Linux: whether it was done (False elsewhere, or where
    the system refuses it: seccomp, an old kernel)."""
    if not sys.platform.startswith("linux"):
        return False
    return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0


_owned = False
"""Whether this process is the ``jsonl-batch`` program (``own_process``), not a library
caller's: only then may a command change its process-wide settings."""


def own_process() -> None:
    """Say that this process is the ``jsonl-batch`` program (``interrupts.launch``)."""
    global _owned
    _owned = True


def small_pages() -> bool:
    """In the ``jsonl-batch`` program (``own_process``), on Linux: have the kernel give this
    process's memory, and that of the workers it forks from now on, in 4 KiB pages only;
    whether it did. pyarrow's allocator (mimalloc) madvises its arena for transparent huge
    pages, hands pieces back to the kernel when they fall idle and faults them in again,
    each fault zeroing 2 MiB however little of it is used: a large join pays for that
    (``results.join.SMALL_PAGES_BYTES``), a small one gains from the huge pages. A library
    caller's process is never changed (nor are its workers: alone they gained nothing
    consistent)."""
    return _owned and _prctl(PR_SET_THP_DISABLE, 1)


def die_with_parent(parent: int) -> None:
    """In a forked child of ``parent`` (its pid, taken before forking): on Linux, have the
    kernel SIGKILL this process when the parent ends, however it ends (``os._exit`` after
    Ctrl-C, SIGKILL), and end at once if it has already ended; elsewhere nothing. A worker
    that outlived its parent could wait forever on the pool's queue lock."""
    if not _prctl(PR_SET_PDEATHSIG, signal.SIGKILL):
        return  # not Linux, or not allowed here (seccomp): the worker ends on the broken pipe
    if os.getppid() != parent:  # the parent ended before the request took effect
        os._exit(1)


def _run_range(task: tuple[str, int, int]) -> object:
    """In a worker: the work over the lines that start in ``[start, end)`` of a file."""
    path, start, end = task
    assert _inherited is not None
    with open(path, "rb", buffering=BUFFER_SIZE) as handle:
        return _inherited(LineReader(handle, start=start, end=end).raw())


def _worker_count(size: int | None, workers: int | None, min_bytes: int) -> int:
    if size is None or size < min_bytes:
        return 1
    if workers is not None:
        return max(1, workers)
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(cores or 1, 8)


def in_order(
    pool: Pool, function: Callable[[Any], T], tasks: Iterable[Any], ahead: int
) -> Iterator[T]:
    """``function(task)`` in ``pool`` for each task, yielded in order; at most ``ahead`` tasks
    run ahead of the caller, so results never pile up in memory. The first ``ahead`` are
    handed out at once, not on the first ``next``: the caller can do other work meanwhile."""
    todo = iter(tasks)
    running = deque(pool.apply_async(function, (task,)) for task in islice(todo, ahead))
    return _results(pool, function, todo, running)


def _results(
    pool: Pool, function: Callable[[Any], T], todo: Iterator[Any], running: deque[AsyncResult[T]]
) -> Iterator[T]:
    """``in_order``'s results: each one taken hands out the next task."""
    for task in todo:
        running.append(pool.apply_async(function, (task,)))
        yield running.popleft().get()
    while running:
        yield running.popleft().get()


def _stop(pool: Pool, failed: list[BaseException]) -> None:
    """End ``pool``'s workers; a failure is kept in ``failed`` for ``Workers.close`` to
    raise (not printed as a thread's traceback)."""
    try:
        pool.terminate()
        pool.join()
    except BaseException as exc:
        failed.append(exc)


def cores() -> int:
    """The cores this process may use (at most 8), or 1 where worker processes cannot fork."""
    return _worker_count(PARALLEL_MIN_BYTES, None, 0)


class Workers:
    """Forked worker processes for tasks that are not one file's lines (``LineChunks`` is for
    those): ``map(function, tasks)`` yields the results in task order. With ``processes`` of 1
    the tasks run in-process. Fork it early, before the caller holds much memory."""

    def __init__(self, processes: int) -> None:
        self.pool = None
        self.processes = processes
        self._stopping: threading.Thread | None = None
        self._failed: list[BaseException] = []
        if processes > 1 and "fork" in multiprocessing.get_all_start_methods():
            self.pool = fork_pool(processes)

    def map(
        self, function: Callable[[Any], T], tasks: Iterable[Any], ahead: int | None = None
    ) -> Iterator[T]:
        """``function(task)`` for each task, in order; at most ``ahead`` tasks (default two
        per process) run ahead of the caller, so results never pile up in memory. In worker
        processes the first tasks start at once (``in_order``), before the results are asked
        for. A caller that keeps every result anyway hands them all out at once (``ahead``:
        the number of tasks): the workers never wait for it to ask for more."""
        if self.pool is None:
            return map(function, tasks)
        return in_order(self.pool, function, tasks, ahead or 2 * self.processes)

    def close(self, wait: bool = True) -> None:
        """End the workers. ``wait=False``: in a thread, while the caller goes on (ending
        them takes some milliseconds); a later ``close()`` waits for it, and raises what
        failed there."""
        if self.pool is not None:
            pool, self.pool = self.pool, None
            self._stopping = threading.Thread(target=_stop, args=(pool, self._failed))
            self._stopping.start()
        if wait and self._stopping is not None:
            self._stopping.join()
            self._stopping = None
            if self._failed:
                raise self._failed.pop(0)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
