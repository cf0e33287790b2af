#!/usr/bin/env python
"""Engine benchmark: delta-spark against delta-rs, the same calls on the same data in one
SparkSession (it has the Delta jars; delta-rs needs none).

1. The whole DAG on a fresh lake from the same landing files, once per engine in ENGINE_ORDER
   (A, B, B, A: a steady drift between runs cancels in the means): seconds per layer and per
   step, rows in per second, peak memory (driver Python + JVM, sampled), delta-rs / delta-spark.
2. The orders path (silver_orders + gold_fct_orders + gold_revenue_daily) on a fresh copy of its
   inputs per engine, alternately, best of ORDERS_REPEATS.

Runs as shipped but without the DQ gates and observers (LAKEHOUSE_DQ=off, no lineage, metrics,
report): they cost the same on both engines and bench_pipeline.py measures them.
Figures only; nothing here asserts a time. Results also go to bench/results/engines_scale<S>.json.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from common import ENGINES, bench_context, bench_parser, generate_landing, results_file, warm_up
from dag_runs import mean_of, run_dag
from orders_path import ORDERS_REPEATS, ORDERS_STEPS, copy_orders_inputs

from pipeline.context import RunContext
from pipeline.dq.gate import ENV_SWITCH as DQ_SWITCH
from pipeline.driver.dag import load_dag
from pipeline.jobs import JOBS
from pipeline.lake import open_lake
from pipeline.settings import load_settings

ENGINE_ORDER = ("delta-spark", "delta-rs", "delta-rs", "delta-spark")


def engine_context(base: RunContext, engine: str, lake: Path, run_id: str) -> RunContext:
    settings = load_settings("local", lake_root=str(lake))
    return RunContext(settings, base.spark, open_lake(engine, base.spark), base.catalog, run_id)


def fresh_lake(landing: Path, lake: Path) -> Path:
    shutil.rmtree(lake, ignore_errors=True)
    shutil.copytree(landing, lake / "landing")
    return lake


def print_full(runs: dict[str, dict]) -> None:
    spark_run, rs_run = runs["delta-spark"], runs["delta-rs"]
    print(f"\n1. whole DAG per engine, fresh lake, mean of {ENGINE_ORDER.count('delta-rs')} runs each")
    header = (
        f"{'':<26} {'rows in':>10} {'delta-spark s':>14} {'delta-rs s':>11} {'rs/spark':>9} "
        f"{'spark MB':>9} {'rs MB':>7}"
    )
    print(header)
    print("-" * len(header))

    def line(name: str, a: dict, b: dict) -> str:
        ratio = b["seconds"] / a["seconds"] if a["seconds"] else float("nan")
        return (
            f"{name:<26} {a['rows_in']:>10,} {a['seconds']:>14.2f} {b['seconds']:>11.2f} {ratio:>8.2f}x "
            f"{a['peak_mb']:>9,.0f} {b['peak_mb']:>7,.0f}"
        )

    rs_steps = {s["step"]: s for s in rs_run["steps"]}
    for s in spark_run["steps"]:
        print(line(s["step"], s, rs_steps[s["step"]]))
    print("-" * len(header))
    for layer, totals in spark_run["layers"].items():
        print(line(f"{layer} total", totals, rs_run["layers"][layer]))
    print(line("total", spark_run["total"], rs_run["total"]))
    a, b = spark_run["total"], rs_run["total"]
    print(
        f"rows in per second: delta-spark {a['rows_in_s']:,.0f}, delta-rs {b['rows_in_s']:,.0f}; "
        "peak = max over the steps of driver Python + JVM"
    )


def print_orders(orders: dict[str, list[dict]]) -> None:
    print(f"\n2. orders path per engine, fresh copy of its inputs, best of {ORDERS_REPEATS} (alternating)")
    best = {e: min(runs, key=lambda r: r["total"]["seconds"]) for e, runs in orders.items()}
    header = f"{'':<28} {'delta-spark s':>14} {'delta-rs s':>11} {'rs/spark':>9}"
    print(header)
    print("-" * len(header))
    rs_steps = {s["step"]: s for s in best["delta-rs"]["steps"]}
    for s in best["delta-spark"]["steps"]:
        b = rs_steps[s["step"]]
        print(
            f"  {s['step']:<26} {s['seconds']:>14.2f} {b['seconds']:>11.2f} {b['seconds'] / s['seconds']:>8.2f}x"
        )
    a, b = best["delta-spark"]["total"], best["delta-rs"]["total"]
    print(
        f"{'orders path':<28} {a['seconds']:>14.2f} {b['seconds']:>11.2f} {b['seconds'] / a['seconds']:>8.2f}x"
    )
    print(f"peak MB: delta-spark {a['peak_mb']:,.0f}, delta-rs {b['peak_mb']:,.0f}")


def main() -> int:
    args = bench_parser(__doc__).parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lakehouse-bench-engines-"))
    generated, _, gen_seconds = generate_landing(work, args.scale, args.seed)
    landing = generated / "landing"
    base = bench_context(generated, "bench-engines")
    if base.lake.name != "delta-spark":
        raise SystemExit(
            "delta-spark is not available in this session: run `make setup` to fetch the Delta jars"
        )
    dag = load_dag(base.settings.config_path(base.settings.pipeline_file), set(JOBS))
    os.environ[DQ_SWITCH] = "off"
    warm_up(base.spark)
    load_start = os.getloadavg()
    print(
        f"Spark {base.spark.version}, {base.spark.sparkContext.master}, {os.cpu_count()} CPUs, "
        f"load average {load_start[0]:.1f} (other processes slow every figure)"
    )

    full: dict[str, list[dict]] = {e: [] for e in ENGINES}
    for i, engine in enumerate(ENGINE_ORDER):
        lake = fresh_lake(landing, work / f"full_{engine}")
        ctx = engine_context(base, engine, lake, f"bench-{engine}-{i + 1}")
        full[engine].append(run_dag(ctx, dag, f"{engine} {i + 1}", observe=False))
    means = {e: mean_of(runs) for e, runs in full.items()}
    print_full(means)

    orders: dict[str, list[dict]] = {e: [] for e in ENGINES}
    for i in range(ORDERS_REPEATS):
        for engine in ENGINES if i % 2 == 0 else reversed(ENGINES):
            source = work / f"full_{engine}"  # the inputs this engine wrote in section 1
            copy = work / "orders_lake"
            copy_orders_inputs(source, copy)
            ctx = engine_context(base, engine, copy, f"bench-orders-{engine}-{i + 1}")
            orders[engine].append(
                run_dag(ctx, dag, f"orders {engine} {i + 1}", list(ORDERS_STEPS), observe=False)
            )
    print_orders(orders)
    load_end = os.getloadavg()
    print(f"\nload average (1 min) at start {load_start[0]:.1f}, at end {load_end[0]:.1f}")

    path = results_file(f"engines_scale{args.scale}.json")
    path.write_text(
        json.dumps(
            {"scale": args.scale, "seed": args.seed, "generate_s": gen_seconds, "order": ENGINE_ORDER,
             "full": full, "orders": orders, "load_average": {"start": load_start, "end": load_end}},
            indent=2,
            default=str,
        )
    )  # fmt: skip
    print(f"\nfigures in {path}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
