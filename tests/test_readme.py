"""The README is part of the contract: its commands, its code table, every command documented."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import ROOT

from jsonl_batch.cli import main
from jsonl_batch.rules.problems import CATALOGUE, code_table

README = (ROOT / "README.md").read_text(encoding="utf-8")


def sh_blocks() -> list[list[str]]:
    return [b.strip().splitlines() for b in re.findall(r"```sh\n(.*?)```", README, re.S)]


def test_user_install_then_development_install() -> None:
    user, dev = sh_blocks()[:2]
    assert user == ["pip install '.[api,tokens]' && jsonl-batch validate samples/chat.jsonl"]
    assert dev == ["pip install -e '.[dev]'", "pytest"]
    assert (ROOT / "samples" / "chat.jsonl").exists()


def test_ci_runs_the_readme_test_command_in_a_copy_with_nothing_beside_it() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.strip().splitlines()[-1] == sh_blocks()[1][-1] == "pytest"
    assert "git ls-files" in ci and 'cd "$clean/jsonl-batch"' in ci


def test_nothing_reads_outside_the_repository() -> None:
    """The tests, the package and the benchmarks carry their own data (``tests/data``)."""
    for folder in ("tests", "jsonl_batch", "bench", ".ci"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in {".py", ""} and "__pycache__" not in path.parts:
                text = path.read_text(encoding="utf-8", errors="replace")
                assert not re.search(r"""["'/]shared["'/]|parents\[2\]""", text), path


def console_commands() -> list[tuple[str, list[str], int | None]]:
    """The README's ``$ jsonl-batch ...`` commands on the shipped samples: each with the
    output shown under it and the status a following ``$ echo $?`` shows (or None)."""
    found: list[tuple[str, list[str], int | None]] = []
    for block in re.findall(r"```console\n(.*?)```", README, re.S):
        steps: list[tuple[str, list[str]]] = []
        for line in block.replace("\\\n", "").splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line)
        for i, (command, shown) in enumerate(steps):
            if command.startswith("jsonl-batch ") and "samples/" in command:
                after = steps[i + 1] if i + 1 < len(steps) else ("", [])
                status = int(after[1][0]) if after[0] == "echo $?" else None
                found.append((command, shown, status))
    return found


def matches(output: str, shown: list[str]) -> bool:
    """``output`` is ``shown``, where a line ``...`` stands for any lines."""
    parts = [r"(?:.*\n)*?" if s.strip() == "..." else re.escape(s) + r"\n" for s in shown]
    return re.fullmatch("".join(parts), output) is not None


@pytest.mark.parametrize(("command", "shown", "status"), console_commands())
def test_readme_examples_run_as_written(
    command: str,
    shown: list[str],
    status: int | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shutil.copytree(ROOT / "samples", tmp_path / "samples")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, shlex.split(command)[1:])
    assert matches(result.output, shown), result.output
    assert result.exit_code == (0 if status is None else status), result.output


def test_join_and_retry_examples_use_the_shipped_results() -> None:
    commands = {c.split()[1] for c, _, _ in console_commands()}
    assert {"join", "retry", "validate", "stats"} <= commands


def test_profile_table_is_the_profiles() -> None:
    from jsonl_batch.rules.profiles import profile_table

    assert profile_table() in README


def test_code_table_is_the_catalogue() -> None:
    assert code_table() in README
    for code in CATALOGUE:
        assert f"`{code}`" in README


def test_every_command_is_documented() -> None:
    for name in main.list_commands(None):  # type: ignore[arg-type]
        assert f"jsonl-batch {name}" in README, name
