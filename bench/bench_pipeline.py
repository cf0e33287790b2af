#!/usr/bin/env python
"""Pipeline benchmark: the whole DAG (config/pipeline.yaml) in one SparkSession, as `lakehouse run`
runs it (`run_steps`, local executor), with an in-memory run-state store.

1. Full run on a fresh lake at --scale: per step seconds, rows in/out, rows/s, peak memory
   (driver Python + JVM, sampled), per-layer totals and the grand total.
2. The orders path (silver_orders + gold_fct_orders + gold_revenue_daily), rerun on a fresh copy
   of its inputs, next to a hand-written plain-Spark version of the same logic measured in the
   same session (alternately, best of ORDERS_REPEATS: the session's first Parquet write is slow): bronze orders' Parquet files and silver fx_rates/accounts in, try_cast typing,
   invalid rows out, latest per order, FX as of the order date by a range join + window, SCD2
   as-of join, revenue by day, plain `df.write.parquet` out. And the FX as-of alone, as a range
   join vs the pipeline's calendar equi-join (`fx_calendar` + broadcast), on the same orders.
3. The cost of watching: the full run of 1 is the run as shipped (DQ gates in the steps; lineage,
   metrics, alerts, Data Docs and the run report as observers, each timed). The same DAG again
   on a fresh lake from the same landing files with all of them off (LAKEHOUSE_DQ=off, no
   observers), in WATCH_ORDER (bare, watched, watched, bare: a steady drift between runs cancels
   in the means): per step mean seconds, DQ seconds and their share, observer seconds, overhead.
4. Incremental cost: --incremental-share of new data appended to the landing zone (new files
   with a later date; newer versions of CRM records, new order/event ids, Kafka offsets that
   continue each partition), the whole DAG again, then once more with nothing new.

Figures only; nothing here asserts a time. Results also go to bench/results/pipeline_scale<S>.json.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from common import (
    PeakMemory,
    bench_context,
    bench_parser,
    context_like,
    generate_landing,
    measure,
    results_file,
    warm_up,
)
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from pipeline.cli import observers_for
from pipeline.context import RunContext
from pipeline.dq.gate import ENV_SWITCH as DQ_SWITCH
from pipeline.driver.dag import Dag, Step, load_dag
from pipeline.driver.executors import LocalExecutor
from pipeline.driver.runner import run_steps
from pipeline.driver.state import SUCCEEDED, MemoryStateStore
from pipeline.gold import transforms as T
from pipeline.jobs import JOBS
from pipeline.step_result import StepResult

LAYERS = ("bronze", "silver", "gold")
RUN_END = "(run end)"
ORDERS_STEPS = ("silver_orders", "gold_fct_orders", "gold_revenue_daily")
ORDERS_INPUTS = (("bronze", "snowflake_orders"), ("silver", "accounts"), ("silver", "fx_rates"))
FX_REPEATS = 3
ORDERS_REPEATS = 2
# Section 3. Measured: consecutive whole runs drift (~100 s, then ~85 s); with ABBA order the
# drift cancels in the means, where alternating bare, watched favoured the side that ran last.
WATCH_ORDER = ("bare", "watched", "watched", "bare")
# Leave out the JVM's short-lived forks (see common.PeakMemory): they would count the JVM twice.
CHILD_AGE_S = 1.0


# --- 1. running the DAG, measured per step ------------------------------------------------------


class MeasuringExecutor:
    """The local executor with a stopwatch and the peak-memory sampler around every step."""

    name = LocalExecutor.name

    def __init__(self, label: str, total: int):
        self.inner = LocalExecutor()
        self.label, self.total = label, total
        self.figures: dict[str, dict[str, float]] = {}

    def run(self, step: Step, ctx: Any) -> StepResult:
        figures = self.figures.setdefault(step.name, {"seconds": 0.0, "peak_mb": 0.0})
        started = time.perf_counter()
        try:
            with PeakMemory(CHILD_AGE_S) as mem:
                return self.inner.run(step, ctx)
        finally:  # a retried step adds up its attempts (the runner's backoff sleeps are not in it)
            figures["seconds"] += time.perf_counter() - started
            figures["peak_mb"] = max(figures["peak_mb"], mem.peak / 2**20)
            print(
                f"  [{self.label} {len(self.figures)}/{self.total}] {step.name}: {figures['seconds']:.1f}s",
                file=sys.stderr,
                flush=True,
            )


class TimedObserver:
    """A step observer with a stopwatch: seconds spent in it, per (observer, step or RUN_END)."""

    def __init__(self, inner: Any, seconds: defaultdict):
        self.inner, self.seconds = inner, seconds
        self.kind = type(inner).__name__

    def _timed(self, key: str, event: str, *args: Any) -> None:
        started = time.perf_counter()
        try:
            getattr(self.inner, event)(*args)
        finally:
            self.seconds[(self.kind, key)] += time.perf_counter() - started

    def step_started(self, ctx: Any, step: Step, outcome: Any) -> None:
        self._timed(step.name, "step_started", ctx, step, outcome)

    def step_finished(self, ctx: Any, step: Step, outcome: Any) -> None:
        self._timed(step.name, "step_finished", ctx, step, outcome)

    def run_finished(self, ctx: Any, state: Any) -> None:
        self._timed(RUN_END, "run_finished", ctx, state)


def run_dag(
    ctx: RunContext, dag: Dag, label: str, selected: list[str] | None = None, *, observe: bool = True
) -> dict:
    """Run `selected` (default: every step) through the pipeline's runner; per-step figures.
    `observe`: with the observers `lakehouse run` uses (lineage, metrics, alerts, Data Docs,
    report), each timed; the DQ gates are inside the steps (switched by LAKEHOUSE_DQ)."""
    selected = selected or dag.order()
    executor = MeasuringExecutor(label, len(selected))
    observer_s: defaultdict = defaultdict(float)
    observers = [TimedObserver(o, observer_s) for o in observers_for(ctx.settings, dag)] if observe else []
    log = io.StringIO()  # the runner's progress and summary; shown when a step fails
    started = time.perf_counter()
    state = run_steps(
        ctx, dag, selected, log, executor=executor, store=MemoryStateStore(), observers=observers
    )
    wall = time.perf_counter() - started
    if state.status != SUCCEEDED:
        print(log.getvalue(), file=sys.stderr)
        raise SystemExit(f"{label} run {state.run_id}: {state.status}; figures would be meaningless")
    steps = []
    for outcome in state.steps:
        figures = executor.figures[outcome.step]
        seconds = figures["seconds"]
        steps.append(
            {
                "step": outcome.step,
                "layer": dag.steps[outcome.step].job,
                "seconds": seconds,
                "rows_in": outcome.rows_in,
                "rows_out": outcome.rows_out,
                "rows_in_s": outcome.rows_in / seconds if seconds else 0.0,
                "peak_mb": figures["peak_mb"],
                "attempts": outcome.attempts,
                "skipped": outcome.details.get("skipped"),
                "dq_s": float(outcome.details.get("dq_seconds") or 0.0),
                "observers_s": sum(v for (_, key), v in observer_s.items() if key == outcome.step),
            }
        )
    by_kind: defaultdict = defaultdict(float)
    for (kind, _), seconds in observer_s.items():
        by_kind[kind] += seconds
    return {
        "run_id": state.run_id,
        "steps": steps,
        "layers": _layer_totals(steps),
        "total": _totals(steps),
        "wall_s": wall,
        "observed": observe,
        "observers_s": dict(by_kind),
        "observers_run_end_s": sum(v for (_, key), v in observer_s.items() if key == RUN_END),
    }


def _layer_totals(steps: list[dict]) -> dict:
    return {layer: _totals(mine) for layer in LAYERS if (mine := [s for s in steps if s["layer"] == layer])}


def _totals(steps: list[dict]) -> dict:
    seconds = sum(s["seconds"] for s in steps)
    rows_in = sum(s["rows_in"] for s in steps)
    return {
        "seconds": seconds,
        "dq_s": sum(s["dq_s"] for s in steps),
        "observers_s": sum(s["observers_s"] for s in steps),
        "rows_in": rows_in,
        "rows_out": sum(s["rows_out"] for s in steps),
        "rows_in_s": rows_in / seconds if seconds else 0.0,
        "peak_mb": max(s["peak_mb"] for s in steps),
    }


def print_full_run(run: dict) -> None:
    header = f"{'step':<26} {'layer':<6} {'rows in':>10} {'rows out':>10} {'seconds':>8} {'in rows/s':>10} {'peak MB':>8}"
    rule = "-" * len(header)

    def line(name: str, layer: str, r: dict) -> str:
        return (
            f"{name:<26} {layer:<6} {r['rows_in']:>10,} {r['rows_out']:>10,} {r['seconds']:>8.2f} "
            f"{r['rows_in_s']:>10,.0f} {r['peak_mb']:>8,.0f}"
        )

    print(f"\n1. full run, fresh lake, {len(run['steps'])} steps in one SparkSession")
    print(header)
    print(rule)
    for s in run["steps"]:
        print(line(s["step"], s["layer"], s))
    print(rule)
    for layer, totals in run["layers"].items():
        print(line(f"{layer} total", layer, totals))
    print(line("total", "", run["total"]))
    print(f"(runner wall clock {run['wall_s']:.2f}s; rows/s = rows in / seconds; peak = max over the steps)")


# --- 2. the orders path against plain Spark -----------------------------------------------------


def copy_orders_inputs(src_lake: Path, dst_lake: Path) -> None:
    """A fresh lake holding only what the orders path reads (its Delta logs use relative paths)."""
    shutil.rmtree(dst_lake, ignore_errors=True)
    for layer, name in ORDERS_INPUTS:
        shutil.copytree(src_lake / layer / name, dst_lake / layer / name)


def plain_orders(spark: SparkSession, ctx: RunContext, out: Path) -> None:
    """The orders path by hand, plain Spark: bronze Parquet + silver fx/accounts in, Parquet out."""
    currencies = list(ctx.references(ctx.contracts["orders"])["currencies"])
    # bronze is append-only, so the table folder's data files are its snapshot (Spark skips _delta_log)
    raw = spark.read.parquet(ctx.table_path("bronze", "snowflake_orders"))

    def text(name: str, case) -> Column:
        value = case(F.trim(F.col(name)))
        return F.when(value != "", value)

    typed = raw.select(
        text("order_id", F.upper).alias("order_id"),
        text("account_id", F.upper).alias("account_id"),
        F.expr("try_cast(order_ts AS timestamp)").alias("order_ts"),
        text("status", F.lower).alias("status"),
        text("currency", F.upper).alias("currency"),
        F.expr("try_cast(amount AS decimal(18,2))").alias("amount"),
        F.expr("try_cast(updated_at AS timestamp)").alias("updated_at"),
    ).withColumn("order_date", F.to_date("order_ts"))
    valid = typed.where(
        F.col("order_id").isNotNull() & F.col("currency").isin(currencies) & (F.col("amount") >= 0)
    )
    latest = (
        valid.withColumn(
            "_rn",
            F.row_number().over(
                Window.partitionBy("order_id").orderBy(F.col("updated_at").desc_nulls_last())
            ),
        )
        .where("_rn = 1")
        .drop("_rn")
    )
    priced = fx_range_join(latest, ctx.lake.read(ctx.table_path("silver", "fx_rates")))
    accounts = ctx.lake.read(ctx.table_path("silver", "accounts"))
    versions = accounts.select(
        F.col("account_id").alias("_acc_id"),
        "segment",
        "country",
        F.col("valid_from").alias("_from"),
        F.col("valid_to").alias("_to"),
        F.min("valid_from").over(Window.partitionBy("account_id")).alias("_first"),
    )
    as_of = (
        (F.col("account_id") == F.col("_acc_id"))
        & ((F.col("_from") <= F.col("order_ts")) | (F.col("_from") == F.col("_first")))
        & (F.col("_to").isNull() | (F.col("order_ts") < F.col("_to")))
    )
    fct = priced.join(versions, as_of, "left").select(
        "order_id",
        "account_id",
        "order_ts",
        "order_date",
        "status",
        "currency",
        "amount",
        "rate_to_usd",
        F.round(F.col("amount") * F.col("rate_to_usd"), 2).cast("decimal(18,2)").alias("amount_usd"),
        "segment",
        "country",
    )
    fct.write.mode("overwrite").parquet(str(out / "fct_orders"))
    (
        spark.read.parquet(str(out / "fct_orders"))
        .where(F.col("status").isin("placed", "shipped"))
        .groupBy("order_date", "country", "segment")
        .agg(F.sum("amount_usd").alias("revenue_usd"), F.count(F.lit(1)).alias("order_count"))
        .write.mode("overwrite")
        .parquet(str(out / "revenue_daily"))
    )


def fx_range_join(orders: DataFrame, fx_rates: DataFrame) -> DataFrame:
    """FX as of the order date the direct way: every rate on or before the order date joins,
    a window keeps the latest (USD = 1). Adds rate_to_usd; orders must be unique by order_id."""
    rates = fx_rates.where(F.col("currency") != "USD").select(
        F.col("currency").alias("_fx_currency"),
        F.col("rate_date").alias("_rate_date"),
        F.col("rate_to_usd").cast(T.RATE).alias("_rate"),
    )
    joined = orders.join(
        rates,
        (F.col("currency") == F.col("_fx_currency")) & (F.col("_rate_date") <= F.col("order_date")),
        "left",
    )
    latest = Window.partitionBy("order_id").orderBy(F.col("_rate_date").desc_nulls_last())
    return (
        joined.withColumn("_rn", F.row_number().over(latest))
        .where("_rn = 1")
        .withColumn(
            "rate_to_usd", F.when(F.col("currency") == "USD", F.lit(1).cast(T.RATE)).otherwise(F.col("_rate"))
        )
        .drop("_rn", "_fx_currency", "_rate_date", "_rate")
    )


def fx_asof_comparison(ctx: RunContext) -> dict:
    """The FX as-of alone on silver orders: range join + window vs the pipeline's calendar
    (`fx_calendar`, cached, then the broadcast equi-join `_fx_lookup`, as gold runs them). Each is
    computed in full (noop sink), FX_REPEATS times alternately; best and all times reported."""
    orders = ctx.lake.read(ctx.table_path("silver", "orders")).select(
        "order_id", "order_date", "currency", "amount"
    )
    fx = ctx.lake.read(ctx.table_path("silver", "fx_rates"))
    n_orders = orders.count()

    def range_once() -> dict:
        fx_range_join(orders, fx).write.format("noop").mode("overwrite").save()
        return {}

    def calendar_once() -> dict:
        started = time.perf_counter()
        cal = T.fx_calendar(fx).cache()
        rows = cal.count()
        built = time.perf_counter()
        try:
            T._fx_lookup(orders, cal, "order_date").write.format("noop").mode("overwrite").save()
        finally:
            cal.unpersist()
        return {"build_s": built - started, "lookup_s": time.perf_counter() - built, "rows": rows}

    runs: dict[str, list[dict]] = {"range_join": [], "calendar": []}
    peaks = {"range_join": 0.0, "calendar": 0.0}
    for _ in range(FX_REPEATS):
        for name, fn in (("range_join", range_once), ("calendar", calendar_once)):
            parts, seconds, peak = measure(fn, CHILD_AGE_S)
            runs[name].append({"seconds": seconds, **parts})
            peaks[name] = max(peaks[name], peak)
    best = {name: min(found, key=lambda r: r["seconds"]) for name, found in runs.items()}
    # Do both give every order the same rate? (a figure, not a check)
    cal = T.fx_calendar(fx).cache()
    by_range = fx_range_join(orders, fx).select("order_id", F.col("rate_to_usd").alias("_r"))
    differ = (
        T._fx_lookup(orders, cal, "order_date")
        .select("order_id", F.col("rate_to_usd").alias("_c"))
        .join(by_range, "order_id", "full")
        .where(~F.col("_r").eqNullSafe(F.col("_c")))
        .count()
    )
    cal.unpersist()
    return {
        "orders": n_orders,
        "calendar_rows": best["calendar"]["rows"],
        "range_join_s": best["range_join"]["seconds"],
        "calendar_s": best["calendar"]["seconds"],
        "calendar_build_s": best["calendar"]["build_s"],
        "calendar_lookup_s": best["calendar"]["lookup_s"],
        "ratio_range_over_calendar": best["range_join"]["seconds"] / best["calendar"]["seconds"],
        "runs": runs,
        "peak_mb": peaks,
        "orders_with_different_rate": differ,
    }


def orders_comparison(ctx: RunContext, dag: Dag, work: Path, full: dict) -> dict:
    """Plain Spark and the pipeline's three steps, alternately ORDERS_REPEATS times, each on a
    fresh copy of the inputs; the best of each is reported (all times are in the results)."""
    lake = Path(ctx.settings.lake.root)
    copy = work / "orders_lake"
    out = work / "plain_orders"
    spark = ctx.spark
    plain_runs, pipeline_runs = [], []
    for i in range(ORDERS_REPEATS):
        copy_orders_inputs(lake, copy)
        copy_ctx = context_like(ctx, f"bench-orders-{i + 1}", copy)
        _, seconds, peak = measure(partial(plain_orders, spark, copy_ctx, out), CHILD_AGE_S)
        plain_runs.append({"seconds": seconds, "peak_mb": peak})
        pipeline_runs.append(run_dag(copy_ctx, dag, f"orders {i + 1}", list(ORDERS_STEPS), observe=False))
    plain_rows = {
        "fct_orders": spark.read.parquet(str(out / "fct_orders")).count(),
        "revenue_daily": spark.read.parquet(str(out / "revenue_daily")).count(),
    }
    fx = fx_asof_comparison(copy_ctx)  # on the last copy, whose silver orders the pipeline just built
    plain = min(plain_runs, key=lambda r: r["seconds"])
    rerun = min(pipeline_runs, key=lambda r: r["total"]["seconds"])
    in_full = sum(s["seconds"] for s in full["steps"] if s["step"] in ORDERS_STEPS)
    pipeline_s = rerun["total"]["seconds"]
    return {
        "pipeline_steps": rerun["steps"],
        "pipeline_s": pipeline_s,
        "pipeline_peak_mb": rerun["total"]["peak_mb"],
        "pipeline_runs_s": [r["total"]["seconds"] for r in pipeline_runs],
        "pipeline_full_run_s": in_full,
        "plain_s": plain["seconds"],
        "plain_peak_mb": plain["peak_mb"],
        "plain_runs_s": [r["seconds"] for r in plain_runs],
        "plain_rows": plain_rows,
        "ratio": pipeline_s / plain["seconds"],
        "ratio_full_run": in_full / plain["seconds"],
        "fx_asof": fx,
    }


def print_orders(o: dict) -> None:
    print(
        f"\n2. orders path: pipeline steps vs plain Spark, same session, each on a fresh copy of the "
        f"inputs, best of {ORDERS_REPEATS} (alternating)"
    )
    header = f"{'':<30} {'rows out':>10} {'seconds':>8} {'peak MB':>8}"
    print(header)
    print("-" * len(header))
    for s in o["pipeline_steps"]:
        print(f"  {s['step']:<28} {s['rows_out']:>10,} {s['seconds']:>8.2f} {s['peak_mb']:>8,.0f}")
    print(f"{'pipeline (3 steps)':<30} {'':>10} {o['pipeline_s']:>8.2f} {o['pipeline_peak_mb']:>8,.0f}")
    print(f"{'  same steps in the full run':<30} {'':>10} {o['pipeline_full_run_s']:>8.2f}")
    rows = o["plain_rows"]
    print(
        f"{'plain Spark + Parquet':<30} {rows['fct_orders']:>10,} {o['plain_s']:>8.2f} {o['plain_peak_mb']:>8,.0f}"
    )
    print(f"{'  (revenue_daily rows)':<30} {rows['revenue_daily']:>10,}")
    print(
        f"ratio pipeline / plain: {o['ratio']:.2f}x (full-run figures: {o['ratio_full_run']:.2f}x); the pipeline "
        "also applies every contract rule, writes quarantine, counts and commits Delta (the lake engine named at the top)"
    )
    fx = o["fx_asof"]
    print(
        f"FX as-of alone on {fx['orders']:,} silver orders (noop sink, best of {FX_REPEATS}): "
        f"range join + window {fx['range_join_s']:.2f}s; calendar + broadcast equi-join "
        f"{fx['calendar_s']:.2f}s (build {fx['calendar_build_s']:.2f}s, {fx['calendar_rows']:,} rows; "
        f"lookup {fx['calendar_lookup_s']:.2f}s) -> range join / calendar {fx['ratio_range_over_calendar']:.2f}x; "
        f"orders whose rate differs between the two: {fx['orders_with_different_rate']:,}"
    )


# --- 3. the cost of watching ---------------------------------------------------------------------


def fresh_lake_run(ctx: RunContext, dag: Dag, work: Path, label: str, *, watched: bool) -> dict:
    """The whole DAG on a fresh lake from the same landing files (taken before the increments of
    section 4), watched as shipped or with the DQ gates and every observer off."""
    lake = work / f"{label}_lake"
    shutil.rmtree(lake, ignore_errors=True)
    shutil.copytree(Path(ctx.settings.lake.root) / "landing", lake / "landing")
    previous = os.environ.get(DQ_SWITCH)
    if not watched:
        os.environ[DQ_SWITCH] = "off"
    try:
        return run_dag(context_like(ctx, f"bench-{label}", lake), dag, label, observe=watched)
    finally:
        if previous is None:
            os.environ.pop(DQ_SWITCH, None)
        else:
            os.environ[DQ_SWITCH] = previous
        shutil.rmtree(lake, ignore_errors=True)


def mean_of(runs: list[dict]) -> dict:
    """The runs' means: per step (seconds, DQ, observers), wall clock and observers by kind."""

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    steps = [
        {
            **step,
            **{
                key: mean([next(s[key] for s in r["steps"] if s["step"] == step["step"]) for r in runs])
                for key in ("seconds", "dq_s", "observers_s")
            },
        }
        for step in runs[0]["steps"]
    ]
    kinds = {kind for r in runs for kind in r["observers_s"]}
    return {
        **runs[0],
        "steps": steps,
        "layers": _layer_totals(steps),
        "total": _totals(steps),
        "wall_s": mean([r["wall_s"] for r in runs]),
        "observers_s": {k: mean([r["observers_s"].get(k, 0.0) for r in runs]) for k in kinds},
        "observers_run_end_s": mean([r["observers_run_end_s"] for r in runs]),
    }


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:5.1f}%" if whole else "    -"


def print_watching(watched: dict, bare: dict) -> None:
    print(
        "\n3. the cost of watching: the DAG as shipped (DQ gates in the steps; lineage, metrics, "
        "alerts, Data Docs and report as observers) vs the same DAG with all of them off; each on a "
        f"fresh lake from the same landing files, after sections 1-2 (warm JVM, GX imported); "
        f"order {', '.join(WATCH_ORDER)}; means"
    )
    header = (
        f"{'step':<26} {'watched s':>9} {'dq s':>7} {'dq %':>6} {'obs s':>7} | {'bare s':>8} "
        f"{'(watched+obs)/bare':>18}"
    )
    rule = "-" * len(header)
    print(header)
    print(rule)
    bare_steps = {s["step"]: s for s in bare["steps"]}

    def line(name: str, w: dict, b: dict) -> str:
        ratio = f"{(w['seconds'] + w['observers_s']) / b['seconds']:.2f}x" if b["seconds"] else "-"
        return (
            f"{name:<26} {w['seconds']:>9.2f} {w['dq_s']:>7.2f} {_share(w['dq_s'], w['seconds']):>6} "
            f"{w['observers_s']:>7.2f} | {b['seconds']:>8.2f} {ratio:>18}"
        )

    for s in watched["steps"]:
        print(line(s["step"], s, bare_steps[s["step"]]))
    print(rule)
    for layer in watched["layers"]:
        print(line(f"{layer} total", watched["layers"][layer], bare["layers"][layer]))
    print(line("total", watched["total"], bare["total"]))
    step_overhead = (
        watched["total"]["seconds"] + sum(watched["observers_s"].values()) - bare["total"]["seconds"]
    )
    wall_overhead = watched["wall_s"] - bare["wall_s"]
    print(
        f"overhead: {step_overhead:.1f}s ({_share(step_overhead, bare['total']['seconds']).strip()}) over the"
        f" steps' mean times plus observers; DQ {watched['total']['dq_s']:.1f}s, observers "
        f"{sum(watched['observers_s'].values()):.1f}s (at run end {watched['observers_run_end_s']:.1f}s). "
        f"Mean wall clock: watched {watched['wall_s']:.1f}s, bare {bare['wall_s']:.1f}s -> "
        f"{wall_overhead:.1f}s ({_share(wall_overhead, bare['wall_s']).strip()})"
    )
    print(
        "observers: "
        + ", ".join(f"{kind} {seconds:.2f}s" for kind, seconds in sorted(watched["observers_s"].items()))
    )
    print(
        "(dq s: the gate inside the step, included in watched s; obs s: observer calls around the step,"
        " outside it. Bronze steps other than Kafka have no gate: they show the run-to-run noise."
        " bronze_kafka_events' dq s is judging and recording each micro-batch; evaluating the"
        " contract rules rides the sink's aggregate and shows in watched s only. The first GX"
        " import in a process, ~5 s, is not in these figures: section 1 paid it.)"
    )


# --- 4. incremental data and reruns -------------------------------------------------------------


def _later_timestamp(value: str, day: date) -> str:
    """The same time of day on `day` (CSV style, second precision, Z); unparseable stays as is."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return value
    return f"{day.isoformat()}T{parsed:%H:%M:%S}Z"


def _iso_ms(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _csv_increment(folder: Path, day: date, share: float, rng: np.random.Generator) -> tuple[int, int]:
    """One new export dated `day` holding ~share of the records (from files with the usual
    header, well-formed rows only) with updated_at moved to `day`: newer versions of them."""
    files = sorted(folder.glob("*.csv"))
    parsed = []
    for f in files:
        with f.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        if rows:
            parsed.append((tuple(rows[0]), rows[1:]))
    header = Counter(h for h, _ in parsed).most_common(1)[0][0]
    picked: list[list[str]] = []
    for h, rows in parsed:
        if h == header:
            keep = rng.random(len(rows)) < share
            picked += [r for r, k in zip(rows, keep, strict=True) if k and len(r) == len(header)]
    if not picked:
        picked = [next(r for h, rows in parsed if h == header for r in rows if len(r) == len(header))]
    updated = header.index("updated_at")
    for r in picked:
        r[updated] = _later_timestamp(r[updated], day)
    stem = files[0].name.rsplit("_", 1)[0]
    with (folder / f"{stem}_{day:%Y%m%d}.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(header)
        writer.writerows(picked)
    return 1, len(picked)


def _parquet_increment(
    folder: Path,
    part: str,
    file_name: str,
    day: date,
    share: float,
    rng: np.random.Generator,
    key: str,
    new_keys,
    timestamps: tuple[str, ...],
) -> tuple[int, int]:
    """One new unload `<part>=<day>/<file_name>` holding ~share of the rows, with new keys (nulls
    stay null) and timestamps moved by (day - the source file's day)."""
    pieces = []
    for f in sorted(folder.glob(f"{part}=*/*.parquet")):
        table = pq.ParquetFile(f).read()
        if not table.num_rows:
            continue
        sample = table.filter(pa.array(rng.random(table.num_rows) < share))
        shift = pa.scalar(day - date.fromisoformat(f.parent.name.split("=", 1)[1]), pa.duration("us"))
        for name in timestamps:
            i = sample.schema.get_field_index(name)
            sample = sample.set_column(i, name, pc.add(sample[name], shift))
        pieces.append(sample)
    table = pa.concat_tables(pieces, promote_options="default")
    old = table[key].to_pylist()
    fresh = new_keys(sum(k is not None for k in old))
    table = table.set_column(
        table.schema.get_field_index(key), key, pa.array([None if k is None else next(fresh) for k in old])
    )
    target = folder / f"{part}={day.isoformat()}" / file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, target, compression="snappy")
    return 1, table.num_rows


def _order_ids(folder: Path):
    top = 0
    for f in folder.glob("*/*.parquet"):
        for k in pq.ParquetFile(f).read(columns=["order_id"])["order_id"].to_pylist():
            if k and (m := re.fullmatch(r"\s*ORD-(\d+)\s*", k, re.IGNORECASE)):
                top = max(top, int(m.group(1)))

    def new(n: int):
        return iter(f"ORD-{top + 1 + i:07d}" for i in range(n))

    return new


def _uuids(rng: np.random.Generator):
    def new(n: int):
        return iter(str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n))

    return new


def _fx_increment(folder: Path, day: date, share: float) -> tuple[int, int]:
    """The latest ~share of the vendor files (at least one) again, dated `day` onwards."""
    files = sorted(folder.glob("rates_*.json"))
    n = max(1, round(share * len(files)))
    docs = []
    for f in reversed(files):
        try:
            docs.append(json.loads(f.read_text(encoding="utf-8")))
        except json.JSONDecodeError:
            continue  # the corrupt file
        if len(docs) == n:
            break
    rows = 0
    for i, doc in enumerate(reversed(docs)):
        new_day = day + timedelta(days=i)
        shift = (new_day - date.fromisoformat(doc["date"])).days
        doc["date"], doc["timestamp"] = new_day.isoformat(), doc["timestamp"] + shift * 86_400
        (folder / f"rates_{new_day.isoformat()}.json").write_text(
            json.dumps(doc, indent=2) + "\n", encoding="utf-8"
        )
        rows += len(doc["rates"])
    return len(docs), rows


def _kafka_increment(folder: Path, day: date, share: float, rng: np.random.Generator) -> tuple[int, int]:
    """Per partition, one new replay file of ~share of its records: offsets continue the
    partition's, event ids are new, broker and event timestamps move to `day` (same time of day
    for the broker timestamp, the same lateness for the event)."""
    by_partition: dict[tuple[str, int], list[tuple[int, Path]]] = defaultdict(list)
    for f in folder.glob("*.jsonl"):
        m = re.fullmatch(r"(.+)-p(\d+)-(\d+)\.jsonl", f.name)
        if m:
            by_partition[(m.group(1), int(m.group(2)))].append((int(m.group(3)), f))
    new_ids = _uuids(rng)
    files = rows = 0
    for (topic, partition), found in sorted(by_partition.items()):
        found.sort()
        picked, next_offset = [], 0
        for first, f in found:
            lines = f.read_text(encoding="utf-8").splitlines()
            if not lines:
                continue
            next_offset = max(next_offset, first + len(lines))
            with contextlib.suppress(ValueError, KeyError, TypeError):
                next_offset = max(next_offset, int(json.loads(lines[-1])["offset"]) + 1)
            keep = rng.random(len(lines)) < share
            picked += [json.loads(line) for line, k in zip(lines, keep, strict=True) if k]
        out = []
        for i, record in enumerate(picked):
            broker = datetime.fromisoformat(record["timestamp"])
            shift = day - broker.date()
            record["offset"] = next_offset + i
            record["timestamp"] = _iso_ms(broker + shift)
            try:
                value = json.loads(record["value"])
            except (TypeError, json.JSONDecodeError):
                value = None  # a malformed value stays as delivered
            if isinstance(value, dict):
                if value.get("event_id") is not None:
                    value["event_id"] = next(new_ids(1))
                with contextlib.suppress(KeyError, TypeError, ValueError):  # an unparseable event_ts stays
                    value["event_ts"] = _iso_ms(datetime.fromisoformat(value["event_ts"]) + shift)
                record["value"] = json.dumps(value, separators=(",", ":"))
            out.append(json.dumps(record, separators=(",", ":")) + "\n")
        if out:
            (folder / f"{topic}-p{partition}-{next_offset:012d}.jsonl").write_text(
                "".join(out), encoding="utf-8"
            )
            files, rows = files + 1, rows + len(out)
    return files, rows


def append_increment(ctx: RunContext, manifest: dict, share: float, seed: int) -> dict[str, dict[str, int]]:
    """~share new records per dataset in new landing files dated the day after the data ends."""
    day = date.fromisoformat(manifest["end_date"]) + timedelta(days=1)
    rng = np.random.default_rng([seed, 99])
    landing = {name: Path(ctx.landing_path(name)) for name in ctx.catalog.datasets}
    added = {}
    for name in ("crm_accounts", "crm_contacts", "crm_opportunities"):
        added[name] = _csv_increment(landing[name], day, share, rng)
    added["snowflake_orders"] = _parquet_increment(
        landing["snowflake_orders"],
        "date",
        "data_0_0_0.snappy.parquet",
        day,
        share,
        rng,
        "order_id",
        _order_ids(landing["snowflake_orders"]),
        ("order_ts", "updated_at"),
    )
    added["redshift_behavior"] = _parquet_increment(
        landing["redshift_behavior"],
        "event_date",
        "0000_part_00.parquet",
        day,
        share,
        rng,
        "event_id",
        _uuids(rng),
        ("event_ts", "loaded_at"),
    )
    added["fx_rates"] = _fx_increment(landing["fx_rates"], day, share)
    added["kafka_events"] = _kafka_increment(landing["kafka_events"], day, share, rng)
    return {name: {"files": files, "rows": rows} for name, (files, rows) in added.items()}


def print_incremental(full: dict, incr: dict, same: dict, added: dict, share: float, prep_s: float) -> None:
    rows = sum(a["rows"] for a in added.values())
    print(
        f"\n4. incremental: +{share:.2%} new data ({rows:,} records in "
        f"{sum(a['files'] for a in added.values())} new landing files, written in {prep_s:.1f}s), "
        "whole DAG again; then a rerun with nothing new"
    )
    print("   new records: " + ", ".join(f"{n} {a['rows']:,}" for n, a in added.items()))
    header = (
        f"{'step':<26} {'full s':>8} | {'incr s':>8} {'rows in':>8} {'incr/full':>9} | "
        f"{'no-change s':>11} {'/full':>6}"
    )
    rule = "-" * len(header)
    print(header)
    print(rule)
    by_step = {name: {s["step"]: s for s in run["steps"]} for name, run in (("i", incr), ("n", same))}

    def line(name: str, f: dict, i: dict, n: dict) -> str:
        return (
            f"{name:<26} {f['seconds']:>8.2f} | {i['seconds']:>8.2f} {i['rows_in']:>8,} "
            f"{i['seconds'] / f['seconds']:>8.2f}x | {n['seconds']:>11.2f} {n['seconds'] / f['seconds']:>5.2f}x"
        )

    for s in full["steps"]:
        print(line(s["step"], s, by_step["i"][s["step"]], by_step["n"][s["step"]]))
    print(rule)
    for layer in full["layers"]:
        print(line(f"{layer} total", full["layers"][layer], incr["layers"][layer], same["layers"][layer]))
    print(line("total", full["total"], incr["total"], same["total"]))


# --- main -----------------------------------------------------------------------------------------


def main() -> int:
    parser = bench_parser(__doc__)
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
    lake, manifest, gen_seconds = generate_landing(work, args.scale, args.seed)
    ctx = bench_context(lake, "bench-full")
    dag = load_dag(ctx.settings.config_path(ctx.settings.pipeline_file), set(JOBS))
    warm_up(ctx.spark)
    load_start = os.getloadavg()
    print(
        f"lake engine {ctx.lake.name}, Spark {ctx.spark.version}, {ctx.spark.sparkContext.master}, "
        f"{os.cpu_count()} CPUs, load average {load_start[0]:.1f} (other processes slow every figure)"
    )

    full = run_dag(ctx, dag, "full")
    print_full_run(full)

    orders = orders_comparison(ctx, dag, work, full)
    print_orders(orders)

    # Both after sections 1 and 2, so neither pays the JVM's warm-up or the one-off GX import.
    runs: dict[str, list[dict]] = {"bare": [], "watched": []}
    for i, kind in enumerate(WATCH_ORDER):
        runs[kind].append(fresh_lake_run(ctx, dag, work, f"{kind}{i + 1}", watched=kind == "watched"))
    bare, watched = mean_of(runs["bare"]), mean_of(runs["watched"])
    print_watching(watched, bare)

    started = time.perf_counter()
    added = append_increment(ctx, manifest, args.incremental_share, args.seed)
    prep_s = time.perf_counter() - started
    incremental = run_dag(context_like(ctx, "bench-incremental"), dag, "incremental")
    no_change = run_dag(context_like(ctx, "bench-no-change"), dag, "no-change")
    print_incremental(full, incremental, no_change, added, args.incremental_share, prep_s)
    load_end = os.getloadavg()
    print(f"\nload average (1 min) at start {load_start[0]:.1f}, at end {load_end[0]:.1f}")

    path = results_file(f"pipeline_scale{args.scale}.json")
    path.write_text(
        json.dumps(
            {
                "scale": args.scale,
                "seed": args.seed,
                "incremental_share": args.incremental_share,
                "generate_s": gen_seconds,
                "landing_records": sum(d["records"] for d in manifest["datasets"].values()),
                "full": full,
                "orders": orders,
                "watching": {"order": WATCH_ORDER, **runs},
                "incremental": {"added": added, "prepare_s": prep_s, **incremental},
                "no_change": no_change,
                "load_average": {"start": load_start, "end": load_end},
                "peak_memory_note": f"driver Python + JVM, children younger than {CHILD_AGE_S}s left out",
            },
            indent=2,
            default=str,
        )
    )
    print(f"\nfigures in {path}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
