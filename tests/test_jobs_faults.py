"""Fault test: ``batches run`` in a subprocess, killed with SIGKILL at chosen and random moments
(before upload, after upload, right after create, while waiting, while downloading), rerun
until it ends. Every time: no part is submitted twice (except resubmits after
``token_limit_exceeded``), and the table holds every request once, in input order.

The simulated server's clock moves per request, so the runs are quick; the kills come from
the server itself, at the request chosen, after it did what was asked and before it answers
(the worst moment: the client never learns the batch id). Random kills add a random request
count and, before any request, a random instant during preparation.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fake_openai import KEY, FakeOpenAI
from helpers import ROOT, jsonl, request

from jsonl_batch.jobs.ledger import Ledger

REQUESTS = 12
DRIVER = (
    "import jsonl_batch.jobs.runner as j; j.MIN_INTERVAL = 0.0; j.RESUBMIT_AFTER = 0.0; "
    "from jsonl_batch.cli import main; main()"
)
MOMENTS = {
    "after upload": ("POST", r"/files"),
    "right after create": ("POST", r"/batches"),
    "while waiting": ("GET", r"/batches/batch_\d+"),
    "while downloading": ("GET", r"/files/[^/]+/content"),
    "while looking for a lost batch": ("GET", r"/batches"),
}


class Job:
    """The command, run again and again in a subprocess against the simulated server."""

    def __init__(self, fake: FakeOpenAI, folder: Path) -> None:
        self.fake = fake
        self.input = folder / "in.jsonl"
        self.input.write_bytes(jsonl(*(request(f"r-{i:02d}") for i in range(REQUESTS))))
        self.out = folder / "job"
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_"))}
        self.env = {
            **env,
            "OPENAI_API_KEY": KEY,
            "OPENAI_BASE_URL": fake.base_url,
            "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
        }

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.kills += 1

    def start(self) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-c", DRIVER, "batches", "run", str(self.input)]
        args += ["-o", str(self.out), "--interval", "0", "--max-requests", "3"]
        args += ["--max-enqueued-tokens", "48", "--max-active", "3", "--jobs", "1"]
        self.process = subprocess.Popen(
            args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        return self.process

    def run(self, timeout: float = 120) -> int:
        process = self.start()
        _, err = process.communicate(timeout=timeout)
        assert b"Traceback" not in err, err.decode()
        return process.returncode

    def resubmits(self) -> int:
        with Ledger.open(self.out, create=False, lock=False) as ledger:
            return sum(p.resubmits for p in ledger.parts())

    def check(self) -> None:
        """No part sent twice but for resubmits; every request once, in order, succeeded."""
        with Ledger.open(self.out, create=False, lock=False) as ledger:
            parts = ledger.parts()
            run_id = ledger.get("run_id")
        made = self.fake.submitted()
        assert sum(made.values()) == len(self.fake.batches)
        for part in parts:
            tag = (run_id, f"{part.id}:{part.sha256[:12]}")
            assert made.pop(tag, 0) == part.attempt == 1 + part.resubmits, part
        assert not made  # no batch of a part the ledger does not know
        rows = pq.read_table(self.out / "results.parquet").to_pydict()
        assert rows["custom_id"] == [f"r-{i:02d}" for i in range(REQUESTS)]
        assert rows["status"] == ["succeeded"] * REQUESTS
        assert rows["line"] == list(range(1, REQUESTS + 1))
        inputs = {i for i, f in self.fake.files.items() if f["purpose"] == "batch"}
        used = {b["input_file_id"] for b in self.fake.batches.values()}
        assert inputs <= used | set(self.fake.deleted)  # no stray upload left behind


@pytest.fixture
def job(fake: FakeOpenAI, tmp_path: Path) -> Job:
    # a token cap shared with "other jobs" (some resubmits), one flaky request (a retry round)
    fake.simulate(token_cap=30, rate=0.2, flaky={"r-04": 1})
    return Job(fake, tmp_path)


def finish(job: Job, tries: int = 6) -> None:
    for _ in range(tries):
        if job.run() == 0:
            return
    raise AssertionError("the job did not finish")


def test_killed_at_each_moment_in_turn(job: Job) -> None:
    """One job, killed once at each moment (the next run at the next), then run to the end."""
    job.fake.trap("POST", r"/files", job.kill, before=True)  # before the first upload
    assert job.run() == -signal.SIGKILL
    assert job.fake.uploads == []
    for moment in MOMENTS:
        if moment == "while looking for a lost batch":
            job.fake.trap("POST", r"/batches", job.kill)  # lose one, then die looking for it
            assert job.run() == -signal.SIGKILL
        job.fake.trap(*MOMENTS[moment], job.kill)
        assert job.run() == -signal.SIGKILL, moment
    finish(job)
    assert job.kills == len(MOMENTS) + 2
    job.check()


def test_killed_right_after_a_resubmit(job: Job) -> None:
    """The batch a part gets after ``token_limit_exceeded`` is created, then the client dies:
    the rerun reattaches to it rather than sending the part a third time."""

    def kill_on_resubmit() -> None:
        if any(b["status"] == "failed" for b in job.fake.batches.values()):
            job.kill()
        else:
            job.fake.trap("POST", r"/batches", kill_on_resubmit)

    job.fake.trap("POST", r"/batches", kill_on_resubmit)
    assert job.run() == -signal.SIGKILL
    finish(job)
    job.check()
    assert job.resubmits() > 0


def test_killed_at_random_moments(job: Job) -> None:
    rng = random.Random(20261126)
    moments: list[tuple[str, str]] = list(MOMENTS.values())
    for _ in range(4):
        method, path = rng.choice(moments)
        skip = rng.randrange(3)  # not always the first such request

        for _ in range(skip):
            job.fake.trap(method, path, lambda: None)
        job.fake.trap(method, path, job.kill, before=rng.random() < 0.3)
        code = job.run()
        job.fake.traps.clear()
        if code == 0:
            break
        assert code == -signal.SIGKILL
    process = job.start()  # and once during preparation or the first calls, at a random instant
    try:
        process.wait(timeout=rng.uniform(0.05, 0.6))
    except subprocess.TimeoutExpired:
        job.kill()
        process.wait()
    finish(job)
    job.check()
