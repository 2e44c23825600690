"""Manifests, output names, and writing a run's outputs together; shared by ``build``,
``split`` and ``retry``.

A manifest lists the files a run wrote (``parts``, and for ``split`` the ``rejected`` lines)
with what a user or a program needs to trust and upload them: request counts, bytes, sha256,
the first and last custom_id and, for ``split``, the input lines each part holds.

Every name a run gives its outputs is made here (``part_name``, ``rejected_name``,
``manifest_path``), and so is the one list of what an earlier run left under the same stem
(``earlier_outputs``). ``OutputSet`` writes a run's files under temporary names and renames
them together (``output.replace_together``: journaled, completed by the next run after a
crash), so the folder holds the old set or the new one, never half of each.
"""

from __future__ import annotations

import builtins
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from ..errors import option
from .atomic import (
    OutputExists,
    WriteError,
    atomic_output,
    check_writable,
    folder_lock,
    is_one_of,
    mode_for,
    replace_together,
    same_files,
    temporary,
)

_PAIR = re.compile(rb"\[\n *(\d+),\n *(\d+)\n *\]")  # raw newlines: never inside a JSON string


def part_name(stem: str, index: int, total: int | None = None, suffix: str = ".jsonl") -> str:
    """``out.part-001-of-005.jsonl`` (``split``: zero-padded so the names sort), or, when the
    total is not known while writing (``build``), ``out.part-001.jsonl``."""
    if total is None:
        return f"{stem}.part-{index:03d}{suffix}"
    width = max(3, len(str(total)))
    return f"{stem}.part-{index:0{width}d}-of-{total:0{width}d}{suffix}"


def rejected_name(stem: str) -> str:
    """``split --skip-invalid``'s file of invalid lines: ``<stem>.rejected.jsonl``."""
    return f"{stem}.rejected.jsonl"


def manifest_path(folder: str | os.PathLike[str], stem: str) -> Path:
    """``<folder>/<stem>.manifest.json``."""
    return Path(folder) / f"{stem}.manifest.json"


def earlier_outputs(
    folder: str | os.PathLike[str],
    stem: str,
    *,
    suffix: str = ".jsonl",
    whole: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """What a split, build or retry named after ``stem`` may have left in ``folder``: parts
    (either naming), rejected lines, the manifest, and ``whole`` (a single-file output)."""
    where = Path(folder)
    if not where.is_dir():
        return []
    suffixes = "|".join(re.escape(s) for s in dict.fromkeys((".jsonl", suffix)))
    pattern = re.compile(
        re.escape(stem) + rf"\.(?:part-\d{{3,}}(?:-of-\d{{3,}})?(?:{suffixes})|rejected\.jsonl"
        r"|manifest\.json)"
    )
    try:
        found = {p for p in where.iterdir() if pattern.fullmatch(p.name)}
    except OSError as exc:  # e.g. a write-only (-wx) folder
        raise WriteError(f"{where}: cannot list this folder ({exc.strerror or exc})") from None
    if whole is not None and Path(whole).is_file():
        found.add(Path(whole))
    return sorted(found)


def make_folder(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` (and its parents) if needed; ``WriteError`` saying why it cannot be."""
    where = Path(folder)
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        there = next((p for p in (where, *where.parents) if p.exists()), None)
        if there == where:
            raise WriteError(f"{where}: cannot write into a file (not a folder)") from None
        why = f"{there} is a file" if there and not there.is_dir() else exc.strerror or exc
        raise WriteError(f"{where}: cannot create this folder ({why})") from None
    return where


class OutputSet:
    """The files one run writes under one ``stem`` in ``folder``, replaced together.

    Each file is written under a temporary name (``open``, ``create``, ``add_manifest``);
    ``commit()`` renames them all into place and, with ``force``, removes what an earlier run
    left under the stem (``earlier_outputs``) that this one did not write, so no stale part
    is left to be uploaded twice: one journaled step (``replace_together``, the manifest its
    commit point), completed by the next run in the folder if this one is killed. From the
    first file written to the commit the folder's lock is held (``folder_lock``): another
    run there waits, or is refused. ``discard()`` (or leaving a ``with`` block by an
    exception) removes the temporaries: an earlier run's files stay as they were. ``keep``:
    the run's inputs, never removed, and never replaced: an output named like one (same
    path or same file) is refused, even with ``force``. ``input``: the path the run's outputs
    are named after (a split's input, a build's or retry's output); an existing
    ``<stem>.manifest.json`` whose ``input`` names another file is refused, even with
    ``force`` (another job's parts that share the stem), unless ``sha256()`` (the input's,
    asked only then) equals the manifest's. ``label`` is the path named in errors (default:
    the folder); ``run`` words the refusal (``"... is left from an earlier split"``).
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        stem: str,
        *,
        force: bool = False,
        suffix: str = ".jsonl",
        whole: str | os.PathLike[str] | None = None,
        keep: Iterable[str | os.PathLike[str]] = (),
        label: str | os.PathLike[str] | None = None,
        run: str = "split",
        input: str | os.PathLike[str] | None = None,
        sha256: Callable[[], str] | None = None,
    ) -> None:
        self.folder, self.stem, self.force = Path(folder), stem, force
        self.suffix, self.whole, self.run = suffix, whole, run
        self.keep = same_files(keep)
        self.input, self.sha256 = input, sha256
        self.label = os.fspath(label if label is not None else folder)
        self.staged: dict[str, Path] = {}
        """Final name -> temporary path, in the order written."""
        self._open: dict[str, IO[bytes]] = {}
        self._lock = ExitStack()

    def earlier(self) -> list[Path]:
        """What an earlier run left under the stem (``earlier_outputs``), inputs aside."""
        found = earlier_outputs(self.folder, self.stem, suffix=self.suffix, whole=self.whole)
        return [p for p in found if not is_one_of(p, self.keep)]

    def _locked(self) -> None:
        """Take the folder's lock, if not held yet (until ``commit`` or ``discard``)."""
        if not self._lock._exit_callbacks:  # type: ignore[attr-defined]
            self._lock.enter_context(folder_lock(self.folder, self.label))

    def check_folder(self) -> None:
        """``WriteError`` naming ``label`` if the folder is missing or not writable."""
        if not self.folder.is_dir():
            what = "not a folder" if self.folder.exists() else "no such folder"
            raise WriteError(f"{self.label}: cannot write here ({self.folder}: {what})")
        if not os.access(self.folder, os.W_OK | os.X_OK):
            raise WriteError(f"{self.label}: cannot write here (permission denied)")

    def check(self, targets: Iterable[str | os.PathLike[str]] = ()) -> None:
        """Refuse, before any work, what would replace an output without ``force``: an
        existing target, or a file an earlier run left. A target that is a folder is a
        ``WriteError`` even with ``force``; so are a target that is an input (``keep``) and
        a manifest of another input under the stem, a link, a device or a pipe."""
        if self.folder.is_dir():
            with folder_lock(self.folder, self.label):
                pass  # waits for a run writing there, and finishes what a crash left
        mine = [check_writable(t, True, inputs=self.keep, through=False) for t in targets]
        self._refuse_other_input()
        if self.force:
            return
        for old in self.earlier():
            if old not in mine:
                raise OutputExists(
                    f"{old} is left from an earlier {self.run}; use {option('force')} to replace it"
                )
        for target in mine:
            check_writable(target)

    def _refuse_other_input(self) -> None:
        """``OutputExists`` if the stem's manifest is the split of a file other than ``input``."""
        if self.input is None:
            return
        where = manifest_path(self.folder, self.stem)
        try:
            data = orjson.loads(where.read_bytes())
        except (OSError, ValueError):  # none, or not one of ours: nothing to protect
            return
        old = data.get("input") if isinstance(data, dict) else None
        if not isinstance(old, str) or not _names_another(old, Path(self.input), self.folder):
            return
        if self.sha256 is not None and data.get("sha256") == self.sha256():
            return  # the same bytes: replacing its parts loses nothing
        what = "folder" if self.run == "split" else "name"
        raise OutputExists(
            f"{where} is the split of another input ({old}); "
            f"choose another output {what}, or remove it"
        )

    def open(self, name: str) -> IO[bytes]:
        """A new temporary file in the folder, to become ``name`` on ``commit``."""
        self._locked()
        handle, self.staged[name] = temporary(self.folder / name, self.label)
        self._open[name] = handle
        return handle

    def close(self, name: str) -> None:
        """Close the file opened as ``name`` (its data flushed); ``WriteError`` if it fails."""
        handle = self._open.pop(name)
        try:
            handle.close()
        except OSError as exc:
            raise WriteError(f"{self.folder / name}: {exc.strerror or exc}") from None

    @contextmanager
    def create(self, name: str) -> Iterator[IO[bytes]]:
        """``open`` and ``close`` around a block; an ``OSError`` in it is a ``WriteError``."""
        handle = self.open(name)
        try:
            yield handle
        except OSError as exc:
            raise WriteError(f"{self.folder / name}: {exc.strerror or exc}") from None
        self.close(name)  # on an exception, ``discard`` closes it

    def add_manifest(self, manifest: Manifest) -> Path:
        """Stage ``<stem>.manifest.json`` (renamed last); remember its path in the manifest."""
        where = manifest_path(self.folder, self.stem)
        with self.create(where.name) as out:
            out.write(manifest.dumps())
        manifest.path = os.fspath(where)
        return where

    def rename(self, name: str, new: str) -> None:
        """Let the staged ``name`` become ``new`` on ``commit``."""
        self.staged[new] = self.staged.pop(name)

    def path(self, name: str) -> Path:
        """Where the staged ``name`` is being written (its temporary path)."""
        return self.staged[name]

    def commit(self) -> list[Path]:
        """Put every staged file in place and, with ``force``, remove what an earlier run
        left under the stem, as one step (see the class). Returns the paths written."""
        names = list(self.staged)
        finals = [self.folder / n for n in names]
        try:
            if self.folder.is_dir():
                self._locked()
            for final in finals:  # what appeared while we were writing
                check_writable(final, self.force, inputs=self.keep, through=False)
            for name, final in zip(names, finals, strict=True):
                with suppress(OSError):  # staged under another name, or replacing: its mode
                    os.chmod(self.staged[name], mode_for(final))
            stale = [p for p in self.earlier() if p not in finals] if self.force else []
            point = next((f for f in finals if f.name.endswith(".manifest.json")), None)
            renames = [(self.staged[n], f) for n, f in zip(names, finals, strict=True)]
            self.staged.clear()  # replace_together's now: completed, or removed
            if renames or stale:
                replace_together(self.folder, renames, stale, point)
        finally:
            self.discard()
        return finals

    def discard(self) -> None:
        """Remove every temporary file not yet renamed into place; release the lock."""
        for handle in self._open.values():
            with suppress(OSError):  # a failed flush: the file goes anyway
                handle.close()
        self._open.clear()
        for tmp in self.staged.values():
            tmp.unlink(missing_ok=True)
        self.staged.clear()
        self._lock.close()

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.discard()


def _names_another(old: str, new: Path, folder: Path) -> bool:
    """Whether a manifest's ``input`` (``old``, as it was given: maybe relative to another
    working folder) names a file other than ``new``: an absolute path that is not ``new``,
    or a relative one that is not ``new`` but an existing file (from here or ``folder``)."""
    given = Path(old)
    places = [given] if given.is_absolute() else [given, folder / given]
    found = [p.resolve() for p in places]
    if new.resolve() in found:
        return False
    return given.is_absolute() or any(p.is_file() for p in found)


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise WriteError(
            f"{path}: cannot remove this earlier output ({exc.strerror or exc})"
        ) from None


@dataclass
class Part:
    """One written file: ``path`` is its name, relative to the manifest's folder."""

    path: str
    requests: int = 0
    bytes: int = 0
    sha256: str = ""
    first_custom_id: str | None = None
    last_custom_id: str | None = None
    endpoint: str | None = None
    model: str | None = None
    embedding_inputs: int = 0
    lines: int = 0
    """Lines in the file (equal to ``requests`` for a part)."""
    line_ranges: list[tuple[int, int]] | None = None
    """``split`` only: the input lines it holds, as inclusive ``(first, last)`` runs."""
    input_tokens: int | None = None
    """Estimated input tokens (tiktoken), when a token budget had them counted."""

    def to_dict(self) -> dict[str, Any]:
        data = {
            "path": self.path,
            "requests": self.requests,
            "lines": self.lines,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "first_custom_id": self.first_custom_id,
            "last_custom_id": self.last_custom_id,
            "endpoint": self.endpoint,
            "model": self.model,
            "embedding_inputs": self.embedding_inputs,
        }
        if self.input_tokens is not None:
            data["input_tokens"] = self.input_tokens
        if self.line_ranges is not None:
            data["line_ranges"] = [list(r) for r in self.line_ranges]
        return data


@dataclass
class Manifest:
    """What a build or split wrote. ``input``/``sha256``/``bytes`` describe the input (split)."""

    parts: list[Part] = field(default_factory=list)
    input: str | None = None
    sha256: str | None = None
    bytes: int | None = None
    lines: int | None = None
    profile: str | None = None
    limits: dict[str, int | None] = field(default_factory=dict)
    rejected: Part | None = None
    """``split --skip-invalid``: the invalid lines, copied unchanged."""
    path: str | None = None
    """Where this manifest was written, if it was."""

    @property
    def requests(self) -> int:
        return sum(p.requests for p in self.parts)

    def to_dict(self) -> dict[str, Any]:
        """The manifest file's content, then ``manifest``: where it was written (``None``:
        not written), what ``build`` and ``split`` print with ``--format json``."""
        return {**self._content(), "manifest": self.path}

    def _content(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.input is not None:
            data.update(input=self.input, sha256=self.sha256, bytes=self.bytes, lines=self.lines)
        data.update(
            profile=self.profile,
            limits=dict(self.limits),
            requests=self.requests,
            parts=[p.to_dict() for p in self.parts],
            rejected=self.rejected.to_dict() if self.rejected else None,
        )
        return data

    def dumps(self) -> builtins.bytes:
        """The manifest file's bytes: ``to_dict()`` but its own name, as indented JSON, a
        line range on one line (``[3, 7]``)."""
        text = orjson.dumps(self._content(), option=orjson.OPT_INDENT_2)
        return _PAIR.sub(rb"[\1, \2]", text) + b"\n"

    def write(self, path: str | os.PathLike[str], *, force: bool = False) -> Path:
        """Write the manifest on its own, atomically; remember where."""
        with atomic_output(path, force=force) as out:
            out.write(self.dumps())
        self.path = os.fspath(path)
        return Path(path)
