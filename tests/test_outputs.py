"""Nothing a user owns is lost: no command writes over its inputs, links and devices are never
replaced, ``-o -`` is standard output, and a many-part output is the old set or the new set,
whole, whatever kills the run (fault test with real subprocess kills)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from helpers import ROOT, jsonl, request

from jsonl_batch.cli import main
from jsonl_batch.outputs import atomic as output
from jsonl_batch.outputs.atomic import (
    TEMP_PREFIX,
    OutputExists,
    WriteError,
    atomic_output,
    folder_lock,
    recover,
)
from jsonl_batch.split.engine import split_file

SAMPLES = ROOT / "samples"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    """A copy of the shipped samples: requests, output and errors of one batch."""
    for name in ("requests.jsonl", "output.jsonl", "errors.jsonl"):
        (tmp_path / name).write_bytes((SAMPLES / name).read_bytes())
    return tmp_path


def results_args(batch: Path, command: str, out: str | Path, *more: str) -> list[str]:
    r = [str(batch / "output.jsonl"), str(batch / "errors.jsonl")]
    return [command, str(batch / "requests.jsonl"), "-r", r[0], "-r", r[1], "-o", str(out), *more]


# -- never over an input


@pytest.mark.parametrize("command", ["join", "retry"])
@pytest.mark.parametrize("name", ["requests.jsonl", "output.jsonl", "errors.jsonl"])
@pytest.mark.parametrize("force", [[], ["--force"]])
def test_no_command_writes_over_its_inputs(
    batch: Path, command: str, name: str, force: list[str]
) -> None:
    before = (batch / name).read_bytes()
    code, out = run(*results_args(batch, command, batch / name), *force)
    assert code == 2 and "is an input; choose another output name" in out, out
    assert (batch / name).read_bytes() == before


@pytest.mark.parametrize("command", ["join", "retry"])
def test_the_same_file_under_another_name_is_an_input(batch: Path, command: str) -> None:
    os.link(batch / "errors.jsonl", batch / "hard.jsonl")
    before = (batch / "errors.jsonl").read_bytes()
    code, out = run(*results_args(batch, command, batch / "hard.jsonl"), "--force")
    assert code == 2 and "is an input" in out, out
    assert (batch / "errors.jsonl").read_bytes() == before


def test_a_manifest_stands_for_its_parts(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl(*(request(f"r{i}") for i in range(4))))
    split_file(source, tmp_path / "parts", max_requests=2)
    part = tmp_path / "parts" / "in.part-001-of-002.jsonl"
    before = part.read_bytes()
    manifest = str(tmp_path / "parts" / "in.manifest.json")
    code, out = run("join", manifest, "-r", str(SAMPLES / "output.jsonl"), "-o", str(part),
                    "--force", "--format", "jsonl")  # fmt: skip
    assert code == 2 and "is an input" in out and part.read_bytes() == before


# -- links, devices, pipes, standard output


@pytest.mark.parametrize("dangling", [True, False])
@pytest.mark.parametrize("command", ["join", "retry", "build"])
def test_a_symbolic_link_is_never_replaced(
    batch: Path, command: str, dangling: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = batch / "someone-elses.jsonl"
    if not dangling:
        other.write_bytes(b"keep me\n")
    link = batch / "link.jsonl"
    link.symlink_to(other)
    monkeypatch.chdir(batch)
    args = writing(batch, command, "link.jsonl")
    for force in ([], ["--force"]):
        code, out = run(*args, *force)
        assert code == 2 and "link.jsonl: is a symbolic link" in out, out
        assert link.is_symlink() and os.readlink(link) == str(other)
    assert dangling != other.exists() or other.read_bytes() == b"keep me\n"


def writing(batch: Path, command: str, target: str | Path) -> list[str]:
    """``command``'s arguments to write its one output to ``target``."""
    if command == "build":
        (batch / "q.csv").write_text("question\nhi\n")
        return ["build", str(batch / "q.csv"), "-o", str(target), "--model", "gpt-4o-mini",
                "--prompt-column", "question"]  # fmt: skip
    more = ["--format", "csv"] if command == "join" else []
    return results_args(batch, command, target, *more)


@pytest.mark.parametrize("command", ["join", "retry", "build"])
def test_devices_and_pipes_are_written_through(batch: Path, command: str) -> None:
    fifo = batch / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    code, out = run(*writing(batch, command, fifo))
    reader.join(10)
    assert code in (0, 1), out
    assert fifo.is_fifo() and got and got[0]  # the same pipe, written through, not replaced
    code, out = run(*writing(batch, command, "/dev/null"))  # no --force needed
    assert code in (0, 1) and Path("/dev/null").is_char_device(), out
    assert not list(batch.glob(f"{TEMP_PREFIX}*"))


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_join_to_standard_output(batch: Path, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(batch)
    result = CliRunner().invoke(main, [*results_args(batch, "join", "-"), "--format", fmt])
    assert result.exit_code == 1, result.output
    assert result.stdout.count("chat-") >= 9 and "custom_id" in result.stdout
    assert "9 requests" in result.stderr and "9 requests" not in result.stdout
    assert not (batch / "-").exists()


def test_retry_and_build_to_standard_output(batch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(batch)
    result = CliRunner().invoke(main, results_args(batch, "retry", "-"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 5 and all(orjson.loads(x)["custom_id"] for x in lines)
    assert "5 requests to retry" in result.stderr
    over = CliRunner().invoke(main, [*results_args(batch, "retry", "-"), "--max-requests", "2"])
    assert over.exit_code == 2 and "over the limits" in over.output and not over.stdout
    (batch / "q.csv").write_text("question\nhi\n")
    built = CliRunner().invoke(
        main, ["build", "q.csv", "-o", "-", "--model", "gpt-4o-mini", "--prompt-column", "question"]
    )
    assert built.exit_code == 0 and orjson.loads(built.stdout)["custom_id"] == "request-1"
    assert not (batch / "-").exists()


def test_library_atomic_output_refuses_and_writes_through(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"x\n")
    inputs = [tmp_path / "in.jsonl"]
    with pytest.raises(OutputExists, match="is an input"), atomic_output(*inputs, inputs=inputs):
        pass
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    with pytest.raises(WriteError, match="symbolic link"), atomic_output(tmp_path / "link"):
        pass
    with atomic_output("/dev/null") as out:
        out.write(b"gone")
    assert Path("/dev/null").is_char_device()


# -- one writer at a time, and what a crash leaves


def test_leftover_temporary_files_are_removed_by_the_next_run(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl(*(request(f"r{i}") for i in range(4))))
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / f"{TEMP_PREFIX}abc123-in.part-001-of-002.jsonl.tmp").write_bytes(b"half")
    (folder / ".someone-elses.tmp").write_bytes(b"mine")
    split_file(source, folder, max_requests=2)
    assert sorted(p.name for p in folder.iterdir()) == [
        ".someone-elses.tmp", "in.manifest.json", "in.part-001-of-002.jsonl",
        "in.part-002-of-002.jsonl",
    ]  # fmt: skip


def test_a_committed_set_is_completed_by_the_next_run(tmp_path: Path) -> None:
    """A run killed after its journal: the next writer there rolls the set forward."""
    folder = tmp_path
    for name in ("s.part-1.jsonl", "s.part-2.jsonl", "s.manifest.json"):
        (folder / name).write_bytes(b"old " + name.encode())
    renames = []
    for name in ("s.part-1.jsonl", "s.manifest.json"):
        tmp = folder / f"{TEMP_PREFIX}x-{name}.tmp"
        tmp.write_bytes(b"new " + name.encode())
        renames.append([tmp.name, name])
    (folder / "s.part-1.jsonl").unlink()  # killed half-way: part 1 is gone, not renamed yet
    journal = {"renames": renames, "remove": ["s.part-2.jsonl"], "point": "s.manifest.json"}
    (folder / f"{TEMP_PREFIX}j-journal.commit").write_bytes(orjson.dumps(journal))
    with folder_lock(folder):
        pass
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {
        "s.part-1.jsonl": b"new s.part-1.jsonl",
        "s.manifest.json": b"new s.manifest.json",
    }
    recover(folder)  # again: nothing changes
    assert len(list(folder.iterdir())) == 2


def test_a_set_with_a_commit_point_never_renames_over_an_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(ext4 writes a file renamed over another to disk at once.) A folder is set aside."""
    for name in ("s.part-1.jsonl", "s.manifest.json"):
        (tmp_path / name).write_bytes(b"old")
    (tmp_path / "s.dir").mkdir()
    renames = []
    for name in ("s.part-1.jsonl", "s.manifest.json", "s.dir"):
        tmp = tmp_path / f"{TEMP_PREFIX}x-{name}.tmp"
        tmp.write_bytes(b"new")
        renames.append((tmp, tmp_path / name))
    replace, over = os.replace, []

    def recording(src: Any, dst: Any) -> None:
        over.append(Path(dst).exists())
        replace(src, dst)

    monkeypatch.setattr(output.os, "replace", recording)
    output.replace_together(tmp_path, renames, point=tmp_path / "s.manifest.json")
    assert len(over) == 5 and not any(over)  # the journal, the folder set aside, the three
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {
        "s.part-1.jsonl": b"new",
        "s.manifest.json": b"new",
        "s.dir": b"new",
    }


LOCK_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(30)
"""


def test_a_second_run_in_a_busy_folder_waits_then_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl(*(request(f"r{i}") for i in range(4))))
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        monkeypatch.setattr(output, "LOCK_WAIT", 0.3)
        code, out = run("split", str(source), "--max-requests", "2")
        assert code == 2 and "another jsonl-batch run is writing in" in out, out
        assert not list(tmp_path.glob("in.*part*"))
    finally:
        holder.kill()
        holder.wait()
    code, out = run("split", str(source), "--max-requests", "2")
    assert code == 0, out


def test_two_concurrent_splits_never_interleave(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    runs = []
    for side, n in (("x", 300), ("y", 200)):
        (tmp_path / side).mkdir()
        src = tmp_path / side / "in.jsonl"
        src.write_bytes(jsonl(*(request(f"{side}{i}") for i in range(n))))
        runs.append([sys.executable, "-m", "jsonl_batch", "split", str(src), "-o", str(folder),
                     "--max-requests", "1"])  # fmt: skip
    procs = [subprocess.Popen(r, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for r in runs]
    codes = [p.wait(60) for p in procs]
    assert sorted(codes) == [0, 2], [p.stderr.read() for p in procs if p.stderr]
    assert_whole(folder, "in")


# -- the fault test: kill a many-part split at random moments


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_whole(folder: Path, stem: str, committed: bool = True) -> str | None:
    """The folder holds one split of ``stem``, whole: its manifest, exactly the parts it
    lists, each matching its sha256, together the input it names by sha256. Returns that
    sha256 (None if there is no manifest and ``committed`` is False)."""
    manifest = folder / f"{stem}.manifest.json"
    if not committed and not manifest.exists():
        return None
    data = orjson.loads(manifest.read_bytes())
    listed = [p["path"] for p in data["parts"]]
    found = sorted(p.name for p in folder.iterdir() if p.name.startswith(f"{stem}.part-"))
    assert found == sorted(listed)
    whole = b""
    for part in data["parts"]:
        body = (folder / part["path"]).read_bytes()
        assert sha(body) == part["sha256"], part["path"]
        whole += body
    assert sha(whole) == data["sha256"]
    return str(data["sha256"])


def writing_started(proc: subprocess.Popen[bytes], folder: Path) -> float:
    """Wait until ``proc`` has a temporary file in ``folder`` (or ended); return when."""
    while proc.poll() is None:
        with contextlib.suppress(OSError):
            if any(n.startswith(TEMP_PREFIX) for n in os.listdir(folder)):
                break
        time.sleep(0.001)
    return time.monotonic()


def test_killed_split_leaves_the_old_set_or_the_new_set_whole(tmp_path: Path) -> None:
    seed = int(os.environ.get("FAULT_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    versions = [
        jsonl(*(request(f"a{i}", max_tokens=i + 1) for i in range(160))),
        jsonl(*(request(f"b{i}") for i in range(120))),  # fewer parts: other names
        jsonl(*(request(f"c{i}", seed=i) for i in range(160))),  # as many: the same names
    ]
    source, folder = tmp_path / "in.jsonl", tmp_path / "out"
    command = [sys.executable, "-m", "jsonl_batch", "split", str(source), "-o", str(folder),
               "--max-requests", "1", "--force"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    shas = {sha(v) for v in versions}
    kills = {"SIGKILL": 0, "SIGINT": 0, "finished": 0}
    folder.mkdir()
    span = 0.0  # how long writing and renaming take: measured on runs not killed
    deadline = time.monotonic() + 15
    for i in range(40):
        if time.monotonic() > deadline:
            break
        source.write_bytes(versions[i % len(versions)])
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        began = writing_started(proc, folder)
        if i < 2:  # the first runs set the old set and the time the writing takes
            assert proc.wait(30) == 0
            span = max(span, time.monotonic() - began)
            continue
        time.sleep(rng.uniform(0, 1.1) * span)
        how = signal.SIGKILL if rng.random() < 0.6 else signal.SIGINT
        proc.send_signal(how)
        code = proc.wait(30)
        kills["finished" if code == 0 else how.name] += 1
        # as the kill left it: a manifest in place describes the files beside it
        assert assert_whole(folder, "in", committed=False) in shas | {None}, seed
        with folder_lock(folder):  # what the next run there does first
            pass
        assert assert_whole(folder, "in") in shas, seed
        left = [p.name for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX)]
        assert not left, (seed, left)
    assert kills["SIGKILL"] + kills["SIGINT"] >= 10, kills


def test_flock_is_what_the_folder_lock_uses(tmp_path: Path) -> None:
    with folder_lock(tmp_path):
        fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)


def test_dev_stdout_redirected_to_a_file_is_standard_output(batch: Path) -> None:
    table = batch / "table.csv"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = results_args(batch, "join", "/dev/stdout", "--format", "csv")
    with open(table, "wb") as out:
        done = subprocess.run(
            [sys.executable, "-m", "jsonl_batch", *args],
            stdout=out,
            stderr=subprocess.PIPE,
            env=env,
        )
    assert done.returncode == 1, done.stderr
    assert table.read_text().startswith('"custom_id"') and b"9 requests" in done.stderr


def test_two_writers_in_one_folder_of_one_process_end_in_any_order(tmp_path: Path) -> None:
    from jsonl_batch import BatchWriter

    body = {"messages": [{"role": "user", "content": "Hi"}]}
    first = BatchWriter(tmp_path / "a.jsonl", "/v1/chat/completions", model="gpt-4o-mini")
    second = BatchWriter(tmp_path / "b.jsonl", "/v1/chat/completions", model="gpt-4o-mini")
    first.add(body)
    second.add(body)
    first.close()  # the first to lock the folder ends first
    second.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "b.jsonl"]
    assert not output._held


@pytest.mark.parametrize("where", [".", "sub"])
def test_a_partitioned_table_never_replaces_a_folder_holding_inputs(
    batch: Path, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(batch)
    if where == "sub":  # the inputs in a subfolder of the output folder
        (batch / "sub").mkdir()
        for name in ("requests.jsonl", "output.jsonl", "errors.jsonl"):
            (batch / name).rename(batch / "sub" / name)
    before = sorted(p.name for p in batch.rglob("*"))
    args = results_args(batch / where, "join", batch, "--partition-by", "status", "--force")
    code, out = run(*args)
    assert code == 2 and "holds an input" in out, out
    assert sorted(p.name for p in batch.rglob("*")) == before


def test_a_partitioned_table_never_replaces_a_link(batch: Path) -> None:
    (batch / "real").mkdir()
    (batch / "table").symlink_to(batch / "real")
    code, out = run(*results_args(batch, "join", batch / "table", "--partition-by", "status"))
    assert code == 2 and "is a symbolic link" in out, out
    assert (batch / "table").is_symlink()


SLOW_WRITER = """
import sys, time
from jsonl_batch.outputs.atomic import atomic_output
with atomic_output(sys.argv[1]) as out:
    out.write(b"half")
    out.flush()
    print("writing", flush=True)
    time.sleep(30)
"""


def test_one_file_writers_share_a_folder_and_a_killed_ones_temporary_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long write (a join streaming its table) holds no lock while it writes: another
    writer there goes ahead, leaves the live temporary alone, and removes it once dead."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    slow = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(tmp_path / "slow.csv")],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert slow.stdout is not None and slow.stdout.readline() == "writing\n"
        monkeypatch.setattr(output, "LOCK_WAIT", 0.2)
        with atomic_output(tmp_path / "fast.csv") as out:
            out.write(b"done")
        assert len(list(tmp_path.glob(f"{TEMP_PREFIX}*slow.csv.tmp"))) == 1  # still live
    finally:
        slow.kill()
        slow.wait()
    with atomic_output(tmp_path / "next.csv") as out:
        out.write(b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fast.csv", "next.csv"]


def test_a_folder_being_replaced_when_killed_is_completed(tmp_path: Path) -> None:
    """A partitioned table killed between setting the old folder aside and renaming the
    new one in: the next writer there puts the new one in place and removes the old."""
    new = tmp_path / f"{TEMP_PREFIX}abc-table.tmp"
    (new / "succeeded").mkdir(parents=True)
    (new / "succeeded" / "part-0.parquet").write_bytes(b"new")
    journal = f"{TEMP_PREFIX}j-journal"
    old = tmp_path / f"{journal}-table.old"
    (old / "failed").mkdir(parents=True)
    (tmp_path / f"{journal}.commit").write_bytes(
        orjson.dumps({"renames": [[new.name, "table"]], "remove": [], "point": None})
    )
    recover(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["table"]
    assert (tmp_path / "table" / "succeeded" / "part-0.parquet").read_bytes() == b"new"


def test_a_partitioned_table_replaces_the_old_one_whole(batch: Path) -> None:
    table = batch / "table"
    args = results_args(batch, "join", table, "--partition-by", "status")
    assert run(*args)[0] == 1
    (table / "stale").mkdir()
    code, out = run(*args, "--force")
    assert code == 1, out
    assert sorted(p.name for p in table.iterdir()) == ["failed", "missing", "succeeded"]
    assert not [p for p in batch.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_retry_parts_replace_an_earlier_single_retry_in_one_step(
    batch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The earlier ``retry.jsonl`` goes in the journaled step that puts the parts in place,
    so no kill can leave it beside them."""
    from jsonl_batch.outputs import manifests

    steps: list[tuple[list[str], list[str]]] = []

    def recording(
        folder: Path, renames: list[tuple[Path, Path]], remove: list[Path], point: Path | None
    ) -> None:
        steps.append(([f.name for _, f in renames], [p.name for p in remove]))
        output.replace_together(folder, renames, remove, point)

    target = batch / "retry.jsonl"
    assert run(*results_args(batch, "retry", target))[0] == 0
    monkeypatch.setattr(manifests, "replace_together", recording)
    code, out = run(*results_args(batch, "retry", target, "--max-requests", "2", "--force"))
    assert code == 0, out
    [(written, removed)] = steps
    assert "retry.manifest.json" in written and removed == ["retry.jsonl"]
    assert not target.exists()


def test_batch_writer_writes_through_a_device_or_a_pipe(tmp_path: Path) -> None:
    from jsonl_batch import BatchWriter

    body = {"messages": [{"role": "user", "content": "Hi"}]}
    with BatchWriter("/dev/null", "/v1/chat/completions", model="gpt-4o-mini") as writer:
        writer.add(body)
    assert writer.manifest is not None and writer.manifest.requests == 1
    assert Path("/dev/null").is_char_device()
    with pytest.raises(ValueError, match="parts need a file name"):
        BatchWriter("/dev/null", "/v1/chat/completions", rotate=True)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    with BatchWriter(fifo, "/v1/chat/completions", model="gpt-4o-mini", rotate="auto") as w:
        w.add(body)
    reader.join(10)
    assert fifo.is_fifo() and orjson.loads(got[0])["custom_id"] == "request-1"


def test_a_journal_naming_files_elsewhere_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    journal = {"renames": [], "remove": ["../victim.txt"], "point": None}
    (tmp_path / "in" / f"{TEMP_PREFIX}x.commit").write_bytes(orjson.dumps(journal))
    recover(tmp_path / "in")
    assert victim.read_text() == "mine" and not list((tmp_path / "in").iterdir())
