"""join: result files back to their inputs, one row per request, anomalies reported."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import DATA, EXAMPLES, jsonl, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jsonl_batch import JoinError, join
from jsonl_batch.results import join as joining
from jsonl_batch.results import readers
from jsonl_batch.results.readers import (
    _RARE,
    _SCHEMA,
    _held,
    _Projection,
    _read_fast,
    _read_slow,
    extract,
    fast_answers,
    project_lines,
    read_results,
)

J = DATA / "join"


def rows(table: Any, *names: str) -> list[tuple[Any, ...]]:
    return [tuple(r[n] for n in names) for r in table.to_pylist()]


def chat_join(**options: Any) -> Any:
    return join(
        [J / "chat.input.jsonl"], [J / "chat.output.jsonl", J / "chat.errors.jsonl"], **options
    )


def test_chat_rows_in_input_order_with_status_and_error() -> None:
    table = chat_join().table
    assert rows(table, "custom_id", "line", "status", "status_code", "error_code") == [
        ("chat-1", 1, "succeeded", 200, None),
        ("chat-2", 2, "succeeded", 200, None),
        ("chat-3", 3, "succeeded", 200, None),
        ("chat-4", 4, "failed", 400, "integer_below_min_value"),
        ("chat-5", 5, "failed", 429, "rate_limit_exceeded"),
        ("chat-6", 6, "failed", 500, "server_error"),  # code null: the error's type
        ("chat-7", 7, "failed", None, "batch_expired"),  # response null, error set
        ("chat-8", 8, "missing", None, None),
        ("chat-9", 9, "succeeded", 200, None),  # a 500 then a success: the success is kept
    ]
    assert set(table.column("input_file").to_pylist()) == {str(J / "chat.input.jsonl")}


def test_chat_content_and_fields() -> None:
    by_id = {r["custom_id"]: r for r in chat_join().table.to_pylist()}
    assert by_id["chat-1"]["content"] == "Paris is the capital of France."
    assert by_id["chat-1"]["model"] == "gpt-4o-mini-2024-07-18"
    assert by_id["chat-1"]["request_id"] == "req_0001"
    assert by_id["chat-1"]["batch_request_id"] == "batch_req_0001"
    assert (by_id["chat-1"]["prompt_tokens"], by_id["chat-1"]["completion_tokens"]) == (12, 9)
    assert by_id["chat-2"]["content"] is None  # a tool call
    assert by_id["chat-2"]["finish_reason"] == "tool_calls"
    assert by_id["chat-3"]["content"] == "Part one, part two."  # content as an array of parts
    assert by_id["chat-4"]["error_message"].startswith("Invalid value for 'max_tokens'")
    assert by_id["chat-7"]["error_message"].startswith("This request could not be executed")
    assert by_id["chat-8"]["batch_request_id"] is None


def test_chat_summary_and_anomalies() -> None:
    s = chat_join().summary
    assert (s.requests, s.succeeded, s.failed, s.missing) == (9, 4, 4, 1)
    assert s.succeeded + s.failed + s.missing == s.requests
    assert s.error_codes == {
        "batch_expired": 1,
        "integer_below_min_value": 1,
        "rate_limit_exceeded": 1,
        "server_error": 1,
    }
    assert (s.orphans, s.duplicates, s.invalid_lines) == (1, 1, 0)
    assert (s.prompt_tokens, s.completion_tokens, s.total_tokens) == (46, 31, 77)
    assert s.results == {str(J / "chat.output.jsonl"): 5, str(J / "chat.errors.jsonl"): 5}
    found = [(a.kind, Path(a.file).name, a.line, a.custom_id) for a in s.anomalies]
    assert found == [
        ("orphan", "chat.output.jsonl", 5, "chat-404"),
        ("duplicate", "chat.errors.jsonl", 1, "chat-9"),
    ]
    assert "kept" in s.anomalies[1].message and "chat.output.jsonl line 4" in s.anomalies[1].message
    assert not s.complete


def test_result_file_order_does_not_matter() -> None:
    a = chat_join().table
    b = join([J / "chat.input.jsonl"], [J / "chat.errors.jsonl", J / "chat.output.jsonl"]).table
    assert a.equals(b)


def test_http_errors_in_the_output_file_are_failures(write: Any) -> None:
    inp = write([request("a"), request("b")])
    out = write(
        [
            {"id": "1", "custom_id": "a", "response": {"status_code": 200, "body": {}}},
            {
                "id": "2",
                "custom_id": "b",
                "response": {"status_code": 404, "body": {"error": {"message": "no"}}},
                "error": None,
            },
        ],
        "out.jsonl",
    )
    table = join([inp], [out]).table
    assert rows(table, "status", "error_code", "error_message") == [
        ("succeeded", None, None),
        ("failed", "http_404", "no"),
    ]


def test_two_failures_keep_the_later_and_two_successes_the_later(write: Any) -> None:
    inp = write([request("a"), request("b")])
    first = write(
        [
            {"custom_id": "a", "response": None, "error": {"code": "batch_expired"}},
            {"id": "b1", "custom_id": "b", "response": {"status_code": 200, "body": {}}},
        ],
        "first.jsonl",
    )
    second = write(
        [
            {"custom_id": "a", "response": None, "error": {"code": "batch_cancelled"}},
            {"id": "b2", "custom_id": "b", "response": {"status_code": 200, "body": {}}},
        ],
        "second.jsonl",
    )
    result = join([inp], [first, second])
    assert rows(result.table, "error_code", "batch_request_id") == [
        ("batch_cancelled", None),
        (None, "b2"),
    ]
    assert result.summary.duplicates == 2


def test_completions() -> None:
    table = join([J / "completions.input.jsonl"], [J / "completions.output.jsonl"]).table
    assert rows(table, "custom_id", "content", "finish_reason", "total_tokens") == [
        ("cmp-1", "one", "stop", 4),
        ("cmp-2", "two", "length", 8),
    ]


def test_responses_text_finish_reason_and_tokens() -> None:
    table = join([J / "responses.input.jsonl"], [J / "responses.output.jsonl"]).table
    names = ("content", "finish_reason", "prompt_tokens", "completion_tokens", "total_tokens")
    assert rows(table, *names) == [
        ("Hello, world.", "completed", 20, 31, 51),
        (None, "max_output_tokens", 20, 32, 52),
        (None, "completed", 20, 33, 53),
    ]


def test_tool_calls_option() -> None:
    chat = {r["custom_id"]: r for r in chat_join(include_tool_calls=True).table.to_pylist()}
    calls = orjson.loads(chat["chat-2"]["tool_calls"])
    assert calls[0]["function"]["name"] == "get_weather"
    assert chat["chat-1"]["tool_calls"] is None
    resp = join(
        [J / "responses.input.jsonl"], [J / "responses.output.jsonl"], include_tool_calls=True
    ).table
    assert orjson.loads(resp.column("tool_calls")[2].as_py())[0]["name"] == "lookup"


def test_embeddings_option_keeps_every_vector() -> None:
    result = join(
        [J / "embeddings.input.jsonl"], [J / "embeddings.output.jsonl"], include_embeddings=True
    )
    vectors = result.table.column("embedding").to_pylist()
    assert vectors[0] == pytest.approx([0.015, -0.02, 0.125])
    assert vectors[1] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])  # two inputs, by index
    assert vectors[2] == pytest.approx([0.5, -0.25, 1.0])  # base64, decoded
    assert str(result.table.schema.field("embedding").type) == "list<item: float>"
    assert result.table.column("content").null_count == 3
    assert result.summary.prompt_tokens == 12


def test_bodies_option() -> None:
    table = chat_join(include_bodies=True).table
    first = table.to_pylist()[0]
    assert orjson.loads(first["request_body"])["messages"][0]["content"] == "Question 1?"
    assert orjson.loads(first["response_body"])["id"] == "chatcmpl-1"
    by_id = {r["custom_id"]: r for r in table.to_pylist()}
    assert by_id["chat-7"]["response_body"] is None
    assert by_id["chat-8"]["response_body"] is None
    assert table.schema.names[-2:] == ["request_body", "response_body"]


def test_all_failed_batch_without_output_file() -> None:
    result = join([J / "all_failed.input.jsonl"], [J / "all_failed.errors.jsonl"])
    assert rows(result.table, "status", "error_code") == [
        ("failed", "batch_expired"),
        ("failed", "batch_cancelled"),
        ("failed", "request_timeout"),
    ]
    assert result.summary.failed == 3


def test_multi_part_inputs_and_manifest() -> None:
    parts = [J / "parts" / f"requests.part-00{i}-of-002.jsonl" for i in (1, 2)]
    outputs = [J / "parts" / "output.jsonl", J / "parts" / "errors.jsonl"]
    by_parts = join(parts, outputs).table
    by_manifest = join([J / "parts" / "requests.manifest.json"], outputs).table
    assert by_parts.equals(by_manifest)
    names = [Path(p).name[14:22] for p in by_parts.column("input_file").to_pylist()]
    assert names == ["001-of-0"] * 3 + ["002-of-0"] * 2
    assert rows(by_parts, "custom_id", "line", "status") == [
        ("mp-1", 1, "succeeded"),
        ("mp-2", 2, "succeeded"),
        ("mp-3", 3, "missing"),
        ("mp-4", 1, "failed"),
        ("mp-5", 2, "succeeded"),
    ]


def test_malformed_result_lines_are_reported_with_file_and_line() -> None:
    result = join([J / "chat.input.jsonl"], [J / "malformed.output.jsonl"])
    bad = [(a.kind, a.line) for a in result.summary.anomalies]
    assert bad == [("invalid_line", n) for n in (2, 3, 4, 5, 6)]
    messages = [a.message for a in result.summary.anomalies]
    assert "not parseable" in messages[0]
    assert "blank" in messages[1]
    assert "custom_id" in messages[2]
    assert "not a JSON object" in messages[3]
    assert "neither" in messages[4]
    assert all(a.file.endswith("malformed.output.jsonl") for a in result.summary.anomalies)
    assert result.summary.invalid_lines == 5
    assert result.summary.succeeded == 1


def test_anomalies_are_capped_but_counted(write: Any) -> None:
    inp = write([request("a")])
    lines = [{"custom_id": f"x{i}", "error": {"code": "c"}} for i in range(5)]
    out = write([*lines, {"custom_id": "a", "error": {"code": "c"}}], "out.jsonl")
    summary = join([inp], [out], max_anomalies=2).summary
    assert summary.orphans == 5
    assert len(summary.anomalies) == 2


def test_reference_examples_join() -> None:
    inp = EXAMPLES / "input_line.jsonl"
    outputs = [EXAMPLES / "output_line.jsonl", EXAMPLES / "error_lines.jsonl"]
    with pytest.raises(JoinError, match="none of the 3 result lines answers any of the 1"):
        join([inp], outputs)  # the examples answer other requests


def test_bad_input_line_is_an_error_naming_file_and_line(write: Any) -> None:
    inp = write(jsonl(request("a")) + b"not json\n")
    with pytest.raises(JoinError, match=r"in\.jsonl line 2: This line is not parseable"):
        join([inp], [])
    no_id = write([request("a"), {"method": "POST"}], "noid.jsonl")
    with pytest.raises(JoinError, match=r"noid\.jsonl line 2: .*custom_id"):
        join([no_id], [])


def test_custom_id_twice_in_the_inputs_is_an_error(write: Any) -> None:
    a = write([request("a"), request("b")], "a.jsonl")
    b = write([request("c"), request("b")], "b.jsonl")
    with pytest.raises(
        JoinError, match=r"'b' appears twice .*a\.jsonl line 2 and .*b\.jsonl line 2"
    ):
        join([a, b], [])


def test_bad_manifest_is_an_error(write: Any) -> None:
    manifest = write(b'{"parts": 3}', "x.manifest.json")
    with pytest.raises(JoinError, match="not a split manifest"):
        join([manifest], [])


def test_no_inputs_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="at least one input"):
        join([], [])


@pytest.mark.parametrize(
    "name", ["completions", "responses", "all_failed", "embeddings", "parts/output"]
)
def test_fast_reader_agrees_with_line_reader(name: str) -> None:
    path = J / (f"{name}.output.jsonl" if "/" not in name else f"{name}.jsonl")
    if name == "all_failed":
        path = J / "all_failed.errors.jsonl"
    fast = _read_fast(str(path))
    assert fast is not None
    assert fast.table.equals(_read_slow(path, ()).table)


def test_vectors_that_are_not_numbers_are_null(write: Any) -> None:
    def line(custom_id: str, vector: Any) -> dict[str, Any]:
        body = {"data": [{"index": 0, "embedding": vector}]}
        return {"custom_id": custom_id, "response": {"status_code": 200, "body": body}}

    path = write([line("a", [0.5, 1]), line("b", ["x"]), line("c", "%%%"), line("d", [])])
    table = read_results(path, ("include_embeddings",)).table
    assert table.column("embedding").to_pylist() == [[0.5, 1.0], None, None, []]


def test_fast_reader_declines_what_it_cannot_read_exactly(write: Any) -> None:
    assert _read_fast(str(J / "chat.output.jsonl")) is None  # content as an array
    assert _read_fast(str(J / "malformed.output.jsonl")) is None
    ok = {"custom_id": "a", "response": {"status_code": 200, "body": {}}}
    assert _read_fast(str(write(jsonl(ok, ok) + b"\n"))) is None  # a blank line
    assert _read_fast(str(write(b"\xef\xbb\xbf" + jsonl(ok), "bom.jsonl"))) is None
    assert read_results(write(b"", "empty.jsonl")).table.num_rows == 0


# -- properties ----------------------------------------------------------------------------

OUTCOMES = ("ok", "http_400", "http_429", "expired", "content_parts")


def result_line(custom_id: str, outcome: str, n: int) -> dict[str, Any]:
    if outcome == "expired":
        return {"custom_id": custom_id, "response": None, "error": {"code": "batch_expired"}}
    if outcome.startswith("http_"):
        body = {"error": {"message": "no", "type": "t", "code": None}}
        status = int(outcome[5:])
        return {
            "id": f"b{n}",
            "custom_id": custom_id,
            "response": {"status_code": status, "body": body},
        }
    content: Any = f"answer {n}"
    if outcome == "content_parts":
        content = [{"type": "text", "text": f"answer {n}"}]
    message = {"role": "assistant", "content": content}
    body = {"model": "m", "choices": [{"message": message, "finish_reason": "stop"}]}
    return {"id": f"b{n}", "custom_id": custom_id, "response": {"status_code": 200, "body": body}}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(min_value=0, max_value=30),
    answers=st.lists(st.tuples(st.integers(0, 29), st.sampled_from(OUTCOMES)), max_size=45),
    files=st.integers(min_value=1, max_value=3),
    seed=st.integers(0, 1000),
)
def test_one_row_per_input_line_in_order(
    n: int, answers: list[tuple[int, str]], files: int, seed: int
) -> None:
    ids = [f"id-{i}" for i in range(n)]
    answered = [(i, o) for i, o in answers if i < n]
    random.Random(seed).shuffle(answered)
    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "in.jsonl"
        inp.write_bytes(jsonl(*(request(c) for c in ids)))
        outs = []
        for f in range(files):
            chunk = answered[f::files]
            path = Path(tmp) / f"out{f}.jsonl"
            path.write_bytes(jsonl(*(result_line(ids[i], o, k) for k, (i, o) in enumerate(chunk))))
            outs.append(path)
        result = join([inp], outs)
    table, s = result.table, result.summary
    assert table.column("custom_id").to_pylist() == ids
    assert table.column("line").to_pylist() == list(range(1, n + 1))
    assert s.succeeded + s.failed + s.missing == n == s.requests
    good = {i for i, o in answered if o in ("ok", "content_parts")}
    seen = {i for i, _ in answered}
    expected = [
        "succeeded" if i in good else "failed" if i in seen else "missing" for i in range(n)
    ]
    assert table.column("status").to_pylist() == expected
    assert s.duplicates == len(answered) - len(seen)


TEXT = st.text(max_size=5)
PART = st.fixed_dictionaries(
    {"type": st.sampled_from(["output_text", "refusal"]), "text": st.none() | TEXT}
)
ITEM = st.one_of(
    st.fixed_dictionaries({"type": st.just("message"), "content": st.lists(PART, max_size=3)}),
    st.fixed_dictionaries({"type": st.sampled_from(["reasoning", "function_call"])}),
)
COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens", "input_tokens", "output_tokens")
DETAILS = {
    "prompt_tokens_details": "cached_tokens",
    "input_tokens_details": "cached_tokens",
    "completion_tokens_details": "reasoning_tokens",
    "output_tokens_details": "reasoning_tokens",
}
USAGE = st.fixed_dictionaries(
    {},
    optional={
        **{k: st.integers(0, 10**6) for k in COUNTS},
        **{
            k: st.none() | st.fixed_dictionaries({}, optional={v: st.integers(0, 9)})
            for k, v in DETAILS.items()
        },
    },
)
CHOICE = st.fixed_dictionaries(
    {},
    optional={
        "message": st.fixed_dictionaries({"content": st.none() | TEXT}),
        "text": TEXT,
        "finish_reason": st.sampled_from(["stop", "length"]),
    },
)
BODY = st.fixed_dictionaries(
    {},
    optional={
        "model": TEXT,
        "choices": st.lists(CHOICE, max_size=2),
        "output": st.lists(ITEM, max_size=3),
        "status": st.sampled_from(["completed", "incomplete"]),
        "incomplete_details": st.none() | st.fixed_dictionaries({"reason": TEXT}),
        "usage": USAGE,
        "error": st.fixed_dictionaries(
            {}, optional={"code": st.none() | TEXT, "type": TEXT, "message": TEXT}
        ),
    },
)
LINE = st.one_of(
    st.fixed_dictionaries(
        {
            "custom_id": TEXT,
            "response": st.fixed_dictionaries(
                {"status_code": st.sampled_from([200, 201, 400, 429, 500])},
                optional={"request_id": TEXT, "body": BODY},
            ),
        },
        optional={"id": TEXT, "error": st.none()},
    ),
    st.fixed_dictionaries(
        {
            "custom_id": TEXT,
            "response": st.none(),
            "error": st.fixed_dictionaries({}, optional={"code": TEXT, "message": TEXT}),
        }
    ),
)


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(LINE, min_size=1, max_size=12))
def test_fast_and_line_readers_agree(lines: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.jsonl"
        path.write_bytes(jsonl(*lines))
        fast = _read_fast(str(path))
        slow = _read_slow(path, ())
    assert fast is not None
    assert fast.table.to_pylist() == slow.table.to_pylist()


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(LINE, min_size=1, max_size=12), kept=st.sets(st.sampled_from(_RARE)))
def test_the_lean_projection_reads_as_the_full_schema(
    lines: list[dict[str, Any]], kept: set[tuple[str, ...]]
) -> None:
    # whatever rare fields a process kept, a range reads exactly as on the full schema
    data = jsonl(*lines)
    projection = _Projection()
    projection.kept = {_held(data): dict.fromkeys(kept, 1)}
    lean, full = projection.read(data), project_lines(data, _SCHEMA)
    assert full is not None and lean is not None and lean.equals(full)
    found = fast_answers(data)
    assert found is not None
    rows = [dict(zip(found.column_names, extract(obj), strict=True)) for obj in lines]
    assert found.to_pylist() == rows


def test_a_rare_field_on_the_last_line_only_is_read_and_kept() -> None:
    lines = [result_line(f"id-{i}", "ok", i) for i in range(4)]
    lines[-1]["response"]["body"]["usage"] = {"prompt_tokens_details": {"cached_tokens": 7}}
    data = jsonl(*lines)
    projection = _Projection()
    raw = projection.read(data)
    assert raw is not None and raw.equals(project_lines(data, _SCHEMA))
    details = ("response", "body", "usage", "prompt_tokens_details")
    assert projection.kept == {frozenset(): {details: _Projection.KEEP}}
    cached = raw.column("response").combine_chunks().field("body").field("usage")
    assert cached.field("prompt_tokens_details").field("cached_tokens").to_pylist()[-1] == 7


def test_a_rare_field_under_an_escaped_key_is_read() -> None:
    # "outp\u0075t" is "output": pyarrow and orjson read the key unescaped, and so must the
    # lean schema's reader (which types "output" null: it refuses the range, read again)
    chat = jsonl(result_line("a", "ok", 0))
    escaped = (
        b'{"custom_id":"b","response":{"status_code":200,"body":{"outp\\u0075t":'
        b'[{"type":"message","content":[{"type":"output_text","text":"hi"}]}]}}}\n'
    )
    projection = _Projection()
    raw = projection.read(chat + escaped)
    assert raw is not None and raw.equals(project_lines(chat + escaped, _SCHEMA))
    assert projection.kept == {frozenset(): {("response", "body", "output"): _Projection.KEEP}}
    found = fast_answers(chat + escaped)
    assert found is not None and found.column("content").to_pylist() == ["answer 0", "hi"]


def test_the_fields_of_the_first_line_need_no_second_reading() -> None:
    # an errors file: every line's "error" is an object, so the first line's fields are kept
    data = jsonl(*(result_line(f"id-{i}", "expired", i) for i in range(3)))
    projection = _Projection()
    reads = []
    projection_lines = readers.project_lines

    def counted(data: bytes, schema: Any) -> Any:
        reads.append(schema)
        return projection_lines(data, schema)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(readers, "project_lines", counted)
        assert projection.read(data) is not None
    assert len(reads) == 1 and reads[0] != _SCHEMA  # read at once, on a lean schema
    assert projection.kept == {frozenset({("error",)}): {("error",): _Projection.KEEP}}


def test_rare_fields_are_kept_for_ranges_whose_first_line_holds_the_same() -> None:
    # an errors range that holds "body.error" after its first line: read twice, then kept
    # for errors ranges (until KEEP of them in a row hold none), never for output ranges
    errors = [result_line(f"id-{i}", "expired", i) for i in range(3)]
    errors.append(result_line("id-3", "http_500", 3))
    body_error = ("response", "body", "error")
    lean, failed = frozenset({("error",)}), jsonl(*errors)
    projection = _Projection()
    projection.read(failed)
    assert projection.kept == {lean: {("error",): 8, body_error: 8}}
    answers = jsonl(*(result_line(f"id-{i}", "ok", i) for i in range(3)))
    projection.read(answers)
    assert projection.kept[frozenset()] == {}
    for left in range(_Projection.KEEP - 1, 0, -1):
        projection.read(jsonl(*errors[:3]))
        assert projection.kept[lean] == {("error",): 8, body_error: left}
    projection.read(jsonl(*errors[:3]))
    assert projection.kept[lean] == {("error",): 8}


def test_an_escaped_lone_surrogate_is_not_an_answer_in_either_reader(write: Any) -> None:
    # valid UTF-8 in, but "\ud800" decodes to no character: orjson refuses the line, and so
    # must the fast reader (pyarrow refuses it; its strings are not checked again)
    def line(custom_id: str, content: str) -> bytes:
        body = f'{{"model":"m","choices":[{{"message":{{"content":"{content}"}}}}]}}'
        answer = f'{{"custom_id":"{custom_id}","response":{{"status_code":200,"body":{body}}}}}'
        return answer.encode() + b"\n"

    data = line("a", "fine") + line("b", "\\ud800")
    assert fast_answers(line("a", "fine")) is not None
    assert fast_answers(data) is None
    inp = write(jsonl(request("a"), request("b")))
    summary = join([inp], [write(data, "out.jsonl")]).summary
    assert (summary.succeeded, summary.missing, summary.invalid_lines) == (1, 1, 1)


# -- bodies are copied from the lines, never re-serialized (any depth) -------------------------


def deep(depth: int) -> str:
    return "[" * depth + '"x"' + "]" * depth


def test_request_bodies_are_copied_as_written(write: Any) -> None:
    body = '{ "model" : "gpt-4o", "messages": [{"role": "user", "content": "caf\\u00e9 \\/ 1.50"}],'
    body += ' "temperature": 1.50 }'
    line = f'{{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {body} }}'
    inp = write(line.encode() + b"\n")
    table = join([inp], [write(b"", "out.jsonl")], include_bodies=True).table
    assert table.column("request_body").to_pylist() == [body]


@pytest.mark.parametrize("number", ["1" + "0" * 400, "2e308", "1e999"])
@pytest.mark.parametrize("blank", [False, True])
def test_numbers_out_of_orjsons_range_are_read_by_either_reader(
    write: Any, number: str, blank: bool
) -> None:
    # found by tools/fuzz.py: pyarrow's reader (files of plain lines) took such lines, the
    # line reader (a blank line makes a file not plain) refused them: an input was an error
    # and a result 'not a result', depending on the lines around it (or the byte ranges)
    body = f'{{"model":"text-embedding-3-small","input":"x","f":{number}}}'
    request = f'{{"custom_id":"a","method":"POST","url":"/v1/embeddings","body":{body}}}'
    answer = '{"id":"b","custom_id":"a","response":{"status_code":200,"request_id":"q","body":'
    answer += f'{{"object":"list","model":"m","data":[],"f":{number}}}}},"error":null}}'
    gap = b"\n" if blank else b""
    inp = write(gap + request.encode() + b"\n")
    out = write(gap + answer.encode() + b"\n", "out.jsonl")
    result = join([inp], [out], include_bodies=True)
    assert result.table.column("status").to_pylist() == ["succeeded"]
    assert result.table.column("request_body").to_pylist() == [body]


@pytest.mark.parametrize("depth", [300, 1000])
def test_deep_bodies_and_tool_calls_are_copied(write: Any, depth: int) -> None:
    inner = depth - 8
    body = f'{{"model":"gpt-4o","messages":[{{"role":"user","content":{deep(inner)}}}]}}'
    call = f'{{"id":"c","type":"function","function":{{"name":"f","arguments":{deep(inner)}}}}}'
    answer = (
        f'{{"id":"x","choices":[{{"index":0,"message":{{"role":"assistant",'
        f'"content":null,"tool_calls":[{call}]}},"finish_reason":"tool_calls"}}]}}'
    )
    item = f'{{"type":"function_call","name":"f","arguments":{deep(inner)}}}'
    responses = f'{{"id":"y","output":[{{"type":"reasoning"}},{item}],"status":"completed"}}'
    inp = write(
        f'{{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{body}}}\n'
        f'{{"custom_id":"b","method":"POST","url":"/v1/responses","body":{body}}}\n'.encode()
    )
    out = write(
        f'{{"custom_id":"a","response":{{"status_code":200,"body":{answer}}},"error":null}}\n'
        f'{{"custom_id":"b","response":{{"status_code":200,"body":{responses}}}}}\n'.encode(),
        "out.jsonl",
    )
    result = join([inp], [out], include_bodies=True, include_tool_calls=True)
    a, b = result.table.to_pylist()
    assert a["request_body"] == b["request_body"] == body
    assert (a["response_body"], b["response_body"]) == (answer, responses)
    assert (a["tool_calls"], b["tool_calls"]) == (f"[{call}]", f"[{item}]")
    assert result.summary.anomalies == [] and result.summary.complete


def test_a_value_that_cannot_be_copied_is_null_and_an_anomaly(
    write: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jsonl_batch.lines import slices

    monkeypatch.setattr(slices, "raw_value", lambda *args, **kwargs: None)  # then orjson writes
    body = f'{{"model":"gpt-4o","messages":{deep(300)}}}'
    inp = write(
        f'{{"custom_id":"a","url":"/v1/chat/completions","body":{body}}}\n'
        '{"custom_id":"b","url":"/v1/chat/completions","body":{"model":"m"}}\n'.encode()
    )
    out = write(
        f'{{"custom_id":"a","response":{{"status_code":200,"body":{body}}}}}\n'.encode(), "o.jsonl"
    )
    result = join([inp], [out], include_bodies=True)
    assert result.table.column("request_body").to_pylist() == [None, '{"model":"m"}']
    assert result.table.column("response_body").to_pylist() == [None, None]
    s = result.summary
    assert (s.not_copied, s.invalid_lines, s.succeeded, s.missing) == (2, 0, 1, 1)
    assert [(a.kind, a.line, a.custom_id) for a in s.anomalies] == [
        ("not_copied", 1, "a"),
        ("not_copied", 1, "a"),
    ]
    assert s.anomalies[0].message.startswith("request_body left null")
    assert s.anomalies[1].message.startswith("response_body left null")


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=10,
)


def paths(value: Any) -> list[tuple[Any, ...]]:
    """Every path into ``value`` (keys and indexes) and the empty path."""
    found: list[tuple[Any, ...]] = [()]
    if isinstance(value, dict):
        found += [(k, *p) for k, v in value.items() for p in paths(v)]
    elif isinstance(value, list):
        found += [(i, *p) for i, v in enumerate(value) for p in paths(v)]
    return found


@settings(max_examples=150, deadline=None)
@given(value=JSON, indent=st.sampled_from([None, 0, 2]), ascii_=st.booleans(), pick=st.integers())
def test_raw_value_finds_every_value_as_written(
    value: Any, indent: int | None, ascii_: bool, pick: int
) -> None:
    import json

    from jsonl_batch.lines.slices import raw_value

    seps = (",", ":") if indent is None and pick % 2 else (", ", ": ")
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_, separators=seps).encode()
    text = b" \t" + text + b"\r\n" if pick % 3 == 0 else text
    everywhere = paths(value)
    path = everywhere[pick % len(everywhere)]
    expected = orjson.loads(text)  # as orjson reads it (a huge integer becomes a float)
    for step in path:
        expected = expected[step]
    for parsed in ({}, {"parsed": expected}):
        found = raw_value(text, *path, **parsed)
        assert found is not None and orjson.loads(found) == expected
        assert found == found.strip()
    assert raw_value(text, *path, "no such key") is None
    assert raw_value(text, *path, 10**6) is None


def test_raw_value_keys_escaped_and_twice() -> None:
    from jsonl_batch.lines.slices import raw_value

    line = b'{"b\\u006fdy": {"a": 1}, "x": "}\\"]", "body" : [ 2 , 3 ] }'
    assert raw_value(line, "body") == b"[ 2 , 3 ]"  # the last, as orjson.loads reads it
    assert raw_value(line, "body", 1) == b"3"
    assert raw_value(line, "x") == b'"}\\"]"'
    assert raw_value(b'{"a": 1.50}', "a", parsed=1.5) == b"1.50"


def test_results_of_another_batch_are_an_error(write: Any) -> None:
    inp = write([request("a"), request("b")])
    out = write([{"custom_id": "x", "error": {"code": "c"}}, {"custom_id": "y"}], "out.jsonl")
    with pytest.raises(JoinError, match="none of the 1 result lines answers any of the 2 input"):
        join([inp], [out])


@pytest.mark.parametrize("block_rows", [1, 65_536])
def test_token_totals_past_64_bits_are_exact_in_any_blocks(
    write: Any, monkeypatch: pytest.MonkeyPatch, block_rows: int
) -> None:
    # a server's 64-bit extremes: Arrow's sum wraps past 2**63 (the total was negative, or
    # not, by how the rows fell into blocks)
    monkeypatch.setattr(joining, "BLOCK_ROWS", block_rows)
    lines = [result_line(c, "ok", 0) for c in "abc"]
    for line, tokens in zip(lines, [2**62, 2**62, 5], strict=True):
        line["response"]["body"]["usage"] = {"total_tokens": tokens}
    found = join([write([request(c) for c in "abc"])], [write(lines, "out.jsonl")])
    assert found.summary.total_tokens == 2**63 + 5
