"""The package's layout: imports point down, folder by folder (read with ast, nothing imported).

Layers, lowest first (docs/DEVELOPING.md describes each): ``errors`` and ``compute``;
``lines``; ``rules``; ``outputs``; ``tokens``; ``validate``; ``build`` and ``split``;
``results``; ``api``; ``jobs``; ``render``; ``cli`` with ``interrupts`` (the process entry
point, which ``cli.Main`` uses). A module imports only from its own folder or from lower
layers; ``lines`` imports nothing of ours but ``errors``, ``rules`` only ``lines``; nothing
below ``cli`` imports click or a renderer; no folder imports another's private names; none
imports ``pyarrow.compute`` (``compute`` calls Arrow's functions without its start-up cost).
"""

from __future__ import annotations

import ast
from pathlib import Path

import jsonl_batch

PACKAGE = Path(jsonl_batch.__file__).parent
LAYERS = [
    {"errors", "compute"},
    {"lines"},
    {"rules"},
    {"outputs"},
    {"tokens"},
    {"validate"},
    {"build", "split"},
    {"results"},
    {"api"},
    {"jobs"},
    {"render"},
    {"cli", "interrupts"},
    {"__main__", "__init__"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path) -> list[tuple[str, list[str], int]]:
    """``(imported module relative to the package, names, line)``; outside modules as
    ``"!name"``."""
    parts = module.split(".")
    package = parts[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names = [a.name for a in node.names]
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
                if node.module is None:
                    for name in names:
                        out.append((f"{target}.{name}".strip("."), [], node.lineno))
                    continue
                out.append((target, names, node.lineno))
            elif node.module and node.module.split(".")[0] == "jsonl_batch":
                out.append((node.module.partition(".")[2], names, node.lineno))
            elif node.module:
                out.append((f"!{node.module}", names, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "jsonl_batch":
                    out.append((alias.name.partition(".")[2], [], node.lineno))
                else:
                    out.append((f"!{alias.name}", [], node.lineno))
    return out


def _folder(module: str) -> str:
    return module.split(".")[0]


def _problems() -> list[str]:
    modules = _modules()
    found = []
    for module, path in sorted(modules.items()):
        folder = _folder(module)
        for target, names, line in _imports(module, path):
            where = f"{path.relative_to(PACKAGE.parent)}:{line}"
            if target.startswith("!"):
                outside = target[1:].split(".")[0]
                if outside == "click" and RANK[folder] < RANK["cli"]:
                    found.append(f"{where}: click below cli")
                compute = outside == "pyarrow" and "compute" in [*target.split(".")[1:], *names]
                if compute and module != "compute":  # its fallback for an odd pyarrow
                    found.append(f"{where}: pyarrow.compute (jsonl_batch.compute instead)")
                continue
            if not target:
                continue  # the package itself (its lazy exports)
            other = _folder(target)
            if other == folder:
                continue
            if RANK[other] > RANK[folder]:
                found.append(f"{where}: {folder} imports {target} (a higher layer)")
            if folder == "lines" and other != "errors":
                found.append(f"{where}: lines imports {target}")
            if folder == "rules" and other not in ("lines", "errors"):
                found.append(f"{where}: rules imports {target}")
            private = [n for n in names if n.startswith("_")]
            if private or any(p.startswith("_") for p in target.split(".")[1:]):
                found.append(f"{where}: {folder} imports {target}'s private {private}")
    return found


def test_every_module_has_a_layer() -> None:
    assert {_folder(m) for m in _modules()} <= set(RANK)


def test_imports_point_down() -> None:
    assert _problems() == []


SHARED_CLI = {"cli", "cli.options", "cli.output"}
"""What a command module of ``cli/`` may import from ``cli/``: the group and the shared
options and output."""
GROUPED = {"cli.jobs": {"cli.batches"}, "cli.batches": {"cli.jobs"}}
"""``batches``' subcommands in ``cli/jobs.py`` join its group."""


def test_commands_import_no_other_command() -> None:
    modules = _modules()
    found = []
    for module, path in sorted(modules.items()):
        if _folder(module) != "cli" or module in SHARED_CLI:
            continue
        for target, _names, line in _imports(module, path):
            allowed = SHARED_CLI | GROUPED.get(module, set())
            if _folder(target) == "cli" and target not in allowed:
                found.append(f"{module}:{line} imports {target}")
    assert found == []
