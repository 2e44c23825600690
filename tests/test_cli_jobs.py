"""``jsonl-batch batches run``, ``status``, ``clean`` through CliRunner and the simulated server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from fake_openai import KEY, FakeOpenAI
from helpers import jsonl, request

from jsonl_batch.cli import main
from jsonl_batch.jobs import runner as jobs
from jsonl_batch.results.tables import read_summary


def run(*args: str) -> Result:
    result = CliRunner().invoke(main, ["batches", *args])
    assert KEY not in result.output
    assert "Traceback" not in result.output
    return result


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulated server's clock moves per request: no need to pause between polls."""
    monkeypatch.setattr(jobs, "MIN_INTERVAL", 0.0)
    monkeypatch.setattr(jobs, "RESUBMIT_AFTER", 0.0)


@pytest.fixture
def requests_file(tmp_path: Path) -> Path:
    path = tmp_path / "requests.jsonl"
    path.write_bytes(jsonl(*(request(f"r-{i}") for i in range(5))))
    return path


def job(requests_file: Path, out: Path, *options: str) -> Result:
    return run("run", str(requests_file), "-o", str(out), "--interval", "0", *options)


def test_run_ends_in_one_table(fake: FakeOpenAI, requests_file: Path, tmp_path: Path) -> None:
    fake.simulate(flaky={"r-2": 1})
    out = tmp_path / "job"
    result = job(requests_file, out, "--max-requests", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"wrote {out}/results.parquet (5 requests: 5 succeeded, 0 failed, 0 missing)",
        "4 batches in 2 rounds",
    ]
    log = result.stderr
    assert "requests.part-001-of-003.jsonl: submitted as batch_0000" in log
    assert "round 2: 1 request to retry in 1 part" in log
    rows = pq.read_table(out / "results.parquet").to_pylist()
    assert [(r["custom_id"], r["attempts"]) for r in rows] == [
        ("r-0", 1), ("r-1", 1), ("r-2", 2), ("r-3", 1), ("r-4", 1)
    ]  # fmt: skip
    assert rows[2]["batch_id"] == "batch_0003" and rows[0]["content"] == "answer to r-0"
    assert read_summary(out / "results.parquet")["succeeded"] == 5


def test_run_json_is_the_library_result(
    fake: FakeOpenAI, requests_file: Path, tmp_path: Path
) -> None:
    fake.simulate()
    out = tmp_path / "job"
    data = json.loads(job(requests_file, out, "--format", "json").stdout)
    assert data["table"] == str(out / "results.parquet")
    assert data["summary"]["ok"] and data["summary"]["requests"] == 5
    assert [p["state"] for p in data["parts"]] == ["done"]


def test_run_exits_1_when_requests_fail_for_good(
    fake: FakeOpenAI, requests_file: Path, tmp_path: Path
) -> None:
    fake.simulate(flaky={"r-1": 5})
    result = job(requests_file, tmp_path / "job", "--retries", "1")
    assert result.exit_code == 1
    assert "4 succeeded, 1 failed" in result.stdout
    assert "failed requests by error: server_error 1" in result.stdout


def test_run_refuses_invalid_input_before_any_call(fake: FakeOpenAI, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"not json\n")
    result = run("run", str(path), "-o", str(tmp_path / "job"))
    assert result.exit_code == 1
    assert "invalid_json_line" in result.stderr and "nothing was uploaded" in result.stderr
    assert fake.calls == []


def test_run_refuses_other_inputs_in_a_job_folder(
    fake: FakeOpenAI, requests_file: Path, tmp_path: Path
) -> None:
    fake.simulate()
    assert job(requests_file, tmp_path / "job").exit_code == 0
    other = tmp_path / "other.jsonl"
    other.write_bytes(jsonl(request("x")))
    result = job(other, tmp_path / "job")
    assert result.exit_code == 2
    assert "holds the job of other inputs" in result.stderr


def interrupt_once(monkeypatch: pytest.MonkeyPatch) -> None:
    real = jobs.Runner.poll

    def poll(self: jobs.Runner) -> None:
        real(self)
        if self.ledger.parts(states=("submitted",)):
            monkeypatch.setattr(jobs.Runner, "poll", real)
            raise KeyboardInterrupt

    monkeypatch.setattr(jobs.Runner, "poll", poll)


def test_ctrl_c_leaves_batches_running_and_says_how_to_resume(
    fake: FakeOpenAI, requests_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.simulate()
    interrupt_once(monkeypatch)
    result = job(requests_file, tmp_path / "job")
    assert result.exit_code == 130
    assert "1 batch(es) still running on the server: batch_0000" in result.stderr
    assert "resume with the same command" in result.stderr
    status = run("status", str(tmp_path / "job"))
    assert status.exit_code == 0
    assert "requests.part-001-of-001.jsonl: submitted batch_0000" in status.stdout
    again = job(requests_file, tmp_path / "job")
    assert again.exit_code == 0 and len(fake.batches) == 1


def test_ctrl_c_with_cancel_on_interrupt(
    fake: FakeOpenAI, requests_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.simulate()
    interrupt_once(monkeypatch)
    result = job(requests_file, tmp_path / "job", "--cancel-on-interrupt")
    assert result.exit_code == 130
    assert "cancelled 1 running batch(es): batch_0000" in result.stderr
    assert fake.batches["batch_0000"]["status"] == "cancelled"


def test_status_offline_and_json(fake: FakeOpenAI, requests_file: Path, tmp_path: Path) -> None:
    fake.simulate()
    job(requests_file, tmp_path / "job", "--max-requests", "3")
    calls = len(fake.calls)
    text = run("status", str(tmp_path / "job"), "--offline")
    assert text.exit_code == 0 and len(fake.calls) == calls
    assert text.stdout.splitlines()[0].endswith("round 1, 2 parts (2 done); 5 requests")
    data = json.loads(run("status", str(tmp_path / "job"), "--format", "json").stdout)
    assert data["finished"] and data["states"] == {"done": 2}
    missing = run("status", str(tmp_path / "nothing"))
    assert missing.exit_code == 2 and "no job here" in missing.stderr


def test_clean_deletes_the_jobs_files_on_the_server(
    fake: FakeOpenAI, requests_file: Path, tmp_path: Path
) -> None:
    fake.simulate(flaky={"r-1": 1})
    job(requests_file, tmp_path / "job")
    inputs = {b["input_file_id"] for b in fake.batches.values()}
    outputs = {b[k] for b in fake.batches.values() for k in ("output_file_id", "error_file_id")}
    result = run("clean", str(tmp_path / "job"))
    assert result.exit_code == 0
    assert set(fake.deleted) == inputs | (outputs - {None})
    assert "deleted file-0000 (input of requests.part-001-of-001.jsonl)" in result.stdout
    assert (tmp_path / "job" / "results.parquet").is_file()  # local copies stay
    assert run("clean", str(tmp_path / "job")).stdout == "nothing to delete\n"


def test_run_with_the_azure_profile(
    fake: FakeOpenAI, requests_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")
    fake.simulate()
    base = ["--profile", "azure", "--base-url", fake.url_for("/openai")]
    result = job(requests_file, tmp_path / "job", *base)
    assert result.exit_code == 0, result.output
    assert any(r.path == "/openai/batches" for r in fake.requests)


def test_metadata_has_room_for_the_jobs_tags(
    fake: FakeOpenAI, requests_file: Path, tmp_path: Path
) -> None:
    fake.simulate()
    many: list[Any] = [x for i in range(14) for x in ("--metadata", f"k{i}=v")]
    result = job(requests_file, tmp_path / "job", *many)
    assert result.exit_code == 2 and "metadata has 17 pairs" in result.stderr
    ok = job(requests_file, tmp_path / "job2", "--metadata", "team=eval")
    assert ok.exit_code == 0
    assert fake.batches["batch_0000"]["metadata"]["team"] == "eval"


def progress(**fields: Any) -> jobs.JobProgress:
    base: dict[str, Any] = {
        "event": None,
        "round": 1,
        "queued": 2,
        "active": 1,
        "done": 3,
        "failed": 0,
        "requests": 100,
        "completed": 40,
        "round_requests": 100,
        "elapsed": 125.0,
        "eta": 190.0,
        "expires_in": 3600.0 * 23,
    }
    return jobs.JobProgress(**{**base, **fields})


def test_the_live_view_on_a_terminal() -> None:
    import io

    from jsonl_batch.render.jobs import JobView, progress_text

    assert progress_text(progress()) == (
        "round 1 · 2 queued · 1 running · 3 done · [########------------] 40/100 requests · "
        "2m05s · ETA 3m10s · expires in 23h00m"
    )
    out = io.StringIO()
    view = JobView(out, tty=True)
    view(progress())
    view(progress(event="part-1: submitted as batch_1", stalled=["batch_0"]))
    view(progress(stalled=["batch_0"]))  # warned once
    view.close()
    text = out.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n")
    assert "[2m05s] part-1: submitted as batch_1\n" in text
    assert text.count("warning: batch_0 has made no progress") == 1


def test_a_line_per_state_change_elsewhere() -> None:
    import io

    from jsonl_batch.render.jobs import JobView

    out = io.StringIO()
    view = JobView(out, tty=False)
    view(progress())
    view(progress(event="part-1: submitted as batch_1"))
    view.close()
    assert out.getvalue() == "[2m05s] part-1: submitted as batch_1\n"


def test_what_the_server_says_cannot_drive_the_terminal() -> None:
    import io

    from jsonl_batch.render.jobs import JobView

    out = io.StringIO()
    JobView(out, tty=False)(progress(event="batch_x failed: \x1b[31mred\r\nforged line"))
    assert out.getvalue() == "[2m05s] batch_x failed: \\x1b[31mred\\r\\nforged line\n"
