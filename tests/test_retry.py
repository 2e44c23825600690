"""retry: the original lines, byte for byte, of the requests that did not succeed."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import DATA, jsonl, request
from hypothesis import given, settings
from hypothesis import strategies as st

from jsonl_batch import join, validate_file
from jsonl_batch.cli.options import message
from jsonl_batch.outputs.atomic import OutputExists, WriteError
from jsonl_batch.results import retry as retrying
from jsonl_batch.results.retry import retry_mask, write_retry
from jsonl_batch.split import engine as splitting

J = DATA / "join"
CHAT_IN = J / "chat.input.jsonl"
CHAT_OUT = [J / "chat.output.jsonl", J / "chat.errors.jsonl"]


def lines_of(path: Path, numbers: list[int]) -> bytes:
    lines = path.read_bytes().splitlines(keepends=True)
    return b"".join(lines[n - 1] for n in numbers)


@pytest.mark.parametrize(
    ("only", "lines"),
    [
        ("all", [4, 5, 6, 7, 8]),
        ("failed", [4, 5, 6, 7]),
        ("missing", [8]),
        ("retryable", [5, 6, 7, 8]),  # not chat-4, a 400
    ],
)
def test_selection_copies_input_lines(only: str, lines: list[int], tmp_path: Path) -> None:
    target = tmp_path / "retry.jsonl"
    result = write_retry([CHAT_IN], CHAT_OUT, target, only=only)
    assert target.read_bytes() == lines_of(CHAT_IN, lines)
    assert result.requests == len(lines)
    assert result.bytes == target.stat().st_size
    assert result.succeeded == 4
    assert result.not_selected == 5 - len(lines)
    assert result.report is not None and result.report.valid
    assert result.ok and result.split is None


def test_reasons() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = write_retry([CHAT_IN], CHAT_OUT, Path(tmp) / "r.jsonl")
    assert result.reasons == {
        "batch_expired": 1,
        "integer_below_min_value": 1,
        "missing": 1,
        "rate_limit_exceeded": 1,
        "server_error": 1,
    }


def test_multi_part_crlf_lines_stay_byte_identical(tmp_path: Path) -> None:
    manifest = J / "parts" / "requests.manifest.json"
    outputs = [J / "parts" / "output.jsonl"]  # mp-4 (line 1 of part 2) and mp-3 missing
    target = tmp_path / "retry.jsonl"
    write_retry([manifest], outputs, target)
    part1 = (J / "parts" / "requests.part-001-of-002.jsonl").read_bytes().splitlines(True)
    part2 = (J / "parts" / "requests.part-002-of-002.jsonl").read_bytes().splitlines(True)
    assert target.read_bytes() == part1[2] + part2[0]
    assert part2[0].endswith(b"\r\n")


def test_last_line_without_newline_gets_one(tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(jsonl(request("a")) + orjson.dumps(request("b")))
    target = tmp_path / "retry.jsonl"
    write_retry([inp], [], target)
    assert target.read_bytes() == jsonl(request("a"), request("b"))


def test_nothing_to_retry_writes_nothing(tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(jsonl(request("a")))
    out = tmp_path / "out.jsonl"
    out.write_bytes(jsonl({"custom_id": "a", "response": {"status_code": 200, "body": {}}}))
    result = write_retry([inp], [out], tmp_path / "retry.jsonl")
    assert result.output is None and result.ok
    assert not (tmp_path / "retry.jsonl").exists()


def test_over_the_limits_it_is_split_and_validated_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def validate(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return validate_file(*args, **kwargs)

    monkeypatch.setattr(retrying, "validate_file", validate)
    monkeypatch.setattr(splitting, "validate_file", validate)
    target = tmp_path / "retry.jsonl"
    result = write_retry([CHAT_IN], CHAT_OUT, target, max_requests=2)
    assert len(calls) == 1
    assert result.split is not None and result.split.manifest is not None
    assert [p.requests for p in result.split.manifest.parts] == [2, 2, 1]
    parts = sorted(tmp_path.glob("retry.part-*.jsonl"))
    assert b"".join(p.read_bytes() for p in parts) == lines_of(CHAT_IN, [4, 5, 6, 7, 8])
    assert not target.exists()  # only the parts, which fit, are there to upload
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "retry.manifest.json",
        *(p.name for p in parts),
    ]
    assert result.ok and result.report is not None and result.report.file == str(target)
    assert result.to_dict()["manifest"]["requests"] == 5
    assert result.to_dict()["files"] == [str(p) for p in parts]
    assert result.split.manifest.input == str(target)


def test_force_replaces_an_earlier_retry_whatever_its_shape(tmp_path: Path) -> None:
    target = tmp_path / "retry.jsonl"
    write_retry([CHAT_IN], CHAT_OUT, target, max_requests=2)
    with pytest.raises(
        OutputExists, match="is left from an earlier retry; use force=True"
    ) as caught:
        write_retry([CHAT_IN], CHAT_OUT, target)
    assert caught.value.hint == "force" and "; use --force" in message(caught.value)
    result = write_retry([CHAT_IN], CHAT_OUT, target, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["retry.jsonl"]
    assert result.to_dict()["files"] == [str(target)]
    write_retry([CHAT_IN], CHAT_OUT, target, max_requests=2, force=True)
    assert not target.exists() and len(list(tmp_path.glob("retry.part-*"))) == 3


def test_force_with_nothing_to_retry_removes_the_earlier_retry(tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(jsonl(request("a")))
    target = tmp_path / "retry.jsonl"
    write_retry([inp], [], target)  # "a" is missing: retry it
    assert target.exists()
    out = tmp_path / "out.jsonl"
    out.write_bytes(jsonl({"custom_id": "a", "response": {"status_code": 200, "body": {}}}))
    with pytest.raises(OutputExists):
        write_retry([inp], [out], target)
    assert target.exists()
    result = write_retry([inp], [out], target, force=True)
    assert result.output is None and result.ok and result.to_dict()["files"] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]
    (tmp_path / "retry.part-001-of-002.jsonl").write_text("old")
    (tmp_path / "retry.manifest.json").write_text("{}")
    write_retry([inp], [out], target, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


def test_standard_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="standard input"):
        write_retry(["-"], CHAT_OUT, tmp_path / "r.jsonl")


def test_unknown_selection() -> None:
    table = join([CHAT_IN], CHAT_OUT).table
    with pytest.raises(ValueError, match="unknown selection"):
        retry_mask(table, "everything")


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=25),
    answers=st.dictionaries(
        st.integers(0, 24), st.sampled_from(["ok", "400", "429", "503", "expired"])
    ),
    seed=st.integers(0, 1000),
)
def test_retry_selects_exactly_the_requests_that_did_not_succeed(
    n: int, answers: dict[int, str], seed: int
) -> None:
    ids = [f"id-{i}" for i in range(n)]
    lines = []
    for i, outcome in answers.items():
        if i >= n:
            continue
        if outcome == "expired":
            lines.append(
                {"custom_id": ids[i], "response": None, "error": {"code": "batch_expired"}}
            )
        else:
            status = 200 if outcome == "ok" else int(outcome)
            lines.append({"custom_id": ids[i], "response": {"status_code": status, "body": {}}})
    random.Random(seed).shuffle(lines)
    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "in.jsonl"
        inp.write_bytes(jsonl(*(request(c) for c in ids)))
        out = Path(tmp) / "out.jsonl"
        out.write_bytes(jsonl(*lines))
        retry = {}
        for only in ("all", "retryable"):
            target = Path(tmp) / f"{only}.jsonl"
            write_retry([inp], [out], target, only=only)
            data = target.read_bytes() if target.exists() else b""
            retry[only] = [orjson.loads(x)["custom_id"] for x in data.splitlines()]
    outcome = {ids[i]: answers.get(i, "missing") for i in range(n)}
    assert retry["all"] == [c for c in ids if outcome[c] != "ok"]
    assert retry["retryable"] == [c for c in ids if outcome[c] not in ("ok", "400")]


def test_retry_file_of_a_failed_bad_request_reports_its_problem(tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(jsonl(request("a", temperature="hot"), request("b")))
    out = tmp_path / "out.jsonl"
    bad = {"error": {"message": "Invalid type for 'temperature'", "code": "invalid_type"}}
    out.write_bytes(jsonl({"custom_id": "a", "response": {"status_code": 400, "body": bad}}))
    result = write_retry([inp], [out], tmp_path / "retry.jsonl", only="failed")
    assert result.report is not None and not result.report.valid
    assert not result.ok
    assert result.to_dict()["valid"] is False


def test_an_earlier_retry_given_as_input_is_never_removed(tmp_path: Path) -> None:
    target = tmp_path / "retry.jsonl"
    write_retry([CHAT_IN], CHAT_OUT, target, max_requests=2)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = write_retry([tmp_path / "retry.manifest.json"], [], target, force=True)
    assert result.requests == 5 and target.read_bytes() == lines_of(CHAT_IN, [4, 5, 6, 7, 8])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "retry.jsonl"])


def test_a_split_retry_never_replaces_its_own_inputs(tmp_path: Path) -> None:
    target = tmp_path / "retry.jsonl"
    write_retry([CHAT_IN], CHAT_OUT, target, max_requests=3)  # two parts and a manifest
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert len(before) == 3
    for force in (False, True):  # the new parts and manifest would take the inputs' names
        with pytest.raises(OutputExists, match=r"retry\.manifest\.json is an input"):
            write_retry([tmp_path / "retry.manifest.json"], [], target, max_requests=1, force=force)
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    part = tmp_path / "retry.part-001-of-002.jsonl"
    with pytest.raises(OutputExists, match=r"retry\.part-001-of-002\.jsonl is an input"):
        write_retry([part], [], tmp_path / "retry.part-001-of-002.jsonl", force=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_split_file_keeps_the_files_it_is_told_to(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl(*(request(f"r{i}") for i in range(4))))
    splitting.split_file(source, max_requests=2)
    part = tmp_path / "in.part-001-of-002.jsonl"
    kept = part.read_bytes()
    with pytest.raises(OutputExists, match="is an input"):
        splitting.split_file(source, max_requests=2, force=True, keep=[part])
    splitting.split_file(source, max_requests=1, force=True, keep=[part])
    assert part.read_bytes() == kept  # an input named like an earlier part: never removed


def test_json_shows_why_the_split_failed(tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    long = request("b", messages=[{"role": "user", "content": "x" * 400}])
    inp.write_bytes(jsonl(request("a"), long))
    result = write_retry([inp], [], tmp_path / "retry.jsonl", max_bytes=300)
    assert result.split is not None and not result.split.written and not result.ok
    shown = result.to_dict()["report"]
    assert shown == result.split.report.to_dict()
    assert any(p["line"] == 2 for p in shown["problems"])


def test_an_output_folder_that_cannot_be_listed_is_a_write_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(self: Path) -> Any:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", denied)  # a -wx folder (root may list any folder)
    with pytest.raises(WriteError, match=r"cannot list this folder \(Permission denied\)"):
        write_retry([CHAT_IN], CHAT_OUT, tmp_path / "retry.jsonl")


def test_lines_of_the_result_files_that_are_not_results_are_counted(
    tmp_path: Path, write: Any
) -> None:
    """A request file given as results answers nothing: its requests are "missing", and the
    result says how many result lines were not results (blank ones are only skipped)."""
    given = write(CHAT_OUT[0].read_bytes() + b"\n" + CHAT_IN.read_bytes(), "mixed.jsonl")
    result = write_retry([CHAT_IN], [given], tmp_path / "retry.jsonl")
    requests = len(CHAT_IN.read_bytes().splitlines())  # the blank line between: skipped
    assert result.not_results == requests and result.to_dict()["not_results"] == requests
    assert result.ok  # the retry file itself is fine
    clean = write_retry([CHAT_IN], CHAT_OUT, tmp_path / "r2.jsonl")
    assert clean.not_results == 0
    blank = write(CHAT_OUT[0].read_bytes() + b"\n\n", "blank.jsonl")
    assert write_retry([CHAT_IN], [blank, CHAT_OUT[1]], tmp_path / "r3.jsonl").not_results == 0


def test_cli_says_when_results_are_not_results(tmp_path: Path, write: Any) -> None:
    from click.testing import CliRunner

    from jsonl_batch.cli import main

    requests = write(jsonl(*(request(f"r-{i}") for i in range(9))), "requests.jsonl")
    target = tmp_path / "retry.jsonl"
    result = CliRunner().invoke(
        main, ["retry", str(requests), "-r", str(requests), "-o", str(target)]
    )
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[:2] == [
        f"{target}: 9 requests to retry ({requests.stat().st_size:,} bytes): missing 9; "
        "0 succeeded",
        "9 lines of the result files are not results: were the batch's output and error "
        "files given with -r? (`jsonl-batch join` lists them)",
    ]
    assert target.read_bytes() == requests.read_bytes()
    result = CliRunner().invoke(
        main,
        ["retry", str(CHAT_IN), *(f"-r{p}" for p in CHAT_OUT), "-o", str(tmp_path / "ok.jsonl")],
    )
    assert result.exit_code == 0 and "not a result" not in result.output
    data = CliRunner().invoke(
        main,
        [
            "retry",
            str(requests),
            "-r",
            str(requests),
            "-o",
            str(target),
            "--force",
            "--format",
            "json",
        ],
    )
    assert data.exit_code == 1 and orjson.loads(data.output)["not_results"] == 9


def test_an_unknown_selection_is_refused_before_any_work(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="unknown selection 'everything'"):
        write_retry([empty], [], tmp_path / "r.jsonl", only="everything")


def test_retry_keeps_only_the_rows_it_selects(tmp_path: Path, monkeypatch: Any) -> None:
    """Each block of the join is filtered as it comes: what is kept is the selected rows."""
    from jsonl_batch.results import join as joining

    monkeypatch.setattr(joining, "BLOCK_ROWS", 2)
    kept: list[int] = []
    keep = retrying._Keep.write

    def write(self: Any, table: Any) -> None:
        keep(self, table)
        kept.append(self.chosen.tables[-1].num_rows)

    monkeypatch.setattr(retrying._Keep, "write", write)
    result = write_retry([CHAT_IN], CHAT_OUT, tmp_path / "r.jsonl", only="retryable")
    assert sum(kept) == result.requests == 4 and len(kept) == 6  # 1+1+2+2+2+1 rows
    assert result.succeeded == 4 and result.not_selected == 1


def test_output_problems_counts_add_up(tmp_path: Path) -> None:
    # 4 succeeded (none with an output problem), 5 failed or missing: none counted twice
    result = write_retry([CHAT_IN], CHAT_OUT, tmp_path / "r.jsonl", only="output-problems")
    assert (result.output, result.succeeded, result.not_selected) == (None, 4, 5)
    from click.testing import CliRunner

    from jsonl_batch.cli import main

    args = ["retry", str(CHAT_IN), *(f"-r{p}" for p in CHAT_OUT), "-o", str(tmp_path / "r.jsonl")]
    text = CliRunner().invoke(main, [*args, "--only", "output-problems"]).output
    assert text.startswith("nothing to retry (4 succeeded, 5 not selected)"), text
