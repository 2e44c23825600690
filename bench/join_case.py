"""The ``join-50k`` case: our join to Parquet against DuckDB's native JSON reader doing the same.

Both read the same 25 MB input and ~56 MB output file, join results to requests by
custom_id in input order (one row per request), extract the same columns and write a
zstd-compressed Parquet file. ``join-structured-50k``: 50,000 answers to requests that asked
for a JSON schema; ours parses, validates and types each one (``parsed``), DuckDB parses them
with ``json_transform`` (no validation).
"""

from __future__ import annotations

from pathlib import Path

import datasets
import orjson

from jsonl_batch import join, write_table
from jsonl_batch.joining import join_to

_RESULT_COLUMNS = """{
    id: 'VARCHAR', custom_id: 'VARCHAR',
    response: 'STRUCT(status_code INTEGER, request_id VARCHAR, body STRUCT(
        model VARCHAR,
        choices STRUCT(message STRUCT(content VARCHAR), text VARCHAR, finish_reason VARCHAR)[],
        usage STRUCT(prompt_tokens BIGINT, completion_tokens BIGINT, total_tokens BIGINT),
        error STRUCT(message VARCHAR, type VARCHAR, code VARCHAR)))',
    error: 'STRUCT(code VARCHAR, message VARCHAR)'
}"""

_QUERY = """
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
        r.id AS batch_request_id{extra}
    FROM requests q LEFT JOIN results r USING (custom_id)
    ORDER BY q.line
) TO '{target}' (FORMAT parquet, COMPRESSION zstd)
"""

_OUT = datasets.DATA / "out"
"""Where both sides write their tables (one folder of ours: no other run writes there)."""


def paths() -> tuple[Path, Path]:
    """The case's input and output files (generated once)."""
    return datasets.small_chat(), datasets.small_chat_output()


def ours() -> None:
    """``jsonl-batch join`` as a library call: join, then write Parquet."""
    requests, output = paths()
    _OUT.mkdir(parents=True, exist_ok=True)
    result = join([requests], [output])
    target = _OUT / "jsonl-batch-bench-ours.parquet"
    write_table(result.table, target, summary=result.summary.to_dict(), force=True)


def duckdb_native() -> None:
    """The same join with DuckDB's JSON reader, written by DuckDB."""
    import duckdb

    requests, output = paths()
    target = _OUT / "jsonl-batch-bench-duckdb.parquet"
    with duckdb.connect() as con:
        query = _QUERY.format(columns=_RESULT_COLUMNS, target=target, extra="")
        con.execute(query, [str(requests), str(output), str(requests)])


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
        query = _QUERY.format(
            columns=_RESULT_COLUMNS, target=target, extra=f",\n {parsed} AS parsed"
        )
        con.execute(query, [str(requests), str(output), str(requests)])
