"""Writing outputs safely: a temporary file in the target's folder, renamed on success.

Nothing is written in place: a failure (or Ctrl-C) leaves no half-written file under the
final name, and an existing file is only replaced with ``force=True``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def atomic_output(path: str | os.PathLike[str], *, force: bool = False) -> Iterator[IO[bytes]]:
    """Open a binary temporary file next to ``path``; on success rename it to ``path``."""
    target = check_writable(path, force)
    folder = target.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise WriteError(f"{target}: cannot write here ({exc.strerror or exc})") from None
    try:
        os.fchmod(fd, _mode_for(target))
        with os.fdopen(fd, "wb", buffering=BUFFER_SIZE) as handle:
            yield handle
        if target.exists() and not force:  # appeared while we were writing
            raise OutputExists(f"{target} already exists; use --force to overwrite it")
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise WriteError(f"{target}: {exc.strerror or exc}") from None
        raise


def _mode_for(target: Path) -> int:
    """The permissions a new file gets from the umask (mkstemp's are 0600), or those of the
    file being replaced."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask
