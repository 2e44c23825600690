"""JSON Schemas shipped in ``schemas/``: loading, compiling, and explaining failures.

Schemas are package data (``importlib.resources``), so they work from an installed wheel.
Each endpoint's body schema is compiled once with jsonschema-rs; ``is_valid`` is the fast
path, and only a failing body is walked again to explain what was expected and found.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

import jsonschema_rs
import orjson

from .profiles import ENDPOINTS


def resource(kind: str) -> Traversable:
    """The packaged ``schemas`` or ``samples`` folder."""
    return files(__package__) / kind


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
    """One endpoint's body schema, compiled: what the body requires, and its other checks."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.required: tuple[str, ...] = tuple(schema.get("required", ()))
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
            yield explain(error, body)


TOO_DEEP = (
    "body nests JSON too deeply to be checked against its schema; no request needs that "
    "depth: flatten it."
)


@cache
def body_schema(url: str) -> BodySchema:
    """The compiled body schema for an endpoint url (which must be in ``ENDPOINTS``)."""
    return BodySchema(load_schema(ENDPOINTS[url].schema))


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
    error: jsonschema_rs.ValidationError,
    body: Any = None,
    *,
    root: str = "body",
    noun: str = "parameter",
) -> tuple[str, str]:
    """A schema failure as ``(param, message)``: the path, what was expected, what was found.

    ``root`` names the instance in paths (``body.messages[0]``), ``noun`` what a missing
    required member is called."""
    error = deepest(error)
    kind = error.kind
    path = list(error.instance_path)
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
        wanted = [t for branch in branches for t in branch_types(branch)]
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


def deepest(error: jsonschema_rs.ValidationError) -> jsonschema_rs.ValidationError:
    """For an ``anyOf`` whose value matched a branch's type but failed deeper inside, the
    deeper failure is the useful one (a bad role inside a message, not "no branch matched")."""
    while error.kind.name == "anyOf":
        depth = len(error.instance_path)
        inner = [
            e
            for branch in error.kind.as_dict()["context"]
            for e in branch
            if len(e.instance_path) > depth or e.kind.name not in ("type", "anyOf", "enum", "const")
        ]
        if not inner:
            return error
        error = max(inner, key=lambda e: len(e.instance_path))
    return error


def branch_types(branch: list[jsonschema_rs.ValidationError]) -> list[str]:
    """The types an ``anyOf`` branch wanted, when it failed on the value's type alone."""
    if len(branch) == 1 and branch[0].kind.name == "type":
        return [expected_types(branch[0])]
    return []


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
