"""The body schemas come from OpenAI's definition: regenerating them from the committed
extract gives the committed files; every parameter it defines is accepted, a misspelling of
each is ``invalid_body`` with the right suggestion; one problem per cause."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
import pytest

from jsonl_batch import validate_file
from jsonl_batch.rules.checks import TEXT_MESSAGE
from jsonl_batch.rules.profiles import OPENAI_ENDPOINTS as ENDPOINTS
from jsonl_batch.rules.schemas import body_schema, load_schema, unknown_key

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("gen_schemas", ROOT / "tools" / "gen_schemas.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()
EXTRACT = json.loads((SCHEMAS / "openapi" / "extract.json").read_text(encoding="utf-8"))

MINIMAL: dict[str, dict[str, Any]] = {
    "/v1/responses": {"model": "gpt-4.1-mini", "input": "Hi"},
    "/v1/chat/completions": {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Hi"}],
    },
    "/v1/embeddings": {"model": "text-embedding-3-small", "input": "Hi"},
    "/v1/completions": {"model": "gpt-3.5-turbo-instruct", "prompt": "Hi"},
    "/v1/moderations": {"model": "omni-moderation-latest", "input": "Hi"},
    "/v1/images/generations": {"model": "gpt-image-1", "prompt": "A fox"},
    "/v1/images/edits": {"model": "gpt-image-1", "prompt": "A fox", "images": [{"file_id": "f"}]},
    "/v1/videos": {"model": "sora-2", "prompt": "A boat"},
}


def line(url: str, body: dict[str, Any], custom_id: str = "r1") -> bytes:
    return orjson.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


def problems(*lines: bytes, **options: Any) -> list[tuple[int | None, str, str | None, str]]:
    report = validate_file(_source(b"\n".join(lines) + b"\n"), max_problems=None, **options)
    return [(p.line, p.code, p.param, p.message) for p in report.problems]


def _source(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


# --------------------------------------------------------------------------- the generator


def test_regenerating_from_the_extract_gives_the_committed_schemas():
    for name, text in GEN.Generator(EXTRACT).files().items():
        assert (SCHEMAS / name).read_text(encoding="utf-8") == text, (
            f"schemas/{name} differs from the extract: run python tools/gen_schemas.py"
        )


def test_extract_names_its_source_and_the_batch_endpoints():
    source = EXTRACT["source"]
    assert source["repository"] == "openai/openai-openapi"
    assert source["version"] and len(source["sha256"]) == 64 and len(source["commit"]) == 40
    assert list(EXTRACT["endpoints"]) == list(ENDPOINTS)
    assert EXTRACT["endpoints"]["/v1/chat/completions"] == "CreateChatCompletionRequest"
    assert (SCHEMAS / "openapi" / "extract.json").stat().st_size < 150_000
    for url in ENDPOINTS:
        comment = load_schema(ENDPOINTS[url].schema)["$comment"]
        assert source["sha256"] in comment and source["version"] in comment


def test_extract_keeps_no_descriptions():
    text = (SCHEMAS / "openapi" / "extract.json").read_text(encoding="utf-8")
    assert '"description":"' not in text and '"example":' not in text


def test_generator_turns_openapi_into_json_schema():
    node = GEN.normalize({"type": "integer", "nullable": True, "x-oaiTypeLabel": "int"}, "X")
    assert node == {"type": ["integer", "null"]}
    assert GEN.normalize({"oneOf": [{"$ref": "#/components/schemas/A"}]}, "X") == {
        "anyOf": [{"$ref": "#/$defs/A"}]
    }
    assert GEN.normalize({"$recursiveRef": "#"}, "Filter") == {"$ref": "#/$defs/Filter"}
    assert GEN.normalize({"enum": ["a"], "nullable": True}, "X") == {"enum": ["a", None]}


def test_generator_merges_all_of_before_closing():
    """allOf + additionalProperties: false does not compose: a merged object is closed once."""
    data = {
        "source": EXTRACT["source"],
        "endpoints": {"/v1/x": "Req"},
        "schemas": {
            "Base": {"type": "object", "properties": {"a": {"type": "integer"}}},
            "Req": {
                "allOf": [
                    {"$ref": "#/components/schemas/Base"},
                    {"type": "object", "properties": {"b": {"type": "string"}}, "required": ["b"]},
                ]
            },
        },
    }
    gen = GEN.Generator(data)
    schema = gen.defs["Req"]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"a", "b"} and schema["required"] == ["b"]
    check = jsonschema_rs.validator_for(schema)
    assert check.is_valid({"a": 1, "b": "x"})
    assert not check.is_valid({"a": 1, "b": "x", "c": 0})


# --------------------------------------------------------------------------- every parameter


def _params() -> list[tuple[str, str]]:
    return [
        (url, name)
        for url in ENDPOINTS
        for name in load_schema(ENDPOINTS[url].schema)["properties"]
    ]


def _misspell(name: str) -> str:
    """A typo: two neighbouring letters swapped (or a letter doubled in short names)."""
    if len(name) < 4:
        return name + name[-1]
    i = len(name) // 2
    swapped = name[: i - 1] + name[i] + name[i - 1] + name[i + 1 :]
    return swapped if swapped != name else name[:i] + name[i] + name[i:]


PARAMS = _params()


def test_every_endpoint_lists_its_parameters():
    counts = {url: sum(1 for u, _ in PARAMS if u == url) for url in ENDPOINTS}
    assert counts["/v1/chat/completions"] >= 30 and counts["/v1/responses"] >= 25
    assert all(counts.values())


@pytest.mark.parametrize("url", list(ENDPOINTS))
def test_every_parameter_of_the_definition_is_accepted_by_name(url):
    names = [name for u, name in PARAMS if u == url]
    lines = [line(url, {**MINIMAL[url], name: None}, f"r{i}") for i, name in enumerate(names)]
    found = problems(*lines, ignore=("mismatched_model",))
    unknown = [p for p in found if p[3].startswith("Unknown parameter")]
    assert not unknown, unknown


@pytest.mark.parametrize("url", list(ENDPOINTS))
def test_a_misspelt_parameter_is_invalid_body_with_the_suggestion(url):
    names = [name for u, name in PARAMS if u == url]
    typos = [_misspell(name) for name in names]
    lines = [line(url, {**MINIMAL[url], typo: 1}, f"r{i}") for i, typo in enumerate(typos)]
    found = {(p[0], p[2]): (p[1], p[3]) for p in problems(*lines)}
    for i, (name, typo) in enumerate(zip(names, typos, strict=True), 1):
        if typo in names:
            continue
        code, message = found[(i, f"body.{typo}")]
        assert code == "invalid_body"
        assert message == unknown_key(f"body.{typo}", typo, names)
        assert f"did you mean {name!r}" in message, (typo, message)


def test_unknown_keys_inside_messages_and_tools_are_named_with_their_path():
    body = {
        **MINIMAL["/v1/chat/completions"],
        "messages": [{"role": "user", "content": "Hi", "nmae": "ann"}],
        "tools": [{"type": "function", "function": {"name": "f"}, "parameters": {}}],
        "temprature": 0.5,
        "max_token": 50,
    }
    found = problems(line("/v1/chat/completions", body))
    assert {(p[1], p[2]) for p in found} == {
        ("invalid_body", "body.messages[0].nmae"),
        ("invalid_body", "body.tools[0].parameters"),
        ("invalid_body", "body.temprature"),
        ("invalid_body", "body.max_token"),
    }
    messages = {p[2]: p[3] for p in found}
    assert messages["body.temprature"] == (
        "Unknown parameter body.temprature (did you mean 'temperature'?)."
    )
    assert "did you mean 'max_tokens'" in messages["body.max_token"]
    assert "did you mean 'name'" in messages["body.messages[0].nmae"]


def test_allowed_parameters_are_accepted():
    schema = body_schema("/v1/chat/completions", frozenset({"top_k"}))
    assert schema.is_valid({**MINIMAL["/v1/chat/completions"], "top_k": 5})
    assert not body_schema("/v1/chat/completions").is_valid(
        {**MINIMAL["/v1/chat/completions"], "top_k": 5}
    )
    assert body_schema("/v1/chat/completions", closed=False).is_valid(
        {
            **MINIMAL["/v1/chat/completions"],
            "top_k": 5,
            "messages": [{"role": "user", "content": "a", "x": 1}],
        }
    )


def test_types_enums_and_ranges_come_from_the_definition():
    body = {
        **MINIMAL["/v1/chat/completions"],
        "temperature": 3,
        "n": "2",
        "reasoning_effort": "extreme",
    }
    found = {p[2]: p[3] for p in problems(line("/v1/chat/completions", body))}
    assert found["body.temperature"].endswith("must be at most 2, found integer 3.")
    assert "must be" in found["body.n"] and 'string "2"' in found["body.n"]
    assert found["body.reasoning_effort"].startswith("body.reasoning_effort must be")


# --------------------------------------------------------------------------- one cause, one problem


def test_a_line_for_another_endpoint_gets_invalid_url_only():
    chat = MINIMAL["/v1/chat/completions"]
    found = problems(
        line("/v1/chat/completions", chat, "a"),
        line("/v1/embeddings", chat, "b"),
    )
    assert [(p[0], p[1]) for p in found] == [(2, "invalid_url")]


def test_a_given_endpoint_leaves_only_invalid_url_on_other_lines():
    chat = MINIMAL["/v1/chat/completions"]
    found = problems(line("/v1/chat/completions", chat), endpoint="/v1/embeddings")
    assert [(p[0], p[1]) for p in found] == [(1, "invalid_url")]


# --------------------------------------------------------------------------- the fast path


@pytest.mark.parametrize("url", ["/v1/chat/completions", "/v1/responses"])
@pytest.mark.parametrize("role", TEXT_MESSAGE["properties"]["role"]["enum"])
def test_text_message_shortcut_is_inside_the_definition(url, role):
    """What the clean-line shortcut accepts, the full definition accepts."""
    field = "messages" if url == "/v1/chat/completions" else "input"
    body = {**MINIMAL[url], field: [{"role": role, "content": "Hi"}]}
    assert jsonschema_rs.validator_for(TEXT_MESSAGE).is_valid(body[field][0])
    assert body_schema(url).is_valid(body)
