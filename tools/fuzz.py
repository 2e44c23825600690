"""Fuzz and fault campaign: random inputs through validate, split, build, join and retry, and
kills (SIGINT, SIGKILL) of those commands at random moments.

    python tools/fuzz.py --seed 1 --count 200 --kills 5

Inputs: ``--count`` files per command (validate gets 20 times as many: it is cheap), made of
valid requests, duplicate ids, non-objects, ``null``, nesting deeper than 1,024, invalid
UTF-8, huge numbers, blank lines, CRLF, a BOM, odd types and random bytes (results files
likewise for join and retry; CSV and JSONL rows with inf, nan, control characters and
quoted newlines for build). Each runs in-process through click's ``CliRunner`` inside a
forked worker, so a crash of the interpreter is caught and reported with its input. Checked:
no traceback nor "internal error", exit status 0, 1 or 2, every input line accounted for
(split's parts and rejected lines are the input's lines, byte for byte, each exactly once),
build's output valid with one request per row, join's table one row per request, retry's
lines copies of input lines.

Kills: ``--kills`` runs per command of ``python -m jsonl_batch`` replacing an earlier
output, interrupted after a random delay by SIGINT or SIGKILL. Checked: the output is the
old set or the new set, whole (the manifest's hashes match its files, no stray part), a
SIGINT ends with ``Interrupted.`` and 130 (or nothing, at interpreter start or exit), and
after the next run no temporary file is left.

Failures are printed with their case (``command#index``) and the input is kept under
``--keep`` (default ``fuzz-failures/``); ``--only split#17`` re-runs one case. Exit status 0
when nothing failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from jsonl_batch.cli import main  # noqa: E402

COMMANDS = ("validate", "split", "build", "join", "retry")
KILLED = ("split", "build", "join", "retry")
TEMP_PREFIX = ".jsonl-batch-"
LOCK_NAME = f"{TEMP_PREFIX}lock"

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
            return self.dumps(req).replace(b"1.5e+308", b"1e999")
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
    result = invoke(["validate", str(path), "--format", fmt, "--max-problems", cap], (0, 1))
    if fmt == "json":
        report = orjson.loads(result.output)
        if report["stats"]["lines"] != len(lines_of(data)):
            counted, lines = report["stats"]["lines"], len(lines_of(data))
            raise Failure(f"validate counted {counted} lines, the file has {lines}")
    return f"exit {result.exit_code}"


def run_split(gen: Gen, work: Path) -> str:
    r = gen.r
    data = gen.batch()
    path = work / "in.jsonl"
    path.write_bytes(data)
    out = work / "out"
    args = ["split", str(path), "-o", str(out), "--format", "json"]
    skip = r.random() < 0.8
    if skip:
        args.append("--skip-invalid")
    choice = r.random()
    if choice < 0.5:
        args += ["--max-requests", str(r.randint(1, 5))]
    elif choice < 0.65:
        args += ["--parts", str(r.randint(1, 4))]
    elif choice < 0.8:
        args += ["--by", r.choice(["model", "endpoint"])]
    else:
        args += ["--max-bytes", str(r.randint(50, 2000))]
    result = invoke(args)
    manifests = sorted(out.glob("*.manifest.json")) if out.exists() else []
    if not manifests:
        written = [p.name for p in out.iterdir()] if out.exists() else []
        if written:
            raise Failure(f"files without a manifest: {written}")
        return f"exit {result.exit_code}, nothing written"
    check_split(out, manifests[0], data)
    return f"exit {result.exit_code}, split"


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


def run_join(gen: Gen, work: Path) -> str:
    source, results, _ = join_inputs(gen, work)
    fmt = gen.r.choice(["csv", "jsonl", "parquet"])
    out = work / f"table.{fmt}"
    args = ["join", str(source), "-r", str(results), "-o", str(out), "--summary-format", "json"]
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
    return f"exit {result.exit_code}"


def run_retry(gen: Gen, work: Path) -> str:
    source, results, data = join_inputs(gen, work)
    out = work / "retry.jsonl"
    args = ["retry", str(source), "-r", str(results), "-o", str(out), "--format", "json"]
    result = invoke(args)
    if result.exit_code == 2:
        return "exit 2"
    originals = set(lines_of(data))
    if data.startswith(b"\xef\xbb\xbf"):
        originals.add(lines_of(data)[0][3:])
    for written in [out, *work.glob("retry.part-*.jsonl")]:
        if written.exists():
            for line in lines_of(written.read_bytes()):
                if line not in originals:
                    raise Failure(f"retry wrote a line that is not an input line: {line[:120]!r}")
    return f"exit {result.exit_code}"


RUNNERS: dict[str, Callable[[Gen, Path], str]] = {
    "validate": run_validate,
    "split": run_split,
    "build": run_build,
    "join": run_join,
    "retry": run_retry,
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
    """Run cases in forked workers; a worker that dies is a crash of the case it was on."""
    todo = list(indices)
    while todo:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(read_fd)
            out = os.fdopen(write_fd, "w", buffering=1)
            with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
                for index in todo:
                    out.write(f"B {index}\n")
                    failure, outcome = run_case(seed, command, index, Path(tmp) / "w")
                    out.write("E " + json.dumps([index, failure, outcome]) + "\n")
            out.close()
            os._exit(0)
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
            record(seed, command, current, f"the process died ({how})", keep, tally, log)
            todo.remove(current)
        elif todo:
            raise RuntimeError(f"worker stopped early ({status})")


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
    pid = os.fork()  # the input again, beside the report (in a child: it may crash)
    if pid == 0:
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
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(TEMP_PREFIX)
    }


def temporary_files(folder: Path) -> list[str]:
    return sorted(
        p.name for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX) and p.name != LOCK_NAME
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
    if command == "join":
        target = str(out / rng.choice(["table.csv", "table.jsonl", "table.parquet"]))
        base = ["join", str(source), "-o", target, "--force"]
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
    if set(state) == set(new) and all(
        name.endswith(".parquet") for name in state if state[name] != new[name]
    ):
        return "new"  # parquet files carry no fixed bytes; same names, written whole
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
            # the next run finishes what the killed one left, and leaves no temporary file
            complete(case.new)
            leftovers = temporary_files(case.folder)
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
        command, _, index = only.partition("#")
        if command.startswith("kill-"):
            run_kill(seed, command[5:], int(index), keep, tally, log)
        else:
            run_many(seed, command, [int(index)], keep, tally, log)
        return tally
    for command in commands:
        n = count * 20 if command == "validate" else count
        started = time.monotonic()
        for start in range(0, n, 1000):
            run_many(seed, command, list(range(start, min(n, start + 1000))), keep, tally, log)
        failed = sum(1 for f in tally.failures if f[0].startswith(command + "#"))
        took = time.monotonic() - started
        log(f"{command}: {tally.runs[command]:,} inputs in {took:.0f} s, {failed} failures")
    for command in KILLED:
        if command not in commands:
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
        "--kills", type=int, default=2, help="Kills per command (split, build, join, retry)."
    )
    parser.add_argument(
        "--commands", default=",".join(COMMANDS), help="Commands to fuzz (comma-separated)."
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
