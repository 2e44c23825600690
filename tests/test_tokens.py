"""Token counts: fixed strings and message lists with known counts, each endpoint's shape,
images, the output ceiling, and the offline encoding files."""

from __future__ import annotations

import base64
import inspect
import random
from typing import Any

import orjson
import pytest
from helpers import DATA, without_token_counter
from hypothesis import given, settings
from hypothesis import strategies as st

from jsonl_batch.rules.profiles import ENDPOINTS
from jsonl_batch.tokens import counting as tokens
from jsonl_batch.tokens import encodings
from jsonl_batch.tokens.counting import (
    TokenCounter,
    TokensUnavailable,
    countable,
    encoding_name,
    json_text,
    output_ceiling,
    request_tokens,
    tokens_of_lines,
)
from jsonl_batch.tokens.encodings import get_encoding
from jsonl_batch.tokens.images import data_url_size, image_tokens

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
QUESTION = "What is in this image?"  # 6 tokens in both encodings


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


# The OpenAI cookbook's "How to count tokens with tiktoken" examples; the two message-list
# counts are the API's own prompt_tokens printed in the cookbook.
@pytest.mark.parametrize(
    ("text", "o200k", "cl100k"),
    [
        ("tiktoken is great!", 6, 6),
        ("antidisestablishmentarianism", 6, 6),
        ("2 + 2 = 4", 7, 7),
        ("お誕生日おめでとう", 8, 9),
        ("Hello, world!", 4, 4),
        ("<|endoftext|>", 7, 7),  # a special token's text in user input counts as text
        ("", 0, 0),
    ],
)
def test_fixed_strings(counter: TokenCounter, text: str, o200k: int, cl100k: int) -> None:
    assert counter.text(text, "gpt-4o") == o200k
    assert counter.text(text, "gpt-4") == cl100k


JARGON = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
        "for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]
WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]
WEATHER = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.mark.parametrize(
    ("model", "messages", "with_tools"),
    [
        ("gpt-4o", 124, 101),
        ("gpt-4o-mini-2024-07-18", 124, 101),
        ("gpt-4", 129, 105),
        ("gpt-4-0613", 129, 105),
        ("gpt-3.5-turbo", 129, 105),
    ],
)
def test_cookbook_message_lists(
    counter: TokenCounter, model: str, messages: int, with_tools: int
) -> None:
    assert counter.count(CHAT, {"model": model, "messages": JARGON}) == messages
    body = {"model": model, "messages": WEATHER, "tools": WEATHER_TOOLS}
    assert counter.count(CHAT, body) == with_tools


def test_legacy_functions_count_like_tools(counter: TokenCounter) -> None:
    functions = [t["function"] for t in WEATHER_TOOLS]
    body = {"model": "gpt-4o", "messages": WEATHER, "functions": functions}
    assert counter.count(CHAT, body) == 101


def chat(*messages: dict[str, Any], model: str = "gpt-4o", **body: Any) -> dict[str, Any]:
    return {"model": model, "messages": list(messages), **body}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # 3 per message + "user" (1) + the text (6) + 3 to prime the reply
        (chat({"role": "user", "content": QUESTION}), 13),
        # text parts count like text; a low-detail image is 85 tokens for gpt-4o
        (
            chat(
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": QUESTION},
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://example.com/a.png", "detail": "low"},
                        },
                    ],
                }
            ),
            98,
        ),
        # tool calls: their id, function name and arguments; content null counts nothing
        (
            chat(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                }
            ),
            18,
        ),
        # a JSON schema response format counts as its JSON text
        (
            chat(
                {"role": "user", "content": QUESTION},
                response_format={"type": "json_schema", "json_schema": {"schema": {}}},
            ),
            14,
        ),
    ],
)
def test_chat_shapes(counter: TokenCounter, body: dict[str, Any], expected: int) -> None:
    assert counter.count(CHAT, body) == expected


@pytest.mark.parametrize(
    ("url", "body", "expected"),
    [
        # a string input is one user message, as in chat
        ("/v1/responses", {"model": "gpt-4o", "input": QUESTION}, 13),
        (
            "/v1/responses",
            {
                "model": "gpt-4o",
                "input": [
                    {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": QUESTION}],
                    }
                ],
            },
            13,
        ),
        # instructions: one more message ("developer" is 1 token, the text 5)
        (
            "/v1/responses",
            {"model": "gpt-4o", "instructions": "Answer in one word.", "input": QUESTION},
            22,
        ),
        # responses tools are flat: the same 101 as chat's nested ones
        (
            "/v1/responses",
            {"model": "gpt-4o", "input": WEATHER, "tools": [WEATHER_TOOLS[0]["function"]]},
            101,
        ),
        # embeddings: strings, token arrays; no overhead
        ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "2 + 2 = 4"}, 7),
        (
            "/v1/embeddings",
            {"model": "text-embedding-3-small", "input": ["tiktoken is great!", "2 + 2 = 4"]},
            13,
        ),
        ("/v1/embeddings", {"model": "text-embedding-3-small", "input": [1, 2, 3]}, 3),
        ("/v1/embeddings", {"model": "text-embedding-3-small", "input": [[1, 2, 3], [4, 5]]}, 5),
        # completions: the prompt and the suffix
        (
            "/v1/completions",
            {"model": "davinci-002", "prompt": "2 + 2 = 4", "suffix": "tiktoken is great!"},
            13,
        ),
        ("/v1/completions", {"model": "davinci-002", "prompt": ["2 + 2 = 4", [1, 2]]}, 9),
        ("/v1/moderations", {"model": "omni-moderation-latest", "input": ["2 + 2 = 4"]}, 7),
        ("/v1/images/generations", {"model": "gpt-image-1", "prompt": "2 + 2 = 4"}, 7),
    ],
)
def test_endpoint_shapes(
    counter: TokenCounter, url: str, body: dict[str, Any], expected: int
) -> None:
    assert counter.count(url, body) == expected


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"model": 3, "messages": "hi"},
        {"model": "gpt-4o", "messages": [None, 3, "x", {"role": 1, "content": [None, {}]}]},
        {"model": "gpt-4o", "messages": [], "tools": [3, {"type": "function"}], "functions": {}},
        {"model": "gpt-4o", "messages": [], "tools": [{"function": {"parameters": []}}]},
        {"model": ["gpt-4o"], "messages": [{"role": "user", "content": {"deep": [[["x"]]]}}]},
    ],
)
def test_malformed_bodies_never_raise(counter: TokenCounter, body: dict[str, Any]) -> None:
    assert counter.count(CHAT, body) >= 3


def test_audio_and_files_are_not_counted_but_tallied() -> None:
    counter = TokenCounter()
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA" * 1000, "format": "wav"}}
    body = chat({"role": "user", "content": [audio, {"type": "file", "file": {"file_id": "f"}}]})
    assert counter.count(CHAT, body) == 7
    assert counter.uncounted_parts == 2


@pytest.mark.parametrize(
    ("model", "url", "expected"),
    [
        ("gpt-4o", CHAT, "o200k_base"),
        ("gpt-4o-mini-2024-07-18", CHAT, "o200k_base"),
        ("gpt-4.1-nano", CHAT, "o200k_base"),
        ("gpt-4.5-preview", CHAT, "o200k_base"),
        ("gpt-5-mini", "/v1/responses", "o200k_base"),
        ("o3-mini", CHAT, "o200k_base"),
        ("ft:gpt-4o-mini-2024-07-18:acme::abc123", CHAT, "o200k_base"),
        ("my-azure-deployment", CHAT, "o200k_base"),
        (None, CHAT, "o200k_base"),
        ("gpt-4", CHAT, "cl100k_base"),
        ("gpt-4-turbo-2024-04-09", CHAT, "cl100k_base"),
        ("gpt-3.5-turbo-0125", CHAT, "cl100k_base"),
        ("gpt-35-turbo", CHAT, "cl100k_base"),
        ("ft:gpt-3.5-turbo-0125:acme::x", CHAT, "cl100k_base"),
        ("davinci-002", "/v1/completions", "cl100k_base"),
        ("text-embedding-3-large", "/v1/embeddings", "cl100k_base"),
        ("my-embedding-deployment", "/v1/embeddings", "cl100k_base"),
    ],
)
def test_encoding_names(model: str | None, url: str, expected: str) -> None:
    assert encoding_name(model, url) == expected


@pytest.mark.parametrize(
    ("url", "body", "expected"),
    [
        (CHAT, {"max_tokens": 100}, 100),
        (CHAT, {"max_completion_tokens": 50, "max_tokens": 100, "n": 3}, 150),
        (CHAT, {}, None),
        (CHAT, {"max_tokens": True}, None),
        (CHAT, {"max_tokens": -1, "n": 2}, 0),  # invalid (validate says so): no output
        ("/v1/responses", {"max_output_tokens": 64, "n": 9}, 64),
        ("/v1/responses", {}, None),
        ("/v1/completions", {"prompt": "x"}, 16),
        ("/v1/completions", {"prompt": ["a", "b"], "max_tokens": 10, "n": 2, "best_of": 3}, 60),
        ("/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 10}, 10),
        ("/v1/embeddings", {"input": "x"}, 0),
        ("/v1/moderations", {"input": "x"}, 0),
        ("/v1/images/generations", {"prompt": "x"}, None),
    ],
)
def test_output_ceiling(url: str, body: dict[str, Any], expected: int | None) -> None:
    assert output_ceiling(url, body) == expected


@pytest.mark.parametrize(
    ("model", "size", "detail", "expected"),
    [
        # the vision guide's examples
        ("gpt-4o", (1024, 1024), "high", 765),
        ("gpt-4o", (2048, 4096), None, 1105),
        ("gpt-4o", (4096, 8192), "low", 85),
        ("gpt-4o", (128, 64), "auto", 255),  # small images are not scaled up
        ("gpt-4.1", (2049, 513), None, 1445),  # scaled sizes round to whole pixels
        ("gpt-4.1", (2050, 513), None, 765),
        ("gpt-4o-mini", (1024, 1024), None, 2833 + 4 * 5667),
        ("gpt-4o-mini", None, "low", 2833),
        ("o3", (512, 512), None, 75 + 150),
        ("gpt-5", (512, 512), None, 70 + 140),
        ("gpt-4.1-mini", (1024, 1024), None, 1659),  # 1024 patches x 1.62, rounded up
        ("gpt-4.1-nano", (1800, 2400), "low", 3572),  # 1452 patches (the guide's) x 2.46
        ("o4-mini", (1800, 2400), None, 2498),  # 1452 x 1.72
        ("unknown-model", None, None, 765),  # unknown size: 1024x1024
    ],
)
def test_image_tokens(
    model: str, size: tuple[int, int] | None, detail: str | None, expected: int
) -> None:
    assert image_tokens(model, size, detail) == expected


def png(width: int, height: int) -> bytes:
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
    return b"\x89PNG\r\n\x1a\n" + len(ihdr).to_bytes(4, "big") + b"IHDR" + ihdr + b"\0" * 40


def jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0\x00\x11\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return b"\xff\xd8" + app0 + b"\xff" + sof + b"\x03" + b"\0" * 60


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + width.to_bytes(2, "little") + height.to_bytes(2, "little") + b"\0" * 40


def webp(width: int, height: int) -> bytes:
    canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0" + canvas + b"\0" * 40


def data_url(image: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64,{base64.b64encode(image).decode()}"


@pytest.mark.parametrize("make", [png, jpeg, gif, webp])
def test_data_url_sizes(make: Any) -> None:
    assert data_url_size(data_url(make(2048, 4096))) == (2048, 4096)


@pytest.mark.parametrize(
    "url",
    ["https://example.com/a.png", "data:image/png,rawdata", "data:image/png;base64,!!!!", ""],
)
def test_unreadable_image_sizes(url: str) -> None:
    assert data_url_size(url) is None


def test_image_parts_use_the_data_url_size() -> None:
    counter = TokenCounter()
    part = {"type": "input_image", "image_url": data_url(png(2048, 4096)), "detail": "high"}
    body = {"model": "gpt-4o", "input": [{"role": "user", "content": [part]}]}
    assert counter.count("/v1/responses", body) == 3 + 3 + 1 + 1105
    assert (counter.images, counter.unsized_images) == (1, 0)
    counter.count("/v1/responses", {"model": "gpt-4o", "input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": "https://example.com/a.png"},
        {"type": "input_image", "image_url": "https://example.com/b.png", "detail": "low"},
    ]}]})  # fmt: skip
    assert (counter.images, counter.unsized_images) == (3, 1)  # low detail: size irrelevant


def test_encodings_come_from_the_packaged_files_without_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tiktoken.load

    def no_network(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("tried to download an encoding file")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    monkeypatch.setattr(tiktoken.load, "read_file_cached", no_network)
    monkeypatch.setattr(encodings, "_ENCODINGS", {})
    encoding = get_encoding("cl100k_base")
    assert encoding.name == "cl100k_base" and encoding.n_vocab == 100277
    assert encoding.encode("tiktoken is great!") == [83, 1609, 5963, 374, 2294, 0]


def test_missing_token_counter_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    without_token_counter(monkeypatch)
    with pytest.raises(TokensUnavailable, match=r"pip install 'jsonl-batch\[tokens\]'"):
        TokenCounter().count(CHAT, chat({"role": "user", "content": "hi"}))


def test_missing_encoding_file_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encodings.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(encodings, "_ENCODINGS", {})
    with pytest.raises(TokensUnavailable, match=r"o200k_base .*bpe-openai.*jsonl-batch\[tokens\]"):
        get_encoding("o200k_base")


def test_a_file_that_is_not_what_tiktoken_expects_is_refused() -> None:
    with pytest.raises(TokensUnavailable, match="reinstall"):
        encodings._packaged_ranks("cl100k_base", "url", expected_hash="0" * 64)


# -- any depth: orjson reads 1024 levels, so the counter must too (no RecursionError) ------------


def nested(depth: int, leaf: str = '"x"', key: str | None = None) -> Any:
    """A value ``depth`` levels deep: lists around ``leaf``, or objects ``{key: ...}``."""
    if key is None:
        text = "[" * depth + leaf + "]" * depth
    else:
        text = f'{{"{key}":' * depth + leaf + "}" * depth
    return orjson.loads(text)


def deep_bodies(depth: int) -> list[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    """(url, a body with ``depth`` levels somewhere, the same body shallow or None)."""
    user = {"role": "user", "content": "hi"}
    x = {"role": "user", "content": "x"}
    props = "{" + '"p":{"type":"object","properties":{' * (depth // 2) + "}}" * (depth // 2) + "}"

    def tool(name: Any, properties: Any) -> dict[str, Any]:
        params = {"type": "object", "properties": properties}
        return chat(tools=[{"type": "function", "function": {"name": name, "parameters": params}}])

    schema = {"type": "json_schema", "json_schema": {"schema": nested(depth, key="a")}}
    mod = "omni-moderation-latest"
    return [
        (CHAT, chat(*nested(depth, orjson.dumps(user).decode())), chat(user)),
        (CHAT, chat({"role": "user", "content": nested(depth)}), chat(x)),
        (CHAT, chat({"role": "user", "content": nested(depth, key="text")}), chat(x)),
        (CHAT, tool("f", orjson.loads(props)), None),
        (CHAT, tool(nested(depth), {"a": {"type": nested(depth), "enum": [nested(depth)]}}), None),
        (CHAT, chat(response_format=schema), None),
        ("/v1/responses", {"model": "gpt-4o", "input": nested(depth)}, {"input": ["x"]}),
        ("/v1/moderations", {"model": mod, "input": nested(depth)}, {"model": mod, "input": "x"}),
    ]


@pytest.mark.parametrize("depth", [300, 600, 1000])
def test_bodies_of_any_depth_are_counted_without_raising(counter: TokenCounter, depth: int) -> None:
    for url, body, shallow in deep_bodies(depth):
        n = counter.count(url, body)
        assert type(n) is int and n >= 0
        if shallow is not None:  # nesting adds no text: the count is the shallow one's
            assert n == counter.count(url, shallow)


def test_a_deep_schema_counts_as_its_json_text(counter: TokenCounter) -> None:
    schema = nested(1000, key="a")
    body = {
        "model": "gpt-4o",
        "messages": [],
        "response_format": {"json_schema": {"schema": schema}},
    }
    assert counter.count(CHAT, body) == 3 + counter.text(json_text(schema), "gpt-4o")


@pytest.mark.parametrize(
    "value",
    [None, 1, 1.5, 'é\n"', [], {}, {"a": [1, {"b": None}], "c": "d"}, nested(200, key="k")],
)
def test_json_text_is_orjson_where_orjson_can_write(value: Any) -> None:
    assert json_text(value) == orjson.dumps(value).decode()


@pytest.mark.parametrize(
    "text",
    [
        "[" * 1000 + "]" * 1000,
        '{"k":' * 1000 + "null" + "}" * 1000,
        "[" * 400 + '{"a":[1,"é\\n",null,true,2.5],"b":{}}' + "]" * 400,
    ],
)
def test_json_text_writes_what_orjson_cannot(text: str) -> None:
    assert json_text(orjson.loads(text)) == text


# -- which lines count: one rule for stats, validate and split ---------------------------------

COUNTED = {
    "custom_id": "a",
    "method": "POST",
    "url": CHAT,
    "body": chat({"role": "user", "content": "Hi"}),
}


@pytest.mark.parametrize(
    ("req", "counts"),
    [
        (COUNTED, True),
        ({**COUNTED, "custom_id": None, "method": "GET"}, True),  # validate says what is wrong
        ({"url": "/v1/images/generations", "body": {"prompt": "2 + 2 = 4"}}, True),
        ({**COUNTED, "url": "/v1/unknown"}, False),
        ({**COUNTED, "url": 3}, False),
        ({**COUNTED, "body": "not an object"}, False),
        ({"url": CHAT}, False),
        ([COUNTED], False),
        ("text", False),
        (None, False),
    ],
)
def test_the_one_rule_for_what_counts(counter: TokenCounter, req: Any, counts: bool) -> None:
    assert countable(req) is counts
    found = request_tokens(counter, req)
    assert (found is not None) is counts
    if counts:
        assert found == counter.count(req["url"], req["body"])


def test_tokens_of_lines_gives_one_count_per_line(counter: TokenCounter) -> None:
    good = orjson.dumps(COUNTED)
    other = orjson.dumps({**COUNTED, "url": "/v1/unknown"})
    bom, deep = b"\xef\xbb\xbf", b"[" * 1025 + b"]" * 1025
    lines = [good + b"\n", b"\n", bom + good, b"\xff\xfe", b"[1, 2]\r\n", b"{", good, other, deep]
    expected = counter.count(CHAT, COUNTED["body"])
    assert list(tokens_of_lines(counter, lines)) == [expected, 0, 0, 0, 0, 0, expected, 0, 0]


def test_endpoints_come_from_the_profiles() -> None:
    assert set(tokens._COUNTERS) <= set(ENDPOINTS)
    assert '"/v1/' not in inspect.getsource(tokens)  # no url literals: profiles.ENDPOINTS


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-3, 3) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["type", "text", "content", "role", "image_url", "name",
                                       "parameters", "properties", "enum", "function",
                                       "input", "tools", "items", "x"]), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(ENDPOINTS)), st.dictionaries(
    st.sampled_from(["model", "messages", "input", "prompt", "instructions", "tools",
                     "functions", "response_format", "text", "n", "max_tokens"]),
    json_values, max_size=5,
))  # fmt: skip
def test_count_never_raises_on_any_body(url: str, body: dict) -> None:
    counter = TokenCounter()
    assert counter.count(url, body) >= 0
    ceiling = output_ceiling(url, body)
    assert ceiling is None or ceiling >= 0


# -- the counter: tiktoken's numbers, long texts in bounded pieces, repeated texts once -------

CORPUS: list[str] = orjson.loads((DATA / "tokens" / "corpus.json").read_bytes())
NAMES = ["o200k_base", "cl100k_base"]


@pytest.mark.parametrize("name", NAMES)
def test_the_counter_gives_tiktokens_numbers_on_the_corpus(name: str) -> None:
    count, reference = encodings.text_counter(name), get_encoding(name).encode_ordinary
    assert [count(t) for t in CORPUS] == [len(reference(t)) for t in CORPUS]
    whole = "\n".join(CORPUS)
    assert count(whole) == len(reference(whole))


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=120), st.sampled_from(NAMES))
def test_the_counter_gives_tiktokens_numbers_on_any_text(text: str, name: str) -> None:
    assert encodings.text_counter(name)(text) == len(get_encoding(name).encode_ordinary(text))


WORDS = ["word", " ", "  ", "\n", "A1", "x12", "345", "é", "東京", "'s", ".", "😀", "\t"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=200), st.integers(2, 40), st.sampled_from(NAMES))
def test_pieces_add_up_to_the_whole(words: list[str], size: int, name: str) -> None:
    text = "".join(words)
    found = list(encodings.pieces(text, size))
    assert "".join(found) == text and all(len(p) <= size for p in found)
    cuts = [sum(map(len, found[:i])) for i in range(1, len(found))]
    if all(encodings._CUT.match(text, cut) for cut in cuts):  # every cut at an exact place
        count = encodings.text_counter(name)
        assert sum(map(count, found)) == count(text)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The lengths of the texts the tokenizer is asked to count, from now on."""
    seen: list[int] = []
    real = encodings._tokenizer

    class Recording:
        def __init__(self, name: str) -> None:
            self.real = real(name)

        def count(self, text: str) -> int:
            seen.append(len(text))
            return self.real.count(text)  # type: ignore[no-any-return]

    monkeypatch.setattr(encodings, "_COUNTERS", {})
    monkeypatch.setattr(encodings, "_tokenizer", Recording)
    return seen


def test_a_long_word_is_counted_in_bounded_pieces(recorded: list[int]) -> None:
    """Regression: one 20 MB word took tiktoken 28 s and 1.1 GB (superlinear merges)."""
    exact = encodings._tokenizer("o200k_base").real.count  # not recorded
    blob = base64.b64encode(random.Random(0).randbytes(3 << 20)).decode()  # 4 MiB, no space
    assert TokenCounter().text(blob) == exact(blob)  # cut only where no token spans the cut
    assert max(recorded) <= encodings.PIECE_CHARS and sum(recorded) == len(blob)
    recorded.clear()
    letters = "".join(random.Random(1).choices("abcdefgh", k=1 << 20))  # nowhere exact
    found = TokenCounter().text(letters)
    assert max(recorded) <= encodings.PIECE_CHARS and sum(recorded) == len(letters)
    assert abs(found - exact(letters)) <= 2 * (len(recorded) - 1)  # a token or two per cut


def test_repeated_texts_are_counted_once(recorded: list[int]) -> None:
    counter = TokenCounter()
    system = {"role": "system", "content": "You answer in one word. " * 40}
    for i in range(5):
        user = {"role": "user", "content": f"Question number {i}?"}
        assert counter.count(CHAT, chat(system, user)) == counter.count(CHAT, chat(system, user))
    # the two roles and the system prompt once; a request's last message is its own, counted
    # without a look-up (hashing a long text would cost more than it saves): each time
    assert recorded.count(len(system["content"])) == 1 and len(recorded) == 2 + 1 + 5 * 2


def test_earlier_turns_are_counted_once(recorded: list[int]) -> None:
    counter = TokenCounter()
    turns = [
        {"role": "system", "content": "Be brief. " * 30},
        {"role": "user", "content": "A first question, asked at length? " * 20},
        {"role": "assistant", "content": "A first answer, given at length. " * 20},
    ]
    for i in range(4):
        last = {"role": "user", "content": f"Follow-up number {i}?"}
        assert counter.count(CHAT, chat(*turns, last)) == counter.count(CHAT, chat(*turns, last))
        body = {"model": "gpt-4o", "instructions": turns[0]["content"], "input": [*turns[1:], last]}
        assert counter.count(RESPONSES, body) == counter.count(RESPONSES, body)
    for turn in turns:  # the prompt and the earlier turns once, for both endpoints
        assert recorded.count(len(turn["content"])) == 1


def test_the_text_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "TEXT_CACHE_CHARS", 100)
    monkeypatch.setattr(tokens, "CACHE_TEXT_CHARS", 50)
    seen: list[str] = []
    count = tokens._text_counter(lambda text: seen.append(text) or len(text))
    count("once")
    for i in range(30):  # 300 characters of new texts, over the bound, and one text repeated
        count(f"text {i:05d}"), count("hot")
    seen.clear()
    count("hot"), count("once"), count("x" * 200), count("x" * 200)
    assert seen == ["once", "x" * 200, "x" * 200]  # the hot text stayed; a long one is not kept


def test_azure_spellings_count_as_their_openai_endpoints() -> None:
    """Regression: ``/chat/completions`` (Azure's spelling) counted 0 tokens."""
    counter = TokenCounter()
    body = chat({"role": "user", "content": QUESTION}, max_tokens=5, n=2)
    assert counter.count("/chat/completions", body) == counter.count(CHAT, body) == 3 + 3 + 1 + 6
    embed = {"model": "text-embedding-3-small", "input": ["a b", "c"]}
    assert counter.count("/embeddings", embed) == counter.count("/v1/embeddings", embed) == 3
    assert output_ceiling("/chat/completions", body) == output_ceiling(CHAT, body) == 10
    assert output_ceiling("/embeddings", embed) == 0
