"""The ledger of a job: ``DIR/ledger.sqlite``, what each part is and where it is on the server.

One SQLite database through the standard library, in autocommit mode: each change is on disk
before the call it prepares ("creating attempt 2 of part 7" is written before the create
request), so a run killed at any moment resumes from what the ledger says. The folder's lock
(``output.folder_lock``) keeps two runs off the same folder.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import orjson

from ..errors import UsageError
from ..outputs.atomic import WriteError, folder_lock

LEDGER = "ledger.sqlite"
STATES = (
    "queued",
    "uploading",
    "uploaded",
    "creating",
    "submitted",
    "downloading",
    "done",
    "failed",
)
"""A part's life: ``queued`` -> ``uploading`` -> ``uploaded`` -> ``creating`` -> ``submitted``
-> ``downloading`` -> ``done``; ``failed`` when its batch failed for good. A batch failed with
``token_limit_exceeded`` sends its part back to ``uploaded`` (the file is kept)."""
IN_FLIGHT = frozenset({"creating", "submitted"})
FINAL = frozenset({"done", "failed"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS run (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS parts (
    id INTEGER PRIMARY KEY,
    round INTEGER NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    requests INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    tokens INTEGER,
    endpoint TEXT,
    state TEXT NOT NULL DEFAULT 'queued',
    file_id TEXT,
    batch_id TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    resubmits INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    since REAL NOT NULL DEFAULT 0,
    status TEXT,
    batch BLOB,
    output TEXT,
    errors TEXT
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    part INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT,
    output_file_id TEXT,
    error_file_id TEXT
);
"""


@dataclass
class PartRecord:
    """One part of a job as the ledger holds it. ``path``, ``output`` and ``errors`` are
    relative to the job's folder; ``batch`` is the last state of its batch seen (the API's
    object); ``attempt`` counts its batches, ``resubmits`` those failed for the token cap."""

    id: int
    round: int
    path: str
    sha256: str
    requests: int
    bytes: int
    tokens: int | None = None
    endpoint: str | None = None
    state: str = "queued"
    file_id: str | None = None
    batch_id: str | None = None
    attempt: int = 0
    resubmits: int = 0
    not_before: float = 0.0
    since: float = 0.0
    """When (wall clock) it entered its state."""
    status: str | None = None
    batch: dict[str, Any] | None = None
    output: str | None = None
    errors: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("not_before")
        return data


_COLUMNS = [f.name for f in fields(PartRecord)]


class Ledger:
    """A job's ledger (``Ledger.open(folder)``); close it, or use it as a context manager."""

    def __init__(self, folder: Path, db: sqlite3.Connection, lock: ExitStack) -> None:
        self.folder = folder
        self.db = db
        self._lock = lock

    @classmethod
    def open(
        cls, folder: str | os.PathLike[str], *, create: bool = True, lock: bool = True
    ) -> Ledger:
        """Open (with ``create``, make) the ledger of ``folder``, locking the folder unless
        ``lock=False`` (for a look while a run goes on).

        Raises ``UsageError`` when there is no job there (without ``create``), ``WriteError``
        when another run holds the folder or the folder or the database cannot be opened.
        """
        path = Path(folder)
        if not create and not (path / LEDGER).is_file():
            raise UsageError(f"{path}: no job here (no {LEDGER})")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WriteError(f"{path}: cannot use this folder ({exc.strerror or exc})") from None
        with ExitStack() as stack:
            if lock:
                stack.enter_context(folder_lock(path))
            try:
                db = sqlite3.connect(path / LEDGER, isolation_level=None, timeout=30)
                db.execute("PRAGMA journal_mode = WAL")  # one fsync per change, readers welcome
                db.execute("PRAGMA synchronous = FULL")  # a change is on disk before the call
                db.executescript(_SCHEMA)
            except sqlite3.Error as exc:
                raise WriteError(f"{path / LEDGER}: cannot open the ledger ({exc})") from None
            return cls(path, db, stack.pop_all())
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self.db.close()
        self._lock.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Several changes that land together or not at all."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- the run's facts ------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM run WHERE key = ?", (key,)).fetchone()
        return default if row is None else orjson.loads(row[0])

    def set(self, key: str, value: Any) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO run (key, value) VALUES (?, ?)", (key, orjson.dumps(value))
        )

    def reset(self) -> None:
        """Forget everything (a preparation that never finished)."""
        with self.transaction():
            for table in ("run", "parts", "batches"):
                self.db.execute(f"DELETE FROM {table}")

    # -- parts ----------------------------------------------------------------------------

    def add_part(self, **values: Any) -> int:
        names = list(values)
        marks = ", ".join("?" for _ in names)
        cursor = self.db.execute(
            f"INSERT INTO parts ({', '.join(names)}) VALUES ({marks})",
            [values[n] for n in names],
        )
        return int(cursor.lastrowid or 0)

    def parts(self, *, round: int | None = None, states: Iterable[str] = ()) -> list[PartRecord]:
        """The parts, in order (round, then input order), optionally of one round or states."""
        query = f"SELECT {', '.join(_COLUMNS)} FROM parts"
        args: list[Any] = []
        where = []
        if round is not None:
            where.append("round = ?")
            args.append(round)
        wanted = list(states)
        if wanted:
            where.append(f"state IN ({', '.join('?' for _ in wanted)})")
            args.extend(wanted)
        if where:
            query += " WHERE " + " AND ".join(where)
        rows = self.db.execute(query + " ORDER BY id", args).fetchall()
        return [_record(row) for row in rows]

    def part(self, part_id: int) -> PartRecord:
        return self.parts_by_id([part_id])[0]

    def parts_by_id(self, ids: Iterable[int]) -> list[PartRecord]:
        wanted = list(ids)
        marks = ", ".join("?" for _ in wanted)
        rows = self.db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM parts WHERE id IN ({marks}) ORDER BY id",
            wanted,
        ).fetchall()
        return [_record(row) for row in rows]

    def update(self, part: PartRecord, **changes: Any) -> None:
        """Change a part's fields, on disk and in ``part``."""
        for key, value in changes.items():
            setattr(part, key, value)
        values = [orjson.dumps(v) if k == "batch" else v for k, v in changes.items()]
        assignments = ", ".join(f"{k} = ?" for k in changes)
        self.db.execute(
            f"UPDATE parts SET {assignments} WHERE id = ?",
            [*values, part.id],
        )

    # -- batches ----------------------------------------------------------------------------

    def record_batch(self, part: PartRecord, batch: dict[str, Any]) -> None:
        """Remember a batch of ``part`` (every batch it ever had, for ``clean``)."""
        self.db.execute(
            "INSERT OR REPLACE INTO batches VALUES (?, ?, ?, ?, ?, ?)",
            (
                batch["id"],
                part.id,
                part.attempt,
                batch.get("status"),
                batch.get("output_file_id"),
                batch.get("error_file_id"),
            ),
        )

    def forget_result(self, batch_id: str, key: str) -> None:
        """A result file of a batch was deleted on the server (``key``: its id's field)."""
        column = {"output_file_id": "output_file_id", "error_file_id": "error_file_id"}[key]
        self.db.execute(f"UPDATE batches SET {column} = NULL WHERE batch_id = ?", (batch_id,))

    def batches(self) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT batch_id, part, attempt, status, output_file_id, error_file_id "
            "FROM batches ORDER BY rowid"
        ).fetchall()
        keys = ("batch_id", "part", "attempt", "status", "output_file_id", "error_file_id")
        return [dict(zip(keys, row, strict=True)) for row in rows]


def _record(row: tuple[Any, ...]) -> PartRecord:
    values = dict(zip(_COLUMNS, row, strict=True))
    if values["batch"] is not None:
        values["batch"] = orjson.loads(values["batch"])
    return PartRecord(**values)
