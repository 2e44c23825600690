"""Looking at a job and cleaning up after it: ``job_status`` and ``clean_job``.

Both read the job's ledger (``ledger``). ``job_status`` refreshes the running batches from
the API (unless offline) without taking the folder's lock, so it works while a run is going.
``clean_job`` deletes on the server the files the job put there (its uploads) and the result
files of its batches; the local copies stay.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api import batches as api
from .ledger import IN_FLIGHT, Ledger, PartRecord


@dataclass
class JobStatus:
    """A job as its ledger (refreshed) says: its parts, and their requests' counts."""

    folder: Path
    round: int
    parts: list[PartRecord]
    refreshed: bool

    @property
    def states(self) -> dict[str, int]:
        return dict(Counter(p.state for p in self.parts))

    @property
    def requests(self) -> int:
        return sum(p.requests for p in self.parts if p.round == 0)

    @property
    def finished(self) -> bool:
        return bool(self.parts) and all(p.state in ("done", "failed") for p in self.parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": os.fspath(self.folder),
            "round": self.round + 1,
            "requests": self.requests,
            "states": self.states,
            "finished": self.finished,
            "refreshed": self.refreshed,
            "parts": [p.to_dict() for p in self.parts],
        }


def job_status(
    out_dir: str | os.PathLike[str], *, client: Any = None, offline: bool = False
) -> JobStatus:
    """The job in ``out_dir``; its running batches fetched from the API unless ``offline``
    (``client``: an SDK client, default ``api.make_client()``)."""
    with Ledger.open(out_dir, create=False, lock=False) as ledger:
        running = [p for p in ledger.parts(states=("submitted",)) if p.batch_id]
        if running and not offline:
            client = client if client is not None else api.make_client(_profile(ledger))
            for part in running:
                batch = api.get_batch(client, part.batch_id or "")
                ledger.record_batch(part, batch)
                ledger.update(part, status=batch["status"], batch=batch)
        return JobStatus(Path(out_dir), ledger.get("round", 0), ledger.parts(), not offline)


@dataclass
class Cleaned:
    """What ``clean_job`` did: files deleted, already gone, and kept (their batch runs)."""

    deleted: list[dict[str, str]] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"deleted": self.deleted, "gone": self.gone, "kept": self.kept}


def clean_job(out_dir: str | os.PathLike[str], *, client: Any = None) -> Cleaned:
    """Delete the job's uploaded input files and its batches' result files on the server.

    Files of batches still running are kept. A part not yet finished loses its upload and
    will upload again if the job is resumed.
    """
    done = Cleaned()
    with Ledger.open(out_dir, create=False) as ledger:
        client = client if client is not None else api.make_client(_profile(ledger))
        parts = {p.id: p for p in ledger.parts()}
        for part in parts.values():
            if part.file_id is None:
                continue
            if part.state in IN_FLIGHT:
                done.kept.append(part.file_id)
                continue
            _delete(client, part.file_id, f"input of {Path(part.path).name}", done)
            changes: dict[str, Any] = {"file_id": None}
            if part.state == "uploaded":
                changes["state"] = "queued"
            ledger.update(part, **changes)
        for batch in ledger.batches():
            for key in ("output_file_id", "error_file_id"):
                file_id = batch[key]
                if file_id:
                    what = f"{key.split('_')[0]} of {batch['batch_id']}"
                    _delete(client, file_id, what, done)
                    ledger.forget_result(batch["batch_id"], key)
    return done


def _delete(client: Any, file_id: str, what: str, done: Cleaned) -> None:
    if api.delete_file(client, file_id):
        done.deleted.append({"id": file_id, "what": what})
    else:
        done.gone.append(file_id)


def _profile(ledger: Ledger) -> str:
    return str((ledger.get("fingerprint") or {}).get("profile", "openai"))
