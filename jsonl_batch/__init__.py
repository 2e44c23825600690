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
    "validate_file": "validate",
    "iter_problems": "validate",
    "Validation": "validate",
    "Report": "rules.problems",
    "Problem": "rules.problems",
    "Stats": "rules.problems",
    "CATALOGUE": "rules.problems",
    "PROFILES": "rules.profiles",
    "Profile": "rules.profiles",
    "get_profile": "rules.profiles",
    "parse_size": "rules.profiles",
    "iter_lines": "lines.reading",
    "parse_line": "lines.reading",
    # build
    "BatchWriter": "build.writer",
    "build_file": "build.inputs",
    "BodyShaper": "build.inputs",
    # split
    "split_file": "split.engine",
    "SplitResult": "split.engine",
    "Manifest": "outputs.manifests",
    "Part": "outputs.manifests",
    # join and retry
    "join": "results.join",
    "join_to": "results.join",
    "Join": "results.join",
    "JoinSummary": "results.join",
    "Anomaly": "results.readers",
    "read_summary": "results.tables",
    "write_table": "results.tables",
    "output_schema": "results.structured",
    "OutputSchema": "results.structured",
    "write_retry": "results.retry",
    "RetryResult": "results.retry",
    # tokens and cost
    "file_stats": "tokens.stats",
    "BatchStats": "tokens.stats",
    "TokenCounter": "tokens.counting",
    "output_ceiling": "tokens.counting",
    "load_prices": "tokens.pricing",
    "PriceTable": "tokens.pricing",
    # jobs
    "run_job": "jobs.runner",
    "JobProgress": "jobs.runner",
    "JobResult": "jobs.runner",
    "JobSummary": "jobs.runner",
    # errors
    "JsonlBatchError": "errors",
    "UsageError": "errors",
    "ReadError": "lines.reading",
    "WriteError": "outputs.atomic",
    "OutputExists": "outputs.atomic",
    "BuildError": "build.writer",
    "SplitError": "split.plan",
    "JoinError": "results.join",
    "SchemaError": "results.structured",
    "TokensUnavailable": "tokens.encodings",
    "PriceError": "tokens.pricing",
    "ApiError": "api.client",
    "MissingSdk": "api.client",
    "WaitTimeout": "api.batches",
    "InvalidBatchFile": "api.batches",
    "InvalidInputs": "jobs.prepare",
    "JobInterrupted": "jobs.runner",
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
