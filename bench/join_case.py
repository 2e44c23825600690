"""The ``join-50k`` case: our join to Parquet against DuckDB's native JSON reader doing the same.

Both read the same 25 MB input and ~56 MB output file, join results to requests by
custom_id in input order (one row per request), extract the same columns and write a
zstd-compressed Parquet file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import datasets

from jsonl_batch import join, write_table

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
        r.id AS batch_request_id
    FROM requests q LEFT JOIN results r USING (custom_id)
    ORDER BY q.line
) TO '{target}' (FORMAT parquet, COMPRESSION zstd)
"""

_OUT = Path(tempfile.gettempdir())


def paths() -> tuple[Path, Path]:
    """The case's input and output files (generated once)."""
    return datasets.small_chat(), datasets.small_chat_output()


def ours() -> None:
    """``jsonl-batch join`` as a library call: join, then write Parquet."""
    requests, output = paths()
    result = join([requests], [output])
    target = _OUT / "jsonl-batch-bench-ours.parquet"
    write_table(result.table, target, summary=result.summary.to_dict(), force=True)


def duckdb_native() -> None:
    """The same join with DuckDB's JSON reader, written by DuckDB."""
    import duckdb

    requests, output = paths()
    target = _OUT / "jsonl-batch-bench-duckdb.parquet"
    with duckdb.connect() as con:
        query = _QUERY.format(columns=_RESULT_COLUMNS, target=target)
        con.execute(query, [str(requests), str(output), str(requests)])
