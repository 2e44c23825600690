"""The join cases: our join to Parquet against DuckDB's native JSON reader doing the same.

Both read the same request and result files, join results to requests by custom_id in input
order (one row per request), extract the same columns and write a zstd-compressed Parquet
file. ``join-structured-50k``: 50,000 answers to requests that asked for a JSON schema; ours
parses, validates and types each one (``parsed``), DuckDB parses them with ``json_transform``
(no validation). The other join cases run each side as its own process (as a user runs
them), timed from outside, with its peak memory (the largest resident set of the process
and the workers it waited for).

- ``join-50k``: one 25 MB input, one ~56 MB output file (every request answered, shuffled).
- ``join-500k`` / ``join-2m``: 10 / 40 batches of 50,000 chat requests; per batch an output
  file (shuffled) and an error file: 2% failed (expired or HTTP 500), 1% missing, answers
  of about 300 characters. Generated once into ``bench/data/`` (not committed).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import datasets
import orjson

from jsonl_batch.results.join import join_to

_RESULT_COLUMNS = """{
    id: 'VARCHAR', custom_id: 'VARCHAR',
    response: 'STRUCT(status_code INTEGER, request_id VARCHAR, body STRUCT(
        model VARCHAR,
        choices STRUCT(message STRUCT(content VARCHAR), text VARCHAR, finish_reason VARCHAR)[],
        usage STRUCT(prompt_tokens BIGINT, completion_tokens BIGINT, total_tokens BIGINT),
        error STRUCT(message VARCHAR, type VARCHAR, code VARCHAR)))',
    error: 'STRUCT(code VARCHAR, message VARCHAR)'
}"""

_ANSWER_COLUMNS = """
        CASE WHEN r.custom_id IS NULL THEN 'missing'
             WHEN r.error IS NULL AND r.response.status_code BETWEEN 200 AND 299 THEN 'succeeded'
             ELSE 'failed' END AS status,
        r.response.status_code AS status_code,
        coalesce(r.error.code, r.response.body.error.code) AS error_code,
        coalesce(r.error.message, r.response.body.error.message) AS error_message,
        r.response.body.model AS model,
        coalesce(r.response.body.choices[1].message.content, r.response.body.choices[1].text)
            AS content,
        r.response.body.choices[1].finish_reason AS finish_reason,
        r.response.body.usage.prompt_tokens AS prompt_tokens,
        r.response.body.usage.completion_tokens AS completion_tokens,
        r.response.body.usage.total_tokens AS total_tokens,
        r.response.request_id AS request_id,
        r.id AS batch_request_id"""
"""The answer columns both DuckDB queries select (the join's contract columns)."""

_QUERY = (
    """
COPY (
    WITH requests AS (
        SELECT filename AS input_file, row_number() OVER (PARTITION BY filename) AS line,
               custom_id
        FROM read_json({inputs}, format = 'newline_delimited',
                       columns = {{custom_id: 'VARCHAR'}}, filename = true)
    ),
    results AS (
        SELECT * FROM read_json({results}, format = 'newline_delimited', columns = {columns})
    )
    SELECT
        q.custom_id, q.input_file, q.line,
"""
    + _ANSWER_COLUMNS
    + """
    FROM requests q LEFT JOIN results r USING (custom_id)
    ORDER BY q.input_file, q.line
) TO '{target}' (FORMAT parquet, COMPRESSION zstd)
"""
)

_SINGLE_QUERY = (
    """
COPY (
    WITH requests AS (
        SELECT row_number() OVER () AS line, custom_id
        FROM read_json(?, format = 'newline_delimited', columns = {{custom_id: 'VARCHAR'}})
    ),
    results AS (
        SELECT * FROM read_json(?, format = 'newline_delimited', columns = {columns})
    )
    SELECT
        q.custom_id, ? AS input_file, q.line,
"""
    + _ANSWER_COLUMNS
    + """{extra}
    FROM requests q LEFT JOIN results r USING (custom_id)
    ORDER BY q.line
) TO '{target}' (FORMAT parquet, COMPRESSION zstd)
"""
)

_OUT = datasets.DATA / "out"
"""Where both sides write their tables (one folder of ours: no other run writes there)."""
BATCH = 50_000


def batches(count: int) -> tuple[list[Path], list[Path]]:
    """``count`` batches of ``BATCH`` requests: their input files and result files."""
    folder = datasets.DATA / f"join-{count}x{BATCH}"
    inputs = [folder / f"batch-{k:03d}.jsonl" for k in range(count)]
    results = [folder / f"batch-{k:03d}.{kind}.jsonl" for k in range(count) for kind in _KINDS]
    if not all(p.exists() for p in (*inputs, *results)):
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(count):
            _batch(folder, k)
    return inputs, results


_KINDS = ("output", "errors")


def _batch(folder: Path, k: int) -> None:
    """One batch's input, output and error files (written under temporary names first)."""
    rng = random.Random(k)
    prompts = [datasets._text(rng, 230) for _ in range(500)]
    answers = [datasets._text(rng, 300) for _ in range(500)]
    ids = [f"b{k:03d}-request-{i + 1}" for i in range(BATCH)]
    requests, output, errors = [], [], []
    for custom_id in ids:
        body = {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "You are a careful assistant."},
                {"role": "user", "content": rng.choice(prompts)},
            ],
            "max_tokens": 256,
        }
        requests.append({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions"})
        requests[-1]["body"] = body
        fate = rng.random()
        if fate < 0.01:
            continue  # missing
        if fate < 0.02:
            errors.append(_expired(custom_id, rng))
        elif fate < 0.03:
            errors.append(_server_error(custom_id, rng))
        else:
            output.append(_answer(custom_id, rng, rng.choice(answers)))
    rng.shuffle(output)
    for name, lines in (("", requests), (".output", output), (".errors", errors)):
        path = folder / f"batch-{k:03d}{name}.jsonl"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
        tmp.rename(path)


def _answer(custom_id: str, rng: random.Random, text: str) -> dict[str, object]:
    prompt, completion = rng.randint(40, 120), rng.randint(60, 250)
    body = {
        "id": f"chatcmpl-{rng.getrandbits(64):x}",
        "object": "chat.completion",
        "created": 1711475054,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
        "system_fingerprint": "fp_0ba0d124f1",
    }
    return {
        "id": f"batch_req_{rng.getrandbits(64):x}",
        "custom_id": custom_id,
        "response": {
            "status_code": 200,
            "request_id": f"req_{rng.getrandbits(32):x}",
            "body": body,
        },
        "error": None,
    }


def _expired(custom_id: str, rng: random.Random) -> dict[str, object]:
    message = "This request could not be executed before the completion window expired."
    return {
        "id": f"batch_req_{rng.getrandbits(64):x}",
        "custom_id": custom_id,
        "response": None,
        "error": {"code": "batch_expired", "message": message},
    }


def _server_error(custom_id: str, rng: random.Random) -> dict[str, object]:
    error = {"message": "The server had an error.", "type": "server_error", "code": None}
    return {
        "id": f"batch_req_{rng.getrandbits(64):x}",
        "custom_id": custom_id,
        "response": {"status_code": 500, "request_id": "req_x", "body": {"error": error}},
        "error": None,
    }


CASES = {
    # name: (make the files, target ratio ours/DuckDB, peak memory target of ours in MB)
    "join-50k": (lambda: ([datasets.small_chat()], [datasets.small_chat_output()]), 1.0, None),
    "join-500k": (lambda: batches(10), 1.0, None),
    "join-2m": (lambda: batches(40), 1.0, 500),
}

EXPLICIT = ("join-500k", "join-2m")
"""Cases run only when named (minutes of generated data): ``python bench/run.py join-2m``."""

_OURS = """
import sys
from jsonl_batch.interrupts import launch
inputs, results, target = sys.argv[1].split(","), sys.argv[2].split(","), sys.argv[3]
args = ["join", *inputs, *(x for r in results for x in ("-r", r)), "-o", target, "--force"]
sys.argv = ["jsonl-batch", *args]
launch()
"""
"""Ours as the ``jsonl-batch`` program runs (``interrupts.launch``, as the installed command)."""

_DUCKDB = """
import sys
import duckdb
with duckdb.connect() as con:
    con.execute('SET enable_progress_bar = false')
    con.execute(sys.argv[1])
"""


def _run(code: str, *args: str) -> tuple[float, float]:
    """Run a Python snippet as its own process: ``(seconds, peak resident MB)``."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in (0, 1):  # join exits 1 when some requests failed
        raise SystemExit(f"benchmark process failed ({process.returncode})")
    return seconds, usage.ru_maxrss / 1024


def compiled() -> None:
    """Byte-compile our package, as ``pip install`` leaves it: with
    ``PYTHONDONTWRITEBYTECODE`` set (as in some CI and sandboxes) every process would
    otherwise compile our modules again (~0.1 s), while DuckDB's come compiled."""
    import compileall

    import jsonl_batch

    compileall.compile_dir(os.path.dirname(jsonl_batch.__file__), quiet=1)


def compare(name: str, repeat: int) -> None:
    """Time ours and DuckDB's, alternating, best of ``repeat``; print both and the ratio."""
    make, target, memory_target = CASES[name]
    compiled()
    inputs, results = make()
    _OUT.mkdir(parents=True, exist_ok=True)
    size = sum(p.stat().st_size for p in (*inputs, *results)) / 1e6
    ours_args = (
        ",".join(map(str, inputs)),
        ",".join(map(str, results)),
        str(_OUT / "jsonl-batch-bench-ours.parquet"),
    )
    query = _QUERY.format(
        inputs=[str(p) for p in inputs],
        results=[str(p) for p in results],
        columns=_RESULT_COLUMNS,
        target=_OUT / "jsonl-batch-bench-duckdb.parquet",
    )
    ours = theirs = (float("inf"), 0.0)
    for _ in range(max(1, repeat)):
        found = _run(_DUCKDB, query)
        theirs = (min(theirs[0], found[0]), max(theirs[1], found[1]))
        found = _run(_OURS, *ours_args)
        ours = (min(ours[0], found[0]), max(ours[1], found[1]))
    ratio = ours[0] / theirs[0]
    flag = "" if ratio <= target else "  over target"
    if memory_target is not None and ours[1] > memory_target:
        flag += f"  over {memory_target} MB"
    print(
        f"{name:<18}{size:>8.0f}MB{theirs[0]:>9.3f}s{ours[0]:>9.3f}s{ratio:>7.2f}x"
        f"{target:>7.1f}x  (floor column: duckdb; peak memory: duckdb {theirs[1]:.0f} MB, "
        f"ours {ours[1]:.0f} MB){flag}"
    )


def structured_paths() -> tuple[Path, Path]:
    """The structured case's files: 50,000 requests asking for a JSON schema, their answers."""
    return datasets.structured_requests(), datasets.structured_output()


def structured_ours() -> None:
    """``jsonl-batch join`` of structured answers: each parsed, validated against the
    request's schema and typed into ``parsed`` (a struct), written as it goes."""
    requests, output = structured_paths()
    _OUT.mkdir(parents=True, exist_ok=True)
    join_to([requests], [output], _OUT / "jsonl-batch-bench-structured.parquet", force=True)


_PARSED = orjson.dumps(
    {
        "label": "VARCHAR",
        "confidence": "DOUBLE",
        "priority": "BIGINT",
        "summary": "VARCHAR",
        "tags": ["VARCHAR"],
        "owner": {"team": "VARCHAR", "oncall": "BOOLEAN"},
    }
).decode()


def structured_duckdb() -> None:
    """The same join in DuckDB, with the answers parsed into a struct by ``json_transform``
    (JSON syntax only: no schema validation, no output problems)."""
    import duckdb

    requests, output = structured_paths()
    target = _OUT / "jsonl-batch-bench-structured-duckdb.parquet"
    content = "r.response.body.choices[1].message.content"
    parsed = f"CASE WHEN json_valid({content}) THEN json_transform({content}, '{_PARSED}') END"
    with duckdb.connect() as con:
        query = _SINGLE_QUERY.format(
            columns=_RESULT_COLUMNS, target=target, extra=f",\n {parsed} AS parsed"
        )
        con.execute(query, [str(requests), str(output), str(requests)])
