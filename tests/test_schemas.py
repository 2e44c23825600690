"""The JSON Schemas in ``schemas/``: well-formed, agreeing across both validators, accepting
the real payloads in ``tests/data/examples`` and the realistic bodies below, and failing
the bad ones at the deepest offending value with the expected keyword."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
import pytest
from helpers import EXAMPLES
from jsonschema.exceptions import best_match

from jsonl_batch.rules.profiles import OPENAI_ENDPOINTS as ENDPOINTS_BY_URL
from jsonl_batch.rules.schemas import body_schema, param_path

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"

BODY_REQUIRED = {  # as OpenAI's definition has it (the batch also requires "model": rules)
    "chat_completions": ["model", "messages"],
    "completions": ["model", "prompt"],
    "embeddings": ["model", "input"],
    "responses": [],
    "moderations": ["input"],
    "images_generations": ["prompt"],
    "images_edits": ["images", "prompt"],
    "videos": ["prompt"],
}
ALL_SCHEMAS = ["request", "result", "batch", "provider_body", *BODY_REQUIRED]
URLS = {e.schema: url for url, e in ENDPOINTS_BY_URL.items()}
ENDPOINTS = list(ENDPOINTS_BY_URL)


@cache
def load(name: str) -> dict[str, Any]:
    """The schema ``schemas/<name>.json`` (swap for the package loader later)."""
    return json.loads((SCHEMAS / f"{name}.json").read_text(encoding="utf-8"))


@cache
def py_validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load(name))


@cache
def rs_validator(name: str) -> Any:
    return jsonschema_rs.validator_for(load(name))


def errors(name: str, instance: Any) -> list[jsonschema.ValidationError]:
    """jsonschema's errors, after checking that jsonschema_rs agrees on validity and paths."""
    found = list(py_validator(name).iter_errors(instance))
    rs_found = list(rs_validator(name).iter_errors(instance))
    assert bool(found) == bool(rs_found), (name, instance, found, rs_found)
    # jsonschema_rs turns numeric-looking object keys into ints ("50256" -> 50256): compare text.
    py_paths = {tuple(map(str, e.absolute_path)) for e in found}
    rs_paths = {tuple(map(str, e.instance_path)) for e in rs_found}
    assert py_paths == rs_paths, (name, py_paths, rs_paths)
    return found


def assert_valid(name: str, instance: Any) -> None:
    found = errors(name, instance)
    assert not found, [f"{list(e.absolute_path)}: {e.message}" for e in found]


def example(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def example_lines(name: str) -> list[Any]:
    text = (EXAMPLES / name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def walk(node: Any):
    """Every dict in a schema, depth first (not the conditions of ``if``)."""
    if isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key != "if":
                yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


# --------------------------------------------------------------------------- the schema files


def test_schema_folder_holds_exactly_the_expected_files():
    assert sorted(p.stem for p in SCHEMAS.glob("*.json")) == sorted(ALL_SCHEMAS)


@pytest.mark.parametrize("name", ALL_SCHEMAS)
def test_schema_is_wellformed(name):
    schema = load(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema_rs.validator_for(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"]
    assert schema["description"].endswith(".")
    assert schema["type"] == "object"
    text = (SCHEMAS / f"{name}.json").read_text(encoding="utf-8")
    assert text == json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("name", ALL_SCHEMAS)
def test_schema_is_self_contained(name):
    for node in walk(load(name)):
        ref = node.get("$ref")
        assert ref is None or ref.startswith("#/$defs/"), ref
        assert "oneOf" not in node


@pytest.mark.parametrize("name", list(BODY_REQUIRED))
def test_body_schemas_close_every_object_they_describe(name):
    """An object whose properties the definition lists says what else it takes."""
    for node in walk(load(name)):
        if isinstance(node.get("properties"), dict) and "if" not in node:
            assert "additionalProperties" in node or "allOf" in node, sorted(node["properties"])


@pytest.mark.parametrize("name", list(BODY_REQUIRED))
def test_body_schema_root_required_is_exact(name):
    assert load(name).get("required", []) == BODY_REQUIRED[name]


@pytest.mark.parametrize("name", list(BODY_REQUIRED))
def test_missing_required_body_parameters_fail_at_the_root(name):
    if not BODY_REQUIRED[name]:
        assert not errors(name, {})
        return
    found = errors(name, {})
    assert {(tuple(e.absolute_path), e.validator) for e in found} == {((), "required")}
    missing = sorted(e.message.split("'")[1] for e in found)
    assert missing == sorted(BODY_REQUIRED[name])


def test_request_url_enum_lists_the_batch_endpoints():
    assert load("request")["properties"]["url"]["enum"] == ENDPOINTS


# --------------------------------------------------------------------------- real payloads


def test_example_input_line():
    (line,) = example_lines("input_line.jsonl")
    assert_valid("request", line)
    assert_valid(line["url"].removeprefix("/v1/").replace("/", "_"), line["body"])


@pytest.mark.parametrize("name", ["output_line.jsonl", "error_lines.jsonl"])
def test_example_result_lines(name):
    lines = example_lines(name)
    assert lines
    for line in lines:
        assert_valid("result", line)


@pytest.mark.parametrize(
    "name",
    [
        "batch_all_fields.json",
        "create_batch_response.json",
        "retrieve_batch_response.json",
        "cancel_batch_response.json",
    ],
)
def test_example_batch_objects(name):
    assert_valid("batch", example(name))


def test_example_list_batches_items():
    page = example("list_batches_response.json")
    assert len(page["data"]) == 2
    for item in page["data"]:
        assert_valid("batch", item)


# --------------------------------------------------------------------------- envelopes

LINE = {"custom_id": "r1", "method": "POST", "url": "/v1/embeddings", "body": {}}
HTTP_ERROR = {
    "id": "batch_req_1",
    "custom_id": "r1",
    "response": {
        "status_code": 400,
        "request_id": None,
        "body": {
            "error": {"message": "m", "type": "invalid_request_error", "param": None, "code": None}
        },
    },
    "error": None,
}
EXPIRED = {
    "id": "batch_req_2",
    "custom_id": "r2",
    "response": None,
    "error": {"code": "request_timeout", "message": "Timed out."},
}
BATCH = example("create_batch_response.json")
FAILED_BATCH = {
    **BATCH,
    "status": "failed",
    "failed_at": 1711471540,
    "model": None,
    "usage": None,
    "errors": {
        "object": "list",
        "data": [
            {"code": "invalid_json_line", "line": 3, "message": "Not JSON.", "param": None},
            {"code": "token_limit_exceeded", "line": None, "message": "Cap.", "param": None},
        ],
    },
}

ENVELOPE_GOOD = [
    ("request", LINE),
    ("request", {**LINE, "url": "/v1/videos", "extra": 1}),
    ("result", HTTP_ERROR),
    ("result", EXPIRED),
    ("batch", FAILED_BATCH),
    ("batch", {**BATCH, "metadata": None, "request_counts": None, "endpoint": "/v1/new"}),
    ("batch", {**BATCH, "metadata": {f"k{i}": "v" for i in range(16)}}),
]

ENVELOPE_BAD = [
    ("request", {**LINE, "method": "GET"}, ["method"], "const"),
    ("request", {**LINE, "url": "/v1/chat/completion"}, ["url"], "enum"),
    ("request", {**LINE, "custom_id": 7}, ["custom_id"], "type"),
    ("request", {**LINE, "body": "{}"}, ["body"], "type"),
    ("request", {"custom_id": "r1", "method": "POST", "url": "/v1/embeddings"}, [], "required"),
    (
        "result",
        {**HTTP_ERROR, "response": {**HTTP_ERROR["response"], "status_code": "400"}},
        ["response", "status_code"],
        "type",
    ),
    ("result", {**EXPIRED, "error": {"code": "batch_expired"}}, ["error"], "required"),
    ("result", {k: v for k, v in EXPIRED.items() if k != "error"}, [], "required"),
    ("batch", {**BATCH, "status": "done"}, ["status"], "enum"),
    ("batch", {**BATCH, "object": "list"}, ["object"], "const"),
    ("batch", {**BATCH, "completed_at": "2024-03-26"}, ["completed_at"], "type"),
    ("batch", {**BATCH, "created_at": None}, ["created_at"], "type"),
    (
        "batch",
        {**BATCH, "request_counts": {"total": 1, "completed": 1}},
        ["request_counts"],
        "required",
    ),
    (
        "batch",
        {
            **FAILED_BATCH,
            "errors": {"object": "list", "data": [{"code": "x", "line": "2", "message": "m"}]},
        },
        ["errors", "data", 0, "line"],
        "type",
    ),
    (
        "batch",
        {**BATCH, "metadata": {f"k{i}": "v" for i in range(17)}},
        ["metadata"],
        "maxProperties",
    ),
    ("batch", {**BATCH, "metadata": {"k": 1}}, ["metadata", "k"], "type"),
    ("batch", {**BATCH, "metadata": {"k": "v" * 513}}, ["metadata", "k"], "maxLength"),
    ("batch", {**BATCH, "usage": {"input_tokens": 1}}, ["usage"], "required"),
]


@pytest.mark.parametrize(("name", "instance"), ENVELOPE_GOOD)
def test_envelope_good(name, instance):
    assert_valid(name, instance)


@pytest.mark.parametrize(("name", "instance", "path", "keyword"), ENVELOPE_BAD)
def test_envelope_bad(name, instance, path, keyword):
    check_bad(name, instance, path, keyword)


# --------------------------------------------------------------------------- endpoint bodies

USER = {"role": "user", "content": "What is 2+2?"}
CHAT = {"model": "gpt-4o-mini", "messages": [USER]}
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}
TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
CONVERSATION = [
    {"role": "developer", "content": "Answer briefly."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 18}'},
]
IMAGE_PART = {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}}
JSON_SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "answer",
        "strict": True,
        "schema": {"type": "object", "properties": {"n": {"type": "integer"}}},
    },
}
RESP = {"model": "gpt-4.1-mini", "input": "Say hi."}
EMB = {"model": "text-embedding-3-small", "input": "hello"}
COMP = {"model": "gpt-3.5-turbo-instruct", "prompt": "Once upon"}
MOD = {"model": "omni-moderation-latest", "input": "some text"}
IMG = {"model": "gpt-image-1", "prompt": "A red fox in snow"}
IMG_EDIT = {**IMG, "images": [{"file_id": "file-abc"}]}
VID = {"model": "sora-2", "prompt": "A paper boat on a river"}

BODY_GOOD = [
    # chat completions
    ("chat_completions", CHAT),
    (
        "chat_completions",
        {
            **CHAT,
            "messages": CONVERSATION,
            "tools": [TOOL],
            "tool_choice": "auto",
            "parallel_tool_calls": False,
        },
    ),
    (
        "chat_completions",
        {
            **CHAT,
            "messages": [
                {"role": "system", "content": [{"type": "text", "text": "Be terse."}]},
                {
                    "role": "user",
                    "name": "ann",
                    "content": [
                        {"type": "text", "text": "What is in these images?"},
                        IMAGE_PART,
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                        },
                        {
                            "type": "input_audio",
                            "input_audio": {"data": "UklGRg==", "format": "wav"},
                        },
                        {"type": "file", "file": {"file_id": "file-abc"}},
                    ],
                },
            ],
        },
    ),
    (
        "chat_completions",
        {
            **CHAT,
            "messages": [
                USER,
                {"role": "assistant", "tool_calls": [TOOL_CALL]},
                {
                    "role": "tool",
                    "tool_call_id": "call_1",
                    "content": [{"type": "text", "text": "18C"}],
                },
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
                {"role": "function", "name": "get_weather", "content": None},
            ],
        },
    ),
    (
        "chat_completions",
        {
            **CHAT,
            "response_format": JSON_SCHEMA_FORMAT,
            "seed": 7,
            "temperature": 0,
            "top_p": 1,
            "n": 2,
            "max_completion_tokens": 256,
            "presence_penalty": -2,
            "frequency_penalty": 2,
            "stop": ["\n", "END"],
            "logprobs": True,
            "top_logprobs": 20,
            "user": "u-1",
            "metadata": {"run": "eval-7"},
            "logit_bias": {"50256": -100},
        },
    ),
    (
        "chat_completions",
        {
            **CHAT,
            "response_format": {"type": "json_object"},
            "stop": "END",
            "max_tokens": 1,
            "stream": False,
            "reasoning_effort": "minimal",
            "service_tier": "flex",
            "store": True,
        },
    ),
    (
        "chat_completions",
        {
            **CHAT,
            "temperature": None,
            "top_p": None,
            "n": None,
            "stop": None,
            "max_tokens": None,
            "seed": None,
            "metadata": None,
            "stream": None,
        },
    ),
    (
        "chat_completions",
        {
            **CHAT,
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "tools": [TOOL, {"type": "custom", "custom": {"name": "sql"}}],
        },
    ),
    ("chat_completions", {**CHAT, "stream": True}),
    # completions
    ("completions", COMP),
    (
        "completions",
        {
            **COMP,
            "prompt": ["a", "b"],
            "max_tokens": 16,
            "logprobs": 5,
            "echo": True,
            "best_of": 3,
            "n": 2,
            "suffix": None,
        },
    ),
    ("completions", {**COMP, "prompt": [1212, 318, 257], "max_tokens": 0, "echo": True}),
    ("completions", {**COMP, "prompt": [[1212, 318], [257]], "stop": ["\n"]}),
    ("completions", {**COMP, "prompt": None}),
    ("completions", {**COMP, "prompt": ""}),
    # embeddings
    ("embeddings", EMB),
    (
        "embeddings",
        {
            **EMB,
            "input": ["hello", "world"],
            "dimensions": 256,
            "encoding_format": "base64",
            "user": "u-1",
        },
    ),
    ("embeddings", {**EMB, "input": [15339, 1917]}),
    ("embeddings", {**EMB, "input": [[15339, 1917], [0]], "encoding_format": "float"}),
    ("embeddings", {**EMB, "input": ["x"] * 2048}),
    # responses
    ("responses", RESP),
    (
        "responses",
        {
            **RESP,
            "instructions": "Be terse.",
            "max_output_tokens": 16,
            "temperature": 2,
            "top_p": 0,
            "store": False,
            "metadata": {"a": "b"},
            "reasoning": {"effort": "low", "summary": "auto"},
            "text": {
                "format": {
                    "type": "json_schema",
                    "name": "answer",
                    "strict": True,
                    "schema": {"type": "object"},
                },
                "verbosity": "low",
            },
        },
    ),
    (
        "responses",
        {
            **RESP,
            "input": [
                {"role": "developer", "content": "Answer in French."},
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Describe this."},
                        {
                            "type": "input_image",
                            "image_url": "https://x.test/a.png",
                            "detail": "auto",
                        },
                        {"type": "input_image", "file_id": "file-abc", "detail": "low"},
                        {"type": "input_file", "file_id": "file-pdf"},
                    ],
                },
                {
                    "type": "message",
                    "role": "assistant",
                    "content": "Voici.",
                },
            ],
        },
    ),
    (
        "responses",
        {
            **RESP,
            "tools": [
                {
                    "type": "function",
                    "name": "get_weather",
                    "parameters": {"type": "object"},
                    "strict": True,
                },
                {"type": "web_search"},
            ],
            "tool_choice": "required",
            "input": [
                {"role": "user", "content": "Weather in Paris?"},
                {
                    "type": "function_call",
                    "call_id": "call_1",
                    "name": "get_weather",
                    "arguments": '{"city": "Paris"}',
                },
                {"type": "function_call_output", "call_id": "call_1", "output": '{"temp_c": 18}'},
                {"type": "item_reference", "id": "msg_123"},
                {"type": "reasoning", "id": "rs_1", "summary": []},
            ],
        },
    ),
    (
        "responses",
        {
            **RESP,
            "tool_choice": {"type": "function", "name": "get_weather"},
            "previous_response_id": "resp_1",
            "instructions": None,
        },
    ),
    ("responses", {**RESP, "text": {"format": {"type": "text"}}, "stream": False}),
    # moderations
    ("moderations", MOD),
    ("moderations", {**MOD, "input": ["a", "b"]}),
    (
        "moderations",
        {
            **MOD,
            "input": [
                {"type": "text", "text": "some text"},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
            ],
        },
    ),
    # images
    ("images_generations", IMG),
    (
        "images_generations",
        {
            **IMG,
            "n": 10,
            "size": "1536x1024",
            "quality": "high",
            "background": "transparent",
            "output_format": "webp",
            "output_compression": 80,
            "moderation": "low",
            "user": "u",
        },
    ),
    (
        "images_generations",
        {
            "model": "dall-e-3",
            "prompt": "A fox",
            "n": 1,
            "size": "1792x1024",
            "quality": "hd",
            "style": "vivid",
            "response_format": "b64_json",
        },
    ),
    (
        "images_edits",
        {
            **IMG,
            "images": [{"image_url": "https://x.test/a.png"}, {"file_id": "file-abc"}],
            "input_fidelity": "high",
            "size": "1024x1024",
            "n": 2,
        },
    ),
    # videos
    ("videos", VID),
    (
        "videos",
        {
            **VID,
            "model": "sora-2-pro",
            "seconds": "8",
            "size": "1280x720",
            "input_reference": {"file_id": "file-abc"},
        },
    ),
    # allowed by the definition (the earlier hand-written schemas were stricter)
    ("chat_completions", {**CHAT, "messages": [USER, {"role": "assistant"}]}),
    ("chat_completions", {**CHAT, "model": ""}),
    ("chat_completions", {**CHAT, "max_tokens": 0}),
    ("chat_completions", {**CHAT, "logit_bias": {"50256": -101}}),
    (
        "chat_completions",
        {**CHAT, "tools": [{"type": "function", "function": {"name": "get weather"}}]},
    ),
    ("completions", {**COMP, "prompt": []}),
    ("embeddings", {**EMB, "input": ""}),
    ("embeddings", {**EMB, "input": ["a", ""]}),
    ("embeddings", {**EMB, "input": [1, -2]}),
    ("responses", {**RESP, "input": [{"type": "function_call_output", "output": "18"}]}),
    ("responses", {**RESP, "metadata": {"k" * 65: "v"}}),
    ("moderations", {**MOD, "input": []}),
    ("images_generations", {**IMG, "prompt": ""}),
    ("images_generations", {**IMG, "output_compression": 101}),
]


def _msgs(*extra: dict[str, Any]) -> dict[str, Any]:
    return {**CHAT, "messages": [USER, *extra]}


BODY_BAD = [
    # chat completions: the messages
    ("chat_completions", _msgs({"role": "bot", "content": "x"}), ["messages", 1, "role"], "enum"),
    ("chat_completions", _msgs({"content": "x"}), ["messages", 1], "required"),
    ("chat_completions", {**CHAT, "messages": []}, ["messages"], "minItems"),
    ("chat_completions", {**CHAT, "messages": USER}, ["messages"], "type"),
    ("chat_completions", _msgs("hi"), ["messages", 1], "type"),
    ("chat_completions", _msgs({"role": "user"}), ["messages", 1], "required"),
    (
        "chat_completions",
        _msgs({"role": "user", "content": None}),
        ["messages", 1, "content"],
        "type",
    ),
    (
        "chat_completions",
        _msgs({"role": "system", "content": 5}),
        ["messages", 1, "content"],
        "type",
    ),
    (
        "chat_completions",
        _msgs({"role": "user", "content": []}),
        ["messages", 1, "content"],
        "minItems",
    ),
    (
        "chat_completions",
        _msgs({"role": "assistant", "content": 5}),
        ["messages", 1, "content"],
        "type",
    ),
    ("chat_completions", _msgs({"role": "tool", "content": "18C"}), ["messages", 1], "required"),
    ("chat_completions", _msgs({"role": "function", "content": "x"}), ["messages", 1], "required"),
    (
        "chat_completions",
        _msgs({"role": "user", "content": [{"text": "x"}]}),
        ["messages", 1, "content", 0],
        "required",
    ),
    (
        "chat_completions",
        _msgs({"role": "user", "content": [{"type": "input_text", "text": "x"}]}),
        ["messages", 1, "content", 0, "type"],
        "not",
    ),
    (
        "chat_completions",
        _msgs({"role": "user", "content": [{"type": "text"}]}),
        ["messages", 1, "content", 0],
        "required",
    ),
    (
        "chat_completions",
        _msgs({"role": "user", "content": [{"type": "text", "text": 1}]}),
        ["messages", 1, "content", 0, "text"],
        "type",
    ),
    (
        "chat_completions",
        _msgs(
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": "https://x.test/a.png"}],
            }
        ),
        ["messages", 1, "content", 0, "image_url"],
        "type",
    ),
    (
        "chat_completions",
        _msgs({"role": "user", "content": [{"type": "image_url", "image_url": {"detail": "low"}}]}),
        ["messages", 1, "content", 0, "image_url"],
        "required",
    ),
    (
        "chat_completions",
        _msgs(
            {
                "role": "assistant",
                "tool_calls": [
                    {**TOOL_CALL, "function": {"name": "f", "arguments": {"city": "Paris"}}}
                ],
            }
        ),
        ["messages", 1, "tool_calls", 0, "function", "arguments"],
        "type",
    ),
    (
        "chat_completions",
        _msgs({"role": "assistant", "tool_calls": [{"type": "function", "function": {}}]}),
        ["messages", 1, "tool_calls", 0],
        "required",
    ),
    # chat completions: the parameters
    ("chat_completions", {**CHAT, "model": 4}, ["model"], "type"),
    ("chat_completions", {**CHAT, "temperature": 2.5}, ["temperature"], "maximum"),
    ("chat_completions", {**CHAT, "temperature": -0.1}, ["temperature"], "minimum"),
    ("chat_completions", {**CHAT, "temperature": "0.7"}, ["temperature"], "type"),
    ("chat_completions", {**CHAT, "top_p": 1.5}, ["top_p"], "maximum"),
    ("chat_completions", {**CHAT, "n": 0}, ["n"], "minimum"),
    ("chat_completions", {**CHAT, "n": 1.5}, ["n"], "type"),
    (
        "chat_completions",
        {**CHAT, "max_completion_tokens": "100"},
        ["max_completion_tokens"],
        "type",
    ),
    ("chat_completions", {**CHAT, "presence_penalty": 3}, ["presence_penalty"], "maximum"),
    ("chat_completions", {**CHAT, "frequency_penalty": -2.5}, ["frequency_penalty"], "minimum"),
    ("chat_completions", {**CHAT, "stop": ["a", "b", "c", "d", "e"]}, ["stop"], "maxItems"),
    ("chat_completions", {**CHAT, "stop": [1]}, ["stop", 0], "type"),
    ("chat_completions", {**CHAT, "seed": "42"}, ["seed"], "type"),
    ("chat_completions", {**CHAT, "logprobs": "true"}, ["logprobs"], "type"),
    ("chat_completions", {**CHAT, "top_logprobs": 21}, ["top_logprobs"], "maximum"),
    ("chat_completions", {**CHAT, "stream": "false"}, ["stream"], "type"),
    ("chat_completions", {**CHAT, "tools": TOOL}, ["tools"], "type"),
    (
        "chat_completions",
        {**CHAT, "tools": [{"function": TOOL["function"]}]},
        ["tools", 0],
        "required",
    ),
    (
        "chat_completions",
        {**CHAT, "tools": [{"type": "function", "name": "get_weather"}]},
        ["tools", 0],
        "required",
    ),
    (
        "chat_completions",
        {**CHAT, "tools": [{"type": "function", "function": {}}]},
        ["tools", 0, "function"],
        "required",
    ),
    ("chat_completions", {**CHAT, "tool_choice": "any"}, ["tool_choice"], "enum"),
    ("chat_completions", {**CHAT, "tool_choice": True}, ["tool_choice"], "type"),
    (
        "chat_completions",
        {**CHAT, "tool_choice": {"type": "function"}},
        ["tool_choice"],
        "required",
    ),
    ("chat_completions", {**CHAT, "response_format": "json"}, ["response_format"], "type"),
    (
        "chat_completions",
        {**CHAT, "response_format": {"json_schema": {}}},
        ["response_format"],
        "required",
    ),
    (
        "chat_completions",
        {**CHAT, "response_format": {"type": "json_schema"}},
        ["response_format"],
        "required",
    ),
    (
        "chat_completions",
        {**CHAT, "response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
        ["response_format", "json_schema"],
        "required",
    ),
    ("chat_completions", {**CHAT, "user": 12}, ["user"], "type"),
    ("chat_completions", {**CHAT, "metadata": {"k": 1}}, ["metadata", "k"], "type"),
    # completions
    ("completions", {**COMP, "prompt": 5}, ["prompt"], "type"),
    ("completions", {**COMP, "prompt": ["a", 1]}, ["prompt", 1], "type"),
    ("completions", {**COMP, "prompt": [[1, 2], ["x"]]}, ["prompt", 1, 0], "type"),
    ("completions", {**COMP, "logprobs": 6}, ["logprobs"], "maximum"),
    ("completions", {**COMP, "logprobs": True}, ["logprobs"], "type"),
    ("completions", {**COMP, "max_tokens": -1}, ["max_tokens"], "minimum"),
    ("completions", {**COMP, "temperature": 3}, ["temperature"], "maximum"),
    ("completions", {**COMP, "stop": ["1", "2", "3", "4", "5"]}, ["stop"], "maxItems"),
    # embeddings
    ("embeddings", {**EMB, "input": []}, ["input"], "minItems"),
    ("embeddings", {**EMB, "input": None}, ["input"], "type"),
    ("embeddings", {**EMB, "input": {"text": "x"}}, ["input"], "type"),
    ("embeddings", {**EMB, "input": ["a", 1]}, ["input", 1], "type"),
    ("embeddings", {**EMB, "input": [1, "a"]}, ["input", 1], "type"),
    ("embeddings", {**EMB, "input": [[1], []]}, ["input", 1], "minItems"),
    ("embeddings", {**EMB, "input": [[1], [2, "x"]]}, ["input", 1, 1], "type"),
    ("embeddings", {**EMB, "input": [{"text": "x"}]}, ["input", 0], "type"),
    ("embeddings", {**EMB, "input": ["x"] * 2049}, ["input"], "maxItems"),
    ("embeddings", {**EMB, "dimensions": 0}, ["dimensions"], "minimum"),
    ("embeddings", {**EMB, "dimensions": "256"}, ["dimensions"], "type"),
    ("embeddings", {**EMB, "encoding_format": "int8"}, ["encoding_format"], "enum"),
    # responses
    ("responses", {**RESP, "input": 5}, ["input"], "type"),
    ("responses", {**RESP, "input": ["hi"]}, ["input", 0], "type"),
    ("responses", {**RESP, "input": [{"content": "hi"}]}, ["input", 0], "required"),
    (
        "responses",
        {**RESP, "input": [{"role": "tool", "content": "x"}]},
        ["input", 0, "role"],
        "enum",
    ),
    ("responses", {**RESP, "input": [{"role": "user"}]}, ["input", 0], "required"),
    (
        "responses",
        {**RESP, "input": [{"type": "message", "content": "x"}]},
        ["input", 0],
        "required",
    ),
    (
        "responses",
        {**RESP, "input": [{"role": "user", "content": 5}]},
        ["input", 0, "content"],
        "type",
    ),
    (
        "responses",
        {**RESP, "input": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
        ["input", 0, "content", 0, "type"],
        "not",
    ),
    (
        "responses",
        {**RESP, "input": [{"role": "user", "content": [{"type": "input_text"}]}]},
        ["input", 0, "content", 0],
        "required",
    ),
    (
        "responses",
        {
            **RESP,
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_image", "image_url": {"url": "https://x.test/a.png"}}
                    ],
                }
            ],
        },
        ["input", 0, "content", 0, "image_url"],
        "type",
    ),
    (
        "responses",
        {
            **RESP,
            "input": [
                {
                    "type": "function_call",
                    "call_id": "c",
                    "name": "f",
                    "arguments": {"city": "Paris"},
                }
            ],
        },
        ["input", 0, "arguments"],
        "type",
    ),
    ("responses", {**RESP, "max_output_tokens": 10}, ["max_output_tokens"], "minimum"),
    ("responses", {**RESP, "temperature": 2.1}, ["temperature"], "maximum"),
    ("responses", {**RESP, "top_p": -1}, ["top_p"], "minimum"),
    ("responses", {**RESP, "instructions": ["x"]}, ["instructions"], "type"),
    ("responses", {**RESP, "tools": [TOOL]}, ["tools", 0], "required"),
    ("responses", {**RESP, "tools": [{"name": "f"}]}, ["tools", 0], "required"),
    ("responses", {**RESP, "tool_choice": "any"}, ["tool_choice"], "enum"),
    (
        "responses",
        {
            **RESP,
            "text": {"format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {}}}},
        },
        ["text", "format"],
        "required",
    ),
    ("responses", {**RESP, "stream": 1}, ["stream"], "type"),
    # a propertyNames failure is reported at the object, with the subschema's keyword
    # moderations
    ("moderations", {**MOD, "input": 5}, ["input"], "type"),
    ("moderations", {**MOD, "input": ["a", {"type": "text", "text": "b"}]}, ["input", 1], "type"),
    ("moderations", {**MOD, "input": [{"type": "text"}]}, ["input", 0], "required"),
    (
        "moderations",
        {**MOD, "input": [{"type": "image_url", "image_url": "https://x.test"}]},
        ["input", 0, "image_url"],
        "type",
    ),
    ("moderations", {**MOD, "input": [{"text": "a"}]}, ["input", 0], "required"),
    # images
    ("images_generations", {**IMG, "n": 11}, ["n"], "maximum"),
    ("images_generations", {**IMG, "n": 0}, ["n"], "minimum"),
    ("images_generations", {**IMG, "prompt": ["a fox"]}, ["prompt"], "type"),
    ("images_generations", {**IMG, "size": 1024}, ["size"], "type"),
    ("images_generations", {**IMG, "response_format": "png"}, ["response_format"], "enum"),
    ("images_generations", {**IMG, "output_format": "gif"}, ["output_format"], "enum"),
    (
        "images_edits",
        {**IMG_EDIT, "images": [{"url": "https://x.test/a.png"}]},
        ["images", 0],
        "anyOf",
    ),
    ("images_edits", {**IMG_EDIT, "images": []}, ["images"], "minItems"),
    ("images_edits", {**IMG_EDIT, "images": [{"file_id": "f"}] * 17}, ["images"], "maxItems"),
    ("images_edits", {**IMG_EDIT, "partial_images": 4}, ["partial_images"], "maximum"),
    # videos
    ("videos", {**VID, "seconds": 8}, ["seconds"], "type"),
    ("videos", {**VID, "size": [720, 1280]}, ["size"], "type"),
    ("videos", {**VID, "prompt": None}, ["prompt"], "type"),
    (
        "videos",
        {**VID, "input_reference": {"url": "https://x.test/a.png"}},
        ["input_reference"],
        "anyOf",
    ),
    # keys the definition does not define
    (
        "chat_completions",
        {**CHAT, "some_future_param": {"x": [1]}},
        ["some_future_param"],
        "additionalProperties",
    ),
    (
        "chat_completions",
        {**CHAT, "messages": [{**USER, "future_field": 1}]},
        ["messages", 0, "future_field"],
        "additionalProperties",
    ),
    (
        "completions",
        {**COMP, "some_future_param": True},
        ["some_future_param"],
        "additionalProperties",
    ),
    ("embeddings", {**EMB, "some_future_param": 1}, ["some_future_param"], "additionalProperties"),
    (
        "responses",
        {**RESP, "some_future_param": "x"},
        ["some_future_param"],
        "additionalProperties",
    ),
    ("moderations", {**MOD, "some_future_param": 1}, ["some_future_param"], "additionalProperties"),
    (
        "images_generations",
        {**IMG, "size": None, "n": None, "some_future_param": 1},
        ["some_future_param"],
        "additionalProperties",
    ),
    (
        "images_edits",
        {**IMG_EDIT, "some_future_param": 1},
        ["some_future_param"],
        "additionalProperties",
    ),
    ("videos", {**VID, "some_future_param": 1}, ["some_future_param"], "additionalProperties"),
]


def check_bad(name: str, instance: Any, path: list[Any], keyword: str) -> None:
    """Both validators reject it, and the library explains it at (or inside) ``path``."""
    found_py = errors(name, instance)
    assert found_py, f"{name}: expected an error at {path}"
    if name not in URLS:  # an envelope: jsonschema's best match
        best = best_match(found_py)
        got = (list(best.absolute_path), best.validator)
        assert got == (path, keyword), [(list(e.absolute_path), e.validator) for e in found_py]
        return
    found = list(body_schema(URLS[name]).failures(instance))
    want = param_path(path, instance)
    assert found, f"{name}: no failures explained"
    inside = (want + ".", want + "[")
    assert any(param == want or param.startswith(inside) for param, _ in found), (want, found)


@pytest.mark.parametrize(("name", "body"), BODY_GOOD)
def test_body_good(name, body):
    assert_valid(name, body)


@pytest.mark.parametrize(("name", "body", "path", "keyword"), BODY_BAD)
def test_body_bad(name, body, path, keyword):
    check_bad(name, body, path, keyword)


@pytest.mark.parametrize(("name", "body"), [(n, b) for n, b, *_ in BODY_BAD])
def test_bad_bodies_pass_the_root_required_check(name, body):
    """Every bad body has the required parameters, so its problem is an invalid_body one."""
    assert all(key in body for key in BODY_REQUIRED[name])


def test_tables_cover_every_body_schema():
    assert {n for n, _ in BODY_GOOD} == set(BODY_REQUIRED)
    assert {n for n, *_ in BODY_BAD} == set(BODY_REQUIRED)
