"""Writing outputs safely: every command's one way to decide what a target may be and to
write it without losing anything a user owns.

- A target is checked before any work (``check_writable``): never one of the run's inputs
  (same real path or same file, i.e. inode), never a folder, never a symbolic link (dangling
  or not: a link is refused, not replaced), an existing file only with ``force=True``.
- ``"-"`` is standard output; a character device (``/dev/null``) or a FIFO is written
  through, never replaced (``writes_through``).
- A file is written under a temporary name in its folder (``TEMP_PREFIX``) and renamed on
  success, so a failure (or Ctrl-C, or kill -9) never leaves half a file under the final name.
- Writers in one folder take its lock (``folder_lock``: ``flock`` on the folder), so two runs
  never interleave their outputs; the first writer there after a crash finishes what it left
  (``recover``): a set of files committed by ``replace_together`` is completed from its
  journal, and other temporary files are removed.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

import orjson

from ..errors import JsonlBatchError, option
from ..lines.reading import BUFFER_SIZE

TEMP_PREFIX = ".jsonl-batch-"
"""Every temporary file (``.tmp``) and commit journal (``.commit``) starts with this."""
LOCK_WAIT = 10.0
"""Seconds a run waits for another run writing in the same folder before giving up."""
LOCK_NAME = f"{TEMP_PREFIX}lock"
"""The lock file, used only where a folder itself cannot be locked."""


class OutputExists(JsonlBatchError):
    """The output file exists and ``force`` was not given (or it is one of the inputs)."""

    code = "output_exists"


class WriteError(JsonlBatchError):
    """An output cannot be written (folder missing, permission denied, disk full, busy)."""

    code = "write_error"


# -- what a target may be


def is_stdout(path: str | os.PathLike[str]) -> bool:
    """``"-"``, or the file this process's standard output is (``/dev/stdout``)."""
    return os.fspath(path) == "-" or _is_fd(path, 1)


def _is_fd(path: str | os.PathLike[str], fd: int) -> bool:
    try:
        info, std = os.stat(path), os.fstat(fd)
    except (OSError, ValueError):
        return False
    return (std.st_dev, std.st_ino) == (info.st_dev, info.st_ino)


def writes_through(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is written through instead of replaced: ``"-"`` (standard output), a
    character device or a FIFO (or a link to one), or the file this process's standard
    output or error already is (``/dev/stdout`` when the shell redirected it to a file)."""
    if is_stdout(path):
        return True
    try:
        info = os.stat(path)
    except OSError:
        return False
    return stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode) or _is_fd(path, 2)


class Identities(frozenset[object]):
    """What ``same_files`` returns: real paths and (device, inode) pairs."""


def same_files(paths: Iterable[object]) -> Identities:
    """The identities of ``paths`` (real paths, and device+inode of those that exist), to
    recognize an input however it is named; streams and ``"-"`` are skipped."""
    if isinstance(paths, Identities):
        return paths
    found: set[object] = set()
    for path in paths:
        if not isinstance(path, (str, os.PathLike)) or is_stdout(path):
            continue
        found.add(os.path.realpath(path))
        with suppress(OSError):
            info = os.stat(path)
            found.add((info.st_dev, info.st_ino))
    return Identities(found)


def is_one_of(path: str | os.PathLike[str], identities: Identities) -> bool:
    """Whether ``path`` is one of the files ``same_files`` identified."""
    if not identities:
        return False
    if os.path.realpath(path) in identities:
        return True
    try:
        info = os.stat(path)
    except OSError:
        return False
    return (info.st_dev, info.st_ino) in identities


def check_writable(
    path: str | os.PathLike[str],
    force: bool = False,
    *,
    inputs: Iterable[object] = (),
    through: bool = True,
) -> Path:
    """Fail early, before any work, if ``path`` cannot be written as asked: it is one of
    ``inputs`` (even with ``force``), a folder, a symbolic link or another kind of file that
    is not replaced (``WriteError``), or it exists and ``force`` is not given
    (``OutputExists``). A character device or FIFO (or a link to one) is accepted when
    ``through`` (written through, no ``force`` needed); a file of a set (``through=False``)
    must be a file."""
    target = Path(path)
    if is_stdout(target):
        if not through:
            raise WriteError("-: standard output cannot hold several files; give a name")
        return target
    if is_one_of(target, same_files(inputs)):
        raise OutputExists(f"{target} is an input; choose another output name")
    try:
        mode = os.lstat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):  # its folder is made, or refused, later
        return target
    except OSError as exc:
        raise WriteError(f"{target}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(mode):
        if through and writes_through(target):
            return target  # a link to a device or a pipe (/dev/stdout): written through
        raise WriteError(
            f"{target}: is a symbolic link; give the path it points to, or remove the link"
        )
    if stat.S_ISDIR(mode):
        raise WriteError(f"{target}: is a directory")
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        if through:
            return target
        raise WriteError(f"{target}: is a device or a pipe, not a file; give a file name")
    if not stat.S_ISREG(mode):
        raise WriteError(f"{target}: is not a regular file; give a file name")
    if not force:
        raise OutputExists(f"{target} already exists; use {option('force')} to overwrite it")
    return target


def check_folder_target(
    path: str | os.PathLike[str], force: bool = False, *, inputs: Iterable[object] = ()
) -> Path:
    """Fail early if the folder ``path`` cannot be replaced as a whole (a partitioned
    table): it holds or is one of ``inputs`` (even with ``force``), it is a symbolic link or
    not a folder (``WriteError``), or it exists and ``force`` is not given."""
    target = Path(path)
    if is_stdout(target):
        raise WriteError(f"{target}: standard output cannot hold a folder of files; give a name")
    inside = os.path.realpath(target) + os.sep
    for found in same_files(inputs):
        if isinstance(found, str) and (found + os.sep).startswith(inside):
            raise OutputExists(f"{target} holds an input ({found}); choose another output name")
    if target.is_symlink():
        raise WriteError(
            f"{target}: is a symbolic link; give the path it points to, or remove the link"
        )
    if target.exists() and not target.is_dir():
        raise WriteError(f"{target}: exists and is not a folder")
    if target.exists() and not force:
        raise OutputExists(f"{target} already exists; use {option('force')} to replace it")
    return target


# -- writing one file


def temporary(target: Path, label: str | os.PathLike[str] | None = None) -> tuple[IO[bytes], Path]:
    """A new binary file next to ``target`` under a temporary name (``TEMP_PREFIX``), with
    the permissions ``target`` will have (mkstemp's are 0600): the first half of every
    atomic write. ``label`` is the path named in errors (default: ``target``)."""
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=TEMP_PREFIX, suffix=f"-{target.name[:100]}.tmp", dir=target.parent
        )
    except OSError as exc:
        where = label if label is not None else target
        raise WriteError(f"{where}: cannot write here ({exc.strerror or exc})") from None
    with suppress(OSError):  # a file system without modes keeps mkstemp's
        os.fchmod(fd, mode_for(target))
    _mark_live(fd)
    return os.fdopen(fd, "wb", buffering=BUFFER_SIZE), Path(tmp)


def temporary_folder(target: Path) -> tuple[int, Path]:
    """A new empty folder next to ``target`` under a temporary name, to be put in place by
    ``replace_together``; the returned descriptor marks it live until closed."""
    with folder_lock(target.parent, target):
        try:
            tmp = tempfile.mkdtemp(
                prefix=TEMP_PREFIX, suffix=f"-{target.name[:100]}.tmp", dir=target.parent
            )
            fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise WriteError(f"{target}: cannot write here ({exc.strerror or exc})") from None
        _mark_live(fd)
    return fd, Path(tmp)


def _mark_live(fd: int) -> None:
    """A temporary in use: ``recover`` (in another process) leaves it alone."""
    with suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _is_live(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except PermissionError:
        return True  # another user's, maybe in use: left alone
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)


@contextmanager
def atomic_output(
    path: str | os.PathLike[str],
    *,
    force: bool = False,
    inputs: Iterable[object] = (),
) -> Iterator[IO[bytes]]:
    """A binary file to write ``path`` with: a temporary file next to it, renamed to
    ``path`` on success (under the folder's lock); ``"-"`` is standard output, and a
    character device or FIFO is written through. Refuses what ``check_writable`` refuses."""
    inputs = same_files(inputs)
    target = check_writable(path, force, inputs=inputs)
    if writes_through(target):
        with _through(target) as out:
            yield out
        return
    with folder_lock(target.parent, target):  # held to start and to finish, not to write
        handle, tmp = temporary(target)
    try:
        yield handle
        handle.flush()
        with folder_lock(target.parent, target):
            handle.close()
            check_writable(target, force, inputs=inputs)  # what appeared while we wrote
            os.replace(tmp, target)
    except BaseException as exc:
        with suppress(OSError):
            handle.close()
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise WriteError(f"{target}: {exc.strerror or exc}") from None
        raise


@contextmanager
def _through(target: Path) -> Iterator[IO[bytes]]:
    """Standard output, or a device or FIFO opened for writing (no temporary, no rename)."""
    try:
        if is_stdout(target):
            out = sys.stdout.buffer
            yield out
            out.flush()
            return
        with open(target, "wb") as out:
            yield out
    except OSError as exc:
        if isinstance(exc, BrokenPipeError) and is_stdout(target):
            raise  # the reader went away (``| head``): the caller's to handle, as for print
        raise WriteError(f"{target}: {exc.strerror or exc}") from None


def mode_for(target: Path) -> int:
    """The permissions a new file gets from the umask, or those of the file it replaces."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


# -- one writer at a time in a folder, and what a crash left


_held: dict[str, list[int]] = {}
"""Folders this process has locked: real path -> [fd, depth] (the lock is re-entrant)."""


@contextmanager
def folder_lock(folder: str | os.PathLike[str], label: object = None) -> Iterator[None]:
    """Hold ``folder``'s lock (``flock`` on the folder): the one writer there. Another run
    writing there is waited for ``LOCK_WAIT`` seconds, then ``WriteError``. The first to
    take the lock (not a nested take by this process) finishes what a crash left there
    (``recover``)."""
    key = os.path.realpath(folder)
    held = _held.get(key)
    first = held is None
    if held is None:
        held = _held[key] = [_lock(Path(folder), label if label is not None else folder), 0]
    held[1] += 1
    try:
        if first:
            recover(folder)
        yield
    finally:
        held[1] -= 1
        if not held[1]:  # the last holder in this process, whichever took it first
            del _held[key]
            os.close(held[0])


def _lock(folder: Path, label: object) -> int:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise WriteError(f"{label}: cannot write here ({exc.strerror or exc})") from None
    try:
        _flock(fd, folder, label)
        return fd
    except OSError:  # this file system cannot lock a folder: a lock file in it
        os.close(fd)
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise WriteError(f"{label}: cannot write here ({exc.strerror or exc})") from None
    try:
        _flock(fd, folder, label)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _flock(fd: int, folder: Path, label: object) -> None:
    """Lock ``fd`` (waiting up to ``LOCK_WAIT``); ``WriteError`` if still busy, ``OSError``
    if locking is not supported here."""
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
        if time.monotonic() >= deadline:
            raise WriteError(
                f"{label}: another jsonl-batch run is writing in {folder}; "
                "wait for it to finish, or write elsewhere"
            )
        time.sleep(0.05)


def recover(folder: str | os.PathLike[str]) -> None:
    """Finish what an interrupted run left in ``folder`` (call it under ``folder_lock``): a
    set whose journal was written is completed (``replace_together``), then every other
    temporary file is removed. ``WriteError`` if a committed set cannot be completed."""
    where = Path(folder)
    try:
        names = sorted(n for n in os.listdir(where) if n.startswith(TEMP_PREFIX))
    except OSError:
        return
    for name in names:
        if name.endswith(".commit"):
            _apply(where, where / name)
    for name in names:
        if name.endswith((".tmp", ".old")) and not _is_live(where / name):
            _remove(where / name)


def _remove(path: Path) -> None:
    """Remove a file or a folder (a temporary, or a folder set aside), quietly."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with suppress(OSError):
            path.unlink()


def replace_together(
    folder: Path,
    renames: list[tuple[Path, Path]],
    remove: Iterable[Path] = (),
    point: Path | None = None,
) -> None:
    """Rename each ``(temporary, final)`` into place and remove ``remove`` as one step (a
    final that is a folder is set aside, then removed): a journal is written first, so a
    run interrupted at any moment is completed by the next writer in ``folder``
    (``recover``); if it fails before that, the temporaries are removed. ``point`` (a
    final, e.g. a manifest) is the commit point: the old one is removed first and the new
    one renamed last, so a ``point`` in place always describes the files beside it. Call it
    under ``folder_lock``."""
    journal = {
        "renames": [[tmp.name, final.name] for tmp, final in renames],
        "remove": [p.name for p in remove],
        "point": point.name if point is not None else None,
    }
    staged = [tmp for tmp, _ in renames]
    path: Path | None = None
    try:
        handle, tmp = temporary(folder / "journal")
        staged.append(tmp)
        path = tmp.with_name(tmp.name.removesuffix(".tmp") + ".commit")
        with handle:
            handle.write(orjson.dumps(journal))
        os.replace(tmp, path)
        _apply(folder, path)
    except BaseException as exc:
        if path is None or not path.exists():  # not committed: the old files stay
            for left in staged:
                _remove(left)
        elif not isinstance(exc, WriteError):  # committed: finish it (Ctrl-C lands here)
            with suppress(Exception):
                _apply(folder, path)
        if isinstance(exc, OSError):
            raise WriteError(f"{folder}: {exc.strerror or exc}") from None
        raise


def _apply(folder: Path, journal: Path) -> None:
    """Carry out a journal (again, if it was interrupted: every step can be repeated).

    With a commit point, an old file is removed before the new one is renamed to its name:
    no reader relies on that rename being atomic (the old point went first), and ext4
    writes a file renamed over another to disk at once (``auto_da_alloc``), so that
    replacing it again soon waited for the disk (split's commit: 0.14 s -> 0.05 s per
    200 MB). Being killed between the two leaves the journal: the rename is repeated."""
    try:
        data = orjson.loads(journal.read_bytes())
        renames = [(folder / _plain(t), folder / _plain(f)) for t, f in data["renames"]]
        remove = [folder / _plain(n) for n in data["remove"]]
        point = data["point"]
    except (OSError, ValueError, TypeError, KeyError):
        with suppress(OSError):
            journal.unlink()  # not a journal of ours: nothing to finish
        return
    try:
        for tmp, final in renames:
            if final.name == point and tmp.exists():
                final.unlink(missing_ok=True)  # the old commit point goes first
        for old in remove:
            old.unlink(missing_ok=True)
        ordered = sorted(renames, key=lambda r: r[1].name == point)
        aside = journal.name.removesuffix(".commit")
        for tmp, final in ordered:
            if tmp.exists():
                if final.is_dir() and not final.is_symlink():  # a folder: set aside first
                    os.replace(final, folder / f"{aside}-{final.name[:100]}.old")
                elif point is not None:  # removed first, not renamed over: see below
                    final.unlink(missing_ok=True)
                os.replace(tmp, final)
        for left in os.listdir(folder):
            if left.startswith(aside) and left.endswith(".old"):
                _remove(folder / left)
        journal.unlink(missing_ok=True)
    except OSError as exc:
        name = exc.filename or folder
        raise WriteError(
            f"{name}: cannot finish writing the outputs in {folder} ({exc.strerror or exc})"
        ) from None


def _plain(name: object) -> str:
    """A journal's file name: a plain name in its folder, or ``ValueError``."""
    if not isinstance(name, str) or name in ("", ".", "..") or os.sep in name or "\0" in name:
        raise ValueError(f"not a file name: {name!r}")
    return name
