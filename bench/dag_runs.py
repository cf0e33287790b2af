"""Running the DAG under measurement: the pipeline's own runner (`run_steps`, local executor, an
in-memory run-state store) with a stopwatch and the peak-memory sampler around every step and
every observer; per-step, per-layer and whole-run figures, and the data files each table holds."""

from __future__ import annotations

import io
import sys
import time
from collections import defaultdict
from typing import Any

from common import PeakMemory

from pipeline.app import local_executor
from pipeline.app.observers import observers_for
from pipeline.context import RunContext
from pipeline.driver.dag import Dag, Step
from pipeline.driver.executors import LocalExecutor
from pipeline.driver.runner import run_steps
from pipeline.driver.state import SUCCEEDED, MemoryStateStore
from pipeline.maintenance import lake_tables
from pipeline.step_result import StepResult

LAYERS = ("bronze", "silver", "gold")
RUN_END = "(run end)"
# Leave out the JVM's short-lived forks (see common.PeakMemory): they would count the JVM twice.
CHILD_AGE_S = 1.0


class MeasuringExecutor:
    """The local executor with a stopwatch and the peak-memory sampler around every step."""

    name = LocalExecutor.name

    def __init__(self, label: str, total: int, parallel_steps: int = 1):
        self.inner = local_executor(parallel_steps)
        self.max_parallel = self.inner.max_parallel  # the runner asks the executor it is handed
        self.label, self.total = label, total
        self.figures: dict[str, dict[str, float]] = {}
        self.close_run_s = 0.0

    def close_run(self, ctx: Any) -> None:
        """The run's end: the check writes what the gates recorded (dq_results, one commit)."""
        started = time.perf_counter()
        try:
            self.inner.close_run(ctx)
        finally:
            self.close_run_s += time.perf_counter() - started

    def run(self, step: Step, ctx: Any) -> StepResult:
        figures = self.figures.setdefault(step.name, {"seconds": 0.0, "peak_mb": 0.0})
        started = time.perf_counter()
        try:
            with PeakMemory(CHILD_AGE_S) as mem:
                return self.inner.run(step, ctx)
        finally:  # a retried step adds up its attempts (the runner's backoff sleeps are not in it)
            figures["seconds"] += time.perf_counter() - started
            if mem.peak / 2**20 >= figures["peak_mb"]:
                figures["peak_mb"] = mem.peak / 2**20
                figures["peak_by_process_mb"] = mem.breakdown_mb()["at_peak"]
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
    executor = MeasuringExecutor(label, len(selected), ctx.settings.spark.parallel_steps)
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
                "peak_by_process_mb": figures["peak_by_process_mb"],
                "attempts": outcome.attempts,
                "skipped": outcome.details.get("skipped"),
                # a gold step's path: full or incremental, why in full, how many keys recomputed
                **{k: outcome.details.get(k) for k in ("write", "full_rebuild", "keys_recomputed")},
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
        "dq_record_s": executor.close_run_s,
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
        "peak_mb": (top := max(steps, key=lambda s: s["peak_mb"]))["peak_mb"],
        "peak_by_process_mb": top["peak_by_process_mb"],
    }


def print_full_run(run: dict, files: dict[str, dict]) -> None:
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
    split = ", ".join(f"{k} {v:,.0f}" for k, v in run["total"]["peak_by_process_mb"].items() if v)
    print(
        f"(runner wall clock {run['wall_s']:.2f}s; rows/s = rows in / seconds; peak = max over the "
        f"steps; at the peak, MB: {split})"
    )
    print(
        "data files per table after it (mean MB): "
        + ", ".join(f"{k} {v['files']} ({v['mean_mb']:.2f})" for k, v in files.items())
    )


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
        "dq_record_s": mean([r["dq_record_s"] for r in runs]),
    }


def file_figures(ctx: RunContext) -> dict[str, dict]:
    """Data files and their mean size per table of the lake, from the log (no data read)."""
    return {
        t.key: {"files": (s := ctx.lake.file_stats(t.path)).files, "mean_mb": s.mean_mb}
        for t in lake_tables(ctx)
        if ctx.lake.exists(t.path)
    }
