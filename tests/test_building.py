"""``BatchWriter``: every rule enforced while writing, rotation into valid parts, manifests,
atomic outputs; and the property that whatever it accepts validates."""

from __future__ import annotations

import contextlib
import hashlib
from io import BytesIO
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jsonl_batch import BatchWriter, BuildError, get_profile, validate_file
from jsonl_batch.build.writer import value_at
from jsonl_batch.outputs.atomic import OutputExists, WriteError
from jsonl_batch.rules.limits import Limits, Totals

CHAT = "/v1/chat/completions"
EMBED = "/v1/embeddings"


def chat(text: str = "Hi", **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **extra}


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_writes_valid_lines_with_generated_ids(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with BatchWriter(out, CHAT, model="gpt-4o-mini") as writer:
        assert writer.add(chat("a")) == "request-1"
        assert writer.add(chat("b"), custom_id="mine") == "mine"
        assert writer.add(chat("c")) == "request-3"
    assert [line["custom_id"] for line in lines(out)] == ["request-1", "mine", "request-3"]
    first = lines(out)[0]
    assert list(first) == ["custom_id", "method", "url", "body"]
    assert list(first["body"]) == ["model", "messages"]  # the model comes first
    assert validate_file(out).valid
    manifest = writer.manifest
    assert manifest is not None and manifest.requests == 3 and files(tmp_path) == ["out.jsonl"]
    part = manifest.parts[0]
    assert part.path == "out.jsonl" and part.bytes == out.stat().st_size
    assert part.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert (part.first_custom_id, part.last_custom_id) == ("request-1", "request-3")


def test_model_in_the_body_is_kept(tmp_path: Path) -> None:
    with BatchWriter(tmp_path / "o.jsonl", CHAT) as writer:
        writer.add({"model": "gpt-4o", **chat()})
        with pytest.raises(BuildError) as err:
            writer.add({"model": "gpt-4o-mini", **chat()})
    assert err.value.code == "mismatched_model" and err.value.value == "gpt-4o-mini"
    assert "'gpt-4o' (from line 1)" in str(err.value)


@pytest.mark.parametrize(
    ("body", "custom_id", "code", "param", "value"),
    [
        (chat(stream=True), None, "streaming_unsupported", "body.stream", True),
        (
            {"messages": [{"role": "robot", "content": "x"}]},
            None,
            "invalid_body",
            "body.messages[0].role",
            "robot",
        ),
        (chat(temperature=3), None, "invalid_body", "body.temperature", 3),
        ({"temperature": 1}, None, "invalid_request", "body.messages", None),
        ({"model": "gpt-4o", **chat()}, None, "mismatched_model", "body.model", "gpt-4o"),
        (chat(), 5, "invalid_type", "custom_id", 5),
        (chat(), "first", "duplicate_custom_id", "custom_id", "first"),
        ("not a body", None, "invalid_type", "body", None),
        (chat(x={1, 2}), None, "invalid_body", "body", None),
    ],
)
def test_each_rule_raises_and_leaves_the_file_consistent(
    tmp_path: Path, body: Any, custom_id: Any, code: str, param: str, value: Any
) -> None:
    out = tmp_path / "out.jsonl"
    with BatchWriter(out, CHAT, model="gpt-4o-mini") as writer:
        writer.add(chat(), custom_id="first")
        with pytest.raises(BuildError) as err:
            writer.add(body, custom_id)
        writer.add(chat("after"))
    assert (err.value.code, err.value.param, err.value.value) == (code, param, value)
    assert f"({code})" in str(err.value)
    assert isinstance(err.value, ValueError)
    assert [line["custom_id"] for line in lines(out)] == ["first", "request-2"]
    assert validate_file(out).valid


def test_duplicate_names_the_first_request(tmp_path: Path) -> None:
    with BatchWriter(tmp_path / "o.jsonl", CHAT, model="m") as writer:
        writer.add(chat(), "a")
        writer.add(chat(), "b")
        with pytest.raises(BuildError, match="already used by request 2") as err:
            writer.add(chat(), "b")
    assert err.value.first == 2


def test_generated_id_that_is_taken_is_a_duplicate(tmp_path: Path) -> None:
    with BatchWriter(tmp_path / "o.jsonl", CHAT, model="m") as writer:
        writer.add(chat(), "request-2")
        with pytest.raises(BuildError, match="duplicate_custom_id"):
            writer.add(chat())


def test_warnings_do_not_stop_the_writer(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    with BatchWriter(out, CHAT, model="m") as writer:
        writer.add(chat(), "has space")
    report = validate_file(out)
    assert report.valid and report.flatten() == [[1, "nonportable_custom_id"]]


@pytest.mark.parametrize(
    ("limits", "body", "code"),
    [
        ({"max_requests": 1}, chat(), "too_many_tasks"),
        ({"max_bytes": 250}, chat(), "file_too_large"),
    ],
)
def test_limits_without_rotation_raise(
    tmp_path: Path, limits: dict[str, int], body: Any, code: str
) -> None:
    out = tmp_path / "o.jsonl"
    with BatchWriter(out, CHAT, model="m", **limits) as writer:
        writer.add(chat())
        with pytest.raises(BuildError) as err:
            writer.add(body)
    assert err.value.code == code
    assert len(lines(out)) == 1 and validate_file(out, **limits).valid


def test_embedding_input_limit(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    with BatchWriter(out, EMBED, model="e", max_embedding_inputs=3) as writer:
        writer.add({"input": ["a", "b"]})
        with pytest.raises(BuildError, match="too_many_embedding_inputs"):
            writer.add({"input": ["c", "d"]})
        writer.add({"input": "c"})
        with pytest.raises(BuildError, match="alone") as err:
            writer.add({"input": ["a", "b", "c", "d"]})
    assert err.value.value == 4
    assert validate_file(out, max_embedding_inputs=3).valid


def test_a_request_larger_than_the_limit_fails_even_with_rotation(tmp_path: Path) -> None:
    with BatchWriter(tmp_path / "o.jsonl", CHAT, model="m", rotate=True, max_bytes=200) as w:
        w.add(chat())
        with pytest.raises(BuildError, match="file_too_large") as err:
            w.add(chat("x" * 300))
    assert "; the limit is 200 bytes per file, so no part can hold it." in str(err.value)


def words(n: int) -> dict[str, Any]:
    """A chat body of ``n`` words: 8 + n estimated input tokens (o200k_base)."""
    return chat("word " * n)


def test_token_budget_rotates_parts(tmp_path: Path) -> None:
    with BatchWriter(tmp_path / "o.jsonl", CHAT, model="m", rotate=True, max_tokens=50) as w:
        for n in (2, 12, 22, 32, 2, 2):  # 10, 20, 30, 40, 10, 10 tokens
            w.add(words(n))
    manifest = w.manifest
    assert manifest is not None and manifest.limits["max_tokens"] == 50
    parts = [(p.requests, p.input_tokens) for p in manifest.parts]
    assert parts == [(2, 30), (1, 30), (2, 50), (1, 10)]  # at or under the budget
    on_disk = orjson.loads((tmp_path / "o.manifest.json").read_bytes())
    assert [p["input_tokens"] for p in on_disk["parts"]] == [30, 30, 50, 10]
    with BatchWriter(tmp_path / "plain.jsonl", CHAT, model="m") as plain:
        plain.add(words(2))
    assert plain.manifest is not None and plain.manifest.parts[0].input_tokens is None
    assert "input_tokens" not in plain.manifest.to_dict()["parts"][0]


def test_token_budget_without_rotation_raises(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    with BatchWriter(out, CHAT, model="m", max_tokens=50) as writer:
        writer.add(words(22))
        with pytest.raises(BuildError) as err:
            writer.add(words(32))
        writer.add(words(12))
    assert err.value.code == "token_limit_exceeded" and err.value.value == "request-2"
    assert str(err.value) == (
        "This request (an estimated 40 input tokens) would give the file an estimated 70 input "
        "tokens; the limit is 50 input tokens; write parts instead (rotate=True, or jsonl-batch "
        "build -o FILE). "
        "(token_limit_exceeded)"
    )
    assert [line["custom_id"] for line in lines(out)] == ["request-1", "request-2"]
    assert writer.manifest is not None and writer.manifest.parts[0].input_tokens == 50


def test_a_request_over_the_token_budget_fails_even_with_rotation(tmp_path: Path) -> None:
    with BatchWriter(tmp_path / "o.jsonl", CHAT, model="m", rotate=True, max_tokens=20) as w:
        w.add(words(2))
        with pytest.raises(BuildError, match="token_limit_exceeded") as err:
            w.add(words(30))
    assert "alone has an estimated 38 input tokens; the limit is 20 input tokens, so" in str(
        err.value
    )
    assert err.value.value == 38
    with pytest.raises(ValueError, match="max_tokens must be at least 1"):
        BatchWriter(tmp_path / "p.jsonl", CHAT, max_tokens=0)
    profile = get_profile("openai", max_enqueued_tokens=40)  # the default budget
    with BatchWriter(tmp_path / "q.jsonl", CHAT, model="m", profile=profile) as w:
        assert w.max_tokens == 40
        w.add(words(2))


def test_rotation_writes_valid_parts_and_a_manifest(tmp_path: Path) -> None:
    limits = {"max_requests": 3, "max_bytes": 400, "max_embedding_inputs": 4}
    with BatchWriter(tmp_path / "emb.jsonl", EMBED, model="e", rotate=True, **limits) as writer:
        for i in range(10):
            writer.add({"input": ["x"] * (i % 3 + 1)})
    manifest = writer.manifest
    assert manifest is not None
    names = [p.path for p in manifest.parts]
    assert names == [f"emb.part-{i:03d}.jsonl" for i in range(1, len(names) + 1)]
    assert files(tmp_path) == sorted([*names, "emb.manifest.json"])
    seen = []
    for part in manifest.parts:
        path = tmp_path / part.path
        assert validate_file(path, **limits).valid
        assert part.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert part.requests == len(lines(path)) and part.bytes == path.stat().st_size
        seen += [line["custom_id"] for line in lines(path)]
    assert seen == [f"request-{i}" for i in range(1, 11)]
    on_disk = orjson.loads((tmp_path / "emb.manifest.json").read_bytes())
    assert {**on_disk, "manifest": manifest.path} == manifest.to_dict()
    assert on_disk["requests"] == 10 and "manifest" not in on_disk
    assert manifest.path == str(tmp_path / "emb.manifest.json")


def test_auto_rotation_keeps_one_file_when_it_fits(tmp_path: Path) -> None:
    with BatchWriter(tmp_path / "o.jsonl", CHAT, model="m", rotate="auto") as writer:
        writer.add(chat())
    assert files(tmp_path) == ["o.jsonl"] and writer.manifest.parts[0].path == "o.jsonl"
    with BatchWriter(tmp_path / "p.jsonl", CHAT, model="m", rotate="auto", max_requests=1) as w:
        w.add(chat())
        w.add(chat())
    assert files(tmp_path) == [
        "o.jsonl",
        "p.manifest.json",
        "p.part-001.jsonl",
        "p.part-002.jsonl",
    ]


def test_failure_inside_the_block_leaves_nothing(tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError),
        BatchWriter(tmp_path / "o.jsonl", CHAT, model="m", rotate=True, max_requests=1) as w,
    ):
        w.add(chat())
        w.add(chat())
        raise RuntimeError("boom")
    assert files(tmp_path) == []


def test_nothing_added_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="empty_file"), BatchWriter(tmp_path / "o.jsonl", CHAT):
        pass
    assert files(tmp_path) == []


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    (tmp_path / "o.jsonl").write_text("old")
    with pytest.raises(OutputExists):
        BatchWriter(tmp_path / "o.jsonl", CHAT)
    (tmp_path / "p.part-007.jsonl").write_text("old")
    with pytest.raises(OutputExists, match=r"p\.part-007"):
        BatchWriter(tmp_path / "p.jsonl", CHAT, rotate=True)
    (tmp_path / "q.manifest.json").write_text("old")
    with pytest.raises(OutputExists):
        BatchWriter(tmp_path / "q.jsonl", CHAT, rotate="auto")
    with BatchWriter(tmp_path / "o.jsonl", CHAT, model="m", force=True) as writer:
        writer.add(chat())
    assert validate_file(tmp_path / "o.jsonl").valid


def test_stream_target(tmp_path: Path) -> None:
    stream = BytesIO()
    with BatchWriter(stream, CHAT, model="m") as writer:
        writer.add(chat())
    assert orjson.loads(stream.getvalue())["custom_id"] == "request-1"
    with pytest.raises(ValueError, match="stream"):
        BatchWriter(BytesIO(), CHAT, rotate=True)


def test_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an endpoint of the azure profile"):
        BatchWriter(tmp_path / "o.jsonl", "/v1/completions", profile="azure")
    with pytest.raises(ValueError, match="max_requests must be at least 1"):
        BatchWriter(tmp_path / "o.jsonl", CHAT, max_requests=0)
    writer = BatchWriter(tmp_path / "o.jsonl", CHAT, model="m")
    writer.add(chat())
    writer.close()
    assert writer.close() is writer.manifest
    with pytest.raises(ValueError, match="closed"):
        writer.add(chat())


def test_azure_wording(tmp_path: Path) -> None:
    with BatchWriter(tmp_path / "o.jsonl", CHAT, model="dep-a", profile="azure") as writer:
        with pytest.raises(BuildError, match="same deployment"):
            writer.add({"model": "dep-b", **chat()})
        writer.add(chat())


def test_value_at() -> None:
    line = {"custom_id": "a", "body": {"messages": [{"role": "x"}]}}
    assert value_at(line, "body.messages[0].role") == "x"
    assert value_at(line, "custom_id") == "a"
    assert value_at(line, "body.nope[3]") is None
    assert value_at(line, None) is None


bodies = st.fixed_dictionaries(
    {"messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "bot"])}))},
    optional={
        "model": st.sampled_from(["m", "other"]),
        "temperature": st.floats(-1, 3, allow_nan=False),
        "stream": st.booleans(),
        "n": st.integers(-2, 5),
    },
).map(lambda b: {**b, "messages": [{**m, "content": "hi"} for m in b["messages"]]})


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.tuples(bodies, st.sampled_from([None, "a", "b", "c d"])), max_size=12),
    st.integers(1, 4),
    st.integers(300, 900),
)
def test_whatever_the_writer_accepts_validates(
    tmp_path: Path, adds: list[tuple[dict[str, Any], str | None]], max_requests: int, max_bytes: int
) -> None:
    folder = tmp_path / str(hash((repr(adds), max_requests, max_bytes)))
    folder.mkdir()
    limits = {"max_requests": max_requests, "max_bytes": max_bytes}
    accepted = []
    writer = BatchWriter(folder / "o.jsonl", CHAT, model="m", rotate=True, **limits)
    for body, custom_id in adds:
        with contextlib.suppress(BuildError):
            accepted.append(writer.add(body, custom_id))
    if not accepted:
        with pytest.raises(BuildError):
            writer.close()
        return
    manifest = writer.close()
    seen = []
    for part in manifest.parts:
        report = validate_file(folder / part.path, **limits)
        assert report.valid, report.problems
        seen += [line["custom_id"] for line in lines(folder / part.path)]
    assert seen == accepted


def test_force_removes_what_an_earlier_build_left(tmp_path: Path) -> None:
    out = tmp_path / "small.jsonl"
    with BatchWriter(out, CHAT, model="m", rotate="auto", max_requests=1) as writer:
        for _ in range(3):
            writer.add(chat())
    assert files(tmp_path) == [
        "small.manifest.json",
        "small.part-001.jsonl",
        "small.part-002.jsonl",
        "small.part-003.jsonl",
    ]
    with pytest.raises(OutputExists, match="small"):
        BatchWriter(out, CHAT, model="m", rotate="auto")
    with BatchWriter(out, CHAT, model="m", rotate="auto", force=True) as writer:
        writer.add(chat())
    assert files(tmp_path) == ["small.jsonl"]  # no part left to be uploaded twice
    with BatchWriter(out, CHAT, model="m", rotate=True, max_requests=1, force=True) as writer:
        writer.add(chat())
        writer.add(chat())
    assert files(tmp_path) == [
        "small.manifest.json",
        "small.part-001.jsonl",
        "small.part-002.jsonl",
    ]


def test_a_failed_build_with_force_keeps_the_earlier_output(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    with BatchWriter(out, CHAT, model="m", rotate=True, max_requests=1) as writer:
        writer.add(chat("old"))
        writer.add(chat("old"))
    before = {name: (tmp_path / name).read_bytes() for name in files(tmp_path)}
    with (
        pytest.raises(RuntimeError),
        BatchWriter(out, CHAT, model="m", rotate=True, max_requests=1, force=True) as writer,
    ):
        for _ in range(3):
            writer.add(chat("new"))
        raise RuntimeError("boom")
    assert {name: (tmp_path / name).read_bytes() for name in files(tmp_path)} == before


def test_part_names_leave_the_file_name_alone(tmp_path: Path) -> None:
    (tmp_path / "batch002.part-001.jsonl").write_text("another batch")
    with BatchWriter(tmp_path / "batch001.jsonl", CHAT, model="m", rotate=True) as writer:
        writer.add(chat())
    assert writer.manifest is not None
    assert [p.path for p in writer.manifest.parts] == ["batch001.part-001.jsonl"]
    assert (tmp_path / "batch002.part-001.jsonl").read_text() == "another batch"
    with BatchWriter(tmp_path / "v1.ndjson", CHAT, model="m", rotate=True) as writer:
        writer.add(chat())
    assert (tmp_path / "v1.part-001.ndjson").exists()


def test_a_missing_folder_names_the_path_given(tmp_path: Path) -> None:
    target = tmp_path / "nodir" / "x.jsonl"
    for rotate in (False, True, "auto"):
        with pytest.raises(WriteError) as err:
            BatchWriter(target, CHAT, model="m", rotate=rotate)
        assert str(err.value).startswith(f"{target}: cannot write here")
        assert "part-" not in str(err.value) and "\n" not in str(err.value)
    assert files(tmp_path) == []


def test_part_limits_are_one_definition() -> None:
    limits = Limits.of(get_profile("openai", max_requests=2, max_bytes=100), max_tokens=50)
    assert limits.to_dict() == {
        "max_requests": 2,
        "max_bytes": 100,
        "max_embedding_inputs": 50_000,
        "max_tokens": 50,
    }
    assert limits.alone(10, 0, 10) is None
    code, message, param, value = limits.alone(101, 0, 0)  # type: ignore[misc]
    assert (code, param, value) == ("file_too_large", None, 101)
    assert message == (
        "This request alone has 101 bytes; the limit is 100 bytes per file, so no part can hold it."
    )
    assert limits.alone(1, 0, 51)[0] == "token_limit_exceeded"  # type: ignore[index]
    assert not limits.overflows(Totals(1, 50, 0, 20), 50, 0, 30)
    assert limits.overflows(Totals(2, 10, 0, 0), 1, 0, 0)  # requests
    assert limits.overflows(Totals(1, 50, 0, 0), 51, 0, 0)  # bytes
    assert limits.overflows(Totals(1, 50, 0, 40), 1, 0, 11)  # tokens
    assert "max_tokens" not in Limits.of(get_profile("openai")).to_dict()


@pytest.mark.parametrize("rotate", [False, "auto"])
def test_force_keeps_the_mode_of_the_file_it_replaces(tmp_path: Path, rotate: Any) -> None:
    out = tmp_path / "batch.jsonl"
    out.write_text("old")
    out.chmod(0o600)
    with BatchWriter(out, CHAT, model="m", rotate=rotate, force=True) as writer:
        writer.add(chat())
    assert out.stat().st_mode & 0o777 == 0o600 and len(lines(out)) == 1


def test_an_output_folder_that_cannot_be_listed_is_a_write_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(self: Path) -> Any:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", denied)  # a -wx folder (root may list any folder)
    with pytest.raises(WriteError, match=r"cannot list this folder \(Permission denied\)"):
        BatchWriter(tmp_path / "o.jsonl", CHAT, model="m", rotate="auto")


def test_the_inputs_are_never_replaced_nor_removed(tmp_path: Path) -> None:
    source = tmp_path / "data.part-001.jsonl"  # named like a part of data.jsonl
    source.write_text("rows")
    with pytest.raises(OutputExists, match=r"data\.part-001\.jsonl is an input"):
        BatchWriter(tmp_path / "data.jsonl", CHAT, model="m", force=True, keep=[source])
    with pytest.raises(OutputExists, match=r"data\.part-001\.jsonl is an input"):
        BatchWriter(source, CHAT, model="m", force=True, keep=[source])
    assert source.read_text() == "rows"


def test_a_later_part_named_like_an_input_is_refused_before_any_rename(tmp_path: Path) -> None:
    source = tmp_path / "data.part-002.jsonl"
    source.write_text("rows")
    out = tmp_path / "data.jsonl"
    writer = BatchWriter(
        out, CHAT, model="m", rotate=True, max_requests=1, force=True, keep=[source]
    )
    writer.add(chat())
    writer.add(chat())
    with pytest.raises(OutputExists, match=r"data\.part-002\.jsonl is an input"):
        writer.close()
    assert files(tmp_path) == ["data.part-002.jsonl"] and source.read_text() == "rows"
