"""``--format json`` prints exactly the library's ``result.to_dict()``: one test per command.

Each runs the command through CliRunner, then the library function on the same inputs (the
outputs replaced with ``force``), and compares the two. Commands that change the server
(``create``, ``cancel``, ``run``, ``clean``) are compared with the result the library
function returned during the command itself (``spy``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from fake_openai import FakeOpenAI
from helpers import DATA, jsonl, request

from jsonl_batch.api import batches as api
from jsonl_batch.build.inputs import build_file
from jsonl_batch.cli import main
from jsonl_batch.jobs import runner as jobs_runner
from jsonl_batch.jobs import status as jobs_status
from jsonl_batch.results.join import join_to
from jsonl_batch.results.retry import write_retry
from jsonl_batch.split.engine import split_file
from jsonl_batch.tokens.stats import file_stats
from jsonl_batch.validate import validate_file

J = DATA / "join"
INPUT, RESULTS = J / "chat.input.jsonl", [J / "chat.output.jsonl", J / "chat.errors.jsonl"]
RESULT_ARGS = [arg for path in RESULTS for arg in ("-r", str(path))]


def printed(*args: str) -> Any:
    """The command's standard output, parsed (it must be one JSON value)."""
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code in (0, 1), result.output
    return orjson.loads(result.stdout)


def plain(result: Any) -> Any:
    """``result.to_dict()`` (a dict as it is) through JSON: tuples become lists, paths text."""
    data = result if isinstance(result, dict) else result.to_dict()
    return orjson.loads(orjson.dumps(data))


def spy(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[Any]:
    """Record what ``owner.name`` returns while a command runs."""
    returned: list[Any] = []
    real: Callable[..., Any] = getattr(owner, name)

    def recording(*args: Any, **kwargs: Any) -> Any:
        returned.append(real(*args, **kwargs))
        return returned[-1]

    monkeypatch.setattr(owner, name, recording)
    return returned


@pytest.fixture
def requests_file(write: Callable[..., Path]) -> Path:
    return write([request(f"r-{i}") for i in range(5)], "requests.jsonl")


def test_validate(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(request("a"), request("a"), {"custom_id": "b"}))
    assert printed("validate", str(path), "--format", "json") == plain(validate_file(path))


def test_build(tmp_path: Path) -> None:
    source = tmp_path / "q.csv"
    source.write_text("id,question\n1,Hi?\n2,Why?\n3,How?\n")
    for split in ((), ("--split",)):
        out = tmp_path / "batch.jsonl"
        args = ["-o", str(out), "--model", "m", "--prompt-column", "question", "--force"]
        data = printed("build", str(source), *args, *split, "--format", "json")
        library = build_file(
            source, out, "/v1/chat/completions", model="m", prompt_column="question",
            force=True, split=bool(split),
        )  # fmt: skip
        assert data == plain(library)


def test_split_wrote(requests_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "parts"
    data = printed("split", str(requests_file), "--max-requests", "2", "-o", str(out),
                   "--force", "--format", "json")  # fmt: skip
    library = split_file(requests_file, out, max_requests=2, force=True)
    assert data == plain(library) and data["manifest"] == str(out / "requests.manifest.json")


def test_split_wrote_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(jsonl(request("r1"), request("r1")))
    data = printed("split", str(path), "--format", "json")
    assert data == plain(split_file(path)) and data["valid"] is False


def test_join(tmp_path: Path) -> None:
    target = tmp_path / "t.parquet"
    data = printed("join", str(INPUT), *RESULT_ARGS, "-o", str(target), "--summary-format", "json")
    library = join_to([INPUT], RESULTS, target, force=True)
    assert data == plain(library) and data["output"] == str(target)


def test_join_partitioned(tmp_path: Path) -> None:
    target = tmp_path / "table"
    data = printed("join", str(INPUT), *RESULT_ARGS, "-o", str(target), "--partition-by",
                   "status", "--summary-format", "json")  # fmt: skip
    library = join_to([INPUT], RESULTS, target, partition_by="status", force=True)
    assert data == plain(library) and data["partition_by"] == "status"


def test_retry(tmp_path: Path) -> None:
    target = tmp_path / "retry.jsonl"
    data = printed("retry", str(INPUT), *RESULT_ARGS, "-o", str(target), "--max-requests", "2",
                   "--format", "json")  # fmt: skip
    library = write_retry([INPUT], RESULTS, target, force=True, max_requests=2)
    assert data == plain(library) and data["manifest"]["parts"]


def test_stats(requests_file: Path) -> None:
    assert printed("stats", str(requests_file), "--format", "json") == plain(
        file_stats(requests_file)
    )


# -- batches: the fake server ---------------------------------------------------------------


def client() -> Any:
    return api.make_client(max_retries=0)


def test_batches_list_get_wait(fake: FakeOpenAI) -> None:
    ids = fake.seed(3)
    data = printed("batches", "list", "--limit", "2", "--format", "json")
    assert data == plain(api.list_batches(client(), limit=2))
    data = printed("batches", "get", ids[0], "--format", "json")
    assert data == plain(api.get_batch(client(), ids[0]))
    data = printed("batches", "wait", ids[0], "--format", "json")
    assert data == plain(api.wait_for_batch(client(), ids[0]))


def test_batches_download(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.simulate()
    batch = api.create_batch(client(), DATA / "join" / "chat.input.jsonl", validate=False).batch
    done = api.wait_for_batch(client(), batch["id"], interval=0)
    data = printed("batches", "download", done["id"], "-o", str(tmp_path), "--format", "json")
    library = api.download_results(client(), done["id"], tmp_path, force=True)
    assert data == plain(library) and data["output"]


def test_batches_create_and_cancel(
    fake: FakeOpenAI, requests_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = spy(monkeypatch, api, "create_batch")
    data = printed("batches", "create", str(requests_file), "--format", "json")
    assert data == plain(created[0]) == plain(created[0].batch)
    cancelled = spy(monkeypatch, api, "cancel_batch")
    data = printed("batches", "cancel", data["id"], "--format", "json")
    assert data == plain(cancelled[0]) and data["status"] == "cancelling"


# -- jobs: batches run, status, clean -------------------------------------------------------


def test_jobs_run_status_clean(
    fake: FakeOpenAI, requests_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs_runner, "MIN_INTERVAL", 0.0)
    fake.simulate()
    out = tmp_path / "job"
    ran = spy(monkeypatch, jobs_runner, "run_job")
    data = printed("batches", "run", str(requests_file), "-o", str(out), "--interval", "0",
                   "--format", "json")  # fmt: skip
    assert data == plain(ran[0]) and data["summary"]["ok"]
    data = printed("batches", "status", str(out), "--format", "json")
    assert data == plain(jobs_status.job_status(out, client=client()))
    cleaned = spy(monkeypatch, jobs_status, "clean_job")
    data = printed("batches", "clean", str(out), "--format", "json")
    assert data == plain(cleaned[0]) and data["deleted"]
