"""Generate the endpoints' body schemas in ``schemas/`` from OpenAI's OpenAPI definition.

Two steps, both rerun when OpenAI publishes a new definition:

    python tools/gen_schemas.py extract path/to/openapi.json --commit SHA --date YYYY-MM-DD
    python tools/gen_schemas.py            # schemas/openapi/extract.json -> schemas/<name>.json

``extract`` keeps, of the whole definition (3.4 MB), each batch endpoint's JSON request body
with every schema it references, minus annotations (descriptions, titles, examples): about
100 KB, committed, so regenerating needs nothing outside the repository. It records the
definition's version, commit and sha256.

Generating turns the OpenAPI 3.1 dialect into plain JSON Schema 2020-12 that jsonschema-rs
checks fast and explains well:

- ``nullable: true`` allows null; ``oneOf`` becomes ``anyOf`` (the definition's unions overlap
  in places, and "matched two branches" is never what a server rejects);
- ``allOf`` of object schemas is merged into one object (properties, later ones winning, and
  ``required``), *then* objects are closed: ``allOf`` + ``additionalProperties: false`` does not
  compose, so closing must come after the merge;
- every object whose properties the definition lists and that does not say otherwise gets
  ``additionalProperties: false``: an unknown key is an error, as on the server;
- a union of objects told apart by a property with fixed values (a message's ``role``, a
  content part's or a tool's ``type``) becomes ``if``/``then`` dispatch on that property, so a
  failure is reported inside the one branch the value names, not as "no branch matched";
- ``$recursiveRef`` becomes a plain ``$ref``; ``format``, ``discriminator`` and ``x-*`` keys go.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"
EXTRACT = SCHEMAS / "openapi" / "extract.json"

BATCH_ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
)
TITLES = {
    "/v1/responses": "Responses",
    "/v1/chat/completions": "Chat Completions",
    "/v1/embeddings": "Embeddings",
    "/v1/completions": "Completions",
    "/v1/moderations": "Moderations",
    "/v1/images/generations": "Image generations",
    "/v1/images/edits": "Image edits",
    "/v1/videos": "Videos",
}
ANNOTATIONS = {
    "description",
    "title",
    "example",
    "examples",
    "default",
    "deprecated",
    "x-oaiMeta",
    "x-oaiExpandable",
    "x-oaiTypeLabel",
}
PREFIX = "#/components/schemas/"
Schema = dict[str, Any]


def schema_name(url: str) -> str:
    """``/v1/images/edits`` -> ``images_edits`` (the file ``schemas/images_edits.json``)."""
    return url.removeprefix("/v1/").replace("/", "_")


# --------------------------------------------------------------------------- extract


def extract(spec_path: Path, commit: str, date: str) -> dict[str, Any]:
    """The part of the definition the batch endpoints use, without annotations."""
    raw = spec_path.read_bytes()
    spec = json.loads(raw)
    components = spec["components"]["schemas"]
    endpoints = {}
    for url in BATCH_ENDPOINTS:
        body = spec["paths"][url.removeprefix("/v1")]["post"]["requestBody"]
        endpoints[url] = body["content"]["application/json"]["schema"]["$ref"].removeprefix(PREFIX)
    names: set[str] = set()
    todo = list(endpoints.values())
    while todo:
        name = todo.pop()
        if name not in names:
            names.add(name)
            todo += refs(components[name])
    return {
        "source": {
            "repository": "openai/openai-openapi",
            "path": "openapi.json",
            "commit": commit,
            "date": date,
            "version": spec["info"]["version"],
            "sha256": hashlib.sha256(raw).hexdigest(),
        },
        "endpoints": endpoints,
        "schemas": {name: strip(components[name]) for name in sorted(names)},
    }


def dump_extract(data: dict[str, Any]) -> str:
    """The extract as JSON with one schema per line: small, and diffs show what changed."""
    head = {k: v for k, v in data.items() if k != "schemas"}
    text = json.dumps(head, indent=1)[:-2] + ',\n "schemas": {\n'
    rows = [
        f"  {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}"
        for k, v in data["schemas"].items()
    ]
    return text + ",\n".join(rows) + "\n }\n}\n"


def refs(node: Any) -> Iterator[str]:
    """Names of the component schemas a node references."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(PREFIX):
                yield value.removeprefix(PREFIX)
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def strip(node: Any, in_properties: bool = False) -> Any:
    """Drop annotations (never a property that happens to be named like one)."""
    if isinstance(node, dict):
        return {
            k: strip(v, k == "properties" and not in_properties)
            for k, v in node.items()
            if in_properties or k not in ANNOTATIONS
        }
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


# --------------------------------------------------------------------------- generate


class Generator:
    """Turns the extract's schemas into closed JSON Schema 2020-12, one file per endpoint."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.source = data["source"]
        self.endpoints: dict[str, str] = data["endpoints"]
        defs = {name: normalize(s, name) for name, s in data["schemas"].items()}
        self.plain = defs
        merged = {name: self.merge(s) for name, s in defs.items()}
        self.closed = {name: close(s) for name, s in merged.items()}
        self.defs = {name: self.dispatch(s) for name, s in self.closed.items()}

    # allOf of objects -> one object -----------------------------------------------------
    def resolve(self, node: Schema, defs: dict[str, Schema]) -> Schema:
        while "$ref" in node and len(node) == 1:
            node = defs[node["$ref"].removeprefix("#/$defs/")]
        return node

    def merge(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.merge(v) for v in node]
        if not isinstance(node, dict):
            return node
        node = {k: (v if k == "enum" else self.merge(v)) for k, v in node.items()}
        if "allOf" not in node:
            return node
        parts = [self.merge(self.resolve(p, self.plain)) for p in node.pop("allOf")]
        out: Schema = {"type": "object", "properties": {}}
        required: list[str] = []
        for part in [*parts, node]:
            extra = set(part) - {"type", "properties", "required"}
            if extra or part.get("type", "object") != "object":
                raise ValueError(f"cannot merge allOf member with {sorted(extra)}")
            out["properties"].update(part.get("properties", {}))
            required += [r for r in part.get("required", ()) if r not in required]
        if required:
            out["required"] = required
        return out

    # unions told apart by a fixed-value property -> if/then ---------------------------
    def branches(self, node: Schema) -> list[Schema]:
        """A union's branches, nested unions of references flattened."""
        out = []
        for branch in node["anyOf"]:
            target = self.resolve(branch, self.closed)
            if set(target) <= {"anyOf", "type"} and "anyOf" in target and target is not branch:
                out += self.branches(target)
            else:
                out.append(branch)
        return out

    def dispatch(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.dispatch(v) for v in node]
        if not isinstance(node, dict):
            return node
        node = {k: (v if k == "enum" else self.dispatch(v)) for k, v in node.items()}
        if "anyOf" not in node:
            return node
        branches = self.branches(node)
        objects = [b for b in branches if "properties" in self.resolve(b, self.closed)]
        others = [b for b in branches if b not in objects]
        key = discriminator([self.resolve(b, self.closed) for b in objects])
        if key is None or len(objects) < 2:
            return node
        values: dict[Any, list[Schema]] = {}
        optional = []
        for branch in objects:
            target = self.resolve(branch, self.closed)
            fixed = fixed_values(target["properties"][key]) or []
            for value in fixed:
                if value is not None:
                    values.setdefault(value, []).append(branch)
            if key not in target.get("required", ()) or None in fixed:
                optional.append(branch)
        rules: list[Schema] = [
            {"if": {"properties": {key: {"const": v}}, "required": [key]}, "then": one_of(bs)}
            for v, bs in values.items()
        ]
        chooser: Schema = {"type": "object", "properties": {key: {"enum": list(values)}}}
        if optional:  # the branches that may omit the key (or give it as null)
            chooser["properties"][key]["enum"].append(None)
            absent = {"not": {"required": [key]}}
            null = {"properties": {key: {"type": "null"}}, "required": [key]}
            rules.append({"if": {"anyOf": [absent, null]}, "then": one_of(optional)})
        else:
            chooser["required"] = [key]
        chooser["allOf"] = rules
        rest = {k: v for k, v in node.items() if k not in ("anyOf", "type")}
        if not others:
            return {**rest, **chooser}
        return {**rest, "anyOf": [*others, chooser]}

    # one endpoint's schema ---------------------------------------------------------------
    def schema(self, url: str) -> Schema:
        root = self.endpoints[url]
        body = copy.deepcopy(self.defs[root])
        used = closure(body, self.defs)
        source = self.source
        out: Schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": f"{TITLES[url]} request body",
            "description": f"The body of one {url} request: OpenAI's {root}, generated.",
            "$comment": (
                f"Generated by tools/gen_schemas.py from {source['repository']} "
                f"{source['path']} version {source['version']} (commit {source['commit']}, "
                f"{source['date']}, sha256 {source['sha256']}). Do not edit."
            ),
        }
        out.update(body)
        if used:
            out["$defs"] = {name: self.defs[name] for name in sorted(used)}
        return out

    def files(self) -> dict[str, str]:
        """File name -> text, for every endpoint."""
        return {
            f"{schema_name(url)}.json": json.dumps(self.schema(url), indent=2) + "\n"
            for url in self.endpoints
        }


def normalize(node: Any, name: str) -> Any:
    """OpenAPI 3.1 -> JSON Schema: refs into ``$defs``, nullable, oneOf, no x- keys."""
    if isinstance(node, list):
        return [normalize(v, name) for v in node]
    if not isinstance(node, dict):
        return node
    out: Schema = {}
    for key, value in node.items():
        if key == "$ref":
            out[key] = "#/$defs/" + value.removeprefix(PREFIX)
        elif key == "$recursiveRef":
            out["$ref"] = f"#/$defs/{name}"
        elif key in ("$recursiveAnchor", "discriminator", "format") or key.startswith("x-"):
            continue
        elif key == "properties":
            out[key] = {k: normalize(v, name) for k, v in value.items()}
        elif key == "oneOf":
            out["anyOf"] = normalize(value, name)
        elif key in ("enum", "required", "const"):
            out[key] = value
        elif key != "nullable":
            out[key] = normalize(value, name)
    if node.get("nullable") is True:
        out = nullable(out)
    if set(out) == {"type", "$ref"}:  # {"type": "object", "$ref": ...}: the ref says it
        out.pop("type")
    return out


def nullable(node: Schema) -> Schema:
    if "enum" in node:
        node["enum"] = [*node["enum"], None] if None not in node["enum"] else node["enum"]
        if "type" not in node:
            return node
    kind = node.get("type")
    if isinstance(kind, str):
        node["type"] = [kind, "null"]
        return node
    if isinstance(kind, list):
        node["type"] = kind if "null" in kind else [*kind, "null"]
        return node
    if "anyOf" in node and len(node) == 1:
        return {"anyOf": [*node["anyOf"], {"type": "null"}]}
    return {"anyOf": [{"type": "null"}, node]}


def close(node: Any) -> Any:
    """``additionalProperties: false`` on every object that lists its properties."""
    if isinstance(node, list):
        return [close(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: (v if k in ("enum", "const") else close(v)) for k, v in node.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def discriminator(objects: list[Schema]) -> str | None:
    """The property every object branch fixes to its own values (``type`` first)."""
    if not objects:
        return None
    shared = set.intersection(*(set(o["properties"]) for o in objects))
    for key in sorted(shared, key=lambda k: (k != "type", k != "role", k)):
        if all(fixed_values(o["properties"][key]) for o in objects):
            return key
    return None


def fixed_values(prop: Schema) -> list[Any] | None:
    """The values a property may take when it is an enum (or an enum or null)."""
    if "enum" in prop:
        return list(prop["enum"])
    branches = prop.get("anyOf", ())
    if len(branches) == 2 and {"type": "null"} in branches:
        (other,) = [b for b in branches if b != {"type": "null"}]
        if "enum" in other:
            return [*other["enum"], None]
    return None


def one_of(branches: list[Schema]) -> Schema:
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


def closure(node: Any, defs: dict[str, Schema]) -> set[str]:
    seen: set[str] = set()
    todo = [node]
    while todo:
        for ref in local_refs(todo.pop()):
            if ref not in seen:
                seen.add(ref)
                todo.append(defs[ref])
    return seen


def local_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value.removeprefix("#/$defs/")
            else:
                yield from local_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from local_refs(value)


def load_extract(path: Path = EXTRACT) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def generated(path: Path = EXTRACT) -> dict[str, str]:
    """What ``schemas/`` should hold for the extract: file name -> text."""
    return Generator(load_extract(path)).files()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    take = sub.add_parser("extract", help="write schemas/openapi/extract.json from a full spec")
    take.add_argument("spec", type=Path)
    take.add_argument("--commit", required=True)
    take.add_argument("--date", required=True)
    args = parser.parse_args(argv)
    if args.command == "extract":
        data = extract(args.spec, args.commit, args.date)
        EXTRACT.parent.mkdir(exist_ok=True)
        EXTRACT.write_text(dump_extract(data), encoding="utf-8")
        print(f"wrote {EXTRACT.relative_to(ROOT)} ({EXTRACT.stat().st_size:,} bytes)")
    for name, text in generated().items():
        (SCHEMAS / name).write_text(text, encoding="utf-8")
        print(f"wrote schemas/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
