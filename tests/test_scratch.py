"""The join's temporary folder: one a killed join left is removed by the next join, never a
live one, one without the lock file, or a link."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT

from jsonl_batch import join
from jsonl_batch.outputs.scratch import LIVE_NAME, scratch_folder

SAMPLES = ROOT / "samples"
PREFIX = "jsonl-batch-join-"


@pytest.fixture
def temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The temporary directory of this process's joins."""
    where = tmp_path / "tmp"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    yield where


def run_join() -> None:
    inputs, results = [SAMPLES / "requests.jsonl"], [SAMPLES / "output.jsonl"]
    assert join(inputs, results).summary.requests > 0


folder_fds: list[int] = []
"""The locks held for the live folders of a test (let go after it)."""


def left_folder(where: Path, live: bool) -> Path:
    """A folder as a join leaves it, its lock file present; ``live``: still locked."""
    folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=where))
    (folder / "answers-000000.arrow").write_bytes(b"x" * 100)
    (folder / LIVE_NAME).touch()
    if live:
        fd = os.open(folder / LIVE_NAME, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        folder_fds.append(fd)
    return folder


@pytest.fixture(autouse=True)
def _let_go() -> Iterator[None]:
    yield
    while folder_fds:
        os.close(folder_fds.pop())


def test_an_abandoned_folder_is_removed_by_the_next_join(temp: Path) -> None:
    abandoned = left_folder(temp, live=False)
    run_join()
    assert not abandoned.exists()
    assert list(temp.iterdir()) == []  # the join's own folder is gone too


def test_a_live_join_folder_is_kept(temp: Path) -> None:
    live = left_folder(temp, live=True)
    with scratch_folder(PREFIX) as other:  # as another join in this process holds it
        run_join()
        assert Path(other, LIVE_NAME).exists()
    assert live.exists() and (live / "answers-000000.arrow").exists()
    assert not Path(other).exists()


def test_a_folder_without_the_lock_file_is_kept(temp: Path) -> None:
    older = Path(tempfile.mkdtemp(prefix=PREFIX, dir=temp))
    (older / "answers-000000.arrow").write_bytes(b"x")
    other = temp / "other-folder"
    other.mkdir()
    (other / LIVE_NAME).touch()  # not named as a join's: not looked at
    run_join()
    assert (older / "answers-000000.arrow").exists() and other.exists()


def test_a_link_is_not_followed(temp: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / LIVE_NAME).touch()
    (target / "keep").write_bytes(b"x")
    (temp / f"{PREFIX}x").symlink_to(target, target_is_directory=True)
    file = temp / f"{PREFIX}file"
    file.write_bytes(b"x")
    run_join()
    assert (temp / f"{PREFIX}x").is_symlink() and (target / "keep").exists()
    assert file.exists()


# A join stopped once its answers are spilled: it says so, then sleeps until killed.
PAUSED_JOIN = """
import sys, time
from jsonl_batch.results import gather, join
real = gather.AnswerTaker.take
def paused(*args, **kwargs):
    print("spilled", flush=True)
    time.sleep(600)
    return real(*args, **kwargs)
gather.AnswerTaker.take = paused
join.join([sys.argv[1]], [sys.argv[2]])
"""


def test_the_folder_of_a_killed_join_is_removed_by_the_next(temp: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TMPDIR": str(temp)}
    args = [str(SAMPLES / "requests.jsonl"), str(SAMPLES / "output.jsonl")]
    proc = subprocess.Popen(
        [sys.executable, "-c", PAUSED_JOIN, *args], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "spilled\n"
        (left,) = temp.iterdir()
        assert (left / LIVE_NAME).exists()
        assert any(p.name.endswith(".arrow") for p in left.iterdir())
        run_join()  # a join beside a live one leaves it alone
        assert left.exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert proc.stdout is not None
        proc.stdout.close()
    assert (left / LIVE_NAME).exists()  # the kill left it behind
    run_join()
    assert list(temp.iterdir()) == []
