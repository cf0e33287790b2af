#!/usr/bin/env python
"""Bronze benchmark: generate a landing zone at --scale, then time each dataset's bronze step
against a baseline measured in the same run and session: plain Spark reading the same files
and writing Parquet (no Delta, no audit columns, no ledger, no corrupt-record handling).

Prints seconds, rows/s, peak memory (driver Python + JVM, sampled) and the bronze/baseline
ratio. Figures only; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import psutil

from pipeline.catalog import load_catalog
from pipeline.context import RunContext
from pipeline.generate import generate
from pipeline.jobs import bronze
from pipeline.lake import open_lake
from pipeline.settings import load_settings
from pipeline.spark import build_spark
from pipeline.storage import list_files


class PeakMemory:
    """Peak resident memory of this process and its children (the JVM), sampled every 50 ms."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()

    def _rss(self) -> int:
        me = psutil.Process()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):  # a Python worker may just have exited
                total += child.memory_info().rss
        return total

    def __enter__(self):
        self.peak = self._rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def baseline(spark, ctx, dataset: str, out: Path) -> int:
    """Plain Spark: read the landing files the simplest way, write Parquet."""
    spec = ctx.catalog[dataset]
    files = [f.path for f in list_files(spark, ctx.landing_path(dataset), spec.file_suffix) if f.size]
    reader = spark.read
    if spec.reader == "csv":
        df = reader.option("header", "true").option("multiLine", "true").option("escape", '"').csv(files)
    elif spec.reader == "parquet":
        df = reader.option("mergeSchema", "true").parquet(*files)
    else:  # fx_json (one document per file) and kafka replay lines are both JSON
        df = reader.option("multiLine", str(spec.reader == "fx_json").lower()).json(files)
    df.write.mode("overwrite").parquet(str(out / dataset))
    return spark.read.parquet(str(out / dataset)).count()


def measure(fn):
    with PeakMemory() as mem:
        started = time.perf_counter()
        rows = fn()
        seconds = time.perf_counter() - started
    return rows, seconds, mem.peak / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", type=Path, help="keep the lake here (default: a temp folder, removed)")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="lakehouse-bench-"))
    lake = work / "lake"
    shutil.rmtree(lake, ignore_errors=True)
    started = time.perf_counter()
    manifest = generate(lake / "landing", scale=args.scale, seed=args.seed)
    gen_seconds = time.perf_counter() - started
    total = sum(d["records"] for d in manifest["datasets"].values())
    print(
        f"generate: scale {args.scale}, {total:,} records in {gen_seconds:.1f}s ({total / gen_seconds:,.0f} records/s)"
    )

    settings = load_settings("local", lake_root=str(lake))
    spark = build_spark(settings)
    ctx = RunContext(
        settings,
        spark,
        open_lake(settings.lake.engine, spark),
        load_catalog(settings.config_path(settings.datasets_file)),
        "bench",
    )
    measure(lambda: spark.range(100_000).selectExpr("sum(id)").collect())  # JVM warm-up, not reported

    results = []
    for dataset in ctx.catalog.datasets:
        base_rows, base_s, base_mem = measure(partial(baseline, spark, ctx, dataset, work / "baseline"))
        result, bronze_s, bronze_mem = measure(partial(bronze, ctx, dataset))
        rows = result.rows_out
        results.append(
            {
                "dataset": dataset,
                "rows": rows,
                "bronze_s": bronze_s,
                "bronze_rows_s": rows / bronze_s,
                "bronze_peak_mb": bronze_mem,
                "baseline_rows": base_rows,
                "baseline_s": base_s,
                "baseline_rows_s": base_rows / base_s,
                "baseline_peak_mb": base_mem,
                "ratio": bronze_s / base_s,
            }
        )

    header = f"{'dataset':<18} {'rows':>9} {'bronze s':>9} {'rows/s':>9} {'peak MB':>8} | {'plain s':>8} {'rows/s':>9} {'peak MB':>8} | {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['dataset']:<18} {r['rows']:>9,} {r['bronze_s']:>9.2f} {r['bronze_rows_s']:>9,.0f} {r['bronze_peak_mb']:>8,.0f} | "
            f"{r['baseline_s']:>8.2f} {r['baseline_rows_s']:>9,.0f} {r['baseline_peak_mb']:>8,.0f} | {r['ratio']:>5.2f}x"
        )
    rows = sum(r["rows"] for r in results)
    bronze_total = sum(r["bronze_s"] for r in results)
    base_total = sum(r["baseline_s"] for r in results)
    print("-" * len(header))
    print(
        f"{'total':<18} {rows:>9,} {bronze_total:>9.2f} {rows / bronze_total:>9,.0f} {'':>8} | {base_total:>8.2f} {'':>9} {'':>8} | {bronze_total / base_total:>5.2f}x"
    )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"bronze_scale{args.scale}.json").write_text(
        json.dumps({"generate_s": gen_seconds, "results": results}, indent=2)
    )
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
