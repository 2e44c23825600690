"""The built wheel carries schemas and samples (installed in a fresh venv, it validates); the
sdist carries the tests with their data."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import venv
from pathlib import Path

import pytest
from helpers import ROOT


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv that imports jsonl_batch from the built wheel, its dependencies from here."""
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(work / "dist"),
            str(ROOT),
        ],
        check=True,
    )
    [wheel] = (work / "dist").glob("jsonl_batch-*.whl")
    env_dir = work / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    # Dependencies come from this environment; its .pth files (our editable install) do not.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    Path(site, "deps.pth").write_text("\n".join(sorted(ours)) + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--force-reinstall",
            "-q",
            str(wheel),
        ],
        check=True,
    )
    return python


def run_in(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(python), *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_wheel_ships_schemas_and_samples(wheel_venv: Path, tmp_path: Path) -> None:
    where = run_in(
        wheel_venv, "-c", "import jsonl_batch; print(jsonl_batch.__file__)", cwd=tmp_path
    )
    assert str(wheel_venv.parent.parent) in where.stdout, where.stderr
    code = (
        "import sys, subprocess\n"
        "from jsonl_batch.rules.schemas import resource, schema_names, body_schema\n"
        "assert 'chat_completions' in schema_names(), schema_names()\n"
        "assert body_schema('/v1/embeddings').required == ('model', 'input')\n"
        "sample = resource('samples') / 'chat.jsonl'\n"
        "from jsonl_batch import validate_file\n"
        "report = validate_file(str(sample))\n"
        "assert report.valid and report.stats.requests == 4, report.to_dict()\n"
    )
    done = run_in(wheel_venv, "-c", code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    cli = run_in(wheel_venv, "-m", "jsonl_batch", "samples", "embeddings.jsonl", cwd=tmp_path)
    assert cli.returncode == 0 and "text-embedding-3-small" in cli.stdout


def test_sdist_carries_the_tests_and_their_data(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "-o", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    [sdist] = tmp_path.glob("jsonl_batch-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    wanted = {
        str(p.relative_to(ROOT))
        for folder in ("tests/data", "samples", "schemas", ".ci")
        for p in (ROOT / folder).rglob("*")
        if p.is_file()
    }
    assert wanted <= names, sorted(wanted - names)
