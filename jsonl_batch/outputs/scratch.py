"""Scratch folders (the join's spill files) that a killed run does not leave behind for ever.

A scratch folder holds ``LIVE_NAME``, a file its run keeps locked (``flock``; the kernel lets
go when the process and the workers it forked end, even by SIGKILL). The file is locked
before it gets that name, so a folder whose ``LIVE_NAME`` exists and can be locked is
abandoned: ``scratch_folder`` first removes those of earlier runs in the temporary directory.
A folder without the file (an older version's, or one being made) is never touched.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress

LIVE_NAME = ".jsonl-batch-live"
"""The lock file of a scratch folder in use."""


@contextmanager
def scratch_folder(prefix: str) -> Iterator[str]:
    """A new temporary folder named ``prefix...``, marked live until it is removed on exit;
    the abandoned ones named ``prefix...`` are removed first. ``OSError`` if it cannot be made."""
    remove_abandoned(prefix)
    held: list[int] = []
    try:
        with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as folder:
            held.extend(_mark_live(folder))
            yield folder
    finally:  # the mark is let go after the folder is gone
        for fd in held:
            os.close(fd)


def _mark_live(folder: str) -> list[int]:
    """Create ``LIVE_NAME`` in ``folder`` already locked; its descriptor (none if it failed:
    the folder is then only never removed by another run)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{LIVE_NAME}-", dir=folder)
    except OSError:
        return []
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(tmp, os.path.join(folder, LIVE_NAME))
    except OSError:
        os.close(fd)
        with suppress(OSError):
            os.unlink(tmp)
        return []
    return [fd]


def remove_abandoned(prefix: str, where: str | None = None) -> None:
    """Remove the abandoned scratch folders named ``prefix...`` in ``where`` (the temporary
    directory): the current user's real folders (not links) whose ``LIVE_NAME`` no live run
    holds. Failures are ignored."""
    where = where if where is not None else tempfile.gettempdir()
    try:
        with os.scandir(where) as entries:
            names = [e.name for e in entries if e.name.startswith(prefix)]
    except OSError:
        return
    for name in names:
        path = os.path.join(where, name)
        with suppress(OSError):
            info = os.lstat(path)
            if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and _abandoned(path):
                shutil.rmtree(path, ignore_errors=True)


def _abandoned(folder: str) -> bool:
    """Whether ``folder``'s ``LIVE_NAME`` exists and no process holds it."""
    try:
        fd = os.open(os.path.join(folder, LIVE_NAME), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True
