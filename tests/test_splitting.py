"""``split_file``: byte-exact parts within every limit, balanced parts, groups, rejects,
manifests, refusals; and the property over random files and limits."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import threading
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import jsonl, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jsonl_batch import SplitError, TokenCounter, split_file, validate_file
from jsonl_batch.lines import parallel
from jsonl_batch.lines.reading import LineReader, ReadError
from jsonl_batch.outputs.atomic import OutputExists, WriteError
from jsonl_batch.rules.profiles import get_profile
from jsonl_batch.split import engine as splitting
from jsonl_batch.split import plan
from jsonl_batch.split import ranges as copying
from jsonl_batch.split.ranges import ByteRanges
from jsonl_batch.tokens.counting import tokens_of_lines
from jsonl_batch.validate import LineChecker, Measured


def embedding(custom_id: str, inputs: Any, model: str = "e") -> dict[str, Any]:
    body = {"model": model, "input": inputs}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/embeddings", "body": body}


def chat_file(n: int, ending: bytes = b"\n", final: bool = True, prefix: str = "r") -> bytes:
    data = ending.join(orjson.dumps(request(f"{prefix}{i}")) for i in range(1, n + 1))
    return data + ending if final else data


def part_paths(result: Any) -> list[Path]:
    return [result.folder / p.path for p in result.manifest.parts]


def test_parts_concatenate_to_the_input(tmp_path: Path) -> None:
    data = chat_file(3, b"\r\n") + chat_file(4, final=False, prefix="s")
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    result = split_file(path, tmp_path / "out", max_requests=2)
    assert result.written and result.report.valid
    names = [p.name for p in part_paths(result)]
    assert names == [f"in.part-00{i}-of-004.jsonl" for i in range(1, 5)]
    assert b"".join(p.read_bytes() for p in part_paths(result)) == data
    assert part_paths(result)[-1].read_bytes().endswith(b"}")  # no final newline, as given
    assert sorted(os.listdir(tmp_path / "out")) == sorted([*names, "in.manifest.json"])


def test_manifest(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(chat_file(5))
    result = split_file(path, max_requests=2)
    manifest = result.manifest
    assert result.folder == tmp_path
    on_disk = orjson.loads((tmp_path / "in.manifest.json").read_bytes())
    # the file is to_dict() but for its own name (what --format json prints beside it)
    assert {**on_disk, "manifest": str(tmp_path / "in.manifest.json")} == manifest.to_dict()
    assert on_disk["input"] == str(path) and on_disk["lines"] == 5
    assert on_disk["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert on_disk["limits"]["max_requests"] == 2 and on_disk["requests"] == 5
    assert on_disk["rejected"] is None
    parts = on_disk["parts"]
    assert [p["line_ranges"] for p in parts] == [[[1, 2]], [[3, 4]], [[5, 5]]]
    assert [(p["first_custom_id"], p["last_custom_id"]) for p in parts] == [
        ("r1", "r2"),
        ("r3", "r4"),
        ("r5", "r5"),
    ]
    for p in parts:
        content = (tmp_path / p["path"]).read_bytes()
        assert p["sha256"] == hashlib.sha256(content).hexdigest()
        assert p["bytes"] == len(content) and p["requests"] == p["lines"]
        assert (p["endpoint"], p["model"]) == ("/v1/chat/completions", "gpt-4o-mini")


def test_each_limit_is_respected(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(*(embedding(f"e{i}", ["a"] * (i % 4 + 1)) for i in range(30))))
    limits = {"max_requests": 7, "max_bytes": 700, "max_embedding_inputs": 9}
    result = split_file(path, tmp_path / "out", **limits)
    for part, file in zip(result.manifest.parts, part_paths(result), strict=True):
        assert validate_file(file, **limits).valid
        assert part.requests <= 7 and part.bytes <= 700 and part.embedding_inputs <= 9
    assert sum(p.embedding_inputs for p in result.manifest.parts) == sum(
        i % 4 + 1 for i in range(30)
    )


def test_balanced_parts(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(chat_file(10))
    result = split_file(path, parts=3)
    assert [p.requests for p in result.manifest.parts] == [4, 3, 3]
    assert [p.path for p in result.manifest.parts][-1] == "in.part-003-of-003.jsonl"
    assert split_file(path, tmp_path / "one", parts=1).manifest.parts[0].requests == 10


def test_balanced_parts_that_cannot_fit(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(chat_file(10))
    with pytest.raises(SplitError, match="do not fit in 2 parts"):
        split_file(path, parts=2, max_requests=4)
    with pytest.raises(SplitError, match="cannot make 11 parts from 10"):
        split_file(path, parts=11)
    assert os.listdir(tmp_path) == ["in.jsonl"]


def test_by_model_groups(tmp_path: Path) -> None:
    lines = [request(f"r{i}", model="a" if i % 3 else "b") for i in range(1, 10)]
    lines.insert(4, embedding("e1", "x"))
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(*lines))
    assert not validate_file(path).valid
    result = split_file(path, tmp_path / "out", by="model", max_requests=3)
    parts = result.manifest.parts
    assert [(p.endpoint, p.model, p.requests) for p in parts] == [
        ("/v1/chat/completions", "a", 3),
        ("/v1/chat/completions", "a", 3),
        ("/v1/chat/completions", "b", 3),
        ("/v1/embeddings", "e", 1),
    ]
    assert parts[2].line_ranges == [(3, 3), (7, 7), (10, 10)]
    seen = []
    for file in part_paths(result):
        assert validate_file(file, max_requests=3).valid
        seen += file.read_bytes().splitlines(keepends=True)
    assert sorted(seen) == sorted(path.read_bytes().splitlines(keepends=True))


def test_by_endpoint_checks_every_endpoint_s_bodies(tmp_path: Path) -> None:
    """``by`` switches the one-endpoint rule off, so the body of a line to another endpoint is
    checked (against its own endpoint): an embeddings request without ``input`` went into a
    part because its problem was dropped as if the url were the problem."""
    path = tmp_path / "in.jsonl"
    no_input = {**embedding("e1", "x"), "body": {"model": "e"}}
    path.write_bytes(jsonl(request("r1"), no_input, embedding("e2", "y")))
    result = split_file(path, by="endpoint")
    assert not result.written
    assert result.report.flatten(["line", "code"]) == [[2, "invalid_request"]]
    result = split_file(path, by="endpoint", skip_invalid=True)
    assert [(p.endpoint, p.requests) for p in result.manifest.parts] == [
        ("/v1/chat/completions", 1),
        ("/v1/embeddings", 1),
    ]
    assert result.manifest.rejected.line_ranges == [(2, 2)]


def test_by_endpoint_still_needs_one_model_per_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(
        jsonl(request("r1"), embedding("e1", "x"), request("r2", model="o"), embedding("e2", "y"))
    )
    result = split_file(path, by="endpoint")
    assert not result.written
    assert result.report.flatten(["line", "code"]) == [[3, "mismatched_model"]]
    result = split_file(path, by="endpoint", skip_invalid=True)
    assert [(p.endpoint, p.requests) for p in result.manifest.parts] == [
        ("/v1/chat/completions", 1),
        ("/v1/embeddings", 2),
    ]
    assert result.manifest.rejected.line_ranges == [(3, 3)]


def test_invalid_input_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(chat_file(3) + b"\n" + jsonl(request("r1"), request("r9", model="x")))
    result = split_file(path, max_requests=1)
    assert not result.written and not result.report.valid
    assert result.report.flatten(["line", "code"]) == [
        [4, "invalid_json_line"],
        [5, "duplicate_custom_id"],
        [6, "mismatched_model"],
    ]
    assert os.listdir(tmp_path) == ["in.jsonl"]


def test_limits_are_not_problems_but_other_file_problems_are(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"")
    assert split_file(path).report.flatten() == [[None, "empty_file"]]
    assert not split_file(path, skip_invalid=True).written  # no line: nothing to write
    assert os.listdir(tmp_path) == ["in.jsonl"]
    path.write_bytes(b"\n")
    assert split_file(path).report.flatten() == [[1, "invalid_json_line"], [None, "empty_file"]]


def test_skip_invalid_puts_every_line_somewhere(tmp_path: Path) -> None:
    data = chat_file(2) + b"not json\r\n" + jsonl(request("r1"), request("r3")) + b"\n"
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    result = split_file(path, skip_invalid=True, max_requests=2)
    manifest = result.manifest
    assert result.written and not result.report.valid
    rejected = tmp_path / "in.rejected.jsonl"
    assert rejected.read_bytes() == b"not json\r\n" + jsonl(request("r1")) + b"\n"
    assert manifest.rejected.line_ranges == [(3, 4), (6, 6)]
    assert (manifest.rejected.lines, manifest.rejected.requests) == (3, 0)
    assert manifest.rejected.sha256 == hashlib.sha256(rejected.read_bytes()).hexdigest()
    assert [p.line_ranges for p in manifest.parts] == [[(1, 2)], [(5, 5)]]
    assert orjson.loads((tmp_path / "in.manifest.json").read_bytes())["rejected"]["lines"] == 3


def test_a_line_larger_than_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(request("r1"), request("r2", user="x" * 500), request("r3")))
    result = split_file(path, max_bytes=300)
    assert not result.written
    assert result.report.flatten(["line", "code"]) == [[2, "file_too_large"]]
    assert "alone has 6" in result.report.problems[0].message
    result = split_file(path, max_bytes=300, skip_invalid=True)
    assert [p.line_ranges for p in result.manifest.parts] == [[(1, 1), (3, 3)]]
    assert result.manifest.rejected.line_ranges == [(2, 2)]
    path.write_bytes(jsonl(embedding("e1", ["a", "b", "c"])))
    result = split_file(path, max_embedding_inputs=2)
    assert result.report.flatten(["line", "code", "param"]) == [
        [1, "too_many_embedding_inputs", "body.input"]
    ]


def test_problem_listing_is_capped(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"x\n" * 5 + chat_file(1))
    assert len(split_file(path, max_problems=2).report.problems) == 2
    result = split_file(path, max_problems=2, skip_invalid=True)
    assert len(result.report.problems) == 2 and result.report.stats.counts == {
        "invalid_json_line": 5
    }


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(chat_file(4))
    split_file(path, max_requests=2)
    with pytest.raises(OutputExists, match=r"in\.part-001-of-002\.jsonl already exists"):
        split_file(path, max_requests=2)
    with pytest.raises(OutputExists, match="left from an earlier split"):
        split_file(path, max_requests=1)
    assert sorted(os.listdir(tmp_path)) == [
        "in.jsonl",
        "in.manifest.json",
        "in.part-001-of-002.jsonl",
        "in.part-002-of-002.jsonl",
    ]
    split_file(path, max_requests=1, force=True)  # replaces the earlier split, stale parts too
    assert sorted(os.listdir(tmp_path)) == [
        "in.jsonl",
        "in.manifest.json",
        *[f"in.part-00{i}-of-004.jsonl" for i in range(1, 5)],
    ]


def test_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match="no such file"):
        split_file(tmp_path / "missing.jsonl")
    with pytest.raises(ReadError, match="is a directory"):
        split_file(tmp_path)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ReadError, match="not a regular file"):
        split_file(tmp_path / "fifo")


def test_bad_arguments(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(chat_file(1))
    with pytest.raises(ValueError, match="cannot be combined"):
        split_file(path, parts=2, by="model")
    with pytest.raises(ValueError, match="by must be"):
        split_file(path, by="colour")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        split_file(path, parts=0)


def test_output_folder_is_created_and_unwritable_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(chat_file(2))
    result = split_file(path, tmp_path / "a" / "b")
    assert result.manifest.parts[0].path == "in.part-001-of-001.jsonl"
    (tmp_path / "file").write_text("")
    with pytest.raises(WriteError, match="cannot write into a file"):
        split_file(path, tmp_path / "file")


random_line = st.builds(
    lambda i, text, model, inputs: (
        embedding(f"c{i}", ["w"] * inputs, model)
        if inputs
        else request(f"c{i}", model=model, messages=[{"role": "user", "content": text}])
    ),
    st.integers(),
    st.text(max_size=120),
    st.sampled_from(["a", "b"]),
    st.integers(0, 3),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(random_line, min_size=1, max_size=25, unique_by=lambda r: r["custom_id"]),
    st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=25, max_size=25),
    st.booleans(),
    st.sampled_from([None, "model", "endpoint"]),
    st.integers(1, 6),
    st.integers(700, 3000),
    st.integers(3, 8),
)
def test_property_parts_are_valid_and_hold_every_line_once(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[dict[str, Any]],
    endings: list[bytes],
    final: bool,
    by: str | None,
    max_requests: int,
    max_bytes: int,
    max_inputs: int,
) -> None:
    if by is None:  # one endpoint and model, or the file would be invalid
        lines = [request(r["custom_id"]) for r in lines]
    elif by == "endpoint":
        lines = [
            embedding(r["custom_id"], r["body"]["input"]) if "input" in r["body"] else r
            for r in lines
        ]
        lines = [{**r, "body": {**r["body"], "model": "m"}} for r in lines]
    raw = [orjson.dumps(r) + e for r, e in zip(lines, endings, strict=False)]
    if not final:
        raw[-1] = raw[-1].rstrip(b"\r\n")
    data = b"".join(raw)
    folder = tmp_path_factory.mktemp("split")
    path = folder / "in.jsonl"
    path.write_bytes(data)
    limits = {"max_requests": max_requests, "max_bytes": max_bytes}
    limits["max_embedding_inputs"] = max_inputs
    result = split_file(path, folder / "out", by=by, **limits)  # type: ignore[arg-type]
    assert result.written, result.report.problems
    got: list[tuple[int, bytes]] = []
    for part, file in zip(result.manifest.parts, part_paths(result), strict=True):
        assert validate_file(file, **limits).valid
        assert part.requests <= max_requests and part.bytes <= max_bytes
        numbers = [n for first, last in part.line_ranges for n in range(first, last + 1)]
        assert numbers == sorted(numbers)
        got += zip(numbers, file.read_bytes().splitlines(keepends=True), strict=True)
        assert part.sha256 == hashlib.sha256(file.read_bytes()).hexdigest()
    assert sorted(got) == list(enumerate(raw, 1))
    assert result.manifest.sha256 == hashlib.sha256(data).hexdigest()
    if by is None:
        assert b"".join(p.read_bytes() for p in part_paths(result)) == data


def chat_tokens(line: bytes) -> int:
    """The estimate ``split --max-tokens`` adds up for one line."""
    req = orjson.loads(line)
    return TokenCounter().count(req["url"], req["body"])


def worded(n: int, words: int, ending: bytes = b"\n") -> bytes:
    """A chat request ``r<n>`` whose message is ``words`` words (8 + words tokens)."""
    messages = [{"role": "user", "content": "word " * words}]
    return orjson.dumps(request(f"r{n}", messages=messages)) + ending


def test_token_budget(tmp_path: Path) -> None:
    data = b"".join(worded(i, i % 30, b"\r\n" if i % 3 else b"\n") for i in range(60))
    assert chat_tokens(worded(1, 10)) == 18  # the counts themselves are tested in test_tokens
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    result = split_file(path, tmp_path / "out", max_tokens=200, max_requests=9)
    manifest = result.manifest
    assert result.written and manifest.limits["max_tokens"] == 200
    assert b"".join(p.read_bytes() for p in part_paths(result)) == data
    for part, file in zip(manifest.parts, part_paths(result), strict=True):
        counted = sum(chat_tokens(line) for line in file.read_bytes().splitlines())
        assert part.input_tokens == counted <= 200 and part.requests <= 9
    on_disk = orjson.loads((tmp_path / "out" / "in.manifest.json").read_bytes())
    assert [p["input_tokens"] for p in on_disk["parts"]] == [p.input_tokens for p in manifest.parts]
    assert sum(p.input_tokens for p in manifest.parts) == sum(map(chat_tokens, data.splitlines()))
    assert "input_tokens" not in split_file(path, tmp_path / "plain").manifest.to_dict()["parts"][0]


def test_a_line_over_the_token_budget(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(worded(1, 5) + worded(2, 50) + worded(3, 5))
    result = split_file(path, max_tokens=30)
    assert not result.written and os.listdir(tmp_path) == ["in.jsonl"]
    assert result.report.flatten(["line", "code"]) == [[2, "token_limit_exceeded"]]
    assert result.report.problems[0].message == (
        "This request alone has an estimated 58 input tokens; the limit is 30 input tokens, so "
        "no part can hold it."
    )
    result = split_file(path, max_tokens=30, skip_invalid=True)
    assert [p.line_ranges for p in result.manifest.parts] == [[(1, 1), (3, 3)]]
    assert result.manifest.rejected.line_ranges == [(2, 2)]
    assert result.manifest.rejected.input_tokens is None


def test_token_budget_from_the_profile_and_with_parts(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(worded(i, 2) for i in range(6)))  # 10 tokens each
    result = split_file(path, tmp_path / "a", max_enqueued_tokens=30)
    assert [p.input_tokens for p in result.manifest.parts] == [30, 30]
    result = split_file(path, tmp_path / "b", max_tokens=40, parts=3)
    assert [p.requests for p in result.manifest.parts] == [2, 2, 2]
    with pytest.raises(SplitError, match=r"do not fit in 2 parts .* 20 tokens per part"):
        split_file(path, tmp_path / "c", max_tokens=20, parts=2)
    with pytest.raises(ValueError, match="max_tokens must be at least 1"):
        split_file(path, max_tokens=0)


def test_tokens_counted_by_worker_processes_give_the_same_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(worded(i, i % 40) for i in range(400)) + b"not json\n")
    monkeypatch.setattr(parallel, "PARALLEL_MIN_BYTES", 1)
    monkeypatch.setattr(parallel, "CHUNK_BYTES", 2048)
    forked = split_file(path, tmp_path / "2", max_tokens=500, workers=2, skip_invalid=True)
    alone = split_file(path, tmp_path / "1", max_tokens=500, workers=1, skip_invalid=True)
    assert len(forked.manifest.parts) > 5
    assert [p.to_dict() for p in forked.manifest.parts] == [
        p.to_dict() for p in alone.manifest.parts
    ]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.text(max_size=80), st.sampled_from([b"\n", b"\r\n"])), min_size=1, max_size=20
    ),
    st.booleans(),
    st.integers(30, 200),
)
def test_property_parts_respect_the_token_budget(
    tmp_path_factory: pytest.TempPathFactory,
    texts: list[tuple[str, bytes]],
    final: bool,
    budget: int,
) -> None:
    raw = [
        orjson.dumps(request(f"c{i}", messages=[{"role": "user", "content": text[:budget]}]))
        + ending
        for i, (text, ending) in enumerate(texts)
    ]  # a character is at most a token or two: 80 characters fit 30 tokens only when cut
    raw = [line for line in raw if chat_tokens(line) <= budget]
    if not raw:
        return
    if not final:
        raw[-1] = raw[-1].rstrip(b"\r\n")
    data = b"".join(raw)
    folder = tmp_path_factory.mktemp("tokens")
    path = folder / "in.jsonl"
    path.write_bytes(data)
    result = split_file(path, folder / "out", max_tokens=budget, workers=1)
    assert result.written, result.report.problems
    files = part_paths(result)
    assert b"".join(f.read_bytes() for f in files) == data
    for part, file in zip(result.manifest.parts, files, strict=True):
        assert sum(chat_tokens(line) for line in file.read_bytes().splitlines()) <= budget
        assert part.input_tokens <= budget
    pairs = zip(result.manifest.parts, files[1:], strict=False)
    for part, following in pairs:  # greedy: the next part's first line did not fit
        first = following.read_bytes().splitlines()[0]
        assert part.input_tokens + chat_tokens(first) > budget


def earlier_split(folder: Path, n: int) -> tuple[Path, dict[str, bytes]]:
    """An input of ``n`` lines split one request a part, then given other contents (the
    same names): the input, and the folder's files as the split left them."""
    path = folder / "in.jsonl"
    path.write_bytes(chat_file(n))
    split_file(path, max_requests=1)
    before = files_in(folder)
    path.write_bytes(chat_file(n, prefix="new"))
    return path, before


def files_in(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in os.listdir(folder)}


def test_a_failed_split_with_force_keeps_the_earlier_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, before = earlier_split(tmp_path, 4)
    copy = ByteRanges.copy
    calls = []

    def failing(self: Any, runs: Any, out: Any) -> str:
        calls.append(runs)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return copy(self, runs, out)

    monkeypatch.setattr(ByteRanges, "copy", failing)
    with pytest.raises(WriteError, match="No space left"):
        split_file(path, max_requests=1, force=True)
    assert len(calls) == 3
    assert files_in(tmp_path) == {**before, "in.jsonl": path.read_bytes()}


def test_a_copy_failing_in_the_second_thread_keeps_the_earlier_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts copied in the kernel go two at a time: a failure in the second thread (the
    second part) is the same one-line error, and the earlier split stays."""
    path, before = earlier_split(tmp_path, 4)
    monkeypatch.setattr(copying, "SMALL_BYTES", 0)  # every part in the kernel
    copy, second = ByteRanges.copy, set[int]()
    threads = set[int]()

    def failing(self: Any, runs: Any, out: Any) -> Any:
        threads.add(threading.get_ident())
        if runs[0][2] == 2:  # the second part: copied beside the main thread
            second.add(threading.get_ident())
            raise OSError(28, "No space left on device")
        return copy(self, runs, out)

    monkeypatch.setattr(ByteRanges, "copy", failing)
    with pytest.raises(WriteError, match="No space left"):
        split_file(path, max_requests=1, force=True)
    assert threading.get_ident() not in second and len(threads) == 2
    assert files_in(tmp_path) == {**before, "in.jsonl": path.read_bytes()}


def test_output_folder_under_a_file(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(chat_file(2))
    (tmp_path / "afile").write_text("")
    for folder in (tmp_path / "afile" / "sub", tmp_path / "afile"):
        with pytest.raises(WriteError) as err:
            split_file(path, folder)
        assert str(err.value).startswith(f"{folder}: cannot ") and "\n" not in str(err.value)
    assert sorted(os.listdir(tmp_path)) == ["afile", "in.jsonl"]


@pytest.mark.parametrize("data", [b"not json\n", b"\n\n", b"[1]\r\n" + jsonl(request("r1"))[:-5]])
def test_skip_invalid_when_every_line_is_invalid(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    result = split_file(path, skip_invalid=True)
    manifest = result.manifest
    assert manifest is not None and manifest.parts == [] and manifest.requests == 0
    assert (tmp_path / "in.rejected.jsonl").read_bytes() == data  # every line, exactly once
    assert manifest.rejected is not None and manifest.rejected.lines == data.count(b"\n") + (
        not data.endswith(b"\n")
    )
    on_disk = orjson.loads((tmp_path / "in.manifest.json").read_bytes())
    assert on_disk["parts"] == [] and on_disk["rejected"]["bytes"] == len(data)
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl", "in.manifest.json", "in.rejected.jsonl"]


def test_skip_invalid_when_no_line_fits(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(request("r1", user="x" * 500)))
    result = split_file(path, max_bytes=300, skip_invalid=True)
    assert result.manifest is not None and result.manifest.parts == []
    assert result.manifest.rejected is not None and result.manifest.rejected.line_ranges == [(1, 1)]


def test_an_empty_file_with_skip_invalid_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"")
    result = split_file(path, skip_invalid=True)
    assert not result.written and result.report.stats.lines == 0
    assert os.listdir(tmp_path) == ["in.jsonl"]


def test_a_report_made_before_is_not_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(chat_file(5))
    report = validate_file(path, max_requests=2)  # with the limits: split drops those problems
    assert report.flatten(["line", "code"]) == [[None, "too_many_tasks"]]
    monkeypatch.setattr(splitting, "validate_file", None)
    result = split_file(path, tmp_path / "out", max_requests=2, report=report, name="sel.jsonl")
    assert result.report.valid and result.report.problems == []
    assert [p.path for p in result.manifest.parts] == [
        f"sel.part-00{i}-of-003.jsonl" for i in (1, 2, 3)
    ]
    assert result.manifest.input == "sel.jsonl"
    assert sorted(os.listdir(tmp_path / "out"))[0] == "sel.manifest.json"


def test_parts_k_with_lines_no_part_can_hold(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    huge = [request(f"h{i}", user="x" * 500) for i in (1, 2)]
    path.write_bytes(jsonl(*(request(f"r{i}") for i in range(1, 7)), *huge))  # too big: last
    result = split_file(path, parts=4, max_bytes=300, skip_invalid=True)
    assert result.manifest is not None
    assert [p.requests for p in result.manifest.parts] == [2, 2, 1, 1]
    assert result.manifest.rejected is not None
    assert result.manifest.rejected.line_ranges == [(7, 8)]
    assert [p.line for p in result.report.problems] == [7, 8]
    with pytest.raises(SplitError, match=r"cannot make 7 parts from 6 request\(s\)"):
        split_file(path, parts=7, max_bytes=300, skip_invalid=True, force=True)


def test_parts_k_with_lines_over_the_token_budget(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(worded(n, 1 if n < 5 else 200) for n in range(1, 7)))
    result = split_file(path, parts=4, max_tokens=100, skip_invalid=True)
    assert result.manifest is not None and len(result.manifest.parts) == 4
    assert result.manifest.rejected is not None
    assert result.manifest.rejected.line_ranges == [(5, 6)]


def test_force_never_clears_the_split_of_another_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for job, n in (("job1", 4), ("job2", 2), ("job3", 4)):
        (tmp_path / job).mkdir()
        (tmp_path / job / "requests.jsonl").write_bytes(chat_file(n, prefix=job))
    split_file("job1/requests.jsonl", "parts", max_requests=2)
    before = {p.name: p.read_bytes() for p in (tmp_path / "parts").iterdir()}
    for force in (False, True):
        with pytest.raises(OutputExists) as err:
            split_file(tmp_path / "job2" / "requests.jsonl", "parts", force=force)
        assert str(err.value) == (
            f"{Path('parts') / 'requests.manifest.json'} is the split of another input "
            "(job1/requests.jsonl); choose another output folder, or remove it"
        )
        assert {p.name: p.read_bytes() for p in (tmp_path / "parts").iterdir()} == before
    # the same input, however it is named, edited or not: replaced as before
    split_file(tmp_path / "job1" / "requests.jsonl", "parts", max_requests=4, force=True)
    (tmp_path / "job1" / "requests.jsonl").write_bytes(chat_file(3, prefix="job1"))
    split_file("job1/../job1/requests.jsonl", "parts", max_requests=1, force=True)
    assert len(list((tmp_path / "parts").glob("requests.part-*"))) == 3
    # another file of the same bytes: nothing is lost
    (tmp_path / "job4").mkdir()
    (tmp_path / "job4" / "requests.jsonl").write_bytes(chat_file(3, prefix="job1"))
    split_file("job4/requests.jsonl", "parts", force=True)
    # a manifest that is not a split's
    (tmp_path / "parts" / "requests.manifest.json").write_text("not json")
    split_file(tmp_path / "job3" / "requests.jsonl", tmp_path / "parts", force=True)
    assert len(list((tmp_path / "parts").glob("requests.part-*"))) == 1


def test_an_output_folder_that_cannot_be_listed_is_a_write_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(chat_file(2))

    def denied(self: Path) -> Any:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", denied)  # a -wx folder (root may list any folder)
    with pytest.raises(WriteError, match=r"cannot list this folder \(Permission denied\)"):
        split_file(path)


# -- one pass: cut points from the validation's measures; copies in the kernel -----------------


def test_skip_invalid_holds_nothing_per_problem(tmp_path: Path) -> None:
    """Regression: every problem was held until the end (960 MB for 10^6 invalid lines)."""
    import tracemalloc

    peaks = []
    for n in (10_000, 40_000):  # both past the first chunks (4096 lines), whose findings go
        path = tmp_path / f"{n}.jsonl"
        path.write_bytes(b'{"custom_id": "x", "oops"}\n' * n + chat_file(1))
        tracemalloc.start()
        result = split_file(path, tmp_path / str(n), skip_invalid=True, workers=1)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert result.manifest is not None and result.manifest.rejected is not None
        assert result.manifest.rejected.lines == n and len(result.report.problems) == 100
        assert result.report.stats.counts == {"invalid_json_line": n}
    assert peaks[1] - peaks[0] < 30 * 30_000  # a few bytes per line, not a problem each


@pytest.mark.parametrize("how", ["in the kernel", "through buffers", "kernel refuses"])
def test_copies_in_the_kernel_or_through_buffers_are_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(chat_file(40) + b"not json\n" + chat_file(30, prefix="s"))
    monkeypatch.setattr(copying, "SMALL_BYTES", 0 if how != "through buffers" else 1 << 40)
    if how == "kernel refuses":

        def refuse(*args: Any) -> int:
            raise OSError(errno.EXDEV, "Invalid cross-device link")

        monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
    result = split_file(path, tmp_path / "out", max_requests=25, skip_invalid=True)
    assert result.manifest is not None
    files = [*part_paths(result), result.folder / result.manifest.rejected.path]
    assert b"".join(f.read_bytes() for f in files[:-1]) == chat_file(40) + chat_file(30, prefix="s")
    assert files[-1].read_bytes() == b"not json\n"
    for part, file in zip([*result.manifest.parts, result.manifest.rejected], files, strict=True):
        assert part.sha256 == hashlib.sha256(file.read_bytes()).hexdigest()
    assert result.manifest.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("by", [None, "model"])
def test_digests_of_parts_in_and_out_of_file_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, by: str | None
) -> None:
    """With ``by`` the groups' parts interleave: those out of file order are hashed on
    their own, the input's digest still covers every byte once, in order."""
    monkeypatch.setattr(copying, "SMALL_BYTES", 0)  # every part in the kernel, hashed early
    monkeypatch.setattr(parallel, "BLOCK_LINES", 4)
    lines = []
    for i in range(60):
        model = "gpt-4o-mini" if by is None or (i // 5) % 2 else "gpt-4o"
        lines.append(orjson.dumps(request(f"r{i}", model=model)) + b"\n")
    lines.insert(17, b"not json\n")
    data = b"".join(lines)
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    result = split_file(path, tmp_path / "out", by=by, max_requests=7, skip_invalid=True)  # type: ignore[arg-type]
    manifest = result.manifest
    assert manifest is not None and manifest.rejected is not None
    files = [*part_paths(result), result.folder / manifest.rejected.path]
    for part, file in zip([*manifest.parts, manifest.rejected], files, strict=True):
        assert part.sha256 == hashlib.sha256(file.read_bytes()).hexdigest()
    assert manifest.sha256 == hashlib.sha256(data).hexdigest()


def test_a_part_followed_as_it_grows_is_read_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``follow`` hashes the part being filled; once full, only its last bytes are read."""
    data = bytes(range(256)) * 8192
    path = tmp_path / "in.bin"
    path.write_bytes(data)
    read: list[tuple[int, int]] = []
    preadv = os.preadv

    def reading(fd: int, buffers: Any, offset: int) -> int:
        n = preadv(fd, buffers, offset)
        read.append((offset, n))
        return n

    monkeypatch.setattr(copying.os, "preadv", reading)
    ranges = ByteRanges(path)
    try:
        runs = [[300_000, 600_000, 2, 2]]  # after bytes of another output (not handed)
        ranges.follow(runs)
        runs[0][1] = 700_000
        ranges.follow(runs)
        runs.append([800_000, 1_200_000, 4, 4])  # and again
        ranges.hash(runs)
        digests = [ranges.hashed[k].result() for k in ranges.hashed]  # then the next one
        ranges.hash([[1_200_000, len(data), 5, 5]])
        digests += [list(ranges.hashed.values())[-1].result()]
        assert ranges.sha256.result() == hashlib.sha256(data).hexdigest()
    finally:
        ranges.close()
    assert digests == [
        hashlib.sha256(data[300_000:700_000] + data[800_000:1_200_000]).hexdigest(),
        hashlib.sha256(data[1_200_000:]).hexdigest(),
    ]
    assert sum(n for _offset, n in read) == len(data)
    assert sorted(read) == read  # in file order


def test_parts_given_at_once_are_hashed_by_two_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``parts`` every part is planned at the end: while the walker hashes the first
    (and the input), the next ones are hashed on their own, beside it."""
    data = bytes(range(256)) * 8192
    path = tmp_path / "in.bin"
    path.write_bytes(data)
    ranges = ByteRanges(path)
    walk, go = ranges._walk, threading.Event()

    def held(runs: Any, whole: bool = False) -> str:
        go.wait(5)
        return walk(runs, whole)

    monkeypatch.setattr(ranges, "_walk", held)
    cuts = [0, 600_000, 1_200_000, len(data)]
    expected = [hashlib.sha256(data[a:b]).hexdigest() for a, b in pairwise(cuts)]
    try:
        for i, (a, b) in enumerate(pairwise(cuts), 1):
            ranges.hash([[a, b, i, i]])
        first, *others = ranges.hashed.values()
        assert [d.result(5) for d in others] == expected[1:]  # while the walker is held
        assert not first.done()
        go.set()
        assert first.result() == expected[0]
        assert ranges.sha256.result() == hashlib.sha256(data).hexdigest()
    finally:
        go.set()
        ranges.close()


def test_the_measures_of_each_line_are_what_cutting_reads(tmp_path: Path) -> None:
    lines = [orjson.dumps(request("a")), b"", b"not json", orjson.dumps(embedding("e", ["x", "y"]))]
    data = b"\r\n".join(lines) + b"\n"
    checker = LineChecker(get_profile("openai"), measure=True, count_tokens=True)
    chunk = checker.check_lines(LineReader(io.BytesIO(data)).raw())
    assert isinstance(chunk, Measured)
    assert list(chunk.sizes) == [len(line) + 2 for line in lines[:-1]] + [len(lines[-1]) + 1]
    own = [b - a for a, b in pairwise(chunk.tokens_before)]
    assert own == list(tokens_of_lines(TokenCounter(), LineReader(io.BytesIO(data)).raw()))
    assert [b - a for a, b in pairwise(chunk.inputs_before)] == [0, 0, 0, 2]


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.integers(1, 3), st.sampled_from([b"\n", b"\r\n"])),
        min_size=1,
        max_size=40,
    ),
    st.sets(st.integers(0, 39), max_size=3),
    st.integers(1, 7),
    st.sampled_from([None, 2, 3]),
    st.integers(1, 15),
    st.integers(150, 4000),
    st.integers(2, 40),
)
def test_property_the_cuts_do_not_depend_on_the_chunks(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[tuple[int, int, bytes]],
    bad: set[int],
    block: int,
    parts: int | None,
    max_requests: int,
    max_bytes: int,
    max_inputs: int,
) -> None:
    """Chunks that hold no cut are placed whole: the parts are those of one big chunk."""
    raw = [
        b"not json" + end if i in bad else orjson.dumps(embedding(f"e{i}", ["x" * pad] * k)) + end
        for i, (pad, k, end) in enumerate(lines)
    ]
    folder = tmp_path_factory.mktemp("chunks")
    path = folder / "in.jsonl"
    path.write_bytes(b"".join(raw))
    limits = {"max_requests": max_requests, "max_bytes": max_bytes}

    def split(block_lines: int, out: str) -> Any:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(parallel, "BLOCK_LINES", block_lines)
            try:
                result = split_file(
                    path, folder / out, parts=parts, skip_invalid=True,
                    max_embedding_inputs=max_inputs, **limits,
                )  # fmt: skip
            except SplitError as exc:
                return str(exc)
        manifest = result.manifest.dumps() if result.manifest else None
        return manifest, result.report.to_dict()

    assert split(block, "small") == split(4096, "one")


@pytest.mark.parametrize(
    "limits",
    [
        {"max_requests": 2},
        {"max_requests": 5},
        {"max_bytes": 600},
        {"max_bytes": 1000, "max_requests": 4},
        {"max_embedding_inputs": 5},
        {"max_embedding_inputs": 7, "max_requests": 3},
        {"parts": 3},
        {"parts": 7, "max_requests": 6},
    ],
)
def test_whole_chunks_are_cut_where_single_lines_would_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limits: dict[str, int]
) -> None:
    raw = b"".join(
        orjson.dumps(embedding(f"e{i}", ["x" * (i % 7)] * (1 + i % 3))) + b"\n" for i in range(40)
    )
    path = tmp_path / "in.jsonl"
    path.write_bytes(raw)
    one = split_file(path, tmp_path / "one", **limits).manifest
    whole = []
    placed = plan.Cutter._whole

    def counted(self: Any, *args: Any) -> bool:
        whole.append(placed(self, *args))
        return whole[-1]

    monkeypatch.setattr(plan.Cutter, "_whole", counted)
    for block in range(1, 7):
        monkeypatch.setattr(parallel, "BLOCK_LINES", block)
        chunked = split_file(path, tmp_path / f"by{block}", **limits).manifest
        assert chunked.dumps() == one.dumps(), block
    assert any(whole)


def test_whole_chunks_within_a_token_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(worded(i, i % 30) for i in range(60)))
    one = split_file(path, tmp_path / "one", max_tokens=150).manifest
    for block in (2, 3, 5):
        monkeypatch.setattr(parallel, "BLOCK_LINES", block)
        assert (
            split_file(path, tmp_path / f"by{block}", max_tokens=150).manifest.dumps()
            == one.dumps()
        )


def test_each_full_part_is_hashed_while_the_file_is_validated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """...from the same reads as the input's digest: the file is read once for both, and
    the first part (the input's first bytes) is hashed once for both."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(chat_file(40))
    monkeypatch.setattr(copying, "SMALL_BYTES", 0)  # small parts are copied in the kernel
    monkeypatch.setattr(parallel, "BLOCK_LINES", 3)
    read: list[int] = []
    fed: list[int] = []  # bytes hashed

    class Counted:
        def __init__(self) -> None:
            self.digest = hashlib.sha256()

        def update(self, data: Any) -> None:
            fed.append(len(data))
            self.digest.update(data)

        def hexdigest(self) -> str:
            return self.digest.hexdigest()

    handed: list[bool] = []  # while the file is validated
    preadv, started, finish = os.preadv, ByteRanges.hash, plan.Cutter.finish

    def reading(fd: int, buffers: Any, offset: int) -> int:
        n = preadv(fd, buffers, offset)
        read.append(n)
        return n

    def starting(self: Any, runs: Any) -> None:
        before = len(self.hashed)
        started(self, runs)
        if len(self.hashed) > before:
            handed.append(not finished)

    def finishing(self: Any, report: Any) -> Any:
        finished.append(True)
        return finish(self, report)

    finished: list[bool] = []
    monkeypatch.setattr(copying.os, "preadv", reading)
    monkeypatch.setattr(ByteRanges, "hash", starting)
    monkeypatch.setattr(plan.Cutter, "finish", finishing)
    monkeypatch.setattr(copying, "sha256", Counted)
    result = split_file(path, tmp_path / "out", max_requests=7)
    manifest = result.manifest
    size = path.stat().st_size
    assert len(manifest.parts) == 6 and handed == [True] * 5 + [False]  # the last: at the end
    assert sum(read) == size  # the input and every part, from one read
    assert sum(fed) == 2 * size - manifest.parts[0].bytes
    assert manifest.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    read.clear()
    fed.clear()
    one = split_file(path, tmp_path / "one", max_requests=100).manifest
    assert sum(read) == sum(fed) == size and one.parts[0].sha256 == manifest.sha256
    for part, file in zip(manifest.parts, part_paths(result), strict=True):
        assert part.sha256 == hashlib.sha256(file.read_bytes()).hexdigest()


def test_a_read_error_while_following_a_part_is_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody waits on ``follow``'s work: a read failing there is kept and raised by the
    part's digest and the input's, never a wrong digest (nor bytes hashed twice)."""
    data = bytes(range(256)) * 8192
    path = tmp_path / "in.bin"
    path.write_bytes(data)
    calls, preadv = [0], os.preadv

    def flaky(fd: int, buffers: Any, offset: int) -> int:
        calls[0] += 1
        if calls[0] == 1:  # once, while follow hashes (one block)
            raise OSError(errno.EIO, "Input/output error")
        return preadv(fd, buffers, offset)

    monkeypatch.setattr(copying.os, "preadv", flaky)
    ranges = ByteRanges(path)
    try:
        runs = [[0, 1_000_000, 1, 1]]
        ranges.follow(runs)
        runs[0][1] = 1_500_000
        ranges.hash(runs)
        with pytest.raises(ReadError, match=r"in\.bin: Input/output error"):
            ranges.hashed[copying._bounds(runs)].result()
        with pytest.raises(ReadError, match=r"in\.bin: Input/output error"):
            ranges.sha256.result()
    finally:
        ranges.close()


def test_walked_follows_each_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read failing midway leaves ``walked`` at the bytes the input's digest took (two
    digests: blocks of ``HASH_BYTES``)."""
    path = tmp_path / "in.bin"
    path.write_bytes(bytes(1_000_000))
    calls, preadv = [0], os.preadv

    def flaky(fd: int, buffers: Any, offset: int) -> int:
        calls[0] += 1
        if calls[0] == 3:
            raise OSError(errno.EIO, "Input/output error")
        return preadv(fd, buffers, offset)

    monkeypatch.setattr(copying.os, "preadv", flaky)
    ranges = ByteRanges(path)
    try:
        with pytest.raises(ReadError):
            ranges._read(0, 1_000_000, (ranges.input, ranges.input.copy()))
        assert ranges.walked == 2 * copying.HASH_BYTES
    finally:
        ranges.close()


def _wait_for(done: Any, seconds: float = 10) -> None:
    """Poll ``done()`` (a thread waiting on another, without a timing to assert)."""
    import time

    end = time.monotonic() + seconds
    while not done() and time.monotonic() < end:
        time.sleep(0.001)


def test_an_error_in_the_main_thread_drops_the_queued_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy failing in the main thread: the copies queued beside it are not run (were
    all run before the temporaries went), no new file stays, the earlier split does."""
    path, before = earlier_split(tmp_path, 8)
    monkeypatch.setattr(copying, "SMALL_BYTES", 0)  # every part in the kernel
    submitted: list[Any] = []

    class Recording(splitting.ThreadPoolExecutor):
        def submit(self, *args: Any, **kwargs: Any) -> Any:
            submitted.append(super().submit(*args, **kwargs))
            return submitted[-1]

    monkeypatch.setattr(splitting, "ThreadPoolExecutor", Recording)
    copy, ran = splitting._copy, list[int]()

    def spy(source: Any, plan: Any, outputs: Any, name: str) -> Any:
        part = plan.runs[0][2]
        ran.append(part)
        if part == 2:  # beside: held until part 4, queued behind it, is dropped
            _wait_for(lambda: len(submitted) > 1 and submitted[1].cancelled())
        if part == 5:
            raise WriteError("boom")
        return copy(source, plan, outputs, name)

    monkeypatch.setattr(splitting, "_copy", spy)
    with pytest.raises(WriteError, match="boom"):
        split_file(path, max_requests=1, force=True)
    assert sorted(ran) == [1, 2, 3, 5] and submitted[1].cancelled()
    assert files_in(tmp_path) == {**before, "in.jsonl": path.read_bytes()}


def test_a_copy_failing_beside_stops_the_main_thread_copying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure in the second thread is raised at the main thread's next part, not after
    it copied all of its own."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(chat_file(8))
    monkeypatch.setattr(copying, "SMALL_BYTES", 0)
    copy, ran, noted = splitting._copy, list[int](), threading.Event()
    note = splitting._note_failure

    def noting(failed: Any, future: Any) -> None:
        note(failed, future)
        noted.set()

    def spy(source: Any, plan: Any, outputs: Any, name: str) -> Any:
        part = plan.runs[0][2]
        ran.append(part)
        if part == 2:
            raise WriteError("no space")
        result = copy(source, plan, outputs, name)
        if part == 3:  # the main thread's part beside it: ends once the failure is noted
            noted.wait(10)
        return result

    monkeypatch.setattr(splitting, "_note_failure", noting)
    monkeypatch.setattr(splitting, "_copy", spy)
    with pytest.raises(WriteError, match="no space"):
        split_file(path, max_requests=1)
    assert sorted(ran) in ([1, 2], [1, 2, 3])  # part 3 if it started before part 2 failed
    assert os.listdir(tmp_path) == ["in.jsonl"]
