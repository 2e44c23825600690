"""The process as a whole, in subprocesses: Ctrl-C at any moment and broken standard streams
end in one line (or none), never a traceback nor an "internal error"."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import orjson
import pytest
from answer_bodies import GOOD, chat_body, chat_format
from helpers import jsonl, request

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "join"


def run(
    *args: str, path: Path | None = None, env: dict[str, str] | None = None, **kwargs: object
) -> subprocess.CompletedProcess[bytes]:
    """``python -m jsonl_batch ARGS`` with this tree first on the path (and ``path`` before it)."""
    paths = [str(p) for p in (path, ROOT) if p is not None]
    environment = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(paths)}
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "jsonl_batch", *args],
        env=environment,
        capture_output="stdout" not in kwargs,
        timeout=60,
        **kwargs,
    )


def interrupting(tmp_path: Path, module: str) -> Path:
    """A folder holding a package ``module`` whose import is interrupted by a Ctrl-C."""
    package = tmp_path / "shadow" / module
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(10)\n"
    )
    return package.parent


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("click", ["--version"]),  # before the command line is even parsed
        ("pyarrow", ["join", str(DATA / "chat.input.jsonl"), "-r", "x.jsonl", "-o", "t.csv"]),
        ("openai", ["batches", "list"]),
        # orjson's native set-up imports dataclasses: an exception there was a SIGSEGV
        ("dataclasses", ["join", str(DATA / "chat.input.jsonl"), "-r", "x.jsonl", "-o", "t.csv"]),
    ],
)
def test_ctrl_c_while_loading_is_one_line(tmp_path: Path, module: str, args: list[str]) -> None:
    done = run(*args, path=interrupting(tmp_path, module), env={"OPENAI_API_KEY": "sk-test"})
    assert done.returncode == 130, done.stderr
    assert done.stderr == b"Interrupted.\n"


def test_ctrl_c_while_a_native_module_loads_in_a_command(tmp_path: Path) -> None:
    """A module loaded while a command runs (SIGINT raises then): an interrupt inside a
    native module's set-up ends the process at once instead of crashing it."""
    code = "from jsonl_batch import interrupts\nwith interrupts.raising():\n    import orjson\n"
    paths = os.pathsep.join([str(interrupting(tmp_path, "dataclasses")), str(ROOT)])
    done = subprocess.run(  # orjson's set-up imports dataclasses, which sends the SIGINT
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": paths},
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr == b"Interrupted.\n"


def test_ctrl_c_is_130_at_any_moment_of_a_command(tmp_path: Path) -> None:
    """Interrupts at a spread of moments of a join: 130 and one line, or done first (then
    an interrupt while the interpreter exits kills it silently: shells show 130 too)."""
    output = tmp_path / "t.csv"
    command = [sys.executable, "-m", "jsonl_batch", "join", str(DATA / "chat.input.jsonl")]
    command += ["-r", str(DATA / "chat.output.jsonl"), "-o", str(output), "--force"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for delay in (0.1, 0.2, 0.3, 0.4, 0.6):
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        if interpreter_start(err):
            continue
        assert b"Traceback" not in err and b"internal error" not in err, err
        if process.returncode == 130:
            assert err == b"Interrupted.\n"
        elif process.returncode == -signal.SIGINT:  # while the interpreter shuts down
            assert err in (b"", b"Interrupted.\n")
        else:
            assert process.returncode in (0, 1), err
        if [p for p in tmp_path.iterdir() if p.name != "t.csv"]:
            # An interrupt that must exit at once (a native module loading) leaves its
            # temporary file; the next run in the folder removes it.
            again = subprocess.run(command, env=env, capture_output=True, timeout=60)
            assert again.returncode in (0, 1), again.stderr
        assert not [p for p in tmp_path.iterdir() if p.name != "t.csv"]


def interpreter_start(err: bytes) -> bool:
    """True for a traceback of Python's own start-up, before our handler could be set (the
    interpreter's modules, then the first line of ``__main__``)."""
    if b"init_import_site" in err or b"Could not import runpy" in err:
        return True
    files = re.findall(rb'File "([^"]+)"', err)
    ours = [f for f in files if not f.startswith(b"<frozen")]
    return err.startswith(b"Traceback") and all(f.endswith(b"__main__.py") for f in ours)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize(
    "args",
    [
        ["validate", str(ROOT / "samples" / "invalid.jsonl")],
        ["validate", str(ROOT / "samples" / "invalid.jsonl"), "--format", "json"],
        ["schema", "batch"],
        ["--help"],
        ["validate", "--help"],
    ],
)
@pytest.mark.parametrize("buffered", [True, False])
def test_full_disk_on_stdout_is_an_io_error(args: list[str], buffered: bool) -> None:
    env = {"PYTHONUNBUFFERED": "" if buffered else "1"}
    with open("/dev/full", "wb") as full:
        done = run(*args, env=env, stdout=full, stderr=subprocess.PIPE)
    assert done.returncode == 2
    assert done.stderr == b"Error: cannot write to standard output: No space left on device\n"


def test_closed_pipe_is_quiet(tmp_path: Path) -> None:
    lines = b"".join(b'{"custom_id": "%d"}\n' % (i % 7) for i in range(20_000))
    source = tmp_path / "bad.jsonl"
    source.write_bytes(lines)
    for fmt in ("text", "json"):
        command = [sys.executable, "-m", "jsonl_batch", "validate", str(source), "--format", fmt]
        command += ["--max-problems", "0"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert process.stdout is not None and process.stderr is not None
        process.stdout.read(10)
        process.stdout.close()  # like `| head -c 10`
        err = process.stderr.read()
        assert process.wait(timeout=60) == 1
        assert err == b""


def test_worker_processes_print_nothing() -> None:
    """A worker whose parent is gone ends on a broken pipe: it must not print a traceback
    under the parent's one line (its stderr goes nowhere; errors reach the parent)."""
    code = (
        "import sys\n"
        "from jsonl_batch.lines.parallel import Workers\n"
        "def noisy(n):\n"
        "    print('worker noise', file=sys.stderr)\n"
        "    return n\n"
        "with Workers(2) as pool:\n"
        "    print(sum(pool.map(noisy, range(8))))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)
    assert done.stdout == b"28\n" and done.stderr == b""


def test_a_stuck_clean_up_after_ctrl_c_still_ends() -> None:
    """A worker pool's shutdown can deadlock while unwinding: the process ends anyway."""
    code = (
        "import os, signal, time\n"
        "from jsonl_batch import interrupts\n"
        "interrupts.GRACE = 0.5\n"
        "with interrupts.raising():\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        time.sleep(30)\n"
        "    finally:\n"
        "        time.sleep(30)  # stuck\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=20)
    assert done.returncode == 130 and done.stderr == b"Interrupted.\n"


@pytest.mark.parametrize("command", ["join", "retry"])
def test_closed_pipe_on_a_written_table_is_quiet(command: str) -> None:
    """`-o -` read by a command that stopped: exit 1 and nothing on stderr but the summary,
    not "Error: -: Broken pipe" with status 2."""
    samples = ROOT / "samples"
    args = [str(samples / "requests.jsonl"), "-r", str(samples / "output.jsonl"), "-o", "-"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "jsonl_batch", command, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before it writes: every write fails
    err = process.stderr.read()
    assert process.wait(timeout=60) == 1
    assert b"Error" not in err and b"Traceback" not in err, err


def test_workers_are_forked_with_ctrl_c_blocked() -> None:
    """A Ctrl-C in a worker's first instants (before it ignores SIGINT) printed tracebacks
    from the fork hooks: it is blocked while workers are forked, ignored in them after."""
    code = (
        "import os, signal\n"
        "from jsonl_batch.lines.parallel import fork_pool\n"
        "seen = []\n"
        "def mask():\n"
        "    return signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])\n"
        "os.register_at_fork(after_in_child=lambda: seen.append(mask()))\n"
        "def probe(_):\n"
        "    return seen, signal.getsignal(signal.SIGINT) == signal.SIG_IGN, mask()\n"
        "pool = fork_pool(1)\n"
        "print(pool.apply(probe, (0,)), mask())\n"
        "pool.terminate()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)
    assert done.stdout == b"([True], True, False) False\n", done.stderr


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie left to a reaper that never reaps counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_their_parent() -> None:
    """A parent gone without stopping its pool (SIGKILL, or os._exit after Ctrl-C) left
    workers that could wait forever on the pool's queue lock: they now end with it."""
    code = (
        "import os, time\n"
        "from jsonl_batch.lines.parallel import Workers\n"
        "def block(_):\n"
        "    os.write(1, b'%d\\n' % os.getpid())  # one write: two workers' lines never mix\n"
        "    time.sleep(120)\n"
        "for _ in Workers(2).map(block, range(4)):\n"
        "    pass\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE)
    assert process.stdout is not None
    workers = [int(process.stdout.readline()) for _ in range(2)]
    try:
        assert all(alive(pid) for pid in workers)
        process.kill()
        process.wait(timeout=60)
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in workers)
    finally:
        process.kill()
        for pid in filter(alive, workers):  # only if the test failed
            with suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def python(code: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """``code`` run by a new Python process (this package importable), its output caught."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", code, *args]
    return subprocess.run(command, env=env, capture_output=True, timeout=120)


def test_workers_closed_without_waiting_end_by_the_next_close() -> None:
    """``close(wait=False)`` ends the workers in a thread while the caller goes on (the join
    writes its table meanwhile); the next ``close()`` (or the ``with`` block) waits for it."""
    code = (
        "import multiprocessing\n"
        "from jsonl_batch.lines.parallel import Workers\n"
        "with Workers(2) as pool:\n"
        "    assert sum(pool.map(abs, range(-4, 0))) == 10\n"
        "    pool.close(wait=False)\n"
        "    assert pool.pool is None\n"
        "print(multiprocessing.active_children())\n"
    )
    done = python(code)
    assert done.stdout == b"[]\n", done.stderr


def test_a_failure_ending_workers_in_the_thread_is_raised_by_the_next_close() -> None:
    """What fails while ``close(wait=False)``'s thread ends the workers is kept and raised
    by the next ``close()``, not printed as a thread's traceback."""
    code = (
        "import multiprocessing.pool\n"
        "from jsonl_batch.lines.parallel import Workers\n"
        "terminate = multiprocessing.pool.Pool.terminate\n"
        "def failing(self):\n"
        "    terminate(self)\n"
        "    raise OSError(5, 'Input/output error')\n"
        "multiprocessing.pool.Pool.terminate = failing\n"
        "pool = Workers(2)\n"
        "pool.close(wait=False)\n"
        "try:\n"
        "    pool.close()\n"
        "except OSError as exc:\n"
        "    print('raised', exc.errno)\n"
        "pool.close()\n"
        "print(multiprocessing.active_children())\n"
    )
    done = python(code)
    assert done.stdout == b"raised 5\n[]\n" and b"Traceback" not in done.stderr, done.stderr


def test_the_command_freezes_its_objects_at_exit() -> None:
    """The last thing the process does: the objects are frozen, so that the interpreter's
    collections at exit do not walk them all again (pyarrow's: tens of milliseconds)."""
    code = (
        "import atexit, gc\n"
        "import jsonl_batch.cli\n"
        "assert gc.get_freeze_count() == 0\n"
        "atexit._run_exitfuncs()\n"
        "print(gc.get_freeze_count() > 0)\n"
    )
    done = python(code)
    assert done.stdout == b"True\n", done.stderr


def test_a_command_loads_without_garbage_collections() -> None:
    """A command's modules load with the collector paused and are frozen (pyarrow's objects
    made it run some fifty times for nothing, and walk them later); it runs again after."""
    code = (
        "import gc\n"
        "from jsonl_batch.cli import main\n"
        "runs = []\n"
        "gc.callbacks.append(lambda phase, info: runs.append(phase))\n"
        "main.get_command(None, 'join')\n"
        "frozen = gc.get_freeze_count()\n"
        "gc.collect()\n"
        "print(len(runs), gc.isenabled(), frozen > 10_000)\n"
    )
    done = python(code)
    assert done.stdout == b"2 True True\n", done.stderr  # the collection asked for


def test_workers_hand_out_every_task_at_once_when_asked(tmp_path: Path) -> None:
    """``map(..., ahead=len(tasks))`` (the join's indexes, kept whole anyway) hands every
    task out before a result is asked for: the workers never wait for the caller (they
    idled while the join checked its inputs); by default two per worker run ahead."""
    code = (
        "import os, sys, time\n"
        "from jsonl_batch.lines.parallel import Workers\n"
        "folder = sys.argv[1]\n"
        "def mark(n):\n"
        "    open(os.path.join(folder, str(n)), 'w').close()\n"
        "    return n\n"
        "def started(tasks, ahead):\n"
        "    for name in os.listdir(folder):\n"
        "        os.remove(os.path.join(folder, name))\n"
        "    with Workers(2) as pool:\n"
        "        results = pool.map(mark, range(tasks), ahead)\n"
        "        deadline, wanted = time.monotonic() + 30, min(tasks, ahead or 4)\n"
        "        while len(os.listdir(folder)) < wanted and time.monotonic() < deadline:\n"
        "            time.sleep(0.01)\n"
        "        time.sleep(0.2)  # no more start unasked\n"
        "        done = len(os.listdir(folder))\n"
        "        assert list(results) == list(range(tasks))\n"
        "    return done\n"
        "print(started(9, 9), started(9, None))\n"
    )
    done = python(code, str(tmp_path))
    assert done.stdout == b"9 4\n", done.stderr


@pytest.mark.skipif(not hasattr(fcntl, "F_GETPIPE_SZ"), reason="pipe sizes are Linux's")
def test_workers_results_come_back_through_a_wide_pipe() -> None:
    """A result of a few hundred KB (a piece of the join's index) fits in the pipe that
    brings it back: its worker goes on without waiting for the parent to read it."""
    from jsonl_batch.lines.parallel import RESULT_PIPE_BYTES, Workers

    with Workers(2) as workers:
        assert workers.pool is not None
        pipe = workers.pool._outqueue._writer.fileno()  # type: ignore[attr-defined]
        assert fcntl.fcntl(pipe, fcntl.F_GETPIPE_SZ) >= min(RESULT_PIPE_BYTES, _pipe_max())
        assert list(workers.map(len, [b"x" * 300_000] * 4)) == [300_000] * 4


def huge_pages() -> str | None:
    """This process's ``THP_enabled`` (``/proc/self/status``: "0" once PR_SET_THP_DISABLE
    is set), None where the system has no such line."""
    with suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("THP_enabled:"):
                return line.split()[1]
    return None


@pytest.mark.skipif(huge_pages() is None, reason="no transparent huge pages here")
def test_a_large_join_of_the_program_runs_in_small_pages_and_its_workers_too(
    tmp_path: Path,
) -> None:
    """In the ``jsonl-batch`` program (``launch``), a join of ``SMALL_PAGES_BYTES`` or more
    turns transparent huge pages off for its process, and its workers inherit it: pyarrow's
    allocator re-faulted 2 MiB pages hundreds of times per 500k join. A smaller join keeps
    them (they made it faster)."""
    inputs, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inputs.write_bytes(jsonl(*(request(f"r{i}") for i in range(3))))
    lines = [
        {
            "id": f"b{i}",
            "custom_id": f"r{i}",
            "response": {"status_code": 200, "request_id": "q", "body": chat_body("hi")},
        }
        for i in range(3)
    ]
    output.write_bytes(jsonl(*lines))
    code = (
        "import re, sys\n"
        "import jsonl_batch.cli\n"
        "from jsonl_batch.interrupts import launch\n"
        "from jsonl_batch.lines.parallel import Workers\n"
        "from jsonl_batch.results import join\n"
        "def status(_=None):\n"
        "    return re.search(r'THP_enabled:\\s*(\\d)', open('/proc/self/status').read())[1]\n"
        "def command():\n"
        "    inputs, results = sys.argv[1:2], sys.argv[2:]\n"
        "    join.join_to(inputs, results, inputs[0] + '.small.parquet', workers=2)\n"
        "    print(status())\n"
        "    join.SMALL_PAGES_BYTES = 0\n"
        "    join.join_to(inputs, results, inputs[0] + '.large.parquet', workers=2)\n"
        "    with Workers(2) as workers:\n"
        "        print(status(), *sorted(set(workers.map(status, range(4)))))\n"
        "jsonl_batch.cli.main = command\n"
        "launch()\n"
    )
    done = python(code, str(inputs), str(output))
    assert done.stdout == b"1\n0 0\n", done.stderr


@pytest.mark.skipif(huge_pages() is None, reason="no transparent huge pages here")
def test_a_library_callers_process_keeps_its_huge_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``join_to`` called from a Python program never changes that process's settings,
    however large the join."""
    from jsonl_batch.results import join

    monkeypatch.setattr(join, "SMALL_PAGES_BYTES", 0)
    inputs, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inputs.write_bytes(jsonl(request("r0")))
    body = {"status_code": 200, "request_id": "q", "body": chat_body("hi")}
    output.write_bytes(jsonl({"id": "b0", "custom_id": "r0", "response": body}))
    before = huge_pages()
    join.join_to([inputs], [output], tmp_path / "t.parquet", workers=2)
    assert huge_pages() == before


def _pipe_max() -> int:
    try:
        return int(Path("/proc/sys/fs/pipe-max-size").read_text())
    except OSError:
        return 1 << 16


def _structured_files(folder: Path) -> list[str]:
    """Requests asking for a JSON schema and their answers (one not JSON: a null struct)."""
    inputs, output = folder / "in.jsonl", folder / "out.jsonl"
    inputs.write_bytes(jsonl(*(request(f"r{i}", response_format=chat_format()) for i in range(3))))
    answers = [orjson.dumps(GOOD).decode(), "not JSON", orjson.dumps(GOOD).decode()]
    lines = []
    for i, answer in enumerate(answers):
        response = {"status_code": 200, "request_id": "req_1", "body": chat_body(answer)}
        lines.append({"id": f"b{i}", "custom_id": f"r{i}", "response": response})
    output.write_bytes(jsonl(*lines))
    return [str(inputs), "-r", str(output)]


@pytest.mark.parametrize("kind", ["plain", "structured"])
@pytest.mark.parametrize("module", ["pyarrow.compute", "dateutil"])
def test_a_join_never_imports_pyarrow_compute_or_dateutil(
    tmp_path: Path, kind: str, module: str
) -> None:
    """pyarrow.compute builds ~300 Python wrappers when imported (~30 ms, in the join's
    process and again in each worker's first task): the join calls Arrow's functions through
    ``jsonl_batch.compute`` instead, and never pyarrow's methods that import it (``take``,
    ``filter``, ``cast``, ``from_arrays(mask=...)`` ...). A worker forked from the process
    inherits the watch. Nor does it look for ``dateutil``: pyarrow does, to infer the type
    of a bare Python value (``pa.array([True])``), on every call when it is not installed."""
    code = (
        "import sys\n"
        "class Watch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name == {module!r}:\n"
        "            with open(sys.argv[1], 'a') as f:\n"
        "                f.write('imported\\n')\n"
        "sys.meta_path.insert(0, Watch())\n"
        "from jsonl_batch.results import join\n"
        "join.PARALLEL_MIN_BYTES = 0\n"
        "from jsonl_batch.cli import main\n"
        "main(sys.argv[2:])\n"
    )
    if kind == "plain":
        results = [str(DATA / f"chat.{name}.jsonl") for name in ("output", "errors")]
        files = [str(DATA / "chat.input.jsonl"), "-r", results[0], "-r", results[1]]
    else:
        files = _structured_files(tmp_path)
    watched = tmp_path / "imported"
    done = python(code, str(watched), "join", *files, "-o", str(tmp_path / "t.parquet"))
    assert done.returncode in (0, 1), done.stderr
    assert (tmp_path / "t.parquet").exists()
    assert not watched.exists()
