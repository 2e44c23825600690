"""jsonl-batch: validate, build, split and join the JSONL files of OpenAI-style Batch APIs.

The names below are re-exported lazily (PEP 562): ``import jsonl_batch`` stays cheap, and
pyarrow or tiktoken load only when something that needs them is used.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not typing's: the entry point loads this before its SIGINT handler
if TYPE_CHECKING:
    from typing import Any

    from .building import BatchWriter, BuildError
    from .joining import Join, JoinError, JoinSummary, join, join_to
    from .manifests import Manifest, Part
    from .pricing import PriceTable, load_prices
    from .problems import CATALOGUE, Problem, Report, Stats
    from .profiles import PROFILES, Profile, get_profile, parse_size
    from .reading import ReadError, iter_lines, parse_line
    from .results import Anomaly
    from .retrying import RetryResult, write_retry
    from .rows import BodyShaper, build_file
    from .splitting import SplitError, SplitResult, split_file
    from .stats import BatchStats, file_stats
    from .structured import OutputSchema, SchemaError, output_schema
    from .tables import COLUMNS, read_summary, write_table
    from .tokens import (
        TokenCounter,
        TokensUnavailable,
        countable,
        output_ceiling,
        request_tokens,
        tokens_of_lines,
    )
    from .validation import Validation, iter_problems, validate_file

_EXPORTS = {
    "BatchWriter": "building",
    "BuildError": "building",
    "InvalidInputs": "preparing",
    "JobInterrupted": "jobs",
    "JobProgress": "jobs",
    "JobResult": "jobs",
    "JobSummary": "jobs",
    "run_job": "jobs",
    "Join": "joining",
    "JoinError": "joining",
    "JoinSummary": "joining",
    "join": "joining",
    "join_to": "joining",
    "Manifest": "manifests",
    "Part": "manifests",
    "PriceTable": "pricing",
    "load_prices": "pricing",
    "CATALOGUE": "problems",
    "Problem": "problems",
    "Report": "problems",
    "Stats": "problems",
    "PROFILES": "profiles",
    "Profile": "profiles",
    "get_profile": "profiles",
    "parse_size": "profiles",
    "ReadError": "reading",
    "iter_lines": "reading",
    "parse_line": "reading",
    "Anomaly": "results",
    "RetryResult": "retrying",
    "write_retry": "retrying",
    "BodyShaper": "rows",
    "build_file": "rows",
    "SplitError": "splitting",
    "SplitResult": "splitting",
    "split_file": "splitting",
    "BatchStats": "stats",
    "file_stats": "stats",
    "OutputSchema": "structured",
    "SchemaError": "structured",
    "output_schema": "structured",
    "COLUMNS": "tables",
    "read_summary": "tables",
    "write_table": "tables",
    "TokenCounter": "tokens",
    "countable": "tokens",
    "request_tokens": "tokens",
    "tokens_of_lines": "tokens",
    "TokensUnavailable": "tokens",
    "output_ceiling": "tokens",
    "Validation": "validation",
    "iter_problems": "validation",
    "validate_file": "validation",
}
__all__ = [
    "CATALOGUE",
    "COLUMNS",
    "PROFILES",
    "Anomaly",
    "BatchStats",
    "BatchWriter",
    "BodyShaper",
    "BuildError",
    "InvalidInputs",
    "JobInterrupted",
    "JobProgress",
    "JobResult",
    "JobSummary",
    "Join",
    "JoinError",
    "JoinSummary",
    "Manifest",
    "OutputSchema",
    "Part",
    "PriceTable",
    "Problem",
    "Profile",
    "ReadError",
    "Report",
    "RetryResult",
    "SchemaError",
    "SplitError",
    "SplitResult",
    "Stats",
    "TokenCounter",
    "TokensUnavailable",
    "Validation",
    "build_file",
    "countable",
    "file_stats",
    "get_profile",
    "iter_lines",
    "iter_problems",
    "join",
    "join_to",
    "load_prices",
    "output_ceiling",
    "output_schema",
    "parse_line",
    "parse_size",
    "read_summary",
    "request_tokens",
    "run_job",
    "split_file",
    "tokens_of_lines",
    "validate_file",
    "write_retry",
    "write_table",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
