"""Benchmark: our commands against the raw orjson-parse floor, measured in the same run.

    python bench/run.py            # every case
    python bench/run.py validate   # cases whose name starts with "validate"

Each case prints the floor (read every line with a 1 MiB buffer and orjson-parse it, one
core), our time, and the ratio. Times are the best of ``--repeat`` runs on a warm cache.
Peak RSS is the largest of this process and its worker processes.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import datasets

from jsonl_batch import validate_file

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


CASES: dict[str, tuple[Callable[[], Path], Callable[[Path], object], float]] = {
    # name: (dataset, our operation, target ratio to the floor)
    "validate-200mb": (datasets.large_chat, check_valid, 1.3),
    "validate-25mb": (datasets.small_chat, check_valid, 1.5),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help="case-name prefixes (default: all)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    chosen = [n for n in CASES if not args.cases or any(n.startswith(c) for c in args.cases)]
    print(f"{'case':<18}{'size':>10}{'floor':>10}{'ours':>10}{'ratio':>8}{'target':>8}")
    for name in chosen:
        make, operation, target = CASES[name]
        path = make()
        floor_s = best(lambda: floor(path), args.repeat)  # noqa: B023
        ours_s = best(lambda: operation(path), args.repeat)  # noqa: B023
        size = path.stat().st_size / 1e6
        ratio = ours_s / floor_s
        flag = "" if ratio <= target else "  over target"
        print(
            f"{name:<18}{size:>8.0f}MB{floor_s:>9.3f}s{ours_s:>9.3f}s{ratio:>7.2f}x"
            f"{target:>7.1f}x{flag}"
        )
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
