"""Fuzz and fault campaign: random inputs through validate, split, build, join, retry, stats
and structured joins, and kills (SIGINT, SIGKILL) of those commands at random moments.

    python tools/fuzz.py --seed 1 --count 200 --kills 5

Inputs: ``--count`` files per command (validate gets 20 times as many: it is cheap), made of
valid requests, duplicate ids, non-objects, ``null``, nesting deeper than 1,024, invalid
UTF-8, huge numbers, blank lines, CRLF, a BOM, odd types and random bytes (results files
likewise for join and retry; CSV and JSONL rows with inf, nan, control characters and
quoted newlines for build; ``{custom_id, body}`` lines for the profiles that take them).
Each runs in-process through click's ``CliRunner`` inside a forked worker, so a crash of the
interpreter is caught and reported with its input, and a case still running after ``HANG``
seconds is ended, its threads' stacks (``faulthandler``) reported as its failure. Checked:
no traceback nor "internal error", exit status 0, 1 or 2, every input line accounted for
(split's parts and rejected lines are the input's lines, byte for byte, each exactly once),
build's output valid with one request per row, join's table one row per request, retry's
lines copies of input lines (and exit 1 when requests are retried while a ``-r`` file holds
lines that are not results), stats' counts.

- ``stats``: random ``--profile``/``--endpoint`` (also wrong ones) on random files.
- ``split``: also ``--profile``/``--endpoint`` with ``{custom_id, body}`` lines, ``--max-tokens``.
- ``join``: the same join with the inputs and the results cut into several files, given one
  by one, as folders or as glob patterns, or the inputs split and given by their manifest,
  must give the same rows (a part's row: the row of its ``original_line``).
- ``structured``: requests asking for JSON schemas (shared or not; ``json_object``; broken
  ones; ``--schema``, ``--flatten``) answered with valid, off-schema, non-JSON, cut-off,
  fenced or huge-numbered JSON: each row's ``output_problem`` and ``parsed`` are checked
  against python-jsonschema.
- ``answers``: result files whose rare fields (responses ``output``, ``incomplete_details``,
  ``input_tokens``, ``*_details``, ``choices[].text``, ``error.type``, a nested ``error.error``,
  ``body.error``) hold a value on few lines, often the last of the file or of a range, lines of
  other servers' shapes (``tests/data/shapes``, ``join``, ``examples``), nulls in any field,
  keys escaped (``\\u0065rror``) or given twice, ``NaN``/``Inf``/huge integers/floats for
  numbers, requests asking for JSON output in some lines only or under other keys: the join as
  shipped, with tiny engines and with the line-by-line readers (``readers.extract``) must give
  the same table, summary and anomalies, and, without structured output, the same as the
  whole-table join of ``tests/legacy_join.py``; the Parquet file written is the table.
- Tiny engines: a share of the validate, split, join, retry, stats and structured cases run a
  second time with the thresholds of the chunked, parallel and block engines shrunk
  (``tiny_sizes``: worker processes, chunks and byte ranges of a few bytes, blocks of a few
  rows), as a big file would take them; the output and what was written must be the same.

Kills: ``--kills`` runs per command of ``python -m jsonl_batch`` replacing an earlier
output (split's parts, build's file or parts, join's table, ``partition``: join's folder of
Parquet files by status or input file, retry's file), interrupted after a random delay by
SIGINT or SIGKILL (for split, half of them late, while the parts are copied). Checked: the
output is the old set or the new set, whole (the manifest's hashes match its files, no stray
part; Parquet files compared by their rows), a SIGINT ends with ``Interrupted.`` and 130 (or
nothing, at interpreter start or exit) leaving nothing in its ``TMPDIR`` (join's spill files),
and after the next run no temporary file is left.

Failures are printed with their case (``command#index``) and the input is kept under
``--keep`` (default ``fuzz-failures/``, not to be committed); ``--only split#17`` re-runs one
case. Exit status 0 when nothing failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import faulthandler
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from jsonl_batch.cli import main  # noqa: E402

COMMANDS = (
    "validate",
    "split",
    "build",
    "join",
    "retry",
    "stats",
    "structured",
    "answers",
    "matching",
    "parquet",
)
KILLED = ("split", "build", "join", "retry", "partition")

TEMP_PREFIX = ".jsonl-batch-"
LOCK_NAME = f"{TEMP_PREFIX}lock"

# ---------------------------------------------------------------- the engines, made tiny


def tiny_sizes(r: random.Random) -> dict[str, dict[str, int]]:
    """Thresholds of the chunked, parallel and block engines, shrunk so that the small inputs
    of a fuzz case take every path a big file takes (workers, many chunks, blocks, pieces)."""
    chunk = r.randint(1, 300)
    return {
        "jsonl_batch.lines.parallel": {
            "PARALLEL_MIN_BYTES": 1,
            "CHUNK_BYTES": chunk,
            "MIN_CHUNK_BYTES": r.randint(1, chunk),
            "BLOCK_LINES": r.randint(1, 4),
        },
        "jsonl_batch.tokens.stats": {
            "PARALLEL_MIN_BYTES": 1,
            "CHUNK_BYTES": r.randint(1, 300),
            "BLOCK_LINES": r.randint(1, 4),
        },
        "jsonl_batch.results.index": {
            "RANGE_BYTES": r.randint(1, 400),
            "PLACE_ROWS": r.randint(1, 8),
        },
        "jsonl_batch.results.matching": {"SAMPLE": r.randint(1, 8), "SPAN": r.randint(1, 10)},
        "jsonl_batch.results.join": {
            "PARALLEL_MIN_BYTES": 1,
            "BLOCK_ROWS": r.randint(1, 6),
            "MIN_BLOCKS": r.randint(1, 5),
            "MIN_BLOCK_ROWS": r.randint(1, 3),
        },
        "jsonl_batch.results.answers": {"CHECK_ROWS": r.randint(1, 3), "CHECK_MIN_ROWS": 1},
        "jsonl_batch.split.ranges": {
            "COPY_BYTES": r.randint(1, 200),
            "SMALL_BYTES": r.randint(1, 300),
            "HASH_BYTES": r.randint(1, 300),
            "ALONE_BYTES": r.randint(1, 300),
        },
        "jsonl_batch.split.plan": {"SIZE_BYTES": r.randint(1, 300)},
    }


@contextlib.contextmanager
def engine(sizes: dict[str, dict[str, int]] | None) -> Iterator[None]:
    """The engines with ``sizes`` (``tiny_sizes``) for the block; ``None``: as shipped."""
    if not sizes:
        yield
        return
    import importlib

    saved = []
    for name, values in sizes.items():
        module = importlib.import_module(name)
        for key, value in values.items():
            saved.append((module, key, getattr(module, key)))
            setattr(module, key, value)
    try:
        yield
    finally:
        for module, key, value in reversed(saved):
            setattr(module, key, value)


def same_output(
    gen: Gen, args: list[str], outputs: Callable[[], Any], expect: tuple[int, ...] = (0, 1, 2)
) -> tuple[Any, Any]:
    """Run ``args`` with the engines as shipped, then tiny: the exit status, the printed
    output and ``outputs()`` (what the run wrote) must be the same. Returns (result, outputs)."""
    result = invoke(args, expect)
    written = outputs()
    with engine(tiny_sizes(gen.r)):
        small = invoke(args, expect)
        small_written = outputs()
    if (small.exit_code, small.output) != (result.exit_code, result.output):
        raise Failure(
            f"tiny engines: exit {small.exit_code} (not {result.exit_code}), output differs:\n"
            f"{first_difference(result.output, small.output)}"
        )
    if small_written != written:
        raise Failure(
            "tiny engines wrote other outputs:\n"
            + first_difference(repr(written), repr(small_written))
        )
    return result, written


def first_difference(a: str, b: str) -> str:
    at = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    start = max(0, at - 150)
    return f"  shipped: ...{a[start : at + 250]!r}\n  tiny:    ...{b[start : at + 250]!r}"


# ---------------------------------------------------------------- random inputs


class Gen:
    """Random batch files, result files and rows, from one ``random.Random``."""

    def __init__(self, rng: random.Random) -> None:
        self.r = rng
        self.ids = [self.text(6) for _ in range(rng.randint(1, 8))]

    def text(self, n: int = 12) -> str:
        r = self.r
        alphabets = [
            "abcdefghijklmnopqrstuvwxyz0123456789_-",
            "abc \t\r\n\x1b\x00\x7f\u202eé漢🙂\"'\\",
        ]
        chars = r.choice(alphabets)
        return "".join(r.choice(chars) for _ in range(r.randint(0, n)))

    def scalar(self) -> Any:
        r = self.r
        return r.choice(
            [
                None,
                True,
                False,
                r.randint(-5, 5),
                10 ** r.randint(15, 400),
                r.random() * 1e308,
                self.text(),
                "",
                r.choice(["inf", "nan", "-inf", "NaN", "1e999"]),
            ]
        )

    def value(self, depth: int = 0) -> Any:
        r = self.r
        if depth > 3 or r.random() < 0.5:
            return self.scalar()
        if r.random() < 0.5:
            return [self.value(depth + 1) for _ in range(r.randint(0, 3))]
        return {self.text(5): self.value(depth + 1) for _ in range(r.randint(0, 3))}

    def custom_id(self, odd: bool = True) -> Any:
        r = self.r
        if not odd or r.random() < 0.85:
            return (
                r.choice(self.ids)
                if r.random() < 0.3
                else f"{r.choice(self.ids)}-{r.randint(0, 10**6)}"
            )
        return self.scalar()

    def request(self, odd: bool = True) -> dict[str, Any]:
        r = self.r
        if r.random() < 0.6:
            content: Any = self.text(30) if r.random() < 0.9 else self.value()
            body: dict[str, Any] = {
                "model": r.choice(["gpt-4o-mini", "gpt-4o", self.text(4)]),
                "messages": [{"role": r.choice(["user", "system", "robot"]), "content": content}],
            }
            url = "/v1/chat/completions"
        else:
            body = {
                "model": "text-embedding-3-small",
                "input": r.choice([self.text(), [self.text()] * r.randint(0, 3), [1, 2]]),
            }
            url = "/v1/embeddings"
        if r.random() < 0.2:
            body[self.text(5)] = self.value()
        line: dict[str, Any] = {
            "custom_id": self.custom_id(odd),
            "method": "POST",
            "url": url,
            "body": body,
        }
        if odd and r.random() < 0.1:  # odd types and missing fields
            key = r.choice(list(line))
            if r.random() < 0.5:
                del line[key]
            else:
                line[key] = self.value()
        return line

    def dumps(self, value: Any) -> bytes:
        """JSON text, with Python's encoder (big ints, non-ASCII or escaped, NaN literals)."""
        return json.dumps(value, ensure_ascii=self.r.random() < 0.5).encode(
            "utf-8", "surrogatepass"
        )

    def line(self, kind: str | None = None) -> bytes:
        r = self.r
        kind = (
            kind
            or r.choices(
                [
                    "request",
                    "null",
                    "scalar",
                    "array",
                    "deep",
                    "utf8",
                    "huge",
                    "blank",
                    "garbage",
                    "dupkey",
                    "value",
                ],
                weights=[60, 4, 3, 3, 3, 3, 3, 3, 3, 2, 3],
            )[0]
        )
        if kind == "request":
            return self.dumps(self.request())
        if kind == "null":
            return b"null"
        if kind == "scalar":
            return self.dumps(self.scalar())
        if kind == "array":
            return self.dumps([self.request()])
        if kind == "deep":
            depth = r.randint(1000, 3000)
            if r.random() < 0.5:
                return b"[" * depth + b"]" * depth
            return b'{"custom_id": "deep", "body": ' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
        if kind == "utf8":
            raw = self.dumps(self.request())
            at = r.randint(0, len(raw))
            return raw[:at] + r.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"]) + raw[at:]
        if kind == "huge":
            req = self.request()
            if not isinstance(req.get("body"), dict):
                req["body"] = {}
            req["body"]["max_tokens"] = r.choice([10**400, -(10**30), 1.5e308])
            huge = b"1e999" + r.choice([b"", b', "s": "\\ud800"'])  # and a lone surrogate
            return self.dumps(req).replace(b"1.5e+308", huge)
        if kind == "blank":
            return r.choice([b"", b" ", b"\t", b"\xef\xbb\xbf"])
        if kind == "garbage":
            return bytes(r.randrange(256) for _ in range(r.randint(1, 40))).replace(b"\n", b"")
        if kind == "dupkey":
            return (
                b'{"custom_id": "a", "custom_id": "b", "method": "POST", '
                b'"url": "/v1/embeddings", "body": {"model": "m", "input": "x"}}'
            )
        return self.dumps(self.value())

    def lines_file(self, n: int, line: Callable[[], bytes] | None = None) -> bytes:
        r = self.r
        make = line or self.line
        crlf = r.random() < 0.2
        out = []
        for _ in range(n):
            ending = b"\r\n" if (crlf or r.random() < 0.05) else b"\n"
            out.append(make().replace(b"\n", b"") + ending)
        data = b"".join(out)
        if data and r.random() < 0.15:
            data = data.rstrip(b"\r\n")  # no final newline
        if r.random() < 0.05:
            data = b"\xef\xbb\xbf" + data
        return data

    def valid_batch(self) -> bytes:
        """A valid batch file: one endpoint and model, unique custom_ids, texts of any
        length, CRLF or LF endings, with or without a final newline."""
        r = self.r
        embeddings = r.random() < 0.3
        url = "/v1/embeddings" if embeddings else "/v1/chat/completions"
        lines = []
        for i in range(r.choice([1, 2, 5, 10, 30])):
            text = self.text(r.choice([5, 30, 300]))
            body: dict[str, Any] = (
                {"model": "text-embedding-3-small", "input": [text] * r.randint(1, 3)}
                if embeddings
                else {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
            )
            line = {"custom_id": f"r{i}", "method": "POST", "url": url, "body": body}
            lines.append(orjson.dumps(line) + r.choice([b"\n", b"\r\n"]))
        data = b"".join(lines)
        return data if r.random() < 0.7 else data.rstrip(b"\r\n")

    def batch(self, clean: float = 0.0) -> bytes:
        """A batch file; with probability ``clean``, only well-formed request lines."""
        n = self.r.choice([0, 1, 2, 5, 10, 30])
        if self.r.random() < clean:
            return self.lines_file(n, lambda: self.dumps(self.request(odd=False)))
        return self.lines_file(n)

    def results(self, requests: bytes) -> bytes:
        """A result file answering some requests of ``requests`` (and not only those)."""
        r = self.r
        ids = []
        for raw in requests.splitlines():
            try:
                value = json.loads(raw)
            except (ValueError, RecursionError):
                continue
            if isinstance(value, dict) and "custom_id" in value:
                ids.append(value["custom_id"])
        ids += [self.custom_id() for _ in range(r.randint(0, 2))]
        r.shuffle(ids)

        def result() -> bytes:
            if not ids or r.random() < 0.15:
                return self.line(
                    r.choice(["null", "garbage", "deep", "utf8", "value", "blank", "scalar"])
                )
            cid = r.choice(ids)
            kind = r.random()
            usage = {
                "prompt_tokens": r.choice([1, 10**20, -1, None]),
                "completion_tokens": 2,
                "total_tokens": 3,
            }
            if kind < 0.6:
                body: Any = {
                    "id": "chatcmpl-1",
                    "object": r.choice(["chat.completion", "list", "x"]),
                    "model": "gpt-4o-mini",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": self.text(20)},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
                if r.random() < 0.2:
                    body = self.value()
                response: Any = {
                    "status_code": r.choice([200, 200, 200, 400, 500, "200", None]),
                    "request_id": "req",
                    "body": body,
                }
                line = {"id": "batch_req", "custom_id": cid, "response": response, "error": None}
            elif kind < 0.85:
                line = {
                    "id": "batch_req",
                    "custom_id": cid,
                    "response": None,
                    "error": {"code": self.text(8), "message": self.text()},
                }
            else:
                line = {
                    "id": "batch_req",
                    "custom_id": cid,
                    "response": self.value(),
                    "error": self.value(),
                }
            return self.dumps(line)

        return self.lines_file(len(ids) + r.randint(0, 3), result)

    def body_line(self) -> bytes:
        """A ``{custom_id, body}`` line (the shape of together, mistral, fireworks), or now
        and then a whole request line or another line."""
        r = self.r
        if r.random() < 0.15:
            return self.line()
        request = self.request()
        line = {"custom_id": request.get("custom_id"), "body": request.get("body")}
        if r.random() < 0.1:
            line["url"] = request.get("url")
        return self.dumps(line)

    # -- structured output: schemas, and answers that match them or not

    def schema(self, depth: int = 0) -> dict[str, Any]:
        r = self.r
        kinds = ["string", "integer", "number", "boolean", "enum", "nullable"]
        if depth < 2:
            kinds += ["array", "object", "object", "anyOf"]
        kind = r.choice(kinds)
        if kind == "enum":
            return {
                "type": "string",
                "enum": sorted({self.text(4) for _ in range(r.randint(1, 3))}),
            }
        if kind == "nullable":
            return {"type": [r.choice(["string", "integer", "number", "boolean"]), "null"]}
        if kind == "array":
            return {"type": "array", "items": self.schema(depth + 1)}
        if kind == "anyOf":
            return {"anyOf": [self.schema(depth + 1) for _ in range(2)]}
        if kind == "object":
            names = sorted({self.text(5) or "k" for _ in range(r.randint(0, 4))})
            props = {n: self.schema(depth + 1) for n in names}
            required = names if r.random() < 0.7 else [n for n in names if r.random() < 0.5]
            schema: dict[str, Any] = {"type": "object", "properties": props, "required": required}
            if r.random() < 0.8:
                schema["additionalProperties"] = False
            return schema
        return {"type": kind}

    def conforming(self, schema: dict[str, Any]) -> Any:
        """A value valid against ``schema`` (one of ``schema()``'s)."""
        r = self.r
        if "anyOf" in schema:
            return self.conforming(r.choice(schema["anyOf"]))
        if "enum" in schema:
            return r.choice(schema["enum"])
        kind = schema["type"]
        if isinstance(kind, list):
            return None if r.random() < 0.3 else self.conforming({"type": kind[0]})
        if kind == "string":
            return self.text(10)
        if kind == "integer":
            return r.choice([0, -3, 7, 2**53 + 1, 2**63 - 1, -(2**63), r.randint(-1000, 1000)])
        if kind == "number":
            return r.choice([0.5, -1e300, 3, 1e-7, r.random() * 100])
        if kind == "boolean":
            return r.random() < 0.5
        if kind == "array":
            return [self.conforming(schema["items"]) for _ in range(r.randint(0, 3))]
        props = schema["properties"]
        return {
            name: self.conforming(sub)
            for name, sub in props.items()
            if name in schema["required"] or r.random() < 0.5
        }

    def answer_text(self, schema: dict[str, Any] | None) -> tuple[Any, str | None]:
        """(content, finish_reason) of a structured answer: valid, off-schema, not JSON, cut
        off, fenced in Markdown, with huge numbers..."""
        r = self.r
        value = self.conforming(schema) if schema is not None else self.value()
        kind = r.choices(
            ["valid", "other", "text", "cut", "fenced", "spaced", "huge", "null"],
            weights=[50, 12, 8, 10, 4, 6, 5, 5],
        )[0]
        if kind == "other":
            value = self.value()
        text = json.dumps(value, ensure_ascii=r.random() < 0.5)
        if kind == "text":
            return self.text(20), "stop"
        if kind == "cut":
            return text[: r.randint(0, max(0, len(text) - 1))], r.choice(["length", "stop"])
        if kind == "fenced":
            return f"```json\n{text}\n```", "stop"
        if kind == "spaced":
            return f" \n{text}\t\n", "stop"
        if kind == "huge":
            return re.sub(r"\b\d+\b", lambda m: m.group() + "0" * 20, text, count=1), "stop"
        if kind == "null":
            return None, "stop"
        return text, r.choice(["stop", "stop", "stop", "length", "content_filter", None])

    def rows(self) -> tuple[str, bytes, int]:
        """(format, bytes, rows) for build: CSV or JSONL rows with id and prompt columns."""
        r = self.r
        n = r.choice([0, 1, 3, 10, 10])
        odd = ["inf", "-inf", "nan", "1e999", "", "a\nb", '"q"', "1", "null"]
        cells = [
            (
                self.text(6) if r.random() < 0.9 else "",
                "q " + self.text(20) if r.random() < 0.9 else r.choice(odd),
            )
            for _ in range(n)
        ]
        if r.random() < 0.5:
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator=r.choice(["\n", "\r\n"]))
            writer.writerow(["id", "prompt", "extra"])
            for cid, prompt in cells:
                writer.writerow([cid, prompt, r.choice(["1", "inf", "x"])])
            return "csv", buffer.getvalue().encode(), n
        values = []
        for cid, prompt in cells:
            row: dict[str, Any] = {
                "id": cid,
                "prompt": prompt if r.random() < 0.9 else self.scalar(),
            }
            if r.random() < 0.1:
                row["extra"] = r.choice([float("inf"), float("nan"), 10**30, self.value()])
            values.append(json.dumps(row).encode())
        return "jsonl", b"".join(v + b"\n" for v in values), n


# ---------------------------------------------------------------- checks


class Failure(Exception):
    """A check failed: the message says which and how."""


def lines_of(data: bytes) -> list[bytes]:
    """The file's lines without their endings, as the reader numbers them."""
    if not data:
        return []
    body = data[:-1] if data.endswith(b"\n") else data
    return [line[:-1] if line.endswith(b"\r") else line for line in body.split(b"\n")]


def invoke(args: list[str], expect: tuple[int, ...] = (0, 1, 2)) -> Any:
    result = CliRunner().invoke(main, args, catch_exceptions=True)
    output = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        trace = "".join(traceback.format_exception(result.exception))
        raise Failure(
            f"exception {type(result.exception).__name__}: {result.exception}\n{trace[-2000:]}"
        )
    if "Traceback" in output or "internal error" in output:
        raise Failure(f"traceback or internal error in output: {output[-1500:]}")
    if result.exit_code not in expect:
        raise Failure(f"exit status {result.exit_code}, expected {expect}: {output[-800:]}")
    return result


def run_validate(gen: Gen, work: Path) -> str:
    data = gen.batch()
    path = work / "in.jsonl"
    path.write_bytes(data)
    fmt = gen.r.choice(["json", "text"])
    cap = gen.r.choice(["0", "1", "100"])
    args = ["validate", str(path), "--format", fmt, "--max-problems", cap]
    if gen.r.random() < 0.25:  # chunked in workers, as a big file is: the same report
        result, _ = same_output(gen, args, lambda: None, (0, 1))
    else:
        result = invoke(args, (0, 1))
    if fmt == "json":
        report = orjson.loads(result.output)
        if report["stats"]["lines"] != len(lines_of(data)):
            counted, lines = report["stats"]["lines"], len(lines_of(data))
            raise Failure(f"validate counted {counted} lines, the file has {lines}")
    return f"exit {result.exit_code}"


BODY_PROFILES = ("together", "mistral", "fireworks")
PROFILE_ENDPOINTS = {
    "openai": ["/v1/chat/completions", "/v1/embeddings", "/v1/responses"],
    "azure": ["/chat/completions", "/v1/embeddings"],
    "vllm": ["/v1/chat/completions", "/v1/score"],
    "groq": ["/v1/chat/completions"],
    "together": ["/v1/chat/completions"],
    "mistral": ["/v1/chat/completions", "/v1/embeddings", "/v1/moderations"],
    "fireworks": ["/v1/chat/completions"],
}


def profile_args(gen: Gen) -> tuple[list[str], bool]:
    """Random ``--profile``/``--endpoint`` options; True when lines are ``{custom_id, body}``."""
    r = gen.r
    profile = r.choice([*PROFILE_ENDPOINTS, *BODY_PROFILES])
    args = ["--profile", profile]
    if r.random() < 0.5:
        args += ["--endpoint", r.choice([*PROFILE_ENDPOINTS[profile], "/v1/nope", "v1/embeddings"])]
    return args, profile in BODY_PROFILES


def take_folder(folder: Path) -> dict[str, bytes]:
    """The files under ``folder`` (relative name -> bytes), then the folder removed, so the
    same command can write it again."""
    if not folder.exists():
        return {}
    if folder.is_file():
        data = {"": folder.read_bytes()}
        folder.unlink()
        return data
    found = {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }
    shutil.rmtree(folder)
    return found


def run_stats(gen: Gen, work: Path) -> str:
    r = gen.r
    options, bodies = profile_args(gen)
    n = r.choice([0, 1, 2, 5, 10, 30])
    data = gen.lines_file(n, gen.body_line) if bodies else gen.batch()
    path = work / "in.jsonl"
    path.write_bytes(data)
    fmt = r.choice(["json", "json", "text"])
    args = ["stats", str(path), *options, "--format", fmt]
    result, _ = same_output(gen, args, lambda: None)
    if result.exit_code == 2 or fmt != "json":
        return f"exit {result.exit_code}"
    stats = orjson.loads(result.output)
    (entry,) = stats["files"]
    if entry["lines"] != len(lines_of(data)):
        raise Failure(f"stats counted {entry['lines']} lines, the file has {len(lines_of(data))}")
    if entry["requests"] + entry["skipped_lines"] > entry["lines"]:
        raise Failure(f"stats: requests + skipped > lines: {entry}")
    problems = entry.get("problems") or []
    if (result.exit_code == 1) != bool(problems):
        raise Failure(f"stats: exit {result.exit_code} with problems {problems}")
    if entry["requests"] == 0 and not problems and r is not None and data:
        raise Failure("stats: a file with lines and no request has no problem")
    return f"exit {result.exit_code}"


def run_split(gen: Gen, work: Path) -> str:
    r = gen.r
    args: list[str] = []
    if r.random() < 0.25:  # {custom_id, body} lines, or another profile's
        args, bodies = profile_args(gen)
        data = gen.lines_file(r.choice([0, 1, 2, 5, 10, 30]), gen.body_line if bodies else None)
    else:
        data = gen.batch()
    path = work / "in.jsonl"
    path.write_bytes(data)
    out = work / "out"
    args = ["split", str(path), "-o", str(out), "--format", "json", *args]
    skip = r.random() < 0.8
    if skip:
        args.append("--skip-invalid")
    unchecked = not skip and r.random() < 0.5  # every line a request, copied unchecked
    if unchecked:
        args.append("--no-check")
        if r.random() < 0.5:  # a valid file: the checked split cuts the same parts
            data = gen.valid_batch()
            path.write_bytes(data)
    choice = r.random()
    if choice < 0.5:
        args += ["--max-requests", str(r.randint(1, 5))]
    elif choice < 0.65:
        args += ["--parts", str(r.randint(1, 4))]
    elif choice < 0.8:
        args += ["--by", r.choice(["model", "endpoint"])]
    else:
        args += ["--max-bytes", str(r.randint(50, 2000))]
    if r.random() < 0.1:
        args += ["--max-tokens", str(r.randint(1, 400))]
    if r.random() < 0.3:  # cut points found chunk by chunk, parts copied in tiny buffers
        result, written = same_output(gen, args, lambda: take_folder(out))
        out.mkdir()
        for name, content in written.items():
            (out / name).write_bytes(content)
    else:
        result = invoke(args)
    manifests = sorted(out.glob("*.manifest.json")) if out.exists() else []
    if not manifests:
        written = [p.name for p in out.iterdir()] if out.exists() else []
        if written:
            raise Failure(f"files without a manifest: {written}")
        return f"exit {result.exit_code}, nothing written"
    check_split(out, manifests[0], data)
    if unchecked and result.exit_code == 0:
        check_unchecked(args, out, manifests[0])
    return f"exit {result.exit_code}, split"


def check_unchecked(args: list[str], out: Path, manifest_path: Path) -> None:
    """A file the checked split takes cuts the same unchecked: the same part files and
    line ranges (the manifest's endpoint and model aside: unchecked, the first line's)."""
    unchecked = orjson.loads(manifest_path.read_bytes())
    again = out.with_name("checked")
    at = args.index("-o") + 1
    checked = [*args[:at], str(again), *args[at + 1 :]]
    result = invoke([a for a in checked if a != "--no-check"])
    if result.exit_code != 0:
        return  # not valid: nothing to compare
    manifest = orjson.loads(next(again.glob("*.manifest.json")).read_bytes())
    keys = ("path", "requests", "bytes", "sha256", "line_ranges", "input_tokens")

    def cuts(found: dict[str, Any]) -> Any:
        return [{k: p.get(k) for k in keys} for p in found["parts"]], found["sha256"]

    if cuts(unchecked) != cuts(manifest):
        raise Failure("the unchecked split of a valid file cut other parts")
    shutil.rmtree(again)


def check_split(folder: Path, manifest_path: Path, data: bytes) -> None:
    """Every line of ``data`` in exactly one file of the manifest, byte for byte; hashes match."""
    lines = lines_of(data)
    manifest = orjson.loads(manifest_path.read_bytes())
    seen = Counter[int]()
    files = list(manifest["parts"]) + ([manifest["rejected"]] if manifest.get("rejected") else [])
    for entry in files:
        content = (folder / entry["path"]).read_bytes()
        if hashlib.sha256(content).hexdigest() != entry["sha256"]:
            raise Failure(f"{entry['path']}: sha256 differs from the manifest")
        got = lines_of(content)
        want = [lines[n - 1] for a, b in entry["line_ranges"] for n in range(a, b + 1)]
        first = 1 if lines and data.startswith(b"\xef\xbb\xbf") else None
        if first is not None and want and entry["line_ranges"][0][0] == 1:
            want[0] = want[0][3:] if got and not got[0].startswith(b"\xef\xbb\xbf") else want[0]
        if got != want:
            raise Failure(
                f"{entry['path']}: its lines are not the input's lines {entry['line_ranges']}"
            )
        for a, b in entry["line_ranges"]:
            seen.update(range(a, b + 1))
    if sorted(seen) != list(range(1, len(lines) + 1)) or any(n != 1 for n in seen.values()):
        raise Failure(
            f"lines not accounted for exactly once: {len(lines)} lines, seen {dict(seen)}"
        )
    stray = {p.name for p in folder.iterdir()} - {e["path"] for e in files} - {manifest_path.name}
    if stray:
        raise Failure(f"files not in the manifest: {sorted(stray)}")


def run_build(gen: Gen, work: Path) -> str:
    r = gen.r
    fmt, data, rows = gen.rows()
    source = work / f"rows.{fmt}"
    source.write_bytes(data)
    out = work / "batch.jsonl"
    args = [
        "build",
        str(source),
        "-o",
        str(out),
        "--model",
        "gpt-4o-mini",
        "--prompt-column",
        "prompt",
    ]
    if r.random() < 0.5:
        args += ["--id-column", "id"]
    if r.random() < 0.2:
        args += ["--param", r.choice(["temperature=inf", "temperature=0.5", "n=1e999", "x.y=NaN"])]
    if r.random() < 0.2:
        args += ["--max-requests", str(r.randint(1, 4))]
    result = invoke(args)
    if result.exit_code != 0:
        leftovers = [p.name for p in work.iterdir() if p.name != source.name]
        if leftovers:
            raise Failure(f"build failed (exit {result.exit_code}) but wrote {leftovers}")
        return f"exit {result.exit_code}"
    written = [out] if out.exists() else sorted(work.glob("batch.part-*.jsonl"))
    requests = 0
    for part in written:
        report = invoke(["validate", str(part), "--format", "json"], (0,))
        requests += orjson.loads(report.output)["stats"]["requests"]
    if requests != rows:
        raise Failure(f"build wrote {requests} requests for {rows} rows")
    return "exit 0"


def join_inputs(gen: Gen, work: Path) -> tuple[Path, Path, bytes]:
    data = gen.batch(clean=0.7)
    source = work / "in.jsonl"
    source.write_bytes(data)
    results = work / "results.jsonl"
    results.write_bytes(gen.results(data))
    return source, results, data


def take_table(out: Path) -> Any:
    """What a join wrote (a file's bytes; a Parquet table's schema and rows), then removed."""
    if out.is_dir() or out.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(out) if out.exists() else None
        if out.is_dir():
            shutil.rmtree(out)
        elif out.exists():
            out.unlink()
        return None if table is None else (str(table.schema), table.to_pylist())
    return take_folder(out)


def pieces(gen: Gen, data: bytes, folder: Path, stem: str) -> list[Path]:
    """``data`` cut at line ends into 1 to 4 files of ``folder``, named in order."""
    r = gen.r
    lines = data.splitlines(keepends=True)
    cuts = sorted(r.sample(range(len(lines) + 1), min(len(lines) + 1, r.randint(0, 3))))
    folder.mkdir(exist_ok=True)
    paths = []
    for number, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(lines)], strict=True)):
        path = folder / f"{stem}{number:02d}.jsonl"
        path.write_bytes(b"".join(lines[a:b]))
        paths.append(path)
    return paths


def run_join(gen: Gen, work: Path) -> str:
    r = gen.r
    source, results, data = join_inputs(gen, work)
    fmt = r.choice(["csv", "jsonl", "parquet"])
    out = work / f"table.{fmt}"
    extra = r.sample(
        ["--include-bodies", "--include-tool-calls", "--include-embeddings"], r.randint(0, 2)
    )
    options = ["-o", str(out), "--summary-format", "json", *extra]
    args = ["join", str(source), "-r", str(results), *options]
    result = invoke(args)
    if result.exit_code == 2:
        return "exit 2"
    summary = orjson.loads(result.output.splitlines()[-1])
    if summary["succeeded"] + summary["failed"] + summary["missing"] != summary["requests"]:
        raise Failure(f"join counts do not add up: {summary}")
    if fmt != "parquet":
        rows = out.read_bytes().count(b"\n") - (1 if fmt == "csv" else 0)
        if fmt == "csv":
            import pyarrow.csv as pacsv

            rows = pacsv.read_csv(out).num_rows if out.stat().st_size else 0
        if rows != summary["requests"]:
            raise Failure(f"join wrote {rows} rows for {summary['requests']} requests")
    table = take_table(out)
    if r.random() < 0.4:  # indexed in byte ranges by workers, written in tiny blocks
        args += ["--force"]
        same_output(gen, args, lambda: take_table(out))
    if r.random() < 0.4:
        join_many(gen, work, data, results, extra)
    return f"exit {result.exit_code}" + (", table" if table else "")


def join_many(gen: Gen, work: Path, data: bytes, results: Path, extra: list[str]) -> None:
    """The same join with the inputs and results cut into several files, given one by one,
    as a folder or as a glob pattern, or the inputs split (``split --skip-invalid``) and given
    by the manifest: the same rows (but for input_file and line; a part's rows are the rows
    of their ``original_line``)."""
    r = gen.r
    inputs = pieces(gen, data, work / "inputs", "in")
    answers = pieces(gen, results.read_bytes(), work / "results", "r")
    out = work / "many.parquet"
    one = ["join", str(work / "in.jsonl"), "-r", str(results), "-o", str(out), *extra]
    many = ["join"]
    how: str = r.choice(["files", "folder", "glob", "manifest"])
    if how == "manifest":
        parts = work / "parts"
        split = ["split", str(work / "in.jsonl"), "-o", str(parts), "--skip-invalid"]
        invoke([*split, "--max-requests", str(r.randint(1, 4))])
        manifest = parts / "in.manifest.json"
        if not manifest.exists() or not orjson.loads(manifest.read_bytes())["parts"]:
            return
        inputs = [manifest]
    many += {
        "files": [str(p) for p in inputs],
        "folder": [str(work / "inputs")],
        "glob": [str(work / "inputs" / "in*.jsonl")],
        "manifest": [str(inputs[0])],
    }[how]
    folder = answers[0].parent
    for path in (
        answers
        if how in ("files", "manifest")
        else [folder]
        if how == "folder"
        else [folder / "r*"]
    ):
        many += ["-r", str(path)]
    many += ["-o", str(out), *extra]
    first = invoke(one)
    whole = take_table(out)
    second = invoke(many)
    cut = take_table(out)
    what = f"join of {len(inputs)} inputs and {len(answers)} result files ({how})"
    if how == "manifest":
        if whole is None or cut is None:
            return
        by_line = {row["line"]: row for row in whole[1]}
        drop: tuple[str, ...] = ("input_file", "line", "original_file", "original_line")
        for row in cut[1]:
            if row["original_file"] != "in.jsonl" and not str(row["original_file"]).endswith(
                "/in.jsonl"
            ):
                raise Failure(f"{what}: original_file {row['original_file']!r}")
            want = by_line.get(row["original_line"])
            got = {k: v for k, v in row.items() if k not in drop}
            if want is None or got != {k: v for k, v in want.items() if k not in drop}:
                raise Failure(f"{what}: the row of original line {row['original_line']}:\n"
                              f"  whole: {want}\n  part:  {row}")  # fmt: skip
        return
    if first.exit_code != second.exit_code:
        raise Failure(
            f"{what}: exit {second.exit_code}, of the whole files {first.exit_code}: "
            f"{second.output[-300:]}"
        )
    if whole is None or cut is None:
        return
    drop = ("input_file", "line")
    rows = [[{k: v for k, v in row.items() if k not in drop} for row in t[1]] for t in (whole, cut)]
    if rows[0] != rows[1]:
        at = next(i for i, (a, b) in enumerate(zip(*rows, strict=False)) if a != b)
        raise Failure(f"{what}: row {at} differs:\n  whole: {rows[0][at]}\n  cut:   {rows[1][at]}")


def run_retry(gen: Gen, work: Path) -> str:
    r = gen.r
    source, results, data = join_inputs(gen, work)
    out = work / "retry.jsonl"
    given = [results]
    if r.random() < 0.3:  # a request file (or other lines) given as results
        given = r.choice([[source], [results, source], [results, work / "other.jsonl"]])
        (work / "other.jsonl").write_bytes(gen.lines_file(r.randint(1, 5)))
    args = ["retry", str(source), "-o", str(out), "--format", "json"]
    for path in given:
        args += ["-r", str(path)]
    if r.random() < 0.3:
        args += ["--only", r.choice(["failed", "missing", "retryable", "output-problems"])]
    if r.random() < 0.3:

        def written() -> dict[str, bytes]:
            found = {p.name: p.read_bytes() for p in sorted(work.glob("retry*"))}
            for p in work.glob("retry*"):
                p.unlink()
            return found

        result, files = same_output(gen, args, written)
        for name, content in files.items():
            (work / name).write_bytes(content)
    else:
        result = invoke(args)
    if result.exit_code == 2:
        return "exit 2"
    originals = set(lines_of(data))
    if data.startswith(b"\xef\xbb\xbf"):
        originals.add(lines_of(data)[0][3:])
    for written_file in [out, *work.glob("retry.part-*.jsonl")]:
        if written_file.exists():
            for line in lines_of(written_file.read_bytes()):
                if line not in originals:
                    raise Failure(f"retry wrote a line that is not an input line: {line[:120]!r}")
    report = orjson.loads(result.output.splitlines()[0])
    if report.get("not_results") and report.get("output") and result.exit_code != 1:
        raise Failure(
            f"retry: requests written while lines are not results, exit {result.exit_code}"
        )
    return f"exit {result.exit_code}"


def int64_safe(value: Any) -> bool:
    """No integer over 64 bits and no float where the JSON text had a huge integer."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    if isinstance(value, float):
        return abs(value) < 2**53
    if isinstance(value, list):
        return all(int64_safe(v) for v in value)
    return all(int64_safe(v) for v in value.values())


def agrees(parsed: Any, value: Any) -> bool:
    """``parsed`` (a row's ``parsed`` value: typed, or JSON text where Arrow has no type) holds
    ``value``; absent optional properties are nulls."""
    if isinstance(parsed, str) and not (isinstance(value, str) and parsed == value):
        try:
            return bool(orjson.loads(parsed) == value)
        except orjson.JSONDecodeError:
            return False
    if isinstance(parsed, float) and type(value) is int:  # "number": a float64 column
        return parsed == float(value)
    if isinstance(value, dict):  # a struct holds the schema's properties, not other keys
        return isinstance(parsed, dict) and all(agrees(parsed[k], value.get(k)) for k in parsed)
    if isinstance(value, list):
        return (
            isinstance(parsed, list)
            and len(parsed) == len(value)
            and all(agrees(p, v) for p, v in zip(parsed, value, strict=True))
        )
    return (bool(parsed == value) and type(parsed) is not bool) or parsed is value


def expected_problem(wanted: Any, content: Any, finish: Any) -> tuple[str | None, Any]:
    """(output_problem, value) that join must give a succeeded answer; ``value`` is ``...``
    when the oracle cannot say (numbers over 64 bits)."""
    import jsonschema

    if finish == "content_filter":
        return "content_filter", None
    if finish == "length":
        return "truncated", None
    if wanted is None:
        return None, None
    if not isinstance(content, str):
        return "not_json", None
    try:
        value = json.loads(content)
    except ValueError:
        return "not_json", None
    if not int64_safe(value):
        return None, ...
    if wanted is True:
        return None, value
    if not jsonschema.Draft202012Validator(wanted).is_valid(value):
        return "schema_mismatch", None
    return None, value


def structured_case(gen: Gen, work: Path) -> tuple[list[str], dict[str, Any]]:
    """Requests asking for JSON (schemas shared or not, json_object, none) and answers; the
    join's arguments, and per custom_id what was asked and answered (None: no answer)."""
    r = gen.r
    shared = [gen.schema() for _ in range(r.randint(1, 2))]
    for shape in shared:
        if r.random() < 0.3 and shape.get("type") == "object":
            shape["properties"][r.choice(["status", "content", "model", "parsed", "line"])] = {
                "type": "string"
            }
    requests: list[bytes] = []
    answers: list[dict[str, Any]] = []
    case: dict[str, tuple[Any, Any]] = {}
    for i in range(r.choice([1, 2, 5, 12, 30])):
        cid = f"r{i}"
        body: dict[str, Any] = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": gen.text(10)}],
        }
        ask = r.choices(["schema", "object", "none", "broken"], weights=[80, 8, 8, 2])[0]
        schema: Any = None
        if ask == "schema":
            schema = r.choice(shared) if r.random() < 0.9 else gen.schema()
            wrapper = {"name": gen.text(5) or "n", "strict": True, "schema": schema}
            body["response_format"] = {"type": "json_schema", "json_schema": wrapper}
        elif ask == "object":
            body["response_format"] = {"type": "json_object"}
            schema = True
        elif ask == "broken":
            body["response_format"] = {"type": "json_schema", "json_schema": gen.value()}
            schema = ...
        line = {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": body}
        requests.append(gen.dumps(line).replace(b"\n", b""))
        fate = r.random()
        if fate < 0.1:
            case[cid] = (schema, None)
            continue
        if fate < 0.2:
            error = {"code": "server_error", "message": "x"}
            answers.append({"custom_id": cid, "response": None, "error": error})
            case[cid] = (schema, "failed")
            continue
        content, finish = gen.answer_text(schema if isinstance(schema, dict) else None)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        choice = {"index": 0, "message": message, "finish_reason": finish}
        usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        answer = {"id": "c", "object": "chat.completion", "model": "gpt-4o-mini",
                  "choices": [choice], "usage": usage}  # fmt: skip
        response = {"status_code": 200, "request_id": "q", "body": answer}
        answers.append({"id": f"b{i}", "custom_id": cid, "response": response, "error": None})
        case[cid] = (schema, (content, finish))
    r.shuffle(answers)
    source = work / "in.jsonl"
    source.write_bytes(b"".join(line + b"\n" for line in requests))
    results = work / "out.jsonl"
    results.write_bytes(b"".join(gen.dumps(a).replace(b"\n", b"") + b"\n" for a in answers))
    args = ["join", str(source), "-r", str(results), "--summary-format", "json"]
    if r.random() < 0.2:  # one schema for every answer
        given = r.choice(shared) if r.random() < 0.7 else gen.schema()
        schema_file = work / "schema.json"
        wrapped = r.choice(["bare", "named", "format"])
        document: Any = given
        if wrapped == "named":
            document = {"name": "s", "schema": given}
        elif wrapped == "format":
            document = {"type": "json_schema", "json_schema": {"name": "s", "schema": given}}
        schema_file.write_text(json.dumps(document))
        args += ["--schema", str(schema_file)]
        case = {cid: (given, fate) for cid, (_, fate) in case.items()}
    if r.random() < 0.2:
        args.append("--flatten")
    if r.random() < 0.2:
        args.append("--exit-on-output-problems")
    return args, case


def run_structured(gen: Gen, work: Path) -> str:
    args, case = structured_case(gen, work)
    out = work / "table.parquet"
    args += ["-o", str(out)]
    result, table = same_output(gen, args, lambda: take_table(out))
    if result.exit_code == 2:
        if not any(schema is ... for schema, _ in case.values()) and "--schema" not in args:
            raise Failure(
                f"structured join: exit 2 without a broken schema: {result.output[-300:]}"
            )
        return "exit 2"
    if table is None:
        raise Failure("structured join: no table written")
    rows = table[1]
    if [row["custom_id"] for row in rows] != list(case):
        raise Failure("structured join: rows are not the requests in input order")
    flat = "--flatten" in args
    problems = 0
    for row in rows:
        wanted, fate = case[row["custom_id"]]
        if not isinstance(fate, tuple):
            if row.get("output_problem") is not None or (
                not flat and row.get("parsed") is not None
            ):
                raise Failure(f"structured join: an answer that did not succeed has {row}")
            continue
        want, value = expected_problem(None if wanted is ... else wanted, *fate)
        got = row["output_problem"]
        problems += got is not None
        if value is ... or wanted is ...:
            continue
        if got != want:
            raise Failure(
                f"structured join: {row['custom_id']} asked {json.dumps(wanted)[:300]}, answered "
                f"{fate!r:.300}: output_problem {got!r}, expected {want!r} ({row['error_message']})"
            )
        if flat or wanted is None:
            continue
        if want is None and not agrees(row["parsed"], value):
            raise Failure(
                f"structured join: {row['custom_id']} parsed {row['parsed']!r:.300}, the answer "
                f"was {value!r:.300} (schema {json.dumps(wanted)[:300]})"
            )
        if want is not None and row["parsed"] is not None:
            raise Failure(
                f"structured join: {row['custom_id']} has {want} and parsed {row['parsed']}"
            )
    if "--exit-on-output-problems" in args and problems and result.exit_code != 1:
        raise Failure(f"--exit-on-output-problems: {problems} problems, exit {result.exit_code}")
    return f"exit {result.exit_code}"


# -- answers: rare fields, odd JSON and other servers' shapes against the slow reader

SHAPES = sorted(
    [
        *(ROOT / "tests" / "data" / "shapes").glob("*.jsonl"),
        *(ROOT / "tests" / "data" / "join").glob("*.output.jsonl"),
        *(ROOT / "tests" / "data" / "join").glob("*.errors.jsonl"),
        ROOT / "tests" / "data" / "examples" / "output_line.jsonl",
        ROOT / "tests" / "data" / "examples" / "error_lines.jsonl",
    ]
)
"""Result lines other servers write (``tests/data/README.md`` names their sources)."""
RENAMED = [
    "error",
    "output",
    "usage",
    "input_tokens",
    "output_tokens",
    "custom_id",
    "response",
    "body",
    "status_code",
    "choices",
    "text",
    "message",
    "content",
    "incomplete_details",
    "type",
    "status",
    "code",
    "prompt_tokens_details",
    "cached_tokens",
    "reasoning_tokens",
    "finish_reason",
    "refusal",
    "response_format",
    "format",
]
"""Keys the escape and duplicate mutations pick from."""


def shape_lines() -> list[dict[str, Any]]:
    lines = []
    for path in SHAPES:
        for raw in path.read_bytes().splitlines():
            with contextlib.suppress(ValueError):
                value = json.loads(raw)
                if isinstance(value, dict):
                    lines.append(value)
    return lines


def answer_body(gen: Gen, content: str | None = None) -> tuple[str, dict[str, Any]]:
    """A kind of answer and its body: chat (plain, cut off, filtered, refused, parts, with
    usage details), completions, responses (text, refusal, calls, incomplete) or embeddings."""
    r = gen.r
    text = content if content is not None else gen.text(20)
    usage: dict[str, Any] = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    kind = r.choices(
        ["chat", "chat_rare", "completions", "responses", "embeddings"], weights=[50, 15, 10, 20, 5]
    )[0]
    if kind in ("chat", "chat_rare"):
        message: dict[str, Any] = {"role": "assistant", "content": text}
        finish: str | None = "stop"
        if kind == "chat_rare":
            finish = r.choice(["stop", "length", "content_filter", "tool_calls", None])
            if r.random() < 0.3:
                message["refusal"] = gen.text(8)
            if r.random() < 0.2:
                message["content"] = [{"type": "text", "text": text}, {"type": "text", "text": "b"}]
            if r.random() < 0.4:
                usage["prompt_tokens_details"] = {"cached_tokens": r.randint(0, 3)}
                usage["completion_tokens_details"] = {"reasoning_tokens": r.randint(0, 3)}
        body: dict[str, Any] = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage,
        }
        if r.random() < 0.05:
            body["choices"].append({"index": 1, "text": "second", "finish_reason": "stop"})
        return kind, body
    if kind == "completions":
        choice = {"index": 0, "text": text, "finish_reason": r.choice(["stop", "length"])}
        return kind, {
            "object": "text_completion",
            "model": "m",
            "choices": [choice],
            "usage": usage,
        }
    if kind == "embeddings":
        data = [{"object": "embedding", "index": 0, "embedding": [0.5, -1.25, 3.0]}]
        return kind, {"object": "list", "model": "e", "data": data, "usage": usage}
    parts: list[Any] = [{"type": "output_text", "text": text, "annotations": []}]
    if r.random() < 0.2:
        parts.append({"type": "refusal", "refusal": gen.text(6)})
    output: list[Any] = [{"type": "message", "role": "assistant", "content": parts}]
    if r.random() < 0.2:
        output.insert(0, {"type": "reasoning", "summary": []})
    if r.random() < 0.15:
        output.append({"type": "function_call", "name": "f", "arguments": "{}", "call_id": "c"})
    if r.random() < 0.1:
        output = []
    status = r.choice(["completed", "completed", "incomplete", "failed", None])
    details = {"reason": "max_output_tokens"} if status == "incomplete" else None
    tokens: dict[str, Any] = {"input_tokens": 5, "output_tokens": 6, "total_tokens": 11}
    if r.random() < 0.5:
        tokens["input_tokens_details"] = {"cached_tokens": r.randint(0, 5)}
        tokens["output_tokens_details"] = {"reasoning_tokens": r.randint(0, 5)}
    body = {"object": "response", "status": status, "incomplete_details": details,
            "model": "gpt-5-mini", "output": output, "usage": tokens}  # fmt: skip
    return kind, body


def nulled(gen: Gen, value: Any) -> Any:
    """``value`` with some of its fields (at any depth) made null."""
    r = gen.r
    if isinstance(value, dict):
        return {k: None if r.random() < 0.25 else nulled(gen, v) for k, v in value.items()}
    if isinstance(value, list):
        return [nulled(gen, v) for v in value]
    return value


def answer_line(gen: Gen, cid: str, shapes: list[dict[str, Any]], rare: bool) -> bytes:
    """A result line for ``cid``: usually a plain chat answer; ``rare``: a line holding the
    fields a range's lines seldom hold (errors of every shape, responses, completions,
    details), another server's line, nulls, odd numbers, escaped or repeated keys."""
    r = gen.r
    body = answer_body(gen)[1]
    if not rare:
        body = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": gen.text(20)},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        }
    line: dict[str, Any] = {
        "id": "batch_req_1",
        "custom_id": cid,
        "response": {"status_code": 200, "request_id": "req_1", "body": body},
        "error": None,
    }
    if rare:
        how = r.choices(
            ["answer", "error", "body_error", "shape", "nulls"], weights=[40, 20, 15, 15, 10]
        )[0]
        if how == "error":
            error: Any = r.choice(
                [
                    {"code": "batch_expired", "message": "late"},
                    {"type": "request_failed", "message": "no"},
                    {"code": None, "type": "t", "message": None},
                    {"error": {"message": "inner", "type": "BadRequestError", "code": 400}},
                    {"error": {"message": "inner"}, "code": "outer"},
                    {"error": None, "code": "c"},
                    {},
                    gen.text(10),
                ]
            )
            line["error"] = error
            line["response"] = r.choice([None, {"status_code": 400, "body": None}])
        elif how == "body_error":
            line["response"]["status_code"] = r.choice([400, 404, 429, 500, 200])
            line["response"]["body"] = {
                "error": r.choice(
                    [
                        {"message": "bad", "type": "invalid_request_error", "code": None},
                        {"message": "bad", "type": None, "code": "invalid_value"},
                        {"type": "server_error"},
                        {},
                    ]
                )
            }
        elif how == "shape":
            line = json.loads(json.dumps(r.choice(shapes)))
            line["custom_id"] = cid
        elif how == "nulls":
            line = nulled(gen, line)
            line["custom_id"] = cid
    raw = gen.dumps(line).replace(b"\n", b"")
    if rare and r.random() < 0.5:
        raw = mutate(gen, raw)
    return raw


def mutate(gen: Gen, raw: bytes) -> bytes:
    """The line's text changed: a key escaped, a key given twice, a number replaced by NaN,
    Infinity, a huge integer or a float."""
    r = gen.r
    how = r.choice(["escape", "twice", "constant", "huge", "float", "string"])
    keys = [k for k in RENAMED if f'"{k}":'.encode() in raw or f'"{k}": '.encode() in raw]
    if how in ("escape", "twice") and keys:
        key = r.choice(keys)
        found = [m.start() for m in re.finditer(re.escape(f'"{key}"').encode(), raw)]
        at = r.choice(found)
        if how == "escape":
            i = r.randrange(len(key))
            escaped = f'"{key[:i]}\\u{ord(key[i]):04{r.choice("xX")}}{key[i + 1 :]}"'
            return raw[:at] + escaped.encode() + raw[at + len(key) + 2 :]
        value = gen.dumps(r.choice([None, 1, "x", {"code": "dup"}, [], {}, gen.scalar()]))
        return raw[:at] + f'"{key}": '.encode() + value + b", " + raw[at:]
    numbers = list(re.finditer(rb"(?<=[:\[,] )(-?\d+)(?=[,}\]])|(?<=[:\[,])(-?\d+)(?=[,}\]])", raw))
    if not numbers:
        return raw
    m = r.choice(numbers)
    new = {
        "constant": lambda: r.choice([b"NaN", b"Infinity", b"-Infinity", b"Inf", b"-Inf"]),
        "huge": lambda: str(
            r.choice([2**63, 2**63 - 1, -(2**63), -(2**63) - 1, 2**64, 10**30])
        ).encode(),
        "float": lambda: r.choice([b"1.0", b"1e2", b"-0.0", b"1e999", b"0.5"]),
        "string": lambda: b'"NaN"',
    }[how]()
    return raw[: m.start()] + new + raw[m.end() :]


def answers_case(gen: Gen, work: Path) -> tuple[list[Path], list[Path], bool]:
    """Requests (some asking for JSON, under odd keys too) and result files whose rare lines
    are often the last of the file; returns the inputs, the results and whether any request
    asked for structured output."""
    r = gen.r
    n = r.choice([1, 3, 8, 20, 40])
    ids = [f"r{i}" for i in range(n)]
    requests, structured = [], False
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    for cid in ids:
        body: dict[str, Any] = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": [{"type": "text", "text": gen.text(8)}]}],
        }
        if r.random() < 0.25:
            structured = True
            fmt = r.choice(
                [
                    {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
                    {"type": "json_object"},
                    {"type": "text"},
                ]
            )
            where = r.choice(["chat", "responses", "top", "metadata"])
            if where == "chat":
                body["response_format"] = fmt
            elif where == "responses":
                inner: dict[str, Any] = dict(fmt)  # type: ignore[call-overload]
                if "json_schema" in inner:
                    inner.update(inner.pop("json_schema"))
                body["text"] = {"format": inner}
            elif where == "metadata":
                body["metadata"] = {"response_format": fmt}
        line = {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": body}
        if r.random() < 0.1:
            line["response_format"] = {"type": "json_object"}  # not in the body
        raw = gen.dumps(line).replace(b"\n", b"")
        if r.random() < 0.1:
            raw = mutate(gen, raw)
        requests.append(raw)
    source = work / "in.jsonl"
    source.write_bytes(b"\n".join(requests) + b"\n")
    shapes = shape_lines()
    answered = [*ids, *(f"x{i}" for i in range(r.randint(0, 2)))]  # and orphans
    answered += r.sample(ids, min(len(ids), r.randint(0, 2)))  # and duplicates
    r.shuffle(answered)
    answered = answered[: len(answered) - r.randint(0, 2)]  # and missing
    rare_share = r.choice([0.0, 0.05, 0.3])
    lines = []
    for cid in answered:
        content = None
        if structured and r.random() < 0.5:
            content = r.choice(['{"a": 1}', '{"a": "x"}', "not json", '{"a": 1e400}'])
        raw = answer_line(gen, cid, shapes, r.random() < rare_share)
        text = b'"type": "output_text", "text": '  # a responses answer's text
        if content is not None and text in raw:
            raw = raw.replace(text, text + gen.dumps(content) + b', "x": ', 1)
        elif content is not None and b'"content": ' in raw:
            raw = raw.replace(b'"content": ', b'"content": ' + gen.dumps(content) + b', "x": ', 1)
        lines.append(raw)
    if lines and r.random() < 0.7:  # the rare line last: of the file, or of its first range
        lines[-1] = answer_line(gen, answered[-1], shapes, True)
    if lines and r.random() < 0.2:
        lines.append(gen.line(r.choice(["null", "garbage", "blank", "value"])))
    files = [lines]
    if len(lines) > 2 and r.random() < 0.4:
        cut = r.randint(1, len(lines) - 1)
        files = [lines[:cut], lines[cut:]]
    results = []
    for number, part in enumerate(files):
        path = work / f"out{number}.jsonl"
        end = b"\n" if r.random() < 0.85 else b""
        path.write_bytes(b"\n".join(part) + end)
        results.append(path)
    return [source], results, structured


ODD_IDS = ["", "a", "ab", "a\x00", "\x7f", "\x80", "é", "\ue000", "\uffff", "\U0001f600", " ", "A"]
"""Pieces of custom_ids that sort oddly: empty, prefixes of each other, a NUL, and code points
whose UTF-8 bytes sort otherwise than they (U+E000..U+FFFF against U+10000 and above)."""


def odd_id(gen: Gen, number: int) -> str:
    """A unique custom_id (``number``), often of odd pieces, now and then very long."""
    r = gen.r
    kind = r.random()
    if kind < 0.4:
        head = "".join(r.choice(ODD_IDS) for _ in range(r.randint(0, 3)))
        return head + ("" if number == 0 else chr(0x20 + number % 90) + str(number))
    if kind < 0.45:
        return "k" * r.randint(300, 3000) + str(number)
    return f"req-{number:0{r.randint(1, 6)}d}"


def long_line(gen: Gen, line: bytes) -> bytes:
    """``line`` (an object) made 2,050 bytes or longer with a field of padding, brackets in a
    string or nesting near orjson's limit (1,024 levels) on either side."""
    r = gen.r
    depth = r.choice([1, 1000, 1023, 1024, 1025, 1100])
    extra = r.choice(
        [
            b'"x" * 3000',
            b'"' + b"[{" * r.randint(500, 700) + b'"',
            b"[" * depth + b"]" * depth + b', "pad": "' + b"x" * 2100 + b'"',
            b'"' + "é\\n".encode() * 1100 + b'"',
        ]
    )
    if extra == b'"x" * 3000':
        extra = b'"' + b"x" * r.randint(2050, 5000) + b'"'
    if not line.endswith(b"}"):
        return line
    return line[:-1] + b', "long": ' + extra + b"}"


def matching_case(gen: Gen, work: Path) -> tuple[list[Path], list[Path], bool]:
    """Requests in several files (some with 0 or 1 request), custom_ids that sort oddly, and
    many result files whose custom_ids are one input's stretch, spread over every input,
    interleaved, mostly orphans or repeated (within a file and across files), a file answering
    nothing: how ``results.matching`` places them (``tiny_sizes`` shrinks ``PLACE_ROWS``)."""
    r = gen.r
    ids = list(dict.fromkeys(odd_id(gen, i) for i in range(r.choice([0, 1, 2, 5, 30, 120]))))
    inputs, at = [], 0
    for number in range(r.randint(1, 4)):
        left = len(ids) - at
        count = min(left, r.choice([0, 1, r.randint(0, left)])) if number < 3 else left
        part = ids[at : at + count]
        at += count
        path = work / f"in{number}.jsonl"
        lines = [
            gen.dumps(
                {
                    "custom_id": cid,
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {"model": "gpt-4o-mini", "messages": []},
                }
            )
            for cid in part
        ]
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        inputs.append(path)
    if at < len(ids):
        ids = ids[:at]
    shapes = shape_lines()
    results = []
    for number in range(r.choice([1, 2, 3, 8])):
        how = r.choice(["stretch", "spread", "interleaved", "orphans", "repeated", "nothing"])
        size = r.choice([0, 1, 3, 20, 60])
        if not ids or how == "nothing":
            answered = [f"orphan-{number}-{i}" for i in range(size)]
        elif how == "stretch":
            start = r.randrange(len(ids))
            answered = ids[start : start + size]
            r.shuffle(answered)
        elif how == "spread":
            answered = r.sample(ids, min(size, len(ids)))
        elif how == "interleaved":
            answered = [ids[i] for i in range(number % 2, len(ids), 2)][:size]
        elif how == "orphans":
            answered = [
                r.choice(ids) if r.random() < 0.1 else r.choice(ids) + r.choice(ODD_IDS[1:])
                for _ in range(size)
            ]
        else:
            answered = [r.choice(ids[:3]) for _ in range(size)]
        lines = [answer_line(gen, cid, shapes, r.random() < 0.05) for cid in answered]
        if r.random() < 0.3:  # long lines, most of the file: their brackets counted at once
            lines = [long_line(gen, line) for line in lines]
        path = work / f"out{number}.jsonl"
        path.write_bytes(b"\n".join(lines) + (b"\n" if r.random() < 0.85 else b""))
        results.append(path)
    return inputs, results, False


def join_outcome(run: Callable[[], Any], legacy: bool = False) -> Any:
    """What a join gave (schema, rows, summary; for ``legacy``, without what the streaming
    join added), or its error, as text comparable across runs (NaN equal to NaN, the cost
    totals to 4 digits)."""
    from jsonl_batch.errors import JsonlBatchError

    try:
        result = run()
    except JsonlBatchError as exc:
        return f"error {type(exc).__name__}: {exc}"
    table, summary = result.table, result.summary.to_dict()
    cost = summary.get("cost")
    if isinstance(cost, dict):  # a float sum by blocks, rounded: its last digit may differ
        for name in ("total", "per_1000_requests"):
            if isinstance(cost.get(name), float):
                cost[name] = f"{cost[name]:.4g}"
    if legacy:
        import legacy_join

        table = table.drop_columns(list(legacy_join.ADDED_COLUMNS))
        summary = {k: v for k, v in summary.items() if k not in legacy_join.ADDED_SUMMARY}
    return str(table.schema), repr(table.to_pylist()), repr(summary)


@contextlib.contextmanager
def slow_readers() -> Iterator[None]:
    """The join with every range read line by line (``readers.extract`` on orjson's parse)."""
    from jsonl_batch.results import index

    saved = index.fast_answers, index.fast_ids
    index.fast_answers = lambda data: None  # type: ignore[assignment]
    index.fast_ids = lambda data, formats=False: None  # type: ignore[assignment]
    try:
        yield
    finally:
        index.fast_answers, index.fast_ids = saved


def forget_rare_fields(gen: Gen) -> None:
    """Now and then, the lean schema's memory of rare fields cleared (as a fresh worker)."""
    from jsonl_batch.results import readers

    if gen.r.random() < 0.5:
        readers._PROJECTION.kept.clear()


def run_answers(gen: Gen, work: Path, case: Case | None = None) -> str:
    """Join the case (``answers_case``, or ``case``) as shipped, with tiny engines, with the
    line-by-line readers and (no structured output asked) with the whole-table join of
    ``tests/legacy_join.py``: the same table, summary and anomalies; the Parquet file written
    is the table."""
    import jsonl_batch
    from jsonl_batch.results.join import join

    r = gen.r
    inputs, results, structured = (case or answers_case)(gen, work)
    options: dict[str, Any] = {"max_anomalies": r.choice([None, 1, 100])}
    for option in ("include_bodies", "include_tool_calls", "include_embeddings"):
        options[option] = r.random() < 0.15
    estimate = r.random() < 0.1  # the reported prompt tokens against stats' counting

    def run() -> Any:
        return join(inputs, results, **options, estimate_tokens=estimate)

    forget_rare_fields(gen)
    shipped = join_outcome(run)
    forget_rare_fields(gen)
    with engine(tiny_sizes(r)):
        tiny = join_outcome(run)
    with slow_readers():
        slow = join_outcome(run)
    for name, got in (("tiny engines", tiny), ("line-by-line readers", slow)):
        if got != shipped:
            raise Failure(
                f"answers: the join with {name} differs:\n"
                + first_difference(repr(shipped), repr(got))
            )
    if not structured:
        sys.path.insert(0, str(ROOT / "tests"))
        import legacy_join

        old = join_outcome(lambda: legacy_join.join(inputs, results, **options), legacy=True)
        new = join_outcome(run, legacy=True)
        if old != new:
            raise Failure(
                "answers: the whole-table join (legacy_join) differs:\n"
                + first_difference(repr(old), repr(new))
            )
    if isinstance(shipped, str):
        return shipped.split(":")[0]
    if r.random() < 0.3:
        import pyarrow.parquet as pq

        out = work / "t.parquet"
        forget_rare_fields(gen)
        jsonl_batch.join_to(inputs, results, out, **options)
        written = pq.read_table(out)
        table = run().table
        if written.to_pylist() != table.to_pylist() or written.schema.types != table.schema.types:
            raise Failure("answers: the Parquet file written is not the joined table")
    return "joined" + (", structured" if structured else "")


PARQUET_TYPES = {
    "string": lambda gen: gen.r.choice(["a", "é", "", "failed"]) if gen.r.random() < 0.5
    else gen.text(30) if gen.r.random() < 0.999 else "x" * gen.r.randint(10**5, 1_200_000),
    "int64": lambda gen: gen.r.randint(-(2**63), 2**63 - 1),
    "float64": lambda gen: gen.r.random(),
    "bool": lambda gen: gen.r.random() < 0.5,
    "list": lambda gen: [gen.r.random() for _ in range(gen.r.randint(0, 4))],
    "struct": lambda gen: {"n": gen.r.randint(0, 9), "s": gen.r.choice(["a", None, "bc"])},
    "dictionary": lambda gen: gen.r.choice(["one", "two", "three"]),
}  # fmt: skip
"""A value of each column type the stitched Parquet campaign draws (strings of a few bytes
to over a megabyte: several pages, a dictionary given up for plain encoding)."""


def parquet_type(kind: str) -> Any:
    import pyarrow as pa

    return {
        "string": pa.string(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "list": pa.list_(pa.float32()),
        "struct": pa.struct([("n", pa.int64()), ("s", pa.string())]),
        "dictionary": pa.dictionary(pa.int32(), pa.string()),
    }[kind]


def run_parquet(gen: Gen, work: Path) -> str:
    """Row groups of a random table (0 to 40 of them, empty ones, nulls, dictionaries, big
    strings) stitched by ``outputs.parquet_parts`` are the bytes one writer makes of them."""
    import pyarrow as pa

    from jsonl_batch.outputs.parquet_parts import StitchedWriter
    from jsonl_batch.results.tables import SUMMARY_KEY, parquet_writer

    r = gen.r
    kinds = [r.choice(list(PARQUET_TYPES)) for _ in range(r.randint(1, 20))]
    schema = pa.schema([(f"c{i}", parquet_type(k)) for i, k in enumerate(kinds)])
    parts = []
    for _ in range(r.choice([0, 1, 2, 5, 14, 15, 16, 40])):
        rows = r.choice([0, 0, 1, 3, 100, 2_000]) if r.random() < 0.97 else 25_000
        nulls = [r.choice([0.0, 0.1, 1.0]) for _ in kinds]
        columns = [
            pa.array([None if r.random() < z else PARQUET_TYPES[k](gen) for _ in range(rows)],
                     parquet_type(k) if k != "dictionary" else pa.string())
            for k, z in zip(kinds, nulls, strict=True)
        ]  # fmt: skip
        columns = [
            c.dictionary_encode() if k == "dictionary" else c
            for c, k in zip(columns, kinds, strict=True)
        ]
        parts.append(pa.Table.from_arrays(columns, schema=schema))
    summary = r.choice([None, b"{}", orjson.dumps({"rows": r.randint(0, 10**6)})])
    outputs = []
    for make in (StitchedWriter, None):
        out = io.BytesIO()
        writer: Any = make(out, schema, parquet_writer) if make else parquet_writer(out, schema)
        for part in parts:
            if make:
                writer.write_table(part)
            else:
                writer.write_table(part, row_group_size=max(1, part.num_rows))
        if summary is not None:
            writer.add_key_value_metadata({SUMMARY_KEY: summary})
        writer.close()
        outputs.append(out.getvalue())
    if outputs[0] != outputs[1]:
        pairs = enumerate(zip(*outputs, strict=False))
        at = next((i for i, (a, b) in pairs if a != b), min(map(len, outputs)))
        raise Failure(
            f"stitched Parquet ({len(parts)} row groups of {[p.num_rows for p in parts]}) "
            f"is not one writer's bytes: {len(outputs[0])} against {len(outputs[1])} bytes, "
            f"first difference at byte {at}"
        )
    return f"stitched {min(len(parts), 16)}{'+' if len(parts) > 16 else ''} row groups"


def run_matching(gen: Gen, work: Path) -> str:
    """``run_answers`` on ``matching_case``: results placed on requests they answer oddly."""
    return run_answers(gen, work, matching_case)


Case = Callable[[Gen, Path], tuple[list[Path], list[Path], bool]]

RUNNERS: dict[str, Callable[[Gen, Path], str]] = {
    "validate": run_validate,
    "split": run_split,
    "build": run_build,
    "join": run_join,
    "retry": run_retry,
    "stats": run_stats,
    "structured": run_structured,
    "answers": run_answers,
    "matching": run_matching,
    "parquet": run_parquet,
}

# ---------------------------------------------------------------- crash-isolated runs


@dataclass
class Tally:
    runs: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)


def case_rng(seed: int, command: str, index: int) -> random.Random:
    return random.Random(f"{seed}:{command}:{index}")


def run_case(seed: int, command: str, index: int, work: Path) -> tuple[str | None, str]:
    """One case in this process: (failure or None, outcome)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        return None, RUNNERS[command](Gen(case_rng(seed, command, index)), work)
    except Failure as exc:
        return str(exc), "failed"
    except Exception as exc:  # in the harness itself: say so
        trace = "".join(traceback.format_exception(exc))[-1500:]
        return f"harness error {type(exc).__name__}: {exc}\n{trace}", "failed"


def run_many(
    seed: int,
    command: str,
    indices: list[int],
    keep: Path,
    tally: Tally,
    log: Callable[[str], None],
) -> None:
    """Run cases in forked workers; a worker that dies is a crash of the case it was on, and
    a case still running after ``HANG`` seconds has its threads' stacks dumped and is ended."""
    todo = list(indices)
    while todo:
        read_fd, write_fd = os.pipe()
        stacks = tempfile.NamedTemporaryFile(prefix="fuzz-stacks-", delete=False)  # noqa: SIM115
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(read_fd)
            out = os.fdopen(write_fd, "w", buffering=1)
            with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
                for index in todo:
                    out.write(f"B {index}\n")
                    faulthandler.dump_traceback_later(HANG, exit=True, file=stacks)
                    failure, outcome = run_case(seed, command, index, Path(tmp) / "w")
                    faulthandler.cancel_dump_traceback_later()
                    out.write("E " + json.dumps([index, failure, outcome]) + "\n")
            out.close()
            os._exit(0)
        stacks.close()
        os.close(write_fd)
        current = None
        with os.fdopen(read_fd) as stream:
            for message in stream:
                if message.startswith("B "):
                    current = int(message[2:])
                    continue
                index, failure, outcome = json.loads(message[2:])
                current = None
                tally.runs[command] += 1
                tally.outcomes[f"{command}: {outcome.split(',')[0]}"] += 1
                todo.remove(index)
                if failure:
                    record(seed, command, index, failure, keep, tally, log)
        _, status = os.waitpid(pid, 0)
        if current is not None:
            tally.runs[command] += 1
            how = (
                f"signal {os.WTERMSIG(status)}"
                if os.WIFSIGNALED(status)
                else f"exit {os.WEXITSTATUS(status)}"
            )
            dumped = Path(stacks.name).read_text(errors="replace")
            if dumped:
                how = f"still running after {HANG:.0f} s; its stacks:\n{dumped[-4000:]}"
            record(seed, command, current, f"the process died ({how})", keep, tally, log)
            todo.remove(current)
        elif todo:
            raise RuntimeError(f"worker stopped early ({status})")
        os.unlink(stacks.name)


def record(
    seed: int,
    command: str,
    index: int,
    failure: str,
    keep: Path,
    tally: Tally,
    log: Callable[[str], None],
) -> None:
    name = f"{command}#{index}"
    tally.failures.append((name, failure))
    folder = keep / f"seed{seed}-{command}-{index}"
    shutil.rmtree(folder, ignore_errors=True)
    pid = os.fork()  # the input again, beside the report (in a child: it may crash or hang)
    if pid == 0:
        faulthandler.dump_traceback_later(HANG, exit=True, file=open(os.devnull, "w"))  # noqa: SIM115
        try:
            run_case(seed, command, index, folder)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "failure.txt").write_text(f"{name} (seed {seed})\n{failure}\n")
    log(f"FAIL {name}: {failure.splitlines()[0][:300]}  (input kept in {folder})")


# ---------------------------------------------------------------- kills


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "jsonl_batch", *args]


def environment() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }


def interpreter_start(err: bytes) -> bool:
    """A traceback of Python's own start-up, before jsonl_batch could set its handler."""
    if b"init_import_site" in err or b"Could not import runpy" in err:
        return True
    files = re.findall(rb'File "([^"]+)"', err)
    ours = [f for f in files if not f.startswith(b"<frozen")]
    return err.startswith(b"Traceback") and all(f.endswith(b"__main__.py") for f in ours)


def snapshot(folder: Path) -> dict[str, str]:
    """Each file under ``folder`` (its path in the folder) -> a digest of its content: of its
    bytes, or of its rows for a Parquet file (whose bytes a rerun need not repeat); temporary
    files left out."""
    found = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if not path.is_file() or any(part.startswith(TEMP_PREFIX) for part in Path(name).parts):
            continue
        content = path.read_bytes()
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            try:
                table = pq.read_table(path)
            except Exception as exc:
                raise Failure(f"{name} is not a whole Parquet file: {exc}") from None
            content = repr((str(table.schema), table.to_pylist())).encode()
        found[name] = hashlib.sha256(content).hexdigest()
    return found


def temporary_files(folder: Path) -> list[str]:
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.name.startswith(TEMP_PREFIX) and p.name != LOCK_NAME
    )


@dataclass
class KillCase:
    """An output folder with an old set, the command that writes a new set into it."""

    folder: Path
    old: list[str]
    new: list[str]
    manifest: str | None = None


def big_batch(rng: random.Random, lines: int, invalid: float = 0.0) -> bytes:
    out = []
    for i in range(lines):
        if rng.random() < invalid:
            out.append(b"null\n")
            continue
        body = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"question {i} " * rng.randint(1, 20)}],
        }
        out.append(
            orjson.dumps(
                {
                    "custom_id": f"r{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": body,
                }
            )
            + b"\n"
        )
    return b"".join(out)


def big_results(rng: random.Random, lines: int) -> bytes:
    out = []
    for i in range(lines):
        if rng.random() < 0.1:
            continue
        if rng.random() < 0.8:
            body = {
                "id": "c",
                "object": "chat.completion",
                "model": "gpt-4o-mini",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"answer {i}"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
            }
            line = {
                "id": f"b{i}",
                "custom_id": f"r{i}",
                "response": {"status_code": 200, "request_id": "q", "body": body},
                "error": None,
            }
        else:
            line = {
                "id": f"b{i}",
                "custom_id": f"r{i}",
                "response": None,
                "error": {"code": "server_error", "message": "x"},
            }
        out.append(orjson.dumps(line) + b"\n")
    return b"".join(out)


HANG = 120.0
"""Seconds after which a run (or an interrupted run) counts as hung."""
KILL_LINES = (20_000, 40_000, 80_000)
"""Sizes of the inputs that kills interrupt (big enough to take a second or so)."""


def kill_setup(
    command: str, rng: random.Random, work: Path, sizes: tuple[int, ...] = KILL_LINES
) -> KillCase:
    lines = rng.choice(sizes)
    source = work / "in.jsonl"
    source.write_bytes(big_batch(rng, lines, invalid=0.01 if command == "split" else 0))
    out = work / "out"
    out.mkdir()
    if command == "split":
        base = ["split", str(source), "-o", str(out), "--skip-invalid", "--force"]
        return KillCase(
            out,
            [*base, "--max-requests", str(lines // 7)],
            [*base, "--max-requests", str(lines // rng.choice([50, 200, 400]))],
            "in.manifest.json",
        )
    if command == "build":
        rows = work / "rows.csv"
        with rows.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "prompt"])
            writer.writerows([f"q{i}", f"question {i} " * rng.randint(1, 10)] for i in range(lines))
        base = ["build", str(rows), "--prompt-column", "prompt", "--id-column", "id", "--force"]
        if rng.random() < 0.5:
            target = str(out / "batch.jsonl")
            return KillCase(
                out,
                [*base, "-o", target, "--model", "gpt-4o-mini"],
                [*base, "-o", target, "--model", "gpt-4o"],
            )
        target = str(out / "batch.jsonl")
        return KillCase(
            out,
            [*base, "-o", target, "--model", "gpt-4o-mini", "--max-requests", str(lines // 3)],
            [*base, "-o", target, "--model", "gpt-4o", "--max-requests", str(lines // 40)],
            "batch.manifest.json",
        )
    results = work / "results.jsonl"
    results.write_bytes(big_results(rng, lines))
    other = work / "results2.jsonl"
    other.write_bytes(big_results(rng, lines // 2))
    if command in ("join", "partition"):
        if command == "join":
            kind = rng.choice(["csv", "jsonl", "parquet", "parquet"])  # stitched: half
            target = str(out / f"table.{kind}")
            base = ["join", str(source), "-o", target, "--force"]
        else:  # a folder of Parquet files
            by = "status" if rng.random() < 0.7 else "input_file"
            base = ["join", str(source), "-o", str(out / "table"), "--partition-by", by, "--force"]
        return KillCase(out, [*base, "-r", str(other)], [*base, "-r", str(results)])
    target = str(out / "retry.jsonl")
    base = ["retry", str(source), "-o", target, "--force", "--max-requests", str(lines)]
    return KillCase(out, [*base, "-r", str(results)], [*base, "-r", str(other)])


def check_set(
    case: KillCase, state: dict[str, str], old: dict[str, str], new: dict[str, str]
) -> str:
    """'old', 'new' or 'new (parquet)' if ``state`` is one of them, whole; else Failure."""
    if state == old:
        return "old"
    if state == new:
        return "new"
    if case.manifest and case.manifest in state:
        manifest = orjson.loads((case.folder / case.manifest).read_bytes())
        listed = {p["path"]: p["sha256"] for p in manifest["parts"]}
        if manifest.get("rejected"):
            listed[manifest["rejected"]["path"]] = manifest["rejected"]["sha256"]
        for name, digest in listed.items():
            if state.get(name) != digest:
                raise Failure(f"manifest names {name} with another sha256 (or it is missing)")
        stray = set(state) - set(listed) - {case.manifest}
        if stray:
            raise Failure(f"files of another set beside the manifest: {sorted(stray)[:5]}")
    raise Failure(f"the folder is neither the old nor the new set: {sorted(state)[:8]}")


def run_kill(
    seed: int,
    command: str,
    index: int,
    keep: Path,
    tally: Tally,
    log: Callable[[str], None],
    sizes: tuple[int, ...] = KILL_LINES,
) -> None:
    rng = random.Random(f"{seed}:kill:{command}:{index}")
    name = f"kill-{command}#{index}"
    with tempfile.TemporaryDirectory(prefix="fuzz-kill-") as tmp:
        work = Path(tmp)
        try:
            case = kill_setup(command, rng, work, sizes)
            env = environment()
            scratch = work / "tmp"  # the commands' temporary folders (join's spill files)
            scratch.mkdir()
            env["TMPDIR"] = str(scratch)

            def complete(args: list[str]) -> float:
                started = time.monotonic()
                try:
                    done = subprocess.run(cli(*args), env=env, capture_output=True, timeout=HANG)
                except subprocess.TimeoutExpired:
                    raise Failure(
                        f"{' '.join(args[:2])}: still running after {HANG:.0f} s"
                    ) from None
                if done.returncode not in (0, 1) or b"Traceback" in done.stderr:
                    raise Failure(
                        f"{' '.join(args[:2])}: exit {done.returncode}: {done.stderr[-500:]!r}"
                    )
                return time.monotonic() - started

            # the new set, made once elsewhere to compare with
            ref = work / "ref"
            shutil.copytree(case.folder, ref)
            ref_args = [a.replace(str(case.folder), str(ref)) for a in case.new]
            took = complete(ref_args)
            new = snapshot(ref)
            complete(case.old)
            old = snapshot(case.folder)
            how = rng.choice([signal.SIGINT, signal.SIGKILL])
            delay = rng.uniform(0, took * 1.1)
            if command == "split" and rng.random() < 0.5:  # late: while the parts are copied
                delay = took * rng.uniform(0.75, 1.0)
            process = subprocess.Popen(
                cli(*case.new),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # a group, as a terminal's Ctrl-C reaches
            )
            try:
                process.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, how)
            try:
                _, err = process.communicate(timeout=HANG)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
                raise Failure(
                    f"{signal.Signals(how).name}: still running {HANG:.0f} s later"
                ) from None
            code = process.returncode
            if how == signal.SIGINT and code not in (0, 1) and not interpreter_start(err):
                if code == 130 and err != b"Interrupted.\n":
                    raise Failure(f"SIGINT: exit 130 but stderr {err[-600:]!r}")
                if code not in (130, -signal.SIGINT):
                    raise Failure(f"SIGINT: exit {code}, stderr {err[-600:]!r}")
            if b"internal error" in err or (b"Traceback" in err and not interpreter_start(err)):
                raise Failure(f"traceback or internal error: {err[-600:]!r}")
            state = snapshot(case.folder)
            outcome = check_set(case, state, old, new)
            left = sorted(p.name for p in scratch.iterdir())
            if left and how == signal.SIGINT:
                raise Failure(f"SIGINT: temporary files left in TMPDIR: {left[:5]}")
            shutil.rmtree(scratch)  # what a SIGKILL leaves there: no process can remove it
            scratch.mkdir()
            # the next run finishes what the killed one left, and leaves no temporary file
            complete(case.new)
            leftovers = temporary_files(case.folder) + [p.name for p in scratch.iterdir()]
            if leftovers:
                raise Failure(f"temporary files after the next run: {leftovers}")
            if check_set(case, snapshot(case.folder), old, new) != "new":
                raise Failure("the next run did not leave the new set")
            signame = "SIGINT" if how == signal.SIGINT else "SIGKILL"
            tally.outcomes[f"kill {command}: {signame} -> {outcome} set"] += 1
        except Failure as exc:
            tally.failures.append((name, str(exc)))
            folder = keep / f"seed{seed}-{name.replace('#', '-')}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "failure.txt").write_text(f"{name} (seed {seed})\n{exc}\n")
            log(f"FAIL {name}: {str(exc)[:300]}")
        tally.runs[f"kill {command}"] += 1


# ---------------------------------------------------------------- campaign


def campaign(
    seed: int,
    count: int,
    kills: int,
    commands: tuple[str, ...] = COMMANDS,
    keep: Path = Path("fuzz-failures"),
    log: Callable[[str], None] = print,
    only: str | None = None,
    kill_lines: tuple[int, ...] = KILL_LINES,
) -> Tally:
    """Run the campaign; returns the tally (runs, outcomes, failures)."""
    tally = Tally()
    if only is not None:
        command, _, number = only.partition("#")
        if command.startswith("kill-"):
            run_kill(seed, command[5:], int(number), keep, tally, log)
        else:
            run_many(seed, command, [int(number)], keep, tally, log)
        return tally
    for command in commands:
        if command not in RUNNERS:
            continue
        n = count * 20 if command == "validate" else count
        started = time.monotonic()
        for start in range(0, n, 1000):
            run_many(seed, command, list(range(start, min(n, start + 1000))), keep, tally, log)
        failed = sum(1 for f in tally.failures if f[0].startswith(command + "#"))
        took = time.monotonic() - started
        log(f"{command}: {tally.runs[command]:,} inputs in {took:.0f} s, {failed} failures")
    for command in KILLED:
        if command not in commands and not (command == "partition" and "join" in commands):
            continue
        started = time.monotonic()
        for index in range(kills):
            run_kill(seed, command, index, keep, tally, log, kill_lines)
        if kills:
            log(f"kill {command}: {kills} kills in {time.monotonic() - started:.0f} s")
    return tally


def report(tally: Tally) -> str:
    out = ["runs:"]
    out += [f"  {name}: {n:,}" for name, n in tally.runs.items()]
    out.append("outcomes:")
    out += [f"  {name}: {n:,}" for name, n in sorted(tally.outcomes.items())]
    out.append(f"failures: {len(tally.failures)}")
    kinds = Counter(
        (name.split("#")[0], failure.splitlines()[0][:120]) for name, failure in tally.failures
    )
    out += [f"  {n:,} x {command}: {what}" for (command, what), n in kinds.most_common()]
    return "\n".join(out)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="Random seed (default: random, printed)."
    )
    parser.add_argument(
        "--count", type=int, default=100, help="Inputs per command (validate: 20 times as many)."
    )
    parser.add_argument(
        "--kills", type=int, default=2, help=f"Kills per command ({', '.join(KILLED)})."
    )
    parser.add_argument(
        "--commands",
        default=",".join(COMMANDS),
        help="Commands to fuzz (comma-separated; join also kills its partitioned folder).",
    )
    parser.add_argument(
        "--keep", type=Path, default=Path("fuzz-failures"), help="Where failing inputs are kept."
    )
    parser.add_argument(
        "--only", default=None, help="Re-run one case, e.g. split#17 or kill-join#3."
    )
    return parser.parse_args(argv)


def cli_main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    print(f"seed {seed}", flush=True)
    commands = tuple(c for c in args.commands.split(",") if c)
    started = time.monotonic()
    tally = campaign(
        seed, args.count, args.kills, commands, args.keep, lambda m: print(m, flush=True), args.only
    )
    print(report(tally))
    print(f"took {time.monotonic() - started:.0f} s")
    return 1 if tally.failures else 0


if __name__ == "__main__":
    sys.exit(cli_main())
