"""Estimated input tokens of batch requests, counted as tiktoken counts them, offline.

The public API, small enough for a per-request hot loop::

    counter = TokenCounter()           # one per run (per process): it caches encodings
    request_tokens(counter, req)       # -> int | None, a parsed line's tokens (None: not counted)
    tokens_of_lines(counter, lines)    # -> array("q"), one count per raw line (0: not counted)
    counter.count(url, body)           # -> int, the estimated input tokens of one request
    output_ceiling(url, body)          # -> int | None, the requested output token ceiling

Which lines count is decided in one place, ``countable`` (``rules.requests.RequestFacts``):
a JSON object whose ``url`` is a batch endpoint (``profiles.ENDPOINTS``, whatever the
profile) and whose ``body`` is an object.
Every command that counts (``stats``, ``validate --max-enqueued-tokens``, ``split
--max-tokens``) goes through ``request_tokens`` or ``tokens_of_lines``.

``count`` never raises for a malformed body (what it cannot read counts 0), at any nesting
depth (orjson reads 1024 levels; values are walked with a stack, not recursion); the first
call that needs an encoding raises ``TokensUnavailable`` (with the fix) if the ``bpe-openai``
package is missing. What is counted, per endpoint:

- chat: the cookbook's ``num_tokens_from_messages`` (3 per message, its values, +1 for a name,
  3 to prime the reply), text parts, images (``image_tokens``), tool calls; tool and function
  definitions as the cookbook's ``num_tokens_for_tools``; a JSON schema as its JSON text;
- responses: ``instructions`` and ``input`` (a string is one user message, items count like
  messages), function tools and the ``text.format`` schema, as for chat;
- embeddings and completions: the input/prompt (strings, token arrays), no overhead;
- moderations: the input's text and images; other endpoints: ``body.prompt``.

The encoding follows the model (``encodings.encoding_name``: o200k_base, or cl100k_base for
gpt-4, gpt-3.5 and embeddings); texts are counted by ``encodings.text_counter`` (bpe-openai's
exact counter, nothing downloaded, long texts in bounded pieces), and a file's repeated texts
once (``_text_counter``): every message but a request's last (a system prompt, few-shot
examples, a conversation's earlier turns) is looked up; the last, most often the request's
own, is counted without hashing it (the hash of a long text costs some 4% of counting it).
Audio and file parts are not counted (``uncounted_parts``).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeGuard

import orjson

from ..rules.profiles import EMBEDDINGS_URL, ENDPOINTS
from ..rules.requests import Context, RequestFacts, read_request
from .encodings import TokensUnavailable, base_model, encoding_name, text_counter
from .images import data_url_size, image_tokens, size_matters

__all__ = [
    "TokenCounter",
    "TokensUnavailable",
    "countable",
    "encoding_name",
    "output_ceiling",
    "request_tokens",
    "tokens_of_lines",
]


def _url(schema: str) -> str:
    """The url of the endpoint whose body schema is ``schema`` (from ``profiles.ENDPOINTS``)."""
    return next(e.url for e in ENDPOINTS.values() if e.schema == schema)


CHAT_URL, RESPONSES_URL, COMPLETIONS_URL, MODERATIONS_URL = (
    _url(name) for name in ("chat_completions", "responses", "completions", "moderations")
)
_KINDS = {url: e.kind for url, e in ENDPOINTS.items()}
"""Each endpoint's OpenAI url (Azure spells them without ``/v1``): counted the same way."""

TEXT_CACHE_CHARS = 4 << 20
"""Texts whose counts are remembered (repeated system prompts), in total characters..."""
CACHE_TEXT_CHARS = 64 << 10
"""...each at most this long."""

# The cookbook's constants for tool definitions (func_init is 10 on cl100k models).
FUNC_INIT, FUNC_INIT_CL100K, PROP_INIT, PROP_KEY, ENUM_INIT, ENUM_ITEM, FUNC_END = (
    7, 10, 3, 3, -3, 3, 12
)  # fmt: skip
_NOT_TEXT = frozenset({"type", "detail", "data", "file_data", "file_id"})
_IMAGE_PARTS = frozenset({"image_url", "input_image"})
_OPAQUE_PARTS = frozenset({"input_audio", "audio", "file", "input_file"})


def output_ceiling(url: str, body: Mapping[str, Any]) -> int | None:
    """Most output tokens the request asks for (``None``: no limit given; 0: no output).

    Chat: ``max_completion_tokens`` or ``max_tokens``, times ``n``; responses:
    ``max_output_tokens``; completions: ``max_tokens`` (default 16) times ``n``/``best_of``
    times the number of prompts.
    """
    url = _KINDS.get(url, url)
    if url in (EMBEDDINGS_URL, MODERATIONS_URL):
        return 0
    copies = max(1, _int(body.get("n")) or 1)
    if url == CHAT_URL:
        limit = _int(body.get("max_completion_tokens")) or _int(body.get("max_tokens"))
    elif url == RESPONSES_URL:
        limit, copies = _int(body.get("max_output_tokens")), 1
    elif url == COMPLETIONS_URL:
        limit = _int(body.get("max_tokens", 16))
        prompt = body.get("prompt")
        prompts = len(prompt) if _is_prompt_list(prompt) else 1
        copies = max(copies, _int(body.get("best_of")) or 1) * prompts
    else:
        return None
    return None if limit is None else max(0, limit) * copies  # a negative limit is invalid


def countable(req: Any) -> bool:
    """Whether a parsed line is a request whose tokens are counted: a JSON object whose
    ``url`` is a batch endpoint (``profiles.ENDPOINTS``) and whose ``body`` is an object
    (``RequestFacts.countable``). The one rule for every command that counts tokens."""
    facts = read_request(req)
    return isinstance(facts, RequestFacts) and facts.countable


def request_tokens(counter: TokenCounter, req: Any, ctx: Context | None = None) -> int | None:
    """Estimated input tokens of a parsed line, or ``None`` when it is not ``countable``
    (``ctx``: the profile's context, whose job endpoint ``{custom_id, body}`` lines use).

    Never raises for any JSON value (except ``TokensUnavailable``).
    """
    facts = read_request(req, ctx)
    if not isinstance(facts, RequestFacts) or not facts.countable:
        return None
    assert facts.url is not None and facts.body is not None  # (countable)
    return counter.count(facts.url, facts.body)


def tokens_of_lines(counter: TokenCounter, lines: Iterable[bytes]) -> array[int]:
    """Estimated input tokens of raw JSONL lines (endings may be kept), one per line: 0 for a
    line that is not JSON or not ``countable``."""
    found = array("q")
    append, loads, JSONDecodeError = found.append, orjson.loads, orjson.JSONDecodeError
    for raw in lines:
        try:
            req = loads(raw)
        except JSONDecodeError:
            append(0)
            continue
        append(request_tokens(counter, req) or 0)
    return found


class TokenCounter:
    """Counts estimated input tokens of requests; see the module docstring.

    ``images`` and ``unsized_images`` (estimated as ``image_tokens.UNSIZED``) and
    ``uncounted_parts`` (audio, files) add up over every call, for reports.
    """

    def __init__(self) -> None:
        self.images = self.unsized_images = self.uncounted_parts = 0
        self._models: dict[tuple[Any, str], _Model] = {}
        self._texts: dict[str, Callable[[str], int]] = {}

    def count(self, url: str, body: Mapping[str, Any], model: str | None = None) -> int:
        """Estimated input tokens of one request to ``url`` with this ``body``; ``model`` is
        the request's model when the body names none (providers that take it with the job)."""
        named = body.get("model")
        if type(named) is str:
            model = named
        url = _KINDS.get(url, url)
        found = self._models.get((model, url))
        if found is None:
            found = self._model(model, url)
        return _COUNTERS.get(url, TokenCounter._other)(self, found, body)

    def text(self, text: str, model: str | None = None) -> int:
        """Tokens of a plain string in a model's encoding."""
        found = self._models.get((model, ""))
        return (found or self._model(model, "")).text(text)

    def _model(self, model: str | None, url: str) -> _Model:
        name = encoding_name(model, url)
        text = self._texts.get(name)
        if text is None:
            text = self._texts[name] = _text_counter(text_counter(name))
        found = self._models[model, url] = _Model(base_model(model), name, text, text_counter(name))
        return found

    def _chat(self, m: _Model, body: Mapping[str, Any]) -> int:
        n = 3  # every reply is primed with <|start|>assistant<|message|>
        messages = body.get("messages")
        if type(messages) is list and messages:
            count = self._message
            for message in messages[:-1]:
                n += count(m, message)
            n += count(m, messages[-1], m.once)
        tools, functions, fmt = (
            body.get("tools"),
            body.get("functions"),
            body.get("response_format"),
        )
        if tools or functions:
            n += self._tools(m, tools, functions)
        if type(fmt) is dict:
            n += self._schema(m, fmt.get("json_schema"))
        return n

    def _responses(self, m: _Model, body: Mapping[str, Any]) -> int:
        n = 3
        instructions, items = body.get("instructions"), body.get("input")
        if type(instructions) is str:
            n += self._message(m, {"role": "developer", "content": instructions})
        if type(items) is str:
            n += self._message(m, {"role": "user", "content": items}, m.once)
        elif type(items) is list and items:
            n += sum(self._message(m, item) for item in items[:-1])
            n += self._message(m, items[-1], m.once)
        n += self._tools(m, body.get("tools"), None)
        fmt = body.get("text")
        return n + self._schema(m, fmt.get("format") if type(fmt) is dict else None)

    def _embeddings(self, m: _Model, body: Mapping[str, Any]) -> int:
        return self._prompt(m, body.get("input"))

    def _completions(self, m: _Model, body: Mapping[str, Any]) -> int:
        suffix = body.get("suffix")
        return self._prompt(m, body.get("prompt")) + (m.text(suffix) if type(suffix) is str else 0)

    def _moderations(self, m: _Model, body: Mapping[str, Any]) -> int:
        return self._value(m, body.get("input"))

    def _other(self, m: _Model, body: Mapping[str, Any]) -> int:
        prompt = body.get("prompt")
        return m.text(prompt) if type(prompt) is str else 0

    def _message(self, m: _Model, message: Any, text: Callable[[str], int] | None = None) -> int:
        """A message's tokens; its content counted by ``text`` (default: remembered,
        ``m.text``; a request's last message, most often its own, is counted by ``m.once``),
        its role and name remembered."""
        if type(message) is not dict:
            return 3 + self._value(m, message, text)
        n = 4 if "name" in message else 3
        remembered = m.text
        for key, value in message.items():
            if type(value) is str:
                if key != "type":
                    n += (text or remembered)(value) if key == "content" else remembered(value)
            elif value is not None:
                n += self._value(m, value, text)
        return n

    def _value(self, m: _Model, value: Any, text: Callable[[str], int] | None = None) -> int:
        """Text tokens in a value of any shape and depth; list items may be content parts
        (images, audio, files). Walked with a stack: no recursion, whatever the nesting."""
        text = text or m.text
        if type(value) is str:
            return text(value)
        n = 0
        values: list[Any] = [value]  # values whose dicts are plain objects
        parts: list[Any] = []  # list items: dicts among them may be content parts
        while values or parts:
            if parts:
                v = parts.pop()
                kind = v.get("type") if type(v) is dict else None
                if type(kind) is str:
                    if kind in _IMAGE_PARTS:
                        n += self._image(m, v)
                        continue
                    if kind in _OPAQUE_PARTS:
                        self.uncounted_parts += 1
                        continue
            else:
                v = values.pop()
            t = type(v)
            if t is str:
                n += text(v)
            elif t is list:
                parts.extend(v)
            elif t is dict:
                values.extend(x for k, x in v.items() if k not in _NOT_TEXT)
        return n

    def _image(self, m: _Model, part: dict[str, Any]) -> int:
        ref: Any = part.get("image_url")
        detail = part.get("detail")
        if type(ref) is dict:
            detail = ref.get("detail")
            ref = ref.get("url")
        size = data_url_size(ref) if type(ref) is str else None
        detail = detail if type(detail) is str else None
        self.images += 1
        self.unsized_images += size is None and size_matters(m.family, detail)
        return image_tokens(m.family, size, detail)

    def _prompt(self, m: _Model, value: Any) -> int:
        """A prompt or embeddings input: a string, strings, a token array or token arrays."""
        if type(value) is str:
            return m.text(value)
        if type(value) is not list:
            return 0
        n = 0
        for item in value:
            if type(item) is str:
                n += m.text(item)
            elif type(item) is list:
                n += len(item)
            elif type(item) is int:
                n += 1
        return n

    def _tools(self, m: _Model, tools: Any, functions: Any) -> int:
        defs = [t.get("function", t) for t in tools if _is_function(t)] if _list(tools) else []
        if type(functions) is list:
            defs += [f for f in functions if type(f) is dict]
        if not defs:
            return 0
        n = FUNC_END
        init = FUNC_INIT_CL100K if m.encoding == "cl100k_base" else FUNC_INIT
        for fn in defs:
            if type(fn) is not dict:
                continue
            n += init + m.text(f"{_plain(fn.get('name', ''))}:{_str(fn.get('description'))}")
            params = fn.get("parameters")
            props = params.get("properties") if type(params) is dict else None
            if type(props) is dict and props:
                n += PROP_INIT + self._properties(m, props)
        return n

    def _properties(self, m: _Model, props: dict[str, Any]) -> int:
        """Function parameters as the cookbook counts them; nested ``properties`` (the
        cookbook stops at the top level) count the same way, walked with a stack."""
        n = 0
        pending = [props]
        while pending:
            for key, schema in pending.pop().items():
                n += PROP_KEY
                if type(schema) is not dict:
                    continue
                enum = schema.get("enum")
                if type(enum) is list:
                    n += ENUM_INIT + sum(ENUM_ITEM + m.text(_plain(item)) for item in enum)
                kind = _plain(schema.get("type", ""))
                n += m.text(f"{key}:{kind}:{_str(schema.get('description'))}")
                items = schema.get("items")
                nested = schema.get("properties") or (
                    type(items) is dict and items.get("properties")
                )
                if type(nested) is dict and nested:
                    n += PROP_INIT
                    pending.append(nested)
        return n

    def _schema(self, m: _Model, fmt: Any) -> int:
        schema = fmt.get("schema") if type(fmt) is dict else None
        return m.text(json_text(schema)) if schema is not None else 0


_COUNTERS: dict[str, Callable[[TokenCounter, Any, Mapping[str, Any]], int]] = {
    CHAT_URL: TokenCounter._chat,
    RESPONSES_URL: TokenCounter._responses,
    EMBEDDINGS_URL: TokenCounter._embeddings,
    COMPLETIONS_URL: TokenCounter._completions,
    MODERATIONS_URL: TokenCounter._moderations,
}


class _Model:
    """What counting needs about one model: its family name, encoding and text counters:
    ``text`` remembers the texts it counts (``_text_counter``), ``once`` does not (for a
    request's last message: looking it up would cost a hash of a text seldom seen again)."""

    __slots__ = ("encoding", "family", "once", "text")

    def __init__(
        self,
        family: str,
        encoding: str,
        text: Callable[[str], int],
        once: Callable[[str], int],
    ) -> None:
        self.family, self.encoding, self.text, self.once = family, encoding, text, once


def _text_counter(count: Callable[[str], int]) -> Callable[[str], int]:
    """``count`` remembering the texts it has seen, so that a file's repeated texts (its
    system prompt, few-shot examples, the earlier turns each request of a conversation
    repeats) are counted once. Bounded: texts over ``CACHE_TEXT_CHARS`` are not kept, and
    when the kept texts reach ``TEXT_CACHE_CHARS`` in all, only those seen twice stay."""
    cache: dict[str, int] = {}
    seen_twice: dict[str, int] = {}
    cached = 0

    def counted(text: str) -> int:
        nonlocal cache, cached
        n = cache.get(text)
        if n is not None:
            seen_twice[text] = n
            return n
        n = count(text)
        size = len(text)
        if size <= CACHE_TEXT_CHARS:
            cached += size
            if cached > TEXT_CACHE_CHARS:
                kept = sum(map(len, seen_twice))
                cache = dict(seen_twice) if kept <= TEXT_CACHE_CHARS // 2 else {}
                seen_twice.clear()
                cached = sum(map(len, cache)) + size
            cache[text] = n
        return n

    return counted


def json_text(value: Any) -> str:
    """Compact JSON text of a parsed value, at any depth: orjson's output where orjson can
    write it (up to 255 levels), else the same shape written with a stack (what orjson can
    read, up to 1024 levels, it cannot always write back)."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        pass
    out: list[str] = []
    stack: list[tuple[bool, Any]] = [(False, value)]  # (is literal text, text or value)
    while stack:
        literal, v = stack.pop()
        if literal:
            out.append(v)
        elif type(v) is dict:
            stack.append((True, "}"))
            for i, (k, x) in reversed(list(enumerate(v.items()))):
                stack.append((False, x))
                stack.append((True, f"{',' if i else ''}{_scalar_json(str(k))}:"))
            stack.append((True, "{"))
        elif type(v) is list:
            stack.append((True, "]"))
            for i, x in reversed(list(enumerate(v))):
                stack.append((False, x))
                if i:
                    stack.append((True, ","))
            stack.append((True, "["))
        else:
            out.append(_scalar_json(v))
    return "".join(out)


def _scalar_json(value: Any) -> str:
    import json  # only for values nested deeper than orjson writes

    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return json.dumps(str(value), ensure_ascii=False)


def _plain(value: Any) -> str:
    """``str(value)`` as the cookbook formats names, types and enum items; a list or object
    as its JSON text (``str`` of a deeply nested one would recurse too far)."""
    if type(value) is str:
        return value
    return json_text(value) if type(value) in (list, dict) else str(value)


def _list(value: Any) -> bool:
    return type(value) is list


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def _str(value: Any) -> str:
    """A description as the cookbook formats it: one trailing period removed."""
    return value.removesuffix(".") if type(value) is str else ""


def _is_function(tool: Any) -> bool:
    return type(tool) is dict and tool.get("type", "function") == "function"


def _is_prompt_list(prompt: Any) -> TypeGuard[list[Any]]:
    """Several prompts: a list of strings or of token arrays (not one token array)."""
    return type(prompt) is list and bool(prompt) and type(prompt[0]) in (str, list)
