#!/usr/bin/env python
"""Pipeline benchmark: the whole DAG (config/pipeline.yaml) in one SparkSession, as `lakehouse run`
runs it (`run_steps`, local executor), with an in-memory run-state store.

1. Full run on a fresh lake at --scale: per step seconds, rows in/out, rows/s, peak memory
   (driver Python + JVM, sampled), per-layer totals and the grand total.
2. The orders path (silver_orders + gold_fct_orders + gold_revenue_daily), rerun on a fresh copy
   of its inputs, next to a hand-written plain-Spark version of the same logic measured in the
   same session (alternately, best of ORDERS_REPEATS: the session's first Parquet write is slow):
   bronze orders' Parquet files and silver fx_rates/accounts in, try_cast typing,
   invalid rows out, latest per order, FX as of the order date by a range join + window, SCD2
   as-of join, revenue by day, plain `df.write.parquet` out. And the FX as-of alone, as a range
   join vs the pipeline's calendar equi-join (`fx_calendar` + broadcast), on the same orders.
3. The cost of watching: the full run of 1 is the run as shipped (DQ gates in the steps; lineage,
   metrics, alerts, Data Docs and the run report as observers, each timed). The same DAG again
   on a fresh lake from the same landing files with all of them off (LAKEHOUSE_DQ=off, no
   observers), in WATCH_ORDER (bare, watched, watched, bare: a steady drift between runs cancels
   in the means), after one watched run that no figure counts (WARM_UP: the JVM still warming): per step mean seconds, DQ seconds and their share, observer seconds, overhead.
4. Incremental cost: --incremental-share of new data appended to the landing zone (new files
   with a later date; newer versions of CRM records, new order/event ids, Kafka offsets that
   continue each partition), the whole DAG again, then once more with nothing new; and its floor
   (commit_floor): the commits it made, each at the cost of a one-row commit measured here.
--cold-only stops after 1 (large scales: the cold full run's time and peak memory).
5. The figures of issue 11's table, each a ratio within this run: no-change rerun and 1 % increment
   over a warm full run (section 3's mean watched run: same process, JVM warm), orders path over plain
   Spark, watched over bare; and the cold full run's seconds and peak memory, which bench_sweep.py
   compares across scales.

Sections live in modules beside this script: dag_runs (1), orders_path (2), watching (3),
increments (4). --engine picks the lake engine (default: the local settings'); --skew generates
skewed orders (pipeline.generate's skew). Figures only; nothing here asserts a time. Results also
go to bench/results/pipeline_<engine>_scale<S>[_skew].json.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from commit_floor import commits_since, floor_figures, one_row_commit_s, print_floor, table_versions
from common import (
    add_engine_option,
    bench_context,
    bench_parser,
    context_like,
    generate_landing,
    warm_up,
    write_results,
)
from dag_runs import CHILD_AGE_S, file_figures, mean_of, print_full_run, run_dag
from increments import append_increment, print_incremental
from orders_path import ORDERS_STEPS, orders_comparison, print_orders
from watching import WARM_UP, WATCH_ORDER, fastest_steps_ratio, fresh_lake_run, print_watching

from pipeline.driver.dag import Dag, load_dag
from pipeline.jobs import JOBS


def selection(dag: Dag, only: list[str]) -> list[str]:
    """`only`, the orders path (section 2 reruns it) and every step they need, in DAG order."""
    unknown = sorted(set(only) - set(dag.steps))
    if unknown:
        raise SystemExit(f"--only: no such step: {', '.join(unknown)} (config/pipeline.yaml)")
    wanted = {*only, *ORDERS_STEPS}
    wanted |= set().union(*(dag.upstream(s) for s in wanted))
    return [s for s in dag.order() if s in wanted]


def issue_figures(
    full: dict,
    orders: dict,
    watched: dict,
    bare: dict,
    fastest_steps: float | None,
    incremental: dict,
    no_change: dict,
    floor: dict,
) -> dict:
    """Issue 11's figures from this run; every ratio to a full run has the warm one below it.
    `watched`, `bare`: section 3's means; `fastest_steps`: its fastest_steps_ratio (None: the
    steps ran side by side, where a step's time holds its neighbours' gates)."""
    warm = watched["wall_s"]
    return {
        "warm_full_s": warm,
        "no_change_over_warm_full": no_change["wall_s"] / warm,
        "no_change_slowest_step_s": max(s["seconds"] for s in no_change["steps"]),
        "increment_over_warm_full": incremental["wall_s"] / warm,
        "increment_commit_floor_over_warm_full": floor["floor_over_warm_full"],
        "orders_over_plain": orders["ratio"],
        "watched_over_bare": watched["wall_s"] / bare["wall_s"],
        "watched_over_bare_fastest_steps": fastest_steps,
        "cold_full_s": full["wall_s"],
        "cold_full_peak_mb": full["total"]["peak_mb"],
    }


def print_figures(engine: str, scale: float, f: dict) -> None:
    print(
        f"\n5. issue 11's figures, {engine}, scale {scale} (ratios within this run; warm full run {f['warm_full_s']:.1f}s)"
    )
    print(
        f"  no-change rerun / warm full run      {f['no_change_over_warm_full']:6.3f}   (slowest step with nothing to do {f['no_change_slowest_step_s']:.2f}s)"
    )
    print(
        f"  1 % increment / warm full run        {f['increment_over_warm_full']:6.3f}   (its commits alone, one after another at one row's cost each: {f['increment_commit_floor_over_warm_full']:.3f})"
    )
    print(f"  orders path / plain Spark            {f['orders_over_plain']:6.2f}")
    fastest = f["watched_over_bare_fastest_steps"]
    print(
        f"  gates + observers / bare run         {f['watched_over_bare']:6.2f}   "
        + (
            f"(step times, each at its fastest of its runs: {fastest:.2f}, a lower bound)"
            if fastest is not None
            else "(no step-times figure: steps side by side, each step's time holds its neighbours')"
        )
    )
    print(
        f"  cold full run                        {f['cold_full_s']:6.1f}s, peak {f['cold_full_peak_mb']:,.0f} MB"
    )


def main() -> int:
    parser = bench_parser(__doc__)
    add_engine_option(parser)
    parser.add_argument("--skew", action="store_true", help="skewed orders: a few accounts, one hot day")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="STEP",
        help="run these steps, the orders path and every step they need (default: the whole DAG)",
    )
    parser.add_argument(
        "--cold-only",
        action="store_true",
        help="section 1 only: the cold full run (time, peak memory, files), for large scales",
    )
    parser.add_argument(
        "--incremental-share",
        type=float,
        default=0.01,
        help="new data for the incremental run, as a share of each dataset's records (default 0.01)",
    )
    args = parser.parse_args()
    if not 0 < args.incremental_share <= 1:
        parser.error("--incremental-share must be within (0, 1]")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="lakehouse-bench-"))
    shutil.rmtree(work / "orders_lake", ignore_errors=True)
    shutil.rmtree(work / "plain_orders", ignore_errors=True)
    lake, manifest, gen_seconds = generate_landing(work, args.scale, args.seed, skew=args.skew)
    ctx = bench_context(lake, "bench-full", engine=args.engine)
    dag = load_dag(ctx.settings.config_path(ctx.settings.pipeline_file), set(JOBS))
    selected = selection(dag, args.only) if args.only else dag.order()
    warm_up(ctx.spark)
    load_start = os.getloadavg()
    print(
        f"lake engine {ctx.lake.name}, Spark {ctx.spark.version}, {ctx.spark.sparkContext.master}, "
        f"{os.cpu_count()} CPUs, {ctx.settings.spark.parallel_steps} step(s) at once (spark.parallel_steps), "
        f"load average {load_start[0]:.1f} (other processes slow every figure)"
    )

    full = run_dag(ctx, dag, "full", selected)
    files = file_figures(ctx)
    print_full_run(full, files)
    summary = {
        "scale": args.scale,
        "seed": args.seed,
        "engine": ctx.lake.name,
        "skew": args.skew,
        "parallel_steps": ctx.settings.spark.parallel_steps,
        "steps": selected,
        "generate_s": gen_seconds,
        "landing_records": sum(d["records"] for d in manifest["datasets"].values()),
        "full": full,
        "files_after_full": files,
        "peak_memory_note": f"driver Python + JVM, children younger than {CHILD_AGE_S}s left out",
    }
    if args.cold_only:
        summary["figures"] = {"cold_full_s": full["wall_s"], "cold_full_peak_mb": full["total"]["peak_mb"]}
        return finish(summary, args, work, load_start)

    orders = orders_comparison(ctx, dag, work, full)
    print_orders(orders)

    # Both after sections 1 and 2 and a run not counted, so neither pays the JVM's warm-up or
    # the one-off GX import.
    warm_up_s = fresh_lake_run(ctx, dag, selected, work, "warm-up", watched=WARM_UP == "watched")["wall_s"]
    print(f"\n3. warm-up: one {WARM_UP} full run, not counted: {warm_up_s:.1f}s")
    runs: dict[str, list[dict]] = {"bare": [], "watched": []}
    for i, kind in enumerate(WATCH_ORDER):
        runs[kind].append(
            fresh_lake_run(ctx, dag, selected, work, f"{kind}{i + 1}", watched=kind == "watched")
        )
    bare, watched = mean_of(runs["bare"]), mean_of(runs["watched"])
    print_watching(watched, bare)

    started = time.perf_counter()
    added = append_increment(ctx, manifest, args.incremental_share, args.seed)
    prep_s = time.perf_counter() - started
    versions = table_versions(ctx)
    incremental = run_dag(context_like(ctx, "bench-incremental"), dag, "incremental", selected)
    commits = commits_since(ctx, versions)
    no_change = run_dag(context_like(ctx, "bench-no-change"), dag, "no-change", selected)
    print_incremental(watched, incremental, no_change, added, args.incremental_share, prep_s)
    floor = floor_figures(commits, one_row_commit_s(ctx, work), watched["wall_s"])
    print_floor(floor)

    one_at_a_time = ctx.settings.spark.parallel_steps == 1
    fastest_steps = fastest_steps_ratio(runs["watched"], runs["bare"]) if one_at_a_time else None
    figures = issue_figures(full, orders, watched, bare, fastest_steps, incremental, no_change, floor)
    print_figures(ctx.lake.name, args.scale, figures)
    summary.update(
        figures=figures,
        incremental_share=args.incremental_share,
        orders=orders,
        watching={"order": WATCH_ORDER, "warm_up": {"kind": WARM_UP, "wall_s": warm_up_s}, **runs},
        incremental={"added": added, "prepare_s": prep_s, "commit_floor": floor, **incremental},
        no_change=no_change,
    )
    return finish(summary, args, work, load_start)


def finish(summary: dict, args, work: Path, load_start: tuple[float, float, float]) -> int:
    """Print the load, write the results, drop the temporary lake."""
    load_end = os.getloadavg()
    print(f"\nload average (1 min) at start {load_start[0]:.1f}, at end {load_end[0]:.1f}")
    summary["load_average"] = {"start": load_start, "end": load_end}
    name = f"pipeline_{summary['engine']}_scale{args.scale}{'_skew' if args.skew else ''}.json"
    print(f"\nfigures in {write_results(name, summary)}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
