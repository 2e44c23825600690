"""``jsonl-batch batches``: every command through CliRunner, the real SDK and the fake server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from fake_openai import KEY, FakeOpenAI, closed_port
from helpers import ROOT, jsonl, request

from jsonl_batch.api import batches as api
from jsonl_batch.cli import main
from jsonl_batch.cli.batches import batches


def run(*args: str) -> Result:
    result = CliRunner().invoke(main, ["batches", *args])
    assert KEY not in result.output  # stdout and stderr
    assert "Traceback" not in result.output
    return result


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--interval 0`` polls at once here (a real run waits at least ``api.MIN_INTERVAL``)."""
    monkeypatch.setattr(api, "MIN_INTERVAL", 0.0)


@pytest.fixture
def requests_file(tmp_path: Path) -> Path:
    path = tmp_path / "requests.jsonl"
    path.write_bytes(jsonl(*(request(f"r-{i}") for i in range(4))))
    return path


def test_every_command_has_help() -> None:
    for name, command in batches.commands.items():
        result = run(name, "--help")
        assert result.exit_code == 0, name
        assert command.help and "Example:" in command.help, name


def test_list_all_45_once_in_order(fake: FakeOpenAI) -> None:
    ids = fake.seed(45)
    result = run("list", "--all", "--limit", "20", "--format", "jsonl")
    assert result.exit_code == 0
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ids
    assert result.stderr == ""
    assert fake.calls == [("GET", "/batches")] * 3


def test_list_one_page_prints_the_next_cursor(fake: FakeOpenAI) -> None:
    ids = fake.seed(45)
    result = run("list")
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "ID", "STATUS", "ENDPOINT", "MODEL", "CREATED", "(UTC)", "DONE/FAILED/TOTAL", "METADATA"
    ]  # fmt: skip
    assert [line.split()[0] for line in lines[1:21]] == ids[:20]
    assert lines[1].split()[1:] == [
        "completed", "/v1/chat/completions", "-", "2024-03-26", "16:46", "95/5/100", "n=44"
    ]  # fmt: skip
    assert lines[21] == f"next page: jsonl-batch batches list --after {ids[19]}"
    last = run("list", "--after", ids[39], "--format", "jsonl")
    assert [json.loads(line)["id"] for line in last.stdout.splitlines()] == ids[40:]
    assert "next page" not in last.stdout + last.stderr


def test_list_json_is_the_api_object(fake: FakeOpenAI) -> None:
    fake.seed(3)
    result = run("list", "--limit", "2", "--format", "json")
    assert json.loads(result.stdout) == fake.page(limit=2)


def test_list_jsonl_cursor_goes_to_stderr(fake: FakeOpenAI) -> None:
    ids = fake.seed(3)
    result = run("list", "--limit", "1", "--format", "jsonl", "--status", "completed")
    assert len(result.stdout.splitlines()) == 1
    assert result.stderr == f"next page: jsonl-batch batches list --after {ids[0]}\n"


def test_list_empty(fake: FakeOpenAI) -> None:
    assert run("list").stdout == "no batches\n"


def test_get_table_and_json(fake: FakeOpenAI) -> None:
    batch = fake.add("failed")
    text = run("get", batch["id"]).stdout
    assert "created_at         2024-03-26 16:45:33 UTC\n" in text
    assert "failed_at          -\n" in text
    assert "request_counts     95 completed, 5 failed, 100 total\n" in text
    assert "errors             line 2 invalid_url [url]: The URL provided" in text
    assert "metadata           customer_id: user_123456789\n" in text
    assert "usage              input 2,400 (cached 0), output 1,500 (reasoning 0)" in text
    assert json.loads(run("get", batch["id"], "--format", "json").stdout) == batch
    assert json.loads(run("get", batch["id"], "--format", "jsonl").stdout) == batch


def test_cancel(fake: FakeOpenAI) -> None:
    fake.files["file-abc123"] = {"data": jsonl(request("a")), "purpose": "batch"}
    batch = fake.add("in_progress")
    result = run("cancel", batch["id"])
    assert result.exit_code == 0
    assert result.stdout == f"{batch['id']}: cancelling (95 completed, 5 failed, 100 total)\n"


def no_key(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.delenv("OPENAI_API_KEY")
    return ["get", "batch_x"]


def unauthorized(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-wrongwrongwrong1234")
    return ["list"]


def forbidden(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    fake.fault("/batches", 403, f"You are not allowed to list batches with {KEY}")
    return ["list"]


def unknown(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return ["get", "batch_nope"]


def finished(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return ["cancel", fake.add("completed")["id"]]


def rate_limited(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    fake.fault("/batches", 429, "Rate limit reached", times=3)
    return ["list"]


def refused(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return ["list", "--base-url", f"http://127.0.0.1:{closed_port()}/v1", "--max-retries", "0"]


def timeout(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    fake.delay = 0.3
    return ["list", "--request-timeout", "0.05", "--max-retries", "0"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (no_key, "no API key: set OPENAI_API_KEY"),
        (unauthorized, "cannot list batches: authentication failed (HTTP 401)"),
        (forbidden, "cannot list batches: permission denied (HTTP 403)"),
        (unknown, "cannot get batch_nope: not found (HTTP 404): No batch found with id"),
        (finished, "conflict (HTTP 409): Cannot cancel a batch with status 'completed'"),
        (rate_limited, "rate limited (HTTP 429): Rate limit reached after 2 retries"),
        (refused, "cannot list batches: cannot connect to http://127.0.0.1:"),
        (timeout, "cannot list batches: the request to http://127.0.0.1:"),
    ],
)
def test_every_api_failure_is_one_line_and_exit_2(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, setup: object, message: str
) -> None:
    args = setup(fake, monkeypatch)  # type: ignore[operator]
    result = run(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1
    assert "wrongwrong" not in result.stderr


def test_without_the_sdk_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)
    result = run("list")
    assert result.exit_code == 2
    assert "pip install 'jsonl-batch[api]'" in result.stderr


def test_create_prints_the_id(fake: FakeOpenAI, requests_file: Path) -> None:
    result = run("create", str(requests_file), "--metadata", "job=nightly", "--metadata", "n=1")
    assert result.exit_code == 0
    assert result.stdout == "batch_0000\n"
    assert "uploaded" in result.stderr and "created batch_0000 (validating)" in result.stderr
    assert fake.created[0]["metadata"] == {"job": "nightly", "n": "1"}
    assert fake.uploads[0][0] == "batch"


def test_create_shows_warnings_a_line_each(fake: FakeOpenAI, tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_bytes(jsonl(request("a b"), request("c")))  # a custom_id with a space: a warning
    result = run("create", str(path))
    assert result.exit_code == 0 and result.stdout == "batch_0000\n"
    assert result.stderr.splitlines()[0].endswith(": valid (1 warning): 2 requests in 2 lines, "
                                                   f"{path.stat().st_size} bytes; "
                                                   "/v1/chat/completions, gpt-4o-mini")  # fmt: skip
    assert "\\n" not in result.stderr  # the report's lines were escaped into one (a bug)
    assert result.stderr.splitlines()[-1].startswith(f"uploaded {path} as file-")


def test_create_refuses_an_invalid_file(fake: FakeOpenAI, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(jsonl(request("a"), {**request("b"), "method": "GET"}))
    result = run("create", str(path))
    assert result.exit_code == 1
    assert "invalid batch file; not uploaded" in result.stderr
    assert "line 2" in result.stderr
    assert fake.calls == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metadata", "novalue"], "'novalue' is not key=value"),
        (["--metadata", "a=1", "--metadata", "a=2"], "key 'a' given twice"),
        (["--metadata", "k=" + "v" * 513], "at most 512"),
        (["--endpoint", "/v1/nope"], "is not an endpoint of the openai profile"),
    ],
)
def test_create_usage_errors(
    fake: FakeOpenAI, requests_file: Path, args: list[str], message: str
) -> None:
    result = run("create", str(requests_file), *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert fake.calls == []


def test_create_missing_file(fake: FakeOpenAI, tmp_path: Path) -> None:
    result = run("create", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2
    assert "nope.jsonl" in result.stderr


@pytest.mark.parametrize(
    ("plan", "code"), [("completed", 0), ("failed", 1), ("expired", 1), ("cancelled", 1)]
)
def test_wait_exit_status(fake: FakeOpenAI, requests_file: Path, plan: str, code: int) -> None:
    fake.plan = plan
    batch_id = run("create", str(requests_file)).stdout.strip()
    if plan == "cancelled":
        run("cancel", batch_id)
    result = run("wait", batch_id, "--interval", "0")
    assert result.exit_code == code
    assert result.stdout.startswith(f"{batch_id}: {plan} (")
    assert f"] {batch_id}: {plan}" in result.stderr.splitlines()[-1]  # plain progress lines
    if plan == "failed":
        assert "  line 2 invalid_url [url]: The URL provided" in result.stdout
    else:
        assert f"download the results with: jsonl-batch batches download {batch_id}" in (
            result.stdout
        )


def test_wait_timeout(fake: FakeOpenAI, requests_file: Path) -> None:
    fake.plan = "cancelled"
    batch_id = run("create", str(requests_file)).stdout.strip()
    result = run("wait", batch_id, "--interval", "0", "--timeout", "0")
    assert result.exit_code == 2
    assert f"{batch_id} is still in_progress after 0s" in result.stderr


def test_download(fake: FakeOpenAI, requests_file: Path, tmp_path: Path) -> None:
    fake.fail_ids = {"r-2"}
    batch_id = run("create", str(requests_file)).stdout.strip()
    run("wait", batch_id, "--interval", "0")
    out = tmp_path / "out"
    result = run("download", batch_id, "-o", str(out))
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"wrote {out / batch_id}.output.jsonl (output)",
        f"wrote {out / batch_id}.errors.jsonl (errors)",
    ]
    assert len((out / f"{batch_id}.output.jsonl").read_bytes().splitlines()) == 3
    again = run("download", batch_id, "-o", str(out))
    assert again.exit_code == 2
    assert "already exists; use --force" in again.stderr
    forced = run("download", batch_id, "-o", str(out), "--force", "--format", "json")
    assert json.loads(forced.stdout)["errors"] == f"{out / batch_id}.errors.jsonl"


def test_download_after_cancel_has_partial_results(
    fake: FakeOpenAI, requests_file: Path, tmp_path: Path
) -> None:
    fake.plan = "cancelled"
    batch_id = run("create", str(requests_file)).stdout.strip()
    run("get", batch_id)
    assert run("cancel", batch_id).exit_code == 0
    result = run("download", batch_id, "-o", str(tmp_path))
    assert result.exit_code == 0
    assert len((tmp_path / f"{batch_id}.output.jsonl").read_bytes().splitlines()) == 2
    errors = (tmp_path / f"{batch_id}.errors.jsonl").read_text().splitlines()
    assert [json.loads(e)["error"]["code"] for e in errors] == ["batch_cancelled"] * 2


def test_download_all_failed(fake: FakeOpenAI, requests_file: Path, tmp_path: Path) -> None:
    fake.fail_ids = {f"r-{i}" for i in range(4)}
    batch_id = run("create", str(requests_file)).stdout.strip()
    run("wait", batch_id, "--interval", "0")
    result = run("download", batch_id, "-o", str(tmp_path))
    assert result.stdout.splitlines()[0] == "no output file: no request succeeded"


def test_azure_profile(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")
    fake.seed(2)
    result = run("list", "--profile", "azure", "--base-url", fake.url_for("/openai"))
    assert result.exit_code == 0
    assert fake.requests[-1].path == "/openai/batches"
    missing = run("list", "--profile", "azure")
    assert missing.exit_code == 2
    assert "--profile azure needs AZURE_OPENAI_ENDPOINT" in missing.stderr


def test_download_of_a_failed_batch(fake: FakeOpenAI, requests_file: Path, tmp_path: Path) -> None:
    fake.plan = "failed"
    batch_id = run("create", str(requests_file)).stdout.strip()
    run("wait", batch_id, "--interval", "0")
    result = run("download", batch_id, "-o", str(tmp_path))
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"{batch_id} is failed: it has no result files",
        "  line 2 invalid_url [url]: The URL provided for this request does not match the batch "
        "endpoint.",
    ]


def test_every_command_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## batches\n", 1)[1].split("\n## ", 1)[0]
    for name in batches.commands:
        assert f"jsonl-batch batches {name}" in section, name
    assert "pip install 'jsonl-batch[api]'" in section
