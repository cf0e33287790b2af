#!/usr/bin/env python
"""Bronze benchmark: generate a landing zone at --scale, then time each dataset's bronze step
against a baseline measured in the same run and session: plain Spark reading the same files
and writing Parquet (no Delta, no audit columns, no ledger, no corrupt-record handling).

Prints seconds, rows/s, peak memory (driver Python + JVM, sampled) and the bronze/baseline
ratio. Figures only; nothing here asserts a time.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from functools import partial
from pathlib import Path

from common import bench_context, bench_parser, generate_landing, measure, results_file, warm_up

from pipeline.jobs import bronze
from pipeline.storage import list_files


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


def main() -> int:
    parser = bench_parser(__doc__)
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="lakehouse-bench-"))
    lake, _, gen_seconds = generate_landing(work, args.scale, args.seed)
    ctx = bench_context(lake)
    spark = ctx.spark
    warm_up(spark)

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
    results_file(f"bronze_scale{args.scale}.json").write_text(
        json.dumps({"generate_s": gen_seconds, "results": results}, indent=2)
    )
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
