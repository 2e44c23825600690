"""Each rule on its own: the findings it returns for a request, and silence for a good one."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import jsonschema_rs
import orjson
import pytest
from helpers import jsonl, request
from hypothesis import given, settings
from hypothesis import strategies as st

from jsonl_batch import CATALOGUE, get_profile, validate_file
from jsonl_batch.rules.checks import (
    LINE_RULES,
    RULES,
    Chunk,
    Context,
    FileRules,
    body_against_schema,
    clean_line_schema,
    endpoint,
    field_types,
    method,
    portable_custom_id,
    required_fields,
    rule_of,
    streaming,
    unknown_keys,
)
from jsonl_batch.rules.limits import LIMIT_CODES, LIMITS, Limits, Totals
from jsonl_batch.rules.requests import RequestFacts, count_inputs, not_a_request, read_request
from jsonl_batch.validate import LineChecker

CTX = Context(get_profile())


def codes(found: Any) -> list[tuple[str, str | None]]:
    return [(code, param) for code, _message, param in found or []]


def without(field: str) -> dict[str, Any]:
    req = request()
    del req[field]
    return req


@pytest.mark.parametrize(
    ("rule", "req", "expected"),
    [
        (required_fields, request(), []),
        (required_fields, without("custom_id"), [("missing_required_parameter", "custom_id")]),
        (
            required_fields,
            {},
            [("missing_required_parameter", f) for f in ("custom_id", "method", "url", "body")],
        ),
        (field_types, request(), []),
        (field_types, {**request(), "custom_id": 7}, [("invalid_type", "custom_id")]),
        (field_types, {**request(), "custom_id": None}, [("invalid_type", "custom_id")]),
        (field_types, {**request(), "body": []}, [("invalid_type", "body")]),
        (field_types, {**request(), "url": 1}, [("invalid_type", "url")]),
        (method, request(), []),
        (method, without("method"), []),
        (method, {**request(), "method": "post"}, [("invalid_method", "method")]),
        (endpoint, request(), []),
        (endpoint, request(url="/v1/chat"), [("unsupported_endpoint", "url")]),
        (streaming, request(stream=False), []),
        (streaming, request(stream=True), [("streaming_unsupported", "body.stream")]),
        (body_against_schema, request(), []),
        (body_against_schema, request(model=None), [("invalid_request", "body.model")]),
        (body_against_schema, request(n=0), [("invalid_body", "body.n")]),
        (
            body_against_schema,
            request(url="/v1/nope", model=None),
            [("invalid_request", "body.model")],
        ),
        (unknown_keys, request(), []),
        (
            unknown_keys,
            {**request(), "id": 1, "x": 2},
            [("unknown_parameter", "id"), ("unknown_parameter", "x")],
        ),
        (portable_custom_id, request("ok_id-1"), []),
        (portable_custom_id, request("a/b"), [("nonportable_custom_id", "custom_id")]),
    ],
)
def test_rule(rule: Any, req: dict[str, Any], expected: list[Any]) -> None:
    assert codes(rule(req, CTX)) == expected


def test_messages_name_the_value_found() -> None:
    [(_, message, _)] = method({**request(), "method": "post"}, CTX)
    assert "POST" in message and '"post"' in message and "upper case" in message
    [(_, message, _)] = endpoint(request(url="https://api.openai.com/v1/embeddings"), CTX)
    assert "'/v1/embeddings'" in message
    body = request(messages=[{"role": "robot", "content": "x"}])
    [(_, message, param)] = body_against_schema(body, CTX)
    assert param == "body.messages[0].role" and '"robot"' in message and '"user"' in message


def test_every_code_has_one_rule() -> None:
    line_codes = [c for r in LINE_RULES for c in r.codes]
    assert len(line_codes) == len(set(line_codes))
    assert not set(line_codes) & set(FileRules.codes)
    assert set(LIMIT_CODES) <= set(FileRules.codes)
    every = [c for r in RULES.values() for c in r.codes]
    assert sorted(every) == sorted(CATALOGUE)  # each code of the catalogue, by one rule
    assert {c for r in RULES.values() if r.kind == "build" for c in r.codes} == {
        c for c, entry in CATALOGUE.items() if entry.build
    }
    assert rule_of("invalid_json_line").kind == "parse"
    assert rule_of("invalid_type") is RULES["field_types"]
    assert rule_of("too_many_tasks") is rule_of("token_limit_exceeded") is RULES["limits"]


def spy(monkeypatch: pytest.MonkeyPatch, name: str) -> list[Any]:
    """Record the calls of the registered line rule ``name``."""
    calls: list[Any] = []
    rule = RULES[name]
    assert rule.check is not None
    check = rule.check

    def spying(req: Any, ctx: Context) -> Any:
        calls.append(req)
        return check(req, ctx)

    monkeypatch.setitem(RULES, name, dataclasses.replace(rule, check=spying))
    return calls


def test_an_ignored_rule_is_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    data = jsonl({**request(), "extra": 1}, [1], request("r-2", stream=True))
    calls = spy(monkeypatch, "unknown_keys")
    types = spy(monkeypatch, "field_types")
    report = validate_file(io.BytesIO(data), workers=1)
    assert [p.code for p in report.problems] == [
        "unknown_parameter",
        "invalid_type",
        "streaming_unsupported",
    ]
    assert len(calls) == 2 and len(types) == 3  # the lines that are not clean
    calls.clear(), types.clear()
    ignored = validate_file(
        io.BytesIO(data), workers=1, ignore=["unknown_parameter", "invalid_type"]
    )
    assert [p.code for p in ignored.problems] == ["streaming_unsupported"]
    assert calls == [] and types == []  # switched off, not filtered


def test_ignored_file_rules_are_off() -> None:
    rules = FileRules(get_profile(), ignore=["duplicate_custom_id", *LIMIT_CODES])
    assert not rules.unique and rules.limits is None
    found = rules.feed(0, chunk_of(("a", "/v1/embeddings", "m", 0), ("a", "/v1/x", "n", 0)))
    assert [f[0] for _, f in found] == ["invalid_url", "mismatched_model"]
    assert rules.first_use("a") is None  # custom_ids are not even recorded
    off = FileRules(get_profile(), ignore=["invalid_url", "mismatched_model"])
    assert off.feed(0, chunk_of(("a", "/v1/embeddings", "m", 0), ("b", "/v1/x", "n", 0))) == []
    assert (off.endpoint, off.model) == ("/v1/embeddings", "m")  # still the report's


def test_file_rules_take_one_request_at_a_time() -> None:
    rules = FileRules(get_profile(), first="by request")
    chat = "/v1/chat/completions"
    one = RequestFacts("a", chat, chat, "m", 0, {})
    assert rules.accept(1, one) == []
    assert rules.check(2, one._replace(model="n")) == [
        (
            "mismatched_model",
            "Every line must use the same model: found 'n', the file's model is 'm' (from line 1).",
            "body.model",
        ),
        (
            "duplicate_custom_id",
            "custom_id 'a' is already used by request 1; custom_ids must be unique in a file.",
            "custom_id",
        ),
    ]
    assert rules.first_use("a") == 1 and rules.requests == 1  # check records nothing


@pytest.mark.parametrize(
    ("value", "count"),
    [("a", 1), (["a", "b"], 2), ([1, 2, 3], 1), ([[1], [2, 3]], 2), ([], 0), (None, 0)],
)
def test_count_inputs(value: Any, count: int) -> None:
    assert count_inputs(value) == count


def chunk_of(*rows: tuple[str | None, str | None, str | None, int]) -> Chunk:
    chunk = Chunk()
    last = None
    for n, (cid, url, model, inputs) in enumerate(rows, 1):
        chunk.lines, chunk.requests = n, chunk.requests + 1
        chunk.embedding_inputs += inputs
        chunk.custom_ids.append(cid)
        if (url, model) != last:
            chunk.targets.append((n, url, model))
            last = (url, model)
    return chunk


def test_file_rules_across_chunks() -> None:
    rules = FileRules(get_profile())
    chat = "/v1/chat/completions"
    first = rules.feed(0, chunk_of(("a", chat, "m", 0), ("b", chat, "m", 0)))
    second = rules.feed(2, chunk_of(("a", chat, "m", 0), ("c", "/v1/embeddings", "x", 3)))
    assert first == []
    assert [(line, code) for line, (code, _, _) in second] == [
        (3, "duplicate_custom_id"),
        (4, "invalid_url"),
        (4, "mismatched_model"),
    ]
    assert "line 1" in second[0][1][1]
    assert (rules.requests, rules.embedding_inputs) == (4, 3)
    assert [code for code, _, _ in rules.finish(10)] == []


def test_file_rules_limits() -> None:
    rules = FileRules(get_profile(max_requests=1, max_bytes=5, max_embedding_inputs=2))
    rules.feed(0, chunk_of(("a", None, None, 2), ("b", None, None, 1)))
    assert [code for code, _, _ in rules.finish(6)] == [
        "too_many_tasks",
        "file_too_large",
        "too_many_embedding_inputs",
    ]
    assert [code for code, _, _ in FileRules(get_profile()).finish(0)] == ["empty_file"]


# The fast path: a line passes the clean-line schema exactly when no line rule fires.

CLEAN = {url: jsonschema_rs.validator_for(clean_line_schema(url, CTX)) for url in CTX.endpoints}
values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-3, 3) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
roles = st.sampled_from(["user", "system", "assistant", "tool", "robot", "developer"])
messages = st.lists(
    st.fixed_dictionaries(
        {"role": roles}, optional={"content": values | st.text(max_size=5), "tool_call_id": values}
    ),
    max_size=3,
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["gpt-4o-mini", None, 5]),
        "messages": messages,
        "input": values,
        "prompt": values,
        "stream": values,
        "temperature": values,
        "n": values,
        "extra": values,
    },
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "custom_id": st.sampled_from(["r-1", "has space", None, 3]),
        "method": st.sampled_from(["POST", "post", None]),
        "url": st.sampled_from([*CTX.endpoints, "/chat/completions", "/v1/nope", None]),
        "body": bodies | values,
        "extra": values,
    },
)


@settings(max_examples=300, deadline=None)
@given(requests)
def test_clean_schema_agrees_with_rules(req: dict[str, Any]) -> None:
    url = req.get("url")
    clean = type(url) is str and url in CLEAN and CLEAN[url].is_valid(req)
    findings = [f for rule in LINE_RULES for f in (rule.check(req, CTX) or [])]
    assert clean == (not findings), findings


OTHER = {
    name: Context(get_profile(name), "/v1/chat/completions" if name == "together" else None)
    for name in ("together", "vllm", "azure")
}
OTHER_CLEAN = {
    (name, url): jsonschema_rs.validator_for(clean_line_schema(url, ctx))
    for name, ctx in OTHER.items()
    for url in ctx.endpoints
}


@pytest.mark.parametrize("name", sorted(OTHER))
@settings(max_examples=150, deadline=None)
@given(req=requests)
def test_clean_schema_agrees_with_rules_in_every_shape(name: str, req: dict[str, Any]) -> None:
    """The same for a {custom_id, body} profile, an open-bodied one and Azure's urls."""
    ctx = OTHER[name]
    url = ctx.url_of(req)
    check = OTHER_CLEAN.get((name, url)) if type(url) is str else None
    clean = check is not None and check.is_valid(req)
    findings = [f for rule in LINE_RULES for f in (rule.check(req, ctx) or [])]
    assert clean == (not findings), findings


# The request core: the fast path of validation reads the same facts as ``read_request``.

CHECKER = LineChecker(get_profile())
good_requests = st.fixed_dictionaries(
    {
        "custom_id": st.sampled_from(["r-1", "r-2", "has space"]),
        "method": st.just("POST"),
        "url": st.just("/v1/embeddings"),
        "body": st.fixed_dictionaries(
            {
                "model": st.sampled_from(["text-embedding-3-small", "m"]),
                "input": st.text(max_size=3)
                | st.lists(st.text(max_size=3), min_size=1, max_size=4)
                | st.lists(st.integers(0, 9), min_size=1, max_size=4)
                | st.lists(st.lists(st.integers(0, 9), min_size=1), min_size=1, max_size=3),
            }
        ),
    }
) | st.builds(
    lambda cid, model, url: request(cid, model, url),
    st.sampled_from(["r-1", "a/b"]),
    st.sampled_from(["gpt-4o-mini", "other"]),
    st.sampled_from(["/v1/chat/completions", "/v1/responses", "/v1/nope"]),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(good_requests, requests, values))
def test_fast_path_agrees_with_the_request_core(req: Any) -> None:
    chunk = CHECKER.check_lines([orjson.dumps(req)])
    facts = read_request(req, CHECKER.ctx)
    assert chunk.lines == 1
    if not isinstance(facts, RequestFacts):
        assert (chunk.requests, chunk.custom_ids, chunk.embedding_inputs) == (0, [None], 0)
        assert [code for code, _, _ in chunk.findings[0][1]] == ["invalid_type"]
        return
    assert chunk.requests == 1
    assert chunk.custom_ids == [facts.custom_id]
    assert chunk.targets == [(1, facts.endpoint, facts.model)]
    assert chunk.embedding_inputs == facts.embedding_inputs
    assert CHECKER.check(orjson.dumps(req))[0] == facts


def test_the_fast_path_is_taken_by_clean_lines() -> None:
    line = {"custom_id": "e", "method": "POST", "url": "/v1/embeddings"}
    req = {**line, "body": {"model": "m", "input": ["a", "b"]}}
    chunk = CHECKER.check_lines([orjson.dumps(req)])
    assert chunk.findings == [] and chunk.embedding_inputs == 2
    assert CHECKER.clean["/v1/embeddings"](req)  # (what sends a line down the fast path)


def test_the_file_and_a_part_break_a_limit_in_one_wording() -> None:
    """``Limits`` words the whole file (``FileRules.finish``), a part (builder rotation,
    split) and a request alone the same way: ``... N noun; the limit is L noun``."""
    profile = get_profile(max_requests=2, max_bytes=100, max_embedding_inputs=5)
    limits = Limits.of(profile, 50)
    over = limits.over(Totals(3, 101, 6, 51))
    assert [b.code for b in over] == list(LIMIT_CODES) == [limit.code for limit in LIMITS]
    assert [b.message for b in over] == [
        "The file has 3 requests; the limit is 2 requests per file. Split it (jsonl-batch split).",
        "The file has 101 bytes; the limit is 100 bytes per file. Split it (jsonl-batch split).",
        "The file has 6 embedding inputs; the limit is 5 embedding inputs per file. Split it "
        "(jsonl-batch split).",
        "The file has an estimated 51 input tokens; the limit is 50 input tokens. The server "
        "fails a batch over the organization's enqueued-token limit at validation: split it "
        "(jsonl-batch split --max-tokens) or wait for running batches to finish.",
    ]
    rules = FileRules(profile.replace(max_enqueued_tokens=50))
    rules.requests, rules.embedding_inputs, rules.tokens = 3, 6, 51
    assert rules.finish(101) == [b[:3] for b in over]
    breaks = [
        limits.breaks(Totals(2, 0, 0, 0), 1, 0, 0),
        limits.breaks(Totals(1, 50, 0, 0), 60, 0, 0),
        limits.breaks(Totals(1, 0, 3, 0), 1, 3, 0),
        limits.breaks(Totals(1, 0, 0, 30), 1, 0, 40),
    ]
    assert [(b.code, b.message, b.value) for b in breaks if b] == [
        ("too_many_tasks", "This request would give the file 3 requests; the limit is 2 "
         "requests per file", 3),
        ("file_too_large", "This request (60 bytes) would give the file 110 bytes; the limit is "
         "100 bytes per file", 110),
        ("too_many_embedding_inputs", "This request (3 embedding inputs) would give the file 6 "
         "embedding inputs; the limit is 5 embedding inputs per file", 6),
        ("token_limit_exceeded", "This request (an estimated 40 input tokens) would give the "
         "file an estimated 70 input tokens; the limit is 50 input tokens", 70),
    ]  # fmt: skip
    assert limits.breaks(Totals(1, 50, 0, 0), 50, 5, 0) is None
    alone = limits.alone(1, 6, 0)
    assert alone == (
        "too_many_embedding_inputs",
        "This request alone has 6 embedding inputs; the limit is 5 embedding inputs per file, "
        "so no part can hold it.",
        "body.input",
        6,
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(good_requests, requests), min_size=1, max_size=4))
def test_the_join_s_fast_index_takes_what_the_core_takes(objects: list[Any]) -> None:
    """The join indexes plain request files with pyarrow (``results.index.fast_ids``); what
    it takes as requests, the request core (``not_a_request``) takes too."""
    from jsonl_batch.results.index import fast_ids

    data = b"".join(orjson.dumps(o) + b"\n" for o in objects)
    for formats in (False, True):  # the request formats read too, or not
        found = fast_ids(data, formats)
        if found is not None:
            assert [not_a_request(o) for o in objects] == [None] * len(objects)
            assert found[0].to_pylist() == [o["custom_id"] for o in objects]
