#!/usr/bin/env python
"""Table maintenance benchmark: what daily increments do to the tables' files, and what
`lakehouse maintain` (compaction, Z-order, checkpoint, VACUUM) gives back.

1. A full run, then INCREMENTS runs of ~1 % new data each (every run: one commit, new small files
   per table), on the configured engine.
2. Per table: data files and mean file size, before and after maintenance; maintenance seconds.
3. The orders path read before and after, best of READ_REPEATS: a full aggregate of silver orders
   and gold fct_orders, and a one-week slice by order_date (where Z-order and file statistics
   let the reader skip files).

Figures only; nothing here asserts a time. Results also go to
bench/results/maintenance_scale<S>.json.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from common import bench_context, bench_parser, context_like, generate_landing, results_file, warm_up
from dag_runs import file_figures, run_dag
from increments import append_increment
from pyspark.sql import functions as F

from pipeline.driver.dag import load_dag
from pipeline.jobs import JOBS
from pipeline.maintenance import MAINTENANCE_LAYERS, maintain

INCREMENTS = 10
READ_REPEATS = 3


def orders_reads(ctx, week_start: date) -> dict[str, float]:
    """Best-of seconds of the orders path's reads."""
    silver, fct = ctx.table_path("silver", "orders"), ctx.table_path("gold", "fct_orders")
    week = (F.col("order_date") >= F.lit(week_start)) & (
        F.col("order_date") < F.lit(week_start + timedelta(7))
    )
    queries = {
        "silver orders, all": lambda: ctx.lake.read(silver).agg(F.count("*"), F.sum("amount")).collect(),
        "fct_orders, all": lambda: ctx.lake.read(fct).agg(F.count("*"), F.sum("amount_usd")).collect(),
        "silver orders, one week": lambda: ctx.lake.read(silver).where(week).agg(F.sum("amount")).collect(),
        "fct_orders, one week": lambda: ctx.lake.read(fct).where(week).agg(F.sum("amount_usd")).collect(),
    }
    best = {}
    for name, query in queries.items():
        times = []
        for _ in range(READ_REPEATS):
            started = time.perf_counter()
            query()
            times.append(time.perf_counter() - started)
        best[name] = min(times)
    return best


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument(
        "--increments", type=int, default=INCREMENTS, help="1 %% increments after the full run"
    )
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lakehouse-bench-"))
    lake, manifest, _ = generate_landing(work, args.scale, args.seed)
    ctx = bench_context(lake, "maint-full")
    dag = load_dag(ctx.settings.config_path(ctx.settings.pipeline_file), set(JOBS))
    steps = [s for s in dag.order() if dag.steps[s].job != "maintain"]
    warm_up(ctx.spark)
    print(f"lake engine {ctx.lake.name}; a full run and {args.increments} increments of ~1 %")
    run_dag(ctx, dag, "full", steps, observe=False)
    end = date.fromisoformat(manifest["end_date"])
    for i in range(args.increments):
        day_manifest = {**manifest, "end_date": (end + timedelta(days=i)).isoformat()}
        append_increment(ctx, day_manifest, 0.01, args.seed + i)
        run_dag(context_like(ctx, f"maint-incr{i + 1}"), dag, f"incr{i + 1}", steps, observe=False)

    week_start = end - timedelta(days=14)
    before, reads_before = file_figures(ctx), orders_reads(ctx, week_start)
    started = time.perf_counter()
    for layer in MAINTENANCE_LAYERS:
        maintain(context_like(ctx, f"maint-{layer}"), layer, force=True)
    maintain_s = time.perf_counter() - started
    after, reads_after = file_figures(ctx), orders_reads(ctx, week_start)

    header = f"{'table':<32} {'files before':>12} {'after':>6} {'mean MB before':>15} {'after':>7}"
    print(f"\n1. data files per table after {args.increments} increments, before and after maintenance")
    print(header)
    print("-" * len(header))
    for key in sorted(before):
        b, a = before[key], after[key]
        print(f"{key:<32} {b['files']:>12,} {a['files']:>6,} {b['mean_mb']:>15.3f} {a['mean_mb']:>7.3f}")
    total_b, total_a = sum(v["files"] for v in before.values()), sum(v["files"] for v in after.values())
    print(f"{'all tables':<32} {total_b:>12,} {total_a:>6,}   maintenance took {maintain_s:.1f}s")
    print(f"\n2. orders path reads, best of {READ_REPEATS}")
    header = f"{'read':<26} {'before s':>9} {'after s':>8} {'after/before':>13}"
    print(header)
    print("-" * len(header))
    for name in reads_before:
        b, a = reads_before[name], reads_after[name]
        print(f"{name:<26} {b:>9.3f} {a:>8.3f} {a / b:>13.2f}")

    path = results_file(f"maintenance_scale{args.scale}.json")
    path.write_text(
        json.dumps(
            {
                "scale": args.scale,
                "engine": ctx.lake.name,
                "increments": args.increments,
                "files_before": before,
                "files_after": after,
                "maintenance_s": maintain_s,
                "reads_before_s": reads_before,
                "reads_after_s": reads_after,
            },
            indent=2,
        )
    )
    print(f"\nfigures in {path}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
