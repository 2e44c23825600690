"""The README is part of the contract: its commands, its code table, every command documented."""

from __future__ import annotations

from helpers import ROOT

from jsonl_batch.cli import main
from jsonl_batch.problems import CATALOGUE, code_table

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_starts_with_the_two_commands() -> None:
    block = README.split("```sh\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert block == ["pip install -e '.[dev]' && jsonl-batch validate samples/chat.jsonl", "pytest"]
    assert (ROOT / "samples" / "chat.jsonl").exists()


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == "pytest"


def test_code_table_is_the_catalogue() -> None:
    assert code_table() in README
    for code in CATALOGUE:
        assert f"`{code}`" in README


def test_every_command_is_documented() -> None:
    for name in main.list_commands(None):  # type: ignore[arg-type]
        assert f"jsonl-batch {name}" in README, name
