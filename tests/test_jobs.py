"""Jobs (``run_job``) against the simulated server: quotas, resubmits, retry rounds, resume."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from fake_openai import FakeOpenAI
from helpers import jsonl, request

from jsonl_batch.api import batches as api
from jsonl_batch.errors import UsageError
from jsonl_batch.jobs import runner as jobs
from jsonl_batch.jobs.ledger import Ledger
from jsonl_batch.jobs.prepare import InvalidInputs
from jsonl_batch.outputs import atomic as output
from jsonl_batch.outputs.atomic import WriteError


class Clock:
    """A wall clock that only moves when the runner sleeps."""

    def __init__(self) -> None:
        self.now = time.time()  # the server's times are real: its files' and batches'
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= jobs.MIN_INTERVAL  # never a busy poll
        self.pauses.append(seconds)
        self.now += seconds


def client() -> Any:
    return api.make_client(max_retries=0)


def make_input(write: Callable[..., Path], n: int, name: str = "in.jsonl", start: int = 0) -> Path:
    return write([request(f"r-{i}") for i in range(start, start + n)], name)


def run(
    inputs: list[Path], out: Path, clock: Clock | None = None, **options: Any
) -> jobs.JobResult:
    clock = clock or Clock()
    options.setdefault("interval", 0)
    return jobs.run_job(
        inputs, out, client=client(), clock=clock, sleep=clock.sleep, workers=1, **options
    )


def table(result: jobs.JobResult) -> dict[str, list[Any]]:
    return pq.read_table(result.table).to_pydict()


def test_parts_run_to_one_table_in_input_order(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path
) -> None:
    fake.simulate()
    first, second = make_input(write, 7, "a.jsonl"), make_input(write, 3, "b.jsonl", start=7)
    events: list[str] = []
    result = run(
        [first, second],
        tmp_path / "job",
        max_requests=3,
        max_active=2,
        progress=lambda p: events.append(p.event) if p.event else None,
    )
    rows = table(result)
    assert rows["custom_id"] == [f"r-{i}" for i in range(10)]
    assert rows["line"] == [1, 2, 3, 4, 5, 6, 7, 1, 2, 3]
    assert set(rows["status"]) == {"succeeded"}
    assert rows["attempts"] == [1] * 10
    parts = result.parts
    assert [p.requests for p in parts] == [3, 3, 1, 3]
    assert rows["batch_id"] == [p.batch_id for p in parts for _ in range(p.requests)]
    assert result.summary.ok and result.summary.batches == 4
    assert len(fake.batches) == 4 and all(n == 1 for n in fake.submitted().values())
    assert any("submitted as" in e for e in events)
    assert (tmp_path / "job" / "results.parquet").is_file()


def test_at_most_max_active_in_flight(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path
) -> None:
    fake.simulate()
    peak = []

    def watch(p: jobs.JobProgress) -> None:
        peak.append(p.active)
        live = [b for b in fake.batches.values() if b["status"] not in {"completed", "failed"}]
        assert len(live) <= 2

    path = make_input(write, 8)
    result = run([path], tmp_path / "job", max_requests=2, max_active=2, progress=watch)
    assert result.summary.ok and max(peak) == 2


def test_enqueued_tokens_stay_under_the_cap(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path
) -> None:
    sim = fake.simulate(token_cap=40)
    path = make_input(write, 6)
    seen = []

    def watch(p: jobs.JobProgress) -> None:
        seen.append(fake._enqueued())

    result = run([path], tmp_path / "job", max_enqueued_tokens=40, progress=watch)
    assert result.summary.ok and result.summary.resubmits == 0
    assert max(seen) <= sim.token_cap
    assert all(p.tokens and p.tokens <= 40 for p in result.parts)
    assert len(result.parts) > 1


def test_token_limit_exceeded_is_sent_again_later(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path
) -> None:
    fake.simulate(token_cap=30, rate=0.05)  # other jobs hold the rest of the cap
    clock = Clock()
    result = run([make_input(write, 6)], tmp_path / "job", clock, max_requests=2)
    assert result.summary.ok
    assert result.summary.resubmits > 0
    counts = fake.submitted()
    for part in result.parts:
        assert part.attempt == 1 + part.resubmits
        tag = (part.batch["metadata"]["jsonl_batch_run"], f"{part.id}:{part.sha256[:12]}")
        assert counts[tag] == part.attempt
    assert max(clock.pauses) >= jobs.RESUBMIT_AFTER / 2  # waited before sending again
    assert table(result)["attempts"] == [1] * 6  # a resubmit is not a retry of the requests


def test_http_500_answers_are_retried_in_a_second_round(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path
) -> None:
    fake.simulate(flaky={"r-1": 1, "r-4": 2})
    result = run([make_input(write, 6)], tmp_path / "job", max_requests=3)
    rows = table(result)
    assert rows["status"] == ["succeeded"] * 6
    assert rows["attempts"] == [1, 2, 1, 1, 3, 1]
    rounds = {p.batch_id: p.round for p in result.parts}
    assert [rounds[b] for b in rows["batch_id"]] == [0, 1, 0, 0, 2, 0]
    assert result.summary.rounds == 3
    retry = (tmp_path / "job" / "retries" / "round-1" / "001" / "retry.jsonl").read_bytes()
    assert retry == jsonl(request("r-1"), request("r-4"))  # byte-identical lines


def test_retries_are_bounded_and_failures_reported(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path
) -> None:
    fake.simulate(flaky={"r-2": 9})
    result = run([make_input(write, 4)], tmp_path / "job", retries=1)
    rows = table(result)
    assert rows["status"] == ["succeeded", "succeeded", "failed", "succeeded"]
    assert rows["status_code"][2] == 500 and rows["attempts"][2] == 2
    assert not result.summary.ok and result.summary.failed == 1


def test_an_expired_batch_keeps_its_partial_results(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path
) -> None:
    fake.simulate(stall={"r-3": 1}, window=200)
    result = run([make_input(write, 5)], tmp_path / "job")
    first = result.parts[0]
    assert first.status == "expired"
    assert first.batch["request_counts"]["completed"] > 0  # partial results kept
    rows = table(result)
    assert rows["status"] == ["succeeded"] * 5
    assert rows["attempts"][3] == 2


def test_a_failed_batch_is_reported_with_its_errors(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path
) -> None:
    fake.simulate(reject={"r-1"})
    result = run([make_input(write, 4)], tmp_path / "job", max_requests=2)
    assert [p.state for p in result.parts] == ["failed", "done"]
    assert result.summary.failed_batches[0]["errors"] == ["invalid_request: rejected by the test"]
    assert table(result)["status"] == ["missing", "missing", "succeeded", "succeeded"]
    assert result.summary.rounds == 1  # a failed batch's requests are not retried


def test_invalid_input_uploads_nothing(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path
) -> None:
    fake.simulate()
    good = make_input(write, 2, "good.jsonl")
    bad = write(b'{"custom_id": "x"}\n', "bad.jsonl")
    with pytest.raises(InvalidInputs) as caught:
        run([good, bad], tmp_path / "job")
    assert [r.file for r in caught.value.reports] == [str(bad)]
    assert fake.uploads == []
    bad.write_bytes(jsonl(request("x")))  # fixed: the same folder runs
    assert run([good, bad], tmp_path / "job").summary.ok


def test_other_inputs_are_refused_in_a_used_folder(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path
) -> None:
    fake.simulate()
    run([make_input(write, 2)], tmp_path / "job")
    with pytest.raises(UsageError, match="other inputs"):
        run([make_input(write, 3, "other.jsonl")], tmp_path / "job")


def test_rerunning_a_finished_job_submits_nothing(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path
) -> None:
    fake.simulate()
    path = make_input(write, 3)
    first = run([path], tmp_path / "job")
    again = run([path], tmp_path / "job")
    assert len(fake.batches) == 1
    assert table(again) == table(first)


class Crash(BaseException):
    """Stands for SIGKILL in the middle of a call."""


def test_a_crash_right_after_create_reattaches(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.simulate()
    path = make_input(write, 4)
    real = api.start_batch

    def create_then_die(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise Crash

    monkeypatch.setattr(api, "start_batch", create_then_die)
    with pytest.raises(Crash):
        run([path], tmp_path / "job", max_requests=2)
    monkeypatch.setattr(api, "start_batch", real)
    events: list[str] = []
    result = run(
        [path], tmp_path / "job", max_requests=2, progress=lambda p: events.append(p.event or "")
    )
    assert result.summary.ok
    assert len(fake.batches) == 2 and set(fake.submitted().values()) == {1}
    assert any("reattached to batch_0000" in e for e in events)


def test_a_crash_during_upload_reuses_or_deletes_the_file(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.simulate()
    path = make_input(write, 2)
    real = api.upload_file

    def upload_twice_then_die(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        real(*args, **kwargs)
        raise Crash

    monkeypatch.setattr(api, "upload_file", upload_twice_then_die)
    with pytest.raises(Crash):
        run([path], tmp_path / "job")
    monkeypatch.setattr(api, "upload_file", real)
    result = run([path], tmp_path / "job")
    assert result.summary.ok
    assert len(fake.uploads) == 2  # no third upload: one reused, the other deleted
    assert len(fake.deleted) == 1
    assert fake.batches["batch_0000"]["input_file_id"] in {"file-0000", "file-0001"} - set(
        fake.deleted
    )


def test_an_unknown_create_outcome_is_looked_up_not_repeated(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.simulate()
    path = make_input(write, 2)
    real = api.start_batch

    def created_but_timed_out(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        monkeypatch.setattr(api, "start_batch", real)
        raise api.ApiError("cannot create the batch: the request timed out")

    monkeypatch.setattr(api, "start_batch", created_but_timed_out)
    result = run([path], tmp_path / "job")
    assert result.summary.ok and len(fake.batches) == 1


def test_interrupt_leaves_batches_running_or_cancels_them(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path
) -> None:
    fake.simulate()
    path = make_input(write, 2)

    def stop(p: jobs.JobProgress) -> None:
        if p.active:
            raise KeyboardInterrupt

    with pytest.raises(jobs.JobInterrupted) as caught:
        run([path], tmp_path / "job", progress=stop)
    assert caught.value.running == ["batch_0000"] and caught.value.cancelled == []
    assert fake.batches["batch_0000"]["status"] not in {"cancelling", "cancelled"}
    with pytest.raises(jobs.JobInterrupted) as caught:
        run([path], tmp_path / "job", progress=stop, cancel_on_interrupt=True)
    assert caught.value.cancelled == ["batch_0000"]
    assert fake.batches["batch_0000"]["status"] == "cancelled"


def test_polling_backs_off_to_a_minute(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path
) -> None:
    fake.simulate(tick=1, validating=30)  # slow batches: many polls without change
    clock = Clock()
    # a part waiting for room (max_active) does not keep the pause short
    run([make_input(write, 2)], tmp_path / "job", clock, interval=2, max_requests=1, max_active=1)
    assert min(clock.pauses) >= 2 and max(clock.pauses) == jobs.MAX_INTERVAL


def test_the_ledger_is_sqlite_and_records_each_part(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path
) -> None:
    fake.simulate()
    result = run([make_input(write, 3)], tmp_path / "job", max_requests=2)
    db = sqlite3.connect(tmp_path / "job" / "ledger.sqlite")
    rows = db.execute("SELECT state, batch_id, file_id, attempt FROM parts").fetchall()
    assert rows == [("done", p.batch_id, p.file_id, 1) for p in result.parts]
    with Ledger.open(tmp_path / "job") as ledger:
        assert ledger.get("prepared") is True


def test_two_runs_cannot_share_a_folder(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.simulate()
    path = make_input(write, 2)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "job")], stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"holding\n"
        monkeypatch.setattr(output, "LOCK_WAIT", 0.1)
        with pytest.raises(WriteError, match="another jsonl-batch run"):
            run([path], tmp_path / "job")
    finally:
        holder.kill()
        holder.wait()
    assert fake.calls == []
    assert run([path], tmp_path / "job").summary.ok


HOLD = """
import sys, time
from jsonl_batch.jobs.ledger import Ledger
from jsonl_batch.outputs.atomic import WriteError
with Ledger.open(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(60)
"""


def test_progress_has_eta_expiry_and_stalled_batches(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "STALL_AFTER", 120.0)
    fake.simulate(stall={"r-2": 1}, window=400, rate=0.2)
    seen: list[jobs.JobProgress] = []
    result = run([make_input(write, 4)], tmp_path / "job", progress=seen.append)
    assert result.summary.ok
    assert any(p.stalled == ["batch_0000"] for p in seen)
    assert any(p.eta is not None for p in seen)
    assert any(p.expires_in is not None and p.expires_in > 0 for p in seen)
    last = seen[-1]
    assert (last.round, last.done, last.completed, last.round_requests, last.requests) == (
        2,
        1,
        2,
        2,
        4,
    )


def test_a_split_manifest_is_an_input(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path
) -> None:
    from jsonl_batch import split_file

    fake.simulate()
    split = split_file(make_input(write, 5), tmp_path / "parts", max_requests=2)
    assert split.manifest is not None and split.manifest.path is not None
    manifest = Path(split.manifest.path)
    result = run([manifest], tmp_path / "job")
    rows = table(result)
    assert rows["custom_id"] == [f"r-{i}" for i in range(5)]
    assert result.summary.ok and len(result.parts) == 3


def test_the_table_keeps_each_requests_last_answer(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path
) -> None:
    fake.simulate(stall={"r-1": 1}, flaky={"r-1": 2}, window=300)  # expired, then HTTP 500
    result = run([make_input(write, 3)], tmp_path / "job", retries=1)
    rows = table(result)
    assert rows["status"] == ["succeeded", "failed", "succeeded"]
    assert (rows["status_code"][1], rows["error_code"][1], rows["attempts"][1]) == (
        500,
        "server_error",
        2,
    )
    assert rows["batch_id"][1] == result.parts[-1].batch_id


def test_failures_that_may_pass_are_waited_out(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path
) -> None:
    fake.simulate()
    fake.fault(r"/files", 500, "upload went wrong")  # the first upload
    fake.fault(r"/batches/batch_\d+", 503, "overloaded", times=3)  # polls
    events: list[str] = []
    result = run(
        [make_input(write, 2)], tmp_path / "job", progress=lambda p: events.append(p.event or "")
    )
    assert result.summary.ok and len(fake.batches) == 1
    assert sum("trying again" in e for e in events) == 4
    fake.reset()
    fake.simulate()
    fake.fault(r"/batches/batch_\d+", 403, "no access")
    with pytest.raises(api.ApiError, match="permission denied"):
        run([make_input(write, 2)], tmp_path / "job2")


def test_each_inputs_retries_go_in_their_own_parts(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path
) -> None:
    fake.simulate(flaky={"a-1": 1, "b-0": 1})
    mini = write([request(f"a-{i}") for i in range(3)], "mini.jsonl")
    big = write([request(f"b-{i}", model="gpt-4o") for i in range(2)], "big.jsonl")
    result = run([mini, big], tmp_path / "job")
    assert result.summary.ok
    retries = [p for p in result.parts if p.round == 1]
    assert [p.path for p in retries] == [
        "retries/round-1/001/retry.jsonl",
        "retries/round-1/002/retry.jsonl",
    ]  # one model per batch file
    assert {b["model"] for b in fake.batches.values()} == {"gpt-4o-mini", "gpt-4o"}


def test_parts_are_the_input_byte_for_byte(
    fake: FakeOpenAI, write: Callable[..., Path], tmp_path: Path
) -> None:
    fake.simulate()
    data = jsonl(*(request(f"r-{i}") for i in range(5))).replace(b"\n", b"\r\n", 2)
    path = write(data, "crlf.jsonl")
    result = run([path], tmp_path / "job", max_requests=2)
    assert b"".join((tmp_path / "job" / p.path).read_bytes() for p in result.parts) == data
    assert fake.uploads[0][1] + fake.uploads[1][1] + fake.uploads[2][1] == data
    assert table(result)["line"] == [1, 2, 3, 4, 5]


def test_one_polling_floor_for_batches_and_jobs() -> None:
    assert jobs.MIN_INTERVAL is api.MIN_INTERVAL  # defined once, in api.batches
