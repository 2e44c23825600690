"""Reports rendered as their problems arrive: the same output as the whole-report renderers,
in bounded memory, and ``--max-problems 0`` lists every problem in text too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from jsonl_batch import validate_file
from jsonl_batch.cli import main
from jsonl_batch.render.text import ReportOutput, report_text

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


def many_problems(tmp_path: Path, lines: int) -> Path:
    """A file whose every line has four problems (three missing fields, a duplicate id)."""
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"custom_id": "x\\u00e9"}\n' * lines + b"not json\n")
    return path


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("cap", [0, 3, 100])
def test_cli_output_equals_the_whole_report_renderers(tmp_path: Path, fmt: str, cap: int) -> None:
    for source in (SAMPLES / "invalid.jsonl", many_problems(tmp_path, 40)):
        report = validate_file(source, max_problems=cap or None)
        per_code = None if cap == 0 else 5
        as_json = orjson.dumps(report.to_dict()).decode()  # what show prints: to_dict()
        expected = as_json if fmt == "json" else report_text(report, per_code)
        args = ["validate", str(source), "--format", fmt, "--max-problems", str(cap)]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1
        assert result.output == expected + "\n"


def test_json_chunks_are_to_dict_even_when_spooled_to_disk(tmp_path: Path) -> None:
    report = validate_file(many_problems(tmp_path, 5_000), max_problems=None)
    out = ReportOutput("json")
    for p in report.problems:
        out.add(p)
    text = "".join(out.chunks(report))  # well over the in-memory spool size
    assert orjson.loads(text) == report.to_dict()


def test_max_problems_0_lists_every_problem_in_text(tmp_path: Path) -> None:
    source = many_problems(tmp_path, 12)
    result = CliRunner().invoke(main, ["validate", str(source), "--max-problems", "0"])
    assert "more" not in result.output
    assert result.output.count("is already used") == 11  # every line after the first
    capped = CliRunner().invoke(main, ["validate", str(source)])
    assert capped.output.count("is already used") == 5
    assert "    ... and 6 more" in capped.output


def test_memory_does_not_grow_with_the_problems(tmp_path: Path) -> None:
    """250,000 problems listed, in a subprocess: peak RSS stays near the interpreter's own
    (holding them took ~220 MB)."""
    source = many_problems(tmp_path, 50_000)
    measure = (
        "import resource, subprocess, sys; "
        "subprocess.run([sys.executable, '-m', 'jsonl_batch', *sys.argv[1:]], "
        "stdout=subprocess.DEVNULL, check=False); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    args = ["validate", str(source), "--max-problems", "0", "--format", "json", "--jobs", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", measure, *args], env=env, capture_output=True)
    assert int(done.stdout) < 80_000, done.stdout  # KiB


def test_max_anomalies_0_lists_every_anomaly_in_text(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        b'{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", '
        b'"body": {"model": "m", "input": "x"}}\n'
    )
    results = tmp_path / "out.jsonl"
    results.write_bytes(b"not a result\n" * 8)
    for cap, listed in (("0", 8), ("100", 5)):
        args = ["join", str(source), "-r", str(results), "-o", str(tmp_path / "t.csv")]
        result = CliRunner().invoke(main, [*args, "--force", "--max-anomalies", cap])
        assert result.output.count("out.jsonl line ") == listed, result.output
