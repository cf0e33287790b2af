#!/usr/bin/env python
"""Log-read benchmark: what reading a table's position costs as its history grows.

A table with --commits small appends (each carrying commit metadata and a Txn, as a pipeline step
writes them), plus one OPTIMIZE on top (a commit without metadata, as maintenance leaves it), is
read on each engine: the newest metadata value (`latest_metadata`, a step's watermark or consumed
version), the current version, a Txn version and the newest commit (`history(limit=1)`), best of
REPEATS each, at HISTORY_SIZES commits. Bounded reads cost the same at every size.

Figures only; nothing here asserts a time. Results also go to bench/results/log_commits<N>.json.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import bench_parser, results_file, warm_up

from pipeline.lake import Lake, Txn, open_lake
from pipeline.settings import load_settings
from pipeline.spark import build_spark

ENGINES = ("delta-spark", "delta-rs")
REPEATS = 3
KEY = "consumed"


def best_of(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def grow(lake: Lake, path: str, upto: int) -> None:
    """Appends until the table has `upto` commits (one row each, metadata and Txn like a step's)."""
    spark = lake.spark
    start = (lake.version(path) or -1) + 1
    for v in range(start, upto):
        lake.append(path, spark.createDataFrame([(v,)], "v long"), metadata={KEY: v}, txn=Txn("bench", v))


def reads(lakes: dict[str, Lake], path: str) -> dict[str, dict[str, float]]:
    return {
        name: {
            "latest_metadata": best_of(lambda lk=lake: lk.latest_metadata(path, KEY)),
            "version": best_of(lambda lk=lake: lk.version(path)),
            "transaction_version": best_of(lambda lk=lake: lk.transaction_version(path, "bench")),
            "history_1": best_of(lambda lk=lake: lk.history(path, 1)),
        }
        for name, lake in lakes.items()
    }


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--commits", type=int, default=500, help="commits in the largest table (default 500)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lakehouse-bench-log-"))
    settings = load_settings("local", lake_root=str(work))
    spark = build_spark(settings)
    warm_up(spark)
    lakes = {engine: open_lake(engine, spark) for engine in ENGINES}
    path = str(work / "t")
    shutil.rmtree(path, ignore_errors=True)
    sizes = sorted({max(1, args.commits // 10), args.commits})
    figures = {}
    for size in sizes:
        # delta-rs writes the commits (fast, no Spark job per commit); both engines read them.
        grow(lakes["delta-rs"], path, size)
        lakes["delta-rs"].optimize(path)
        figures[size] = reads(lakes, path)
    print(f"\nlog reads on a table of N small commits + 1 OPTIMIZE, best of {REPEATS}, seconds")
    header = f"{'read':<22} " + " ".join(f"{f'{e} N={n}':>20}" for e in ENGINES for n in sizes)
    print(header)
    print("-" * len(header))
    for read in ("latest_metadata", "version", "transaction_version", "history_1"):
        cells = " ".join(f"{figures[n][e][read]:>20.3f}" for e in ENGINES for n in sizes)
        print(f"{read:<22} {cells}")
    out = results_file(f"log_commits{args.commits}.json")
    out.write_text(json.dumps({"commits": sizes, "seconds": figures}, indent=2))
    print(f"\nfigures in {out}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
