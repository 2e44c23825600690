"""Benchmark: our commands against the raw orjson-parse floor, measured in the same run.

    python bench/run.py            # every case (but join-500k and join-2m)
    python bench/run.py validate   # cases whose name starts with "validate"
    python bench/run.py join-2m    # 2,000,000 requests in 40 batches against DuckDB

Each case prints the floor (read every line with a 1 MiB buffer and orjson-parse it, one
core), our time, and the ratio. Some cases print a second baseline beside (``BESIDE``):
``stats`` the counting floor (the token counter alone over the same texts, one core),
``split`` GNU ``split -l`` into the same number of parts (a target only for
``split-200mb-unchecked``, the split of a file validated before: ``split-200mb`` validates
every line, and validation alone takes over 3x GNU's time). The join cases compare with DuckDB
instead, each side in its own process, with both peak memories (``join_case``). Times are the
best of ``--repeat`` runs on a warm cache (ours and a second baseline timed in turns). Peak
RSS is the largest of this process and its worker processes.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import datasets
import join_case

from jsonl_batch import split_file, validate_file
from jsonl_batch.tokens.encodings import text_counter
from jsonl_batch.tokens.stats import file_stats

BUFFER = 1 << 20


def floor(path: Path) -> None:
    """The floor: read and orjson-parse every line."""
    loads = orjson.loads
    with open(path, "rb", buffering=BUFFER) as handle:
        for line in handle:
            loads(line)


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024


def check_valid(path: Path) -> None:
    report = validate_file(path)
    assert report.valid, report.problems[:3]


SPLIT_OUT = datasets.DATA / "split-out"


def split_in_five(path: Path) -> None:
    """Split into five parts of 10,000 requests (validation, cut points, copies, sha256s)."""
    result = split_file(path, SPLIT_OUT, max_requests=10_000, force=True)
    assert result.manifest is not None and len(result.manifest.parts) == 5


def split_unchecked(path: Path) -> None:
    """The same five parts from a file validated before (``check=False``): the lines found
    by ``memchr``, not parsed; the copies and sha256s as in ``split-200mb``."""
    result = split_file(path, SPLIT_OUT, max_requests=10_000, force=True, check=False)
    assert result.manifest is not None and len(result.manifest.parts) == 5


def count_tokens(path: Path) -> None:
    """Token and cost estimates: tiktoken over every request, one worker per core."""
    total = file_stats(path).total.to_dict()
    assert total["requests"] == 50_000 and total["cost"]["input"], total


CASES: dict[str, tuple[Callable[[], Path], Callable[[Path], object], float]] = {
    # name: (dataset, our operation, target ratio to the floor)
    "validate-200mb": (datasets.large_chat, check_valid, 1.3),
    "validate-25mb": (datasets.small_chat, check_valid, 1.5),
    "split-200mb": (datasets.large_chat, split_in_five, 2.5),
    "split-200mb-unchecked": (datasets.large_chat, split_unchecked, 1.0),
    "stats-200mb": (datasets.large_chat, count_tokens, 6.0),
}


Baseline = tuple[Callable[[], object], Callable[[], object] | None]
"""A second baseline's operation, and what to do (untimed) before each run of it."""


def counting_floor(path: Path) -> Baseline:
    """The counter alone (``encodings.text_counter``, one core) over every message text."""
    texts = []
    with open(path, "rb", buffering=BUFFER) as handle:
        for line in handle:
            texts += [m["content"] for m in orjson.loads(line)["body"]["messages"]]
    count = text_counter("o200k_base")
    return (lambda: sum(map(count, texts))), None


def gnu_split(path: Path) -> Baseline:
    """GNU ``split -l 10000``: the same five parts, bytes copied, nothing checked. Before
    each run (untimed), its folder and ours are emptied: both write new files (overwriting
    its earlier parts made GNU split slower and more variable, 0.16-0.27 s against 0.13 s;
    ours replaces an earlier split by unlinking it first, which costs it ~0.02 s)."""
    folder = datasets.DATA / "gnu-split-out"
    folder.mkdir(exist_ok=True)

    def run() -> None:
        subprocess.run(["split", "-l", "10000", path, folder / "part-"], check=True)

    def empty() -> None:
        for old in [*folder.iterdir(), *SPLIT_OUT.glob("*")]:
            old.unlink()

    return run, empty


BESIDE: dict[str, tuple[str, Callable[[Path], Baseline], float | None]] = {
    # name: (label, make the baseline's operation, target ratio ours/it)
    "stats-200mb": ("counting floor", counting_floor, None),
    "split-200mb": ("GNU split -l", gnu_split, None),  # validation alone is over 3x
    "split-200mb-unchecked": ("GNU split -l", gnu_split, 3.0),
}

VERSUS: dict[
    str,
    tuple[Callable[[], tuple[Path, ...]], Callable[[], object], Callable[[], object], str, float],
] = {
    # name: (datasets, our operation, another tool's, its name, target ratio ours/theirs)
    "join-structured-50k": (
        join_case.structured_paths,
        join_case.structured_ours,
        join_case.structured_duckdb,
        "duckdb",
        1.5,
    ),
}


def versus(name: str, repeat: int) -> None:
    """A case timed against another tool instead of the floor, alternating the two runs."""
    make, ours, theirs, label, target = VERSUS[name]
    size = sum(p.stat().st_size for p in make()) / 1e6
    ours()  # warm caches and imports for both
    theirs()
    ours_s = theirs_s = float("inf")
    for _ in range(repeat):
        theirs_s = min(theirs_s, best(theirs, 1))
        ours_s = min(ours_s, best(ours, 1))
    ratio = ours_s / theirs_s
    flag = "" if ratio <= target else "  over target"
    print(
        f"{name:<22}{size:>8.0f}MB{theirs_s:>9.3f}s{ours_s:>9.3f}s{ratio:>7.2f}x"
        f"{target:>7.1f}x  (floor column: {label}){flag}"
    )


def beside(name: str, path: Path, ours: Callable[[], object], repeat: int) -> tuple[float, str]:
    """A case's second baseline, timed in turns with ours (each the best of ``repeat`` runs,
    so that the machine's load hits both alike): ours' time, and the line to print below."""
    label, make, target = BESIDE[name]
    if label.startswith("GNU") and shutil.which("split") is None:
        return best(ours, repeat), f"  {label}: not installed"
    it, before = make(path)
    ours_s = it_s = float("inf")
    for _ in range(repeat):
        if before is not None:
            before()
        it_s = min(it_s, best(it, 1))
        ours_s = min(ours_s, best(ours, 1))
    ratio = ours_s / it_s
    goal = "" if target is None else f", target {target:.1f}x"
    flag = "" if target is None or ratio <= target else "  over target"
    return ours_s, f"  {label:<16}{it_s:>21.3f}s   ours/it {ratio:.2f}x{goal}{flag}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help="case-name prefixes (default: all)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    chosen = [n for n in CASES if not args.cases or any(n.startswith(c) for c in args.cases)]
    print(f"{'case':<22}{'size':>10}{'floor':>10}{'ours':>10}{'ratio':>8}{'target':>8}")
    for name in chosen:
        make, operation, target = CASES[name]
        path = make()
        floor_s = best(lambda: floor(path), args.repeat)  # noqa: B023
        ours = partial(operation, path)
        below = None
        if name in BESIDE:  # ours is timed in turns with the second baseline
            ours_s, below = beside(name, path, ours, args.repeat)
        else:
            ours_s = best(ours, args.repeat)
        size = path.stat().st_size / 1e6
        ratio = ours_s / floor_s
        flag = "" if ratio <= target else "  over target"
        print(
            f"{name:<22}{size:>8.0f}MB{floor_s:>9.3f}s{ours_s:>9.3f}s{ratio:>7.2f}x"
            f"{target:>7.1f}x{flag}"
        )
        if below is not None:
            print(below)
    for name in join_case.CASES:
        named = any(name.startswith(c) for c in args.cases)
        if named or (not args.cases and name not in join_case.EXPLICIT):
            join_case.compare(name, args.repeat)
    for name in VERSUS:
        if not args.cases or any(name.startswith(c) for c in args.cases):
            versus(name, args.repeat)
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
