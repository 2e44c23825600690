"""Renderers of results (``jsonl-batch join`` and ``retry``): the join's summary and what a
retry file holds, as text for people (JSON is the results' ``to_dict()``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from .manifests import manifest_text
from .text import lines, plural, printable, report_text

SHOWN_PER_KIND = 5
"""Anomalies (and structured-output fallbacks) listed per kind by default."""

_LABELS = {
    "orphan": "result lines answering no request",
    "duplicate": "result lines not kept (custom_id answered twice)",
    "invalid_line": "lines that are not results",
    "not_copied": "values left null (could not be copied)",
}


def join_text(s: Any, per_kind: int | None = SHOWN_PER_KIND) -> str:
    """The join summary for people (a ``results.join.JoinSummary``): counts, error codes,
    tokens, costs, structured output, then anomalies by kind (the first ``per_kind`` of
    each; ``None``: all listed), and what was written when the summary knows it."""
    out = [
        f"{plural(s.requests, 'request')}: {s.succeeded:,} succeeded, {s.failed:,} failed, "
        f"{s.missing:,} missing"
    ]
    if s.error_codes:
        codes = ", ".join(f"{code} {n:,}" for code, n in s.error_codes.items())
        out.append(f"  failed by error code: {codes}")
    if s.output_problems:
        found = ", ".join(f"{p} {n:,}" for p, n in s.output_problems.items())
        out.append(f"  succeeded but not usable (output_problem): {found}")
    if s.total_tokens or s.prompt_tokens:
        details = [
            f"{n:,} {name}"
            for name, n in (("cached", s.cached_tokens), ("reasoning", s.reasoning_tokens))
            if n
        ]
        out.append(
            f"  tokens: {s.prompt_tokens:,} prompt, {s.completion_tokens:,} completion, "
            f"{s.total_tokens:,} total" + (f" ({', '.join(details)})" if details else "")
        )
    out += cost_lines(s.cost) + structured_lines(s.structured)
    counts = {
        "orphan": s.orphans,
        "duplicate": s.duplicates,
        "invalid_line": s.invalid_lines,
        "not_copied": s.not_copied,
    }
    shown: Counter[str] = Counter()
    for kind, total in counts.items():
        if not total:
            continue
        out.append(f"  {_LABELS[kind]} ({total:,}):")
        for a in s.anomalies:
            if a.kind == kind and (per_kind is None or shown[kind] < per_kind):
                shown[kind] += 1
                out.append(f"    {a.file} line {a.line}: {a.message}")
        if total > shown[kind]:
            out.append(f"    ... and {total - shown[kind]:,} more")
    if s.output is not None:
        out.append(f"wrote {written(s)}")
    return lines(out)


def written(s: Any) -> str:
    """Where a join's table went: ``out.parquet (parquet, 9 rows)``, or a folder of files."""
    rows = plural(s.requests, "row")
    if s.partition_by is not None:
        return f"{s.output}/ (parquet files by {s.partition_by}, {rows})"
    return f"{s.output} ({s.format}, {rows})"


def cost_lines(cost: dict[str, Any]) -> list[str]:
    """The cost part of the summary: total, per 1,000 requests, token drift, notes."""
    out = []
    if cost.get("total") is not None:
        per = cost["per_1000_requests"]
        prices = cost["prices"]
        out.append(
            f"  cost at batch prices: {usd(cost['total'])} ({cost['priced_answers']:,} answers; "
            f"{usd(per)} per 1,000), prices as of {prices['as_of']}"
        )
    estimate = cost.get("token_estimate")
    if estimate:
        out.append(
            f"  prompt tokens: {estimate['reported_prompt_tokens']:,} reported, "
            f"{estimate['estimated_input_tokens']:,} estimated from the input "
            f"({estimate['drift_percent']:+g}%)"
        )
    out += [f"  note: {note}" for note in cost.get("notes", ())]
    return out


def usd(amount: float) -> str:
    """``$1,234.57``, or six decimals under a dollar (``$0.000013``)."""
    return f"${amount:,.2f}" if amount >= 1 else f"${amount:.6f}"


def structured_lines(found: dict[str, Any] | None) -> list[str]:
    """How answers were parsed: typed or JSON text (and why), fallbacks, flattening."""
    if not found:
        return []
    shape = "flattened into columns" if found["flattened"] else "in `parsed`"
    out = [f"  structured output: {'typed' if found['typed'] else 'JSON text'}, {shape}"]
    if found["reason"]:
        out.append(f"    JSON text because {found['reason']}")
    if found.get("not_flattened"):
        out.append(f"    not flattened: {found['not_flattened']}")
    for f in found["fallbacks"][:SHOWN_PER_KIND]:
        out.append(f"    {f['path']} kept as JSON text: {f['reason']}")
    for why in found["invalid_schemas"][:SHOWN_PER_KIND]:
        out.append(f"    not checked: {why}")
    return out


def retry_text(r: Any) -> str:
    """The retry result for people (a ``results.retry.RetryResult``): what was selected and
    why, then the file's verdict (or its parts, when it was split)."""
    skipped = f"{r.succeeded:,} succeeded"
    if r.not_selected:
        skipped += f", {r.not_selected:,} not selected"
    wrong = []
    if r.not_results:
        verb = "is not a result" if r.not_results == 1 else "are not results"
        wrong.append(
            f"{plural(r.not_results, 'line')} of the result files {verb}: were the batch's "
            "output and error files given with -r? (`jsonl-batch join` lists them)"
        )
    if r.output is None:
        return lines([printable(f"nothing to retry ({skipped})"), *wrong])
    reasons = ", ".join(f"{why} {n:,}" for why, n in r.reasons.items())
    own = [
        f"{r.output}: {r.requests:,} request{'s' if r.requests != 1 else ''} to retry "
        f"({r.bytes:,} bytes): {reasons}; {skipped}",
        *wrong,
    ]
    block = None  # a renderer's text, escaped already, of several lines
    if r.split is not None and r.split.manifest is not None:
        own.append("over the limits, so split (upload the parts):")
        block = manifest_text(r.split.manifest, r.split.folder)
    elif r.split is not None:
        own.append("over the limits, and could not be split (nothing written):")
        block = report_text(r.split.report)
    elif r.report is not None:
        block = report_text(r.report)
    return "\n".join([lines(own)] + ([block] if block is not None else []))
