#!/usr/bin/env python
"""Skew benchmark: the orders path (silver_orders, gold_fct_orders, gold_revenue_daily and the
steps they need) on the sample as generated and on skewed orders (`generate(skew=True)`: Zipf over
accounts, one hot day), the same volume, in SKEW_ORDER (A, B, B, A: drift cancels in the means).

Shows whether the joins and aggregations by account and by day hold up when a few keys carry most
rows: per step mean seconds, skewed / uniform, and the session's adaptive execution settings (AQE
splits a skewed join partition when it is skewedPartitionFactor times the median and above the
byte threshold). Runs without the DQ gates and observers (bench_pipeline.py measures those).
Figures only; nothing here asserts a time. Results also go to bench/results/skew_<engine>_scale<S>.json.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from common import (
    add_engine_option,
    bench_context,
    bench_parser,
    context_like,
    generate_landing,
    warm_up,
    write_results,
)
from dag_runs import mean_of, run_dag
from orders_path import ORDERS_STEPS
from pyspark.sql import functions as F

from pipeline.dq.gate import ENV_SWITCH as DQ_SWITCH
from pipeline.driver.dag import load_dag
from pipeline.jobs import JOBS

SKEW_ORDER = ("uniform", "skewed", "skewed", "uniform")
AQE_CONF = (
    "spark.sql.adaptive.enabled",
    "spark.sql.adaptive.skewJoin.enabled",
    "spark.sql.adaptive.skewJoin.skewedPartitionFactor",
    "spark.sql.adaptive.skewJoin.skewedPartitionThresholdInBytes",
    "spark.sql.adaptive.coalescePartitions.enabled",
)


def concentration(ctx) -> dict[str, float]:
    """Of silver orders: the share of the busiest 1 % of accounts and of the busiest day."""
    orders = ctx.lake.read(ctx.table_path("silver", "orders"))
    total = orders.count()
    by_account = orders.groupBy("account_id").count().orderBy(F.desc("count"))
    top = max(1, by_account.count() // 100)
    top_rows = by_account.limit(top).agg(F.sum("count")).first()[0]
    hot_day = orders.groupBy("order_date").count().agg(F.max("count")).first()[0]
    return {"orders": total, "top_1pct_accounts_share": top_rows / total, "hot_day_share": hot_day / total}


def main() -> int:
    parser = bench_parser(__doc__)
    add_engine_option(parser)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lakehouse-bench-skew-"))
    landings = {}
    for kind in ("uniform", "skewed"):
        lake, _, _ = generate_landing(work / kind, args.scale, args.seed, skew=kind == "skewed")
        landings[kind] = lake / "landing"
    ctx = bench_context(work / "uniform" / "lake", "bench-skew", engine=args.engine)
    dag = load_dag(ctx.settings.config_path(ctx.settings.pipeline_file), set(JOBS))
    needed = set(ORDERS_STEPS).union(*(dag.upstream(s) for s in ORDERS_STEPS))
    steps = [s for s in dag.order() if s in needed]
    os.environ[DQ_SWITCH] = "off"
    warm_up(ctx.spark)
    aqe = {key: ctx.spark.conf.get(key) for key in AQE_CONF}  # set, or Spark's default
    print(
        f"lake engine {ctx.lake.name}; "
        + ", ".join(f"{k.removeprefix('spark.sql.adaptive.')}={v}" for k, v in aqe.items())
    )

    runs: dict[str, list[dict]] = {"uniform": [], "skewed": []}
    shape = {}
    for i, kind in enumerate(SKEW_ORDER):
        lake = work / f"run{i + 1}"
        shutil.rmtree(lake, ignore_errors=True)
        shutil.copytree(landings[kind], lake / "landing")
        run_ctx = context_like(ctx, f"bench-skew-{kind}-{i + 1}", lake)
        runs[kind].append(run_dag(run_ctx, dag, f"{kind} {i + 1}", steps, observe=False))
        shape.setdefault(kind, concentration(run_ctx))
        shutil.rmtree(lake, ignore_errors=True)
    uniform, skewed = mean_of(runs["uniform"]), mean_of(runs["skewed"])

    print(
        f"\norders path, uniform vs skewed orders, scale {args.scale}, means of {SKEW_ORDER.count('skewed')} runs each"
    )
    for kind, s in shape.items():
        print(
            f"  {kind:<8} {s['orders']:>9,} silver orders; busiest 1 % of accounts {s['top_1pct_accounts_share']:.1%}, "
            f"busiest day {s['hot_day_share']:.1%}"
        )
    header = f"{'step':<26} {'uniform s':>10} {'skewed s':>9} {'skewed/uniform':>15}"
    print(header)
    print("-" * len(header))
    skewed_steps = {s["step"]: s for s in skewed["steps"]}
    for s in uniform["steps"]:
        k = skewed_steps[s["step"]]
        print(
            f"{s['step']:<26} {s['seconds']:>10.2f} {k['seconds']:>9.2f} {k['seconds'] / s['seconds']:>14.2f}x"
        )
    a, b = uniform["total"], skewed["total"]
    print(f"{'total':<26} {a['seconds']:>10.2f} {b['seconds']:>9.2f} {b['seconds'] / a['seconds']:>14.2f}x")
    orders_a = sum(s["seconds"] for s in uniform["steps"] if s["step"] in ORDERS_STEPS)
    orders_b = sum(s["seconds"] for s in skewed["steps"] if s["step"] in ORDERS_STEPS)
    print(f"orders path ({', '.join(ORDERS_STEPS)}): skewed / uniform {orders_b / orders_a:.2f}x")

    path = write_results(
        f"skew_{ctx.lake.name}_scale{args.scale}.json",
        {"scale": args.scale, "engine": ctx.lake.name, "aqe": aqe, "shape": shape, "order": SKEW_ORDER,
         "orders_path_ratio": orders_b / orders_a, **runs},
    )  # fmt: skip
    print(f"\nfigures in {path}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
