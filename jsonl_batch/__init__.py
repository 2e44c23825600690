"""jsonl-batch: validate, build, split and join the JSONL files of OpenAI-style Batch APIs.

``__all__`` is the public API: each name is declared once, in ``_EXPORTS`` (name -> the module
that defines it), and imported lazily on first use (PEP 562), so ``import jsonl_batch`` stays
cheap and pyarrow, tiktoken or the openai SDK load only when something that needs them is
used. Every exception the library raises derives from ``JsonlBatchError``.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not typing's: the entry point loads this before its SIGINT handler
if TYPE_CHECKING:
    from typing import Any

_EXPORTS = {
    # validate
    "validate_file": "validation",
    "iter_problems": "validation",
    "Validation": "validation",
    "Report": "problems",
    "Problem": "problems",
    "Stats": "problems",
    "CATALOGUE": "problems",
    "PROFILES": "profiles",
    "Profile": "profiles",
    "get_profile": "profiles",
    "parse_size": "profiles",
    "iter_lines": "reading",
    "parse_line": "reading",
    # build
    "BatchWriter": "building",
    "build_file": "rows",
    "BodyShaper": "rows",
    # split
    "split_file": "splitting",
    "SplitResult": "splitting",
    "Manifest": "manifests",
    "Part": "manifests",
    # join and retry
    "join": "joining",
    "join_to": "joining",
    "Join": "joining",
    "JoinSummary": "joining",
    "Anomaly": "results",
    "read_summary": "tables",
    "write_table": "tables",
    "output_schema": "structured",
    "OutputSchema": "structured",
    "write_retry": "retrying",
    "RetryResult": "retrying",
    # tokens and cost
    "file_stats": "stats",
    "BatchStats": "stats",
    "TokenCounter": "tokens",
    "output_ceiling": "tokens",
    "load_prices": "pricing",
    "PriceTable": "pricing",
    # jobs
    "run_job": "jobs",
    "JobProgress": "jobs",
    "JobResult": "jobs",
    "JobSummary": "jobs",
    # errors
    "JsonlBatchError": "errors",
    "UsageError": "errors",
    "ReadError": "reading",
    "WriteError": "output",
    "OutputExists": "output",
    "BuildError": "building",
    "SplitError": "cutting",
    "JoinError": "joining",
    "SchemaError": "structured",
    "TokensUnavailable": "encodings",
    "PriceError": "pricing",
    "ApiError": "api_client",
    "MissingSdk": "api_client",
    "WaitTimeout": "api",
    "InvalidBatchFile": "api",
    "InvalidInputs": "preparing",
    "JobInterrupted": "jobs",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
