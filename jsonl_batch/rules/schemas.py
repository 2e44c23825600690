"""JSON Schemas shipped in ``schemas/``: loading, compiling, and explaining failures.

Schemas are package data (``importlib.resources``), so they work from an installed wheel.
Each endpoint's body schema is compiled once with jsonschema-rs; ``is_valid`` is the fast
path, and only a failing body is walked again to explain what was expected and found.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Collection, Iterable, Iterator
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any

import orjson

from .profiles import ENDPOINTS

if TYPE_CHECKING:
    import jsonschema_rs


def resource(kind: str) -> Traversable:
    """The packaged ``schemas`` or ``samples`` folder."""
    return files("jsonl_batch") / kind


def schema_names() -> list[str]:
    """Names of every shipped schema (file names without ``.json``)."""
    return sorted(
        p.name.removesuffix(".json")
        for p in resource("schemas").iterdir()
        if p.name.endswith(".json")
    )


@cache
def load_schema(name: str) -> dict[str, Any]:
    """A shipped schema by name, e.g. ``load_schema("chat_completions")``."""
    try:
        data = (resource("schemas") / f"{name}.json").read_bytes()
    except FileNotFoundError:
        raise KeyError(f"no schema named {name!r} (have: {', '.join(schema_names())})") from None
    schema: dict[str, Any] = orjson.loads(data)
    return schema


class BodySchema:
    """One endpoint's body schema, compiled: what the body requires, and its other checks.

    The shipped schemas close every object the definition describes (an unknown key is an
    error); ``allow`` names extra body parameters to accept (newer than the definition), and
    ``closed=False`` accepts unknown keys everywhere (servers that ignore them);
    ``model=False`` does not require ``model`` (where the job names it).
    """

    def __init__(
        self,
        schema: dict[str, Any],
        allow: Collection[str] = (),
        closed: bool = True,
        model: bool = True,
    ) -> None:
        if allow or not closed or not model:
            schema = copy.deepcopy(schema)
            schema["properties"].update({name: {} for name in allow})
            if not closed:
                _open(schema)
            if not model and "model" in schema.get("required", ()):
                schema["required"] = [r for r in schema["required"] if r != "model"]
        self.schema = schema
        self.required: tuple[str, ...] = tuple(schema.get("required", ()))
        import jsonschema_rs  # on first use: a join reads the request core, never a body schema

        self.validator = jsonschema_rs.validator_for(schema)

    def is_valid(self, body: Any) -> bool:
        """Whether the body passes; a body nested too deeply to check does not."""
        try:
            return bool(self.validator.is_valid(body))
        except ValueError:  # jsonschema-rs: "Recursion limit reached"
            return False

    def failures(self, body: Any) -> Iterator[tuple[str, str]]:
        """``(param, message)`` for each failure, except a missing root ``required`` field
        (that is the ``invalid_request`` rule's to report)."""
        try:
            errors = list(self.validator.iter_errors(body))
        except ValueError:
            yield "body", TOO_DEEP
            return
        for error in errors:
            if error.kind.name == "required" and not error.instance_path:
                continue
            yield from explain_all(error, body, schema=self.schema)


def _open(node: Any) -> None:
    """Drop every ``additionalProperties: false`` (in place)."""
    if isinstance(node, dict):
        if node.get("additionalProperties") is False:
            del node["additionalProperties"]
        for key, value in node.items():
            if key not in ("enum", "const"):
                _open(value)
    elif isinstance(node, list):
        for value in node:
            _open(value)


TOO_DEEP = (
    "body nests JSON too deeply to be checked against its schema; no request needs that "
    "depth: flatten it."
)


@cache
def body_schema(
    url: str, allow: frozenset[str] = frozenset(), closed: bool = True, model: bool = True
) -> BodySchema:
    """The compiled body schema for an endpoint url (which must be in ``ENDPOINTS``); the
    options are ``BodySchema``'s."""
    return BodySchema(load_schema(ENDPOINTS[url].schema), allow, closed, model)


def parameter_names(url: str) -> list[str]:
    """The body parameters the endpoint's definition lists."""
    return list(load_schema(ENDPOINTS[url].schema)["properties"])


def unknown_key(param: str, key: str, known: Iterable[str], noun: str = "parameter") -> str:
    """The message for a key an object does not define, with the nearest known name."""
    near = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    if near:
        return f"Unknown {noun} {param} (did you mean {near[0]!r}?)."
    if noun != "parameter":
        return f"Unknown {noun} {param}: the schema does not define {key!r}."
    return (
        f"Unknown parameter {param}: OpenAI's definition of this object has no {key!r} "
        "(a parameter newer than the definition can be allowed explicitly)."
    )


def param_path(
    path: list[str | int] | tuple[str | int, ...], instance: Any = None, root: str = "body"
) -> str:
    """``["messages", 1, "role"]`` -> ``body.messages[1].role``.

    Walks ``instance`` alongside, because jsonschema-rs gives number-like object keys
    (``logit_bias`` token ids) as integers: a key of an object is always ``.key``.
    """
    out, node = root, instance
    for part in path:
        if isinstance(node, dict) or (node is None and not isinstance(part, int)):
            out += f".{part}"
            node = node.get(str(part)) if isinstance(node, dict) else None
        else:
            out += f"[{part}]"
            fits = isinstance(node, list) and isinstance(part, int) and part < len(node)
            node = node[part] if fits else None
    return out


def explain(
    error: jsonschema_rs.ValidationError, body: Any = None, **options: Any
) -> tuple[str, str]:
    """A schema failure as ``(param, message)``: the path, what was expected, what was found
    (the first of ``explain_all``, which takes the same ``options``)."""
    return next(explain_all(error, body, **options))


def explain_all(
    error: jsonschema_rs.ValidationError,
    body: Any = None,
    *,
    root: str = "body",
    noun: str = "parameter",
    schema: dict[str, Any] | None = None,
) -> Iterator[tuple[str, str]]:
    """A schema failure as ``(param, message)`` pairs, one per unknown key.

    ``root`` names the instance in paths (``body.messages[0]``), ``noun`` what a member is
    called; ``schema`` is the root schema the error's path refers to (for the known names an
    unknown key is compared with)."""
    for leaf in deepest(error):
        path = list(leaf.instance_path)
        if leaf.kind.name == "additionalProperties":
            known = _node(schema, list(leaf.schema_path)[:-1]).get("properties", {})
            for key in leaf.kind.as_dict()["unexpected"]:
                param = param_path([*path, key], body, root)
                yield param, unknown_key(param, str(key), known, noun)
        else:
            yield _explain_one(leaf, body, path, root, noun)


def _node(schema: dict[str, Any] | None, path: list[str | int]) -> dict[str, Any]:
    node: Any = schema or {}
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return {}
    return node if isinstance(node, dict) else {}


def _explain_one(
    error: jsonschema_rs.ValidationError, body: Any, path: list[str | int], root: str, noun: str
) -> tuple[str, str]:
    kind = error.kind
    name = kind.name
    if name == "required":
        missing = kind.as_dict()["property"]
        param = param_path([*path, missing], body, root)
        return param, f"Missing required {noun} {param}."
    param = param_path(path, body, root)
    found = describe(error.instance)
    if name == "type":
        return param, f"{param} must be {expected_types(error)}, found {found}."
    if name == "anyOf":
        branches = kind.as_dict()["context"]
        wanted = [w for branch in branches for t in branch_types(branch) for w in t.split(" or ")]
        if wanted:
            return param, f"{param} must be {' or '.join(dict.fromkeys(wanted))}, found {found}."
    if name == "enum":
        options = ", ".join(orjson.dumps(o).decode() for o in kind.as_dict()["options"])
        return param, f"{param} must be one of {options}, found {found}."
    bound = _BOUNDS.get(name)
    if bound:
        return param, f"{param} {bound.format(kind.as_dict()['limit'])}, found {found}."
    return param, f"{param}: {error.message}."


_BOUNDS = {
    "minimum": "must be at least {}",
    "maximum": "must be at most {}",
    "exclusiveMinimum": "must be greater than {}",
    "exclusiveMaximum": "must be less than {}",
    "minItems": "must have at least {} item(s)",
    "maxItems": "must have at most {} item(s)",
    "minLength": "must be at least {} character(s) long",
    "maxLength": "must be at most {} character(s) long",
}


def deepest(error: jsonschema_rs.ValidationError) -> Iterator[jsonschema_rs.ValidationError]:
    """The failures worth reporting for one error. For an ``anyOf`` whose value fits some
    branches' type but fails inside them, they are inside the branch it fits best: of the
    branches not rejecting the value outright (wrong type, enum or const), the one with the
    fewest failures (a bad role inside a message, not "no branch matched"): see ``_fit``."""
    if error.kind.name != "anyOf":
        yield error
        return
    depth = len(error.instance_path)
    fitting = [
        branch
        for branch in error.kind.as_dict()["context"]
        if branch
        and not any(
            len(e.instance_path) == depth and e.kind.name in ("type", "enum", "const")
            for e in branch
        )
    ]
    if not fitting:
        yield error
        return
    for inner in min(fitting, key=_fit):
        yield from deepest(inner)


def _fit(branch: list[jsonschema_rs.ValidationError]) -> tuple[int, int, int]:
    """Fewest failures first; then the deepest; then the one failing furthest along a list
    (``[1, "a"]`` is a list of integers with a bad item, not a list of strings)."""
    last = max(branch, key=lambda e: len(e.instance_path)).instance_path
    index = last[-1] if last and type(last[-1]) is int else 0
    return len(branch), -len(last), -index


def branch_types(branch: list[jsonschema_rs.ValidationError]) -> list[str]:
    """What an ``anyOf`` branch wanted, when it failed on the value's type or value alone."""
    wanted = [_wanted(error) for error in branch]
    if not wanted or None in wanted:
        return []
    return list(dict.fromkeys(w for w in wanted if w))


def _wanted(error: jsonschema_rs.ValidationError) -> str | None:
    name = error.kind.name
    if name == "type":
        return expected_types(error)
    if name == "enum":
        options = ", ".join(orjson.dumps(o).decode() for o in error.kind.as_dict()["options"])
        return f"one of {options}"
    return None


def expected_types(error: jsonschema_rs.ValidationError) -> str:
    types = error.kind.as_dict()["types"]
    return " or ".join(_TYPE_WORDS.get(t, t) for t in types)


_TYPE_WORDS = {
    "object": "an object",
    "array": "an array",
    "integer": "an integer",
    "string": "a string",
    "number": "a number",
    "boolean": "a boolean",
}


def describe(value: Any, limit: int = 60) -> str:
    """``integer 5``, ``string "robot"``, ``an object`` -- short, for messages."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"an array of {len(value)} item{'s' if len(value) != 1 else ''}"
    kind = {int: "integer", float: "number", str: "string"}.get(type(value), type(value).__name__)
    text = orjson.dumps(value).decode()
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{kind} {text}"
