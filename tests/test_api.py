"""The API library against the real SDK and a fake server: pages, errors, create, wait, download."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import orjson
import pytest
from fake_openai import KEY, PLANS, FakeOpenAI, closed_port, example
from helpers import jsonl, request

from jsonl_batch.api import batches as api
from jsonl_batch.api import client as api_client
from jsonl_batch.outputs.atomic import OutputExists
from jsonl_batch.render.batches import Progress


def client(**options: object) -> object:
    return api.make_client(**{"max_retries": 0, **options})


@pytest.fixture
def requests_file(tmp_path: Path) -> Path:
    path = tmp_path / "requests.jsonl"
    path.write_bytes(jsonl(*(request(f"r-{i}") for i in range(6))))
    return path


# -- listing ---------------------------------------------------------------------------------


def test_one_page_and_its_cursor(fake: FakeOpenAI) -> None:
    ids = fake.seed(45)
    page = api.list_batches(client())
    assert [b["id"] for b in page.data] == ids[:20]
    assert (page.first_id, page.last_id, page.has_more) == (ids[0], ids[19], True)
    assert page.next_after == ids[19]
    last = api.list_batches(client(), after=ids[39])
    assert [b["id"] for b in last.data] == ids[40:]
    assert last.next_after is None


def test_all_pages_once_in_order(fake: FakeOpenAI) -> None:
    ids = fake.seed(45)
    page = api.list_batches(client(), limit=20, all=True)
    assert [b["id"] for b in page.data] == ids
    assert not page.has_more
    assert fake.calls == [("GET", "/batches")] * 3


def test_batches_are_the_api_objects_unchanged(fake: FakeOpenAI) -> None:
    fake.seed(3)
    page = api.list_batches(client(), limit=2)
    assert page.to_dict() == fake.page(limit=2)
    assert api.get_batch(client(), "batch_0001") == fake.batches["batch_0001"]


def test_status_filter(fake: FakeOpenAI) -> None:
    fake.seed(2)
    fake.add("in_progress")
    page = api.list_batches(client(), status=["in_progress"])
    assert [b["status"] for b in page.data] == ["in_progress"]


@pytest.mark.parametrize("limit", [0, 101])
def test_limit_out_of_range(fake: FakeOpenAI, limit: int) -> None:
    with pytest.raises(ValueError, match="between 1 and 100"):
        api.list_batches(client(), limit=limit)
    assert fake.calls == []


# -- errors ----------------------------------------------------------------------------------


def wrong_key(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.key = "sk-the-server-wants-another-key"


def forbidden(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.fault("/batches/.*", 403, f"Project does not have access to batches ({KEY}).")


def rate_limited(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.fault("/batches/.*", 429, "Rate limit reached for requests", times=3)


def server_error(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.fault("/batches/.*", 500, "The server had an error", times=3)


def refused(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")


def slow(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.delay = 0.3


ERRORS = [
    (wrong_key, "authentication failed (HTTP 401): Incorrect API key provided: sk-***"),
    (forbidden, "permission denied (HTTP 403): Project does not have access to batches"),
    (None, "not found (HTTP 404): No batch found with id 'batch_nope'"),
    (rate_limited, "rate limited (HTTP 429): Rate limit reached for requests after 2 retries"),
    (server_error, "server error (HTTP 500): The server had an error after 2 retries"),
    (refused, "cannot connect to http://127.0.0.1:"),
    (slow, "timed out"),
]


@pytest.mark.parametrize(("setup", "expected"), ERRORS)
def test_every_failure_is_one_safe_line(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, setup: object, expected: str
) -> None:
    if setup:
        setup(fake, monkeypatch)  # type: ignore[operator]
    retries = 2 if setup in (rate_limited, server_error) else 0
    sdk = api.make_client(max_retries=retries, timeout=0.1)
    with pytest.raises(api.ApiError) as caught:
        api.get_batch(sdk, "batch_nope")
    message = str(caught.value)
    assert message.startswith("cannot get batch_nope: ")
    assert expected in message
    assert "\n" not in message
    assert KEY not in message and "SECRET" not in message
    if setup is rate_limited:
        assert len(fake.calls) == 3  # the SDK retried twice before giving up


AZURE_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"  # Azure keys: 32 hex digits, no "sk-" prefix


@pytest.mark.parametrize("profile", ["openai", "azure"])
def test_a_key_at_the_length_limit_is_redacted_whole(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, profile: str
) -> None:
    """The server echoes the key where the 300-character cut falls: no part of it may show."""
    if profile == "azure":
        monkeypatch.delenv("OPENAI_API_KEY")
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", fake.url_for("/"))
        monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZURE_KEY)
    else:  # a key without the sk- prefix (a proxy's, a gateway's)
        monkeypatch.setenv("OPENAI_API_KEY", AZURE_KEY)
    fake.key = AZURE_KEY
    cut = api_client.MAX_MESSAGE - 3
    fake.fault("/batches/.*", 403, "x" * (cut - 10) + f" {AZURE_KEY} was refused")
    with pytest.raises(api.ApiError) as caught:
        api.get_batch(api.make_client(profile, max_retries=0), "batch_1")
    message = str(caught.value)
    assert "x" * 50 in message and "***" in message
    assert not any(AZURE_KEY[i : i + 4] in message for i in range(len(AZURE_KEY) - 3))


def test_secrets_are_removed_before_the_message_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZURE_KEY)
    text = "y" * 280 + " " + AZURE_KEY + "\n\tand more"  # the key spans the cut at 297
    assert api_client.safe_line(text) == "y" * 280 + " *** and more"
    client = type("Client", (), {"api_key": "a-client-key-1234"})()
    cut = "z" * 295 + " a-client-key-1234"
    assert api_client.safe_line(cut, client) == "z" * 295 + " ***"


def test_no_key(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(api.ApiError, match=r"^no API key: set OPENAI_API_KEY$"):
        api.make_client()


def test_cancel_then_cancel_again(fake: FakeOpenAI) -> None:
    batch = fake.add("in_progress", output_file_id=None, error_file_id=None)
    fake.files["file-abc123"] = {"data": jsonl(request("a")), "purpose": "batch"}
    assert api.cancel_batch(client(), batch["id"])["status"] == "cancelling"
    assert api.get_batch(client(), batch["id"])["status"] == "cancelled"
    with pytest.raises(api.ApiError) as caught:
        api.cancel_batch(client(), batch["id"])
    assert caught.value.status == 409
    assert "Cannot cancel a batch with status 'cancelled'" in str(caught.value)
    assert "only a validating, in_progress or finalizing batch" in str(caught.value)


def test_missing_sdk_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(api.MissingSdk, match=r"pip install 'jsonl-batch\[api\]'"):
        api.make_client()


def test_the_package_never_imports_the_sdk_eagerly() -> None:
    import subprocess

    code = (
        "import sys, jsonl_batch, jsonl_batch.api.batches, jsonl_batch.cli; "
        "print('openai' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_azure_profile(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(api.ApiError, match="needs OPENAI_API_VERSION, AZURE_OPENAI_ENDPOINT"):
        api.make_client("azure")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", fake.url_for("/"))
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    fake.seed(1)
    page = api.list_batches(api.make_client("azure", max_retries=0))
    assert len(page.data) == 1
    request_ = fake.requests[-1]
    assert request_.path == "/openai/batches"
    assert request_.args["api-version"] == "2024-10-21"
    assert request_.headers["api-key"] == KEY


# -- create ----------------------------------------------------------------------------------


def test_create_validates_uploads_and_creates(fake: FakeOpenAI, requests_file: Path) -> None:
    created = api.create_batch(client(), requests_file, metadata={"job": "nightly"})
    assert fake.uploads == [("batch", requests_file.read_bytes())]
    assert fake.created == [
        {
            "input_file_id": created.file["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": {"job": "nightly"},
        }
    ]
    assert created.batch["status"] == "validating"
    assert created.report is not None and created.report.valid


def test_create_refuses_an_invalid_file(fake: FakeOpenAI, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(jsonl(request("a"), request("a")))
    with pytest.raises(api.InvalidBatchFile) as caught:
        api.create_batch(client(), path)
    assert caught.value.report.flatten() == [[2, "duplicate_custom_id"]]
    assert fake.calls == []


def test_create_without_validation_takes_the_first_url(fake: FakeOpenAI, tmp_path: Path) -> None:
    path = tmp_path / "emb.jsonl"
    path.write_bytes(jsonl({"custom_id": "a", "url": "/v1/embeddings", "body": {}}))
    api.create_batch(client(), path, validate=False)
    assert fake.created[0]["endpoint"] == "/v1/embeddings"


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({f"k{i}": "v" for i in range(17)}, "17 pairs; at most 16"),
        ({"k" * 65: "v"}, "1 to 64 characters"),
        ({"": "v"}, "1 to 64 characters"),
        ({"k": "v" * 513}, "513 characters; at most 512"),
    ],
)
def test_metadata_limits(
    fake: FakeOpenAI, requests_file: Path, metadata: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        api.create_batch(client(), requests_file, metadata=metadata)
    assert fake.calls == []


def test_metadata_at_the_limits_is_fine() -> None:
    metadata = {f"{i:064d}": "v" * 512 for i in range(16)}
    assert api.check_metadata(metadata) == metadata


def test_metadata_limits_are_the_profiles() -> None:
    from jsonl_batch import get_profile

    profile = get_profile("openai")
    assert (profile.max_metadata_pairs, profile.max_metadata_key) == (16, 64)
    assert profile.max_metadata_value == 512
    metadata = {str(i): "v" for i in range(17)}
    with pytest.raises(ValueError, match="17 pairs; at most 16"):
        api.check_metadata(metadata)
    assert api.check_metadata(metadata, profile.replace(max_metadata_pairs=17)) == metadata


# -- wait ------------------------------------------------------------------------------------


class Clock:
    """A fake clock: ``sleep`` moves time on and remembers the pauses."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


@pytest.mark.parametrize("plan", ["completed", "failed", "expired"])
def test_wait_reaches_each_terminal_status(
    fake: FakeOpenAI, requests_file: Path, plan: str
) -> None:
    fake.plan = plan
    batch_id = api.create_batch(client(), requests_file).batch["id"]
    clock, seen = Clock(), []
    final = api.wait_for_batch(
        client(),
        batch_id,
        interval=2,
        max_interval=4,
        on_poll=lambda b, t: seen.append((b["status"], t)),
        sleep=clock.sleep,
        clock=lambda: clock.now,
    )
    assert final["status"] == plan
    assert [s for s, _ in seen] == PLANS[plan][1:]
    assert clock.pauses == [2, 3, 4][: len(seen) - 1]  # backoff, capped
    if plan == "failed":
        assert final["errors"]["data"][0]["code"] == "invalid_url"


def test_wait_until_cancelled(fake: FakeOpenAI, requests_file: Path) -> None:
    fake.plan = "cancelled"  # stays in progress until cancelled
    batch_id = api.create_batch(client(), requests_file).batch["id"]
    api.cancel_batch(client(), batch_id)
    final = api.wait_for_batch(client(), batch_id, sleep=lambda s: None)
    assert final["status"] == "cancelled"


def test_wait_times_out(fake: FakeOpenAI, requests_file: Path) -> None:
    fake.plan = "cancelled"
    batch_id = api.create_batch(client(), requests_file).batch["id"]
    clock = Clock()
    with pytest.raises(api.WaitTimeout, match="still in_progress after 10s") as caught:
        api.wait_for_batch(
            client(), batch_id, interval=4, timeout=10, sleep=clock.sleep, clock=lambda: clock.now
        )
    assert clock.pauses == [4, 6]  # never sleeps past the deadline
    assert caught.value.batch["id"] == batch_id


def test_progress_bar_on_a_terminal_lines_otherwise() -> None:
    batch = example("cancel_batch_response.json")
    tty = io.StringIO()
    bar = Progress(tty, tty=True)
    bar(batch, 5)
    bar(batch, 75)
    bar.close()
    assert tty.getvalue() == (
        "\r" + "batch_abc123 [#######-----------------------] 24/100 (1 failed) cancelling 5s"
        "\x1b[K\r"
        + "batch_abc123 [#######-----------------------] 24/100 (1 failed) cancelling 1m15s"
        "\x1b[K\n"
    )
    plain = io.StringIO()
    lines = Progress(plain, tty=False, every=300)
    for t in (0, 10, 20, 400):
        lines(batch, t)
    done = {**batch, "status": "cancelled"}
    lines(done, 401)
    assert plain.getvalue().splitlines() == [
        "[0s] batch_abc123: cancelling (23 completed, 1 failed, 100 total)",
        "[6m40s] batch_abc123: cancelling (23 completed, 1 failed, 100 total)",
        "[6m41s] batch_abc123: cancelled (23 completed, 1 failed, 100 total)",
    ]


# -- download --------------------------------------------------------------------------------


def finished(fake: FakeOpenAI, path: Path, plan: str = "completed") -> str:
    fake.plan = plan
    batch_id = api.create_batch(client(), path).batch["id"]
    api.wait_for_batch(client(), batch_id, sleep=lambda s: None)
    return batch_id


def test_download_both_files(fake: FakeOpenAI, requests_file: Path, tmp_path: Path) -> None:
    fake.fail_ids = {"r-1"}
    batch_id = finished(fake, requests_file)
    out = tmp_path / "results"
    result = api.download_results(client(), batch_id, out)
    assert result.output == out / f"{batch_id}.output.jsonl"
    assert result.errors == out / f"{batch_id}.errors.jsonl"
    batch = fake.batches[batch_id]
    assert result.output.read_bytes() == fake.files[batch["output_file_id"]]["data"]
    assert result.errors.read_bytes() == fake.files[batch["error_file_id"]]["data"]
    assert sorted(p.name for p in out.iterdir()) == [result.errors.name, result.output.name]


@pytest.mark.parametrize(
    ("fail", "present"), [(set(), "output"), ({f"r-{i}" for i in range(6)}, "errors")]
)
def test_download_with_a_missing_file_id(
    fake: FakeOpenAI, requests_file: Path, tmp_path: Path, fail: set[str], present: str
) -> None:
    fake.fail_ids = fail
    result = api.download_results(client(), finished(fake, requests_file), tmp_path)
    assert [k for k in ("output", "errors") if getattr(result, k)] == [present]
    assert len(list(tmp_path.glob("batch_*"))) == 1


def test_download_partial_results_after_cancel(
    fake: FakeOpenAI, requests_file: Path, tmp_path: Path
) -> None:
    fake.plan = "cancelled"
    batch_id = api.create_batch(client(), requests_file).batch["id"]
    api.get_batch(client(), batch_id)  # now in progress
    cancelling = api.cancel_batch(client(), batch_id)
    with pytest.raises(api.ApiError, match="is cancelling: no results yet"):
        api.download_results(client(), cancelling, tmp_path)
    result = api.download_results(client(), batch_id, tmp_path)
    assert result.batch["status"] == "cancelled"
    assert len(result.output.read_bytes().splitlines()) == 3
    errors = result.errors.read_text()
    assert errors.count('"batch_cancelled"') == 3


def test_download_refuses_to_overwrite(
    fake: FakeOpenAI, requests_file: Path, tmp_path: Path
) -> None:
    fake.fail_ids = {"r-1"}
    batch_id = finished(fake, requests_file)
    api.download_results(client(), batch_id, tmp_path)
    (tmp_path / f"{batch_id}.output.jsonl").write_text("mine")
    calls = len(fake.calls)
    with pytest.raises(OutputExists):
        api.download_results(client(), batch_id, tmp_path)
    assert len(fake.calls) == calls + 1  # the batch was read; no file was downloaded
    api.download_results(client(), batch_id, tmp_path, force=True)
    assert (tmp_path / f"{batch_id}.output.jsonl").read_text() != "mine"


def test_download_failure_leaves_nothing(
    fake: FakeOpenAI, requests_file: Path, tmp_path: Path
) -> None:
    batch_id = finished(fake, requests_file)
    fake.fault("/files/.*/content", 404, "No such File object")
    with pytest.raises(api.ApiError, match=r"cannot download file-\d+: not found \(HTTP 404\)"):
        api.download_results(client(), batch_id, tmp_path)
    assert list(tmp_path.glob("batch_*")) == [] and list(tmp_path.glob(".batch_*")) == []


def test_run_batch_result_as_a_dict(
    fake: FakeOpenAI, requests_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "MIN_INTERVAL", 0.0)
    fake.simulate()
    run = api.run_batch(client(), requests_file, tmp_path / "out", wait={"interval": 0})
    data = run.to_dict()
    assert data["batch"]["status"] == "completed" and data["summary"]["succeeded"] == 6
    assert data["table"] == str(tmp_path / "out" / f"{run.batch['id']}.parquet")
    assert data["download"]["output"] == str(run.download.output)
    assert orjson.loads(orjson.dumps(data)) == data  # JSON as it is
