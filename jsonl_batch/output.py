"""Writing outputs safely: a temporary file in the target's folder, renamed on success.

Nothing is written in place: a failure (or Ctrl-C) leaves no half-written file under the
final name, and an existing file is only replaced with ``force=True``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from .reading import BUFFER_SIZE


class OutputExists(Exception):
    """The output file exists and ``force`` was not given."""


class WriteError(Exception):
    """An output cannot be written (folder missing, permission denied, disk full)."""


def check_writable(path: str | os.PathLike[str], force: bool = False) -> Path:
    """Fail early, before any work, if ``path`` exists (without ``force``) or is a folder."""
    target = Path(path)
    if target.is_dir():
        raise WriteError(f"{target}: is a directory")
    if target.exists() and not force:
        raise OutputExists(f"{target} already exists; use --force to overwrite it")
    return target


def temporary(target: Path, label: str | os.PathLike[str] | None = None) -> tuple[IO[bytes], Path]:
    """A new binary file next to ``target`` under a temporary name, with the permissions
    ``target`` will have (mkstemp's are 0600): the first half of every atomic write.
    ``label`` is the path named in errors (default: ``target``)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        where = label if label is not None else target
        raise WriteError(f"{where}: cannot write here ({exc.strerror or exc})") from None
    with suppress(OSError):  # a file system without modes keeps mkstemp's
        os.fchmod(fd, mode_for(target))
    return os.fdopen(fd, "wb", buffering=BUFFER_SIZE), Path(tmp)


@contextmanager
def atomic_output(path: str | os.PathLike[str], *, force: bool = False) -> Iterator[IO[bytes]]:
    """Open a binary temporary file next to ``path``; on success rename it to ``path``."""
    target = check_writable(path, force)
    handle, tmp = temporary(target)
    try:
        with handle:
            yield handle
        if target.exists() and not force:  # appeared while we were writing
            raise OutputExists(f"{target} already exists; use --force to overwrite it")
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise WriteError(f"{target}: {exc.strerror or exc}") from None
        raise


def mode_for(target: Path) -> int:
    """The permissions a new file gets from the umask, or those of the file it replaces."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask
