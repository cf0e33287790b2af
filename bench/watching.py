"""The cost of watching: the DAG as shipped (DQ gates in the steps; lineage, metrics, alerts,
Data Docs and the run report as observers) against the same DAG with all of them off."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from common import context_like
from dag_runs import run_dag

from pipeline.context import RunContext
from pipeline.dq.gate import ENV_SWITCH as DQ_SWITCH
from pipeline.driver.dag import Dag

# Section 3. Measured: consecutive whole runs drift (~100 s, then ~85 s); with ABBA order the
# drift cancels in the means, where alternating bare, watched favoured the side that ran last.
WATCH_ORDER = ("bare", "watched", "watched", "bare")
# Before them, one watched run that no figure counts: in the stops 44-45 runs (six, both engines)
# the first of the four was always the slowest and the last the fastest, 7.7-12.9 s apart, a
# drift ABBA cancels only while it is linear. The JVM is still compiling after sections 1-2.
WARM_UP = "watched"


def fresh_lake_run(
    ctx: RunContext, dag: Dag, selected: list[str], work: Path, label: str, *, watched: bool
) -> dict:
    """The `selected` steps on a fresh lake from the same landing files (taken before the
    increments of section 4), watched as shipped or with the DQ gates and every observer off."""
    lake = work / f"{label}_lake"
    shutil.rmtree(lake, ignore_errors=True)
    shutil.copytree(Path(ctx.settings.lake.root) / "landing", lake / "landing")
    previous = os.environ.get(DQ_SWITCH)
    if not watched:
        os.environ[DQ_SWITCH] = "off"
    try:
        return run_dag(context_like(ctx, f"bench-{label}", lake), dag, label, selected, observe=watched)
    finally:
        if previous is None:
            os.environ.pop(DQ_SWITCH, None)
        else:
            os.environ[DQ_SWITCH] = previous
        shutil.rmtree(lake, ignore_errors=True)


def fastest_steps_ratio(watched_runs: list[dict], bare_runs: list[dict]) -> float:
    """Watched over bare as sums of step times, every step at its fastest of its runs (a watched
    step with its observers), plus each kind's run end at its fastest (dq_results' commit, the
    run-end observers). The means' wall clocks move with a run the machine slowed: the watched
    pair of one delta-spark run took 94.1 s and 108.9 s, against a gate cost of ~6 s. The
    fastest of each step keeps the cost every watched run pays and drops what only one run
    lost; what the gates add unevenly from run to run it shrinks, so it reads as a lower bound
    beside the means' ratio, not instead of it. Steps one at a time only: side by side
    (`spark.parallel_steps`) a watched step's time holds its neighbours' gates too."""

    def sum_of_fastest_steps(runs: list[dict], cost: Callable[[dict], float]) -> float:
        steps = {s["step"] for r in runs for s in r["steps"]}
        by_step = sum(min(cost(s) for r in runs for s in r["steps"] if s["step"] == name) for name in steps)
        return by_step + min(r["observers_run_end_s"] + r["dq_record_s"] for r in runs)

    watched = sum_of_fastest_steps(watched_runs, lambda s: s["seconds"] + s["observers_s"])
    return watched / sum_of_fastest_steps(bare_runs, lambda s: s["seconds"])


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:5.1f}%" if whole else "    -"


def print_watching(watched: dict, bare: dict) -> None:
    print(
        "\n3. the cost of watching: the DAG as shipped (DQ gates in the steps; lineage, metrics, "
        "alerts, Data Docs and report as observers) vs the same DAG with all of them off; each on a "
        f"fresh lake from the same landing files, after sections 1-2 (warm JVM, GX imported); "
        f"order {', '.join(WATCH_ORDER)} after one {WARM_UP} run not counted; means"
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
        f" steps' mean times plus observers; DQ {watched['total']['dq_s']:.1f}s in the steps and"
        f" {watched['dq_record_s']:.1f}s at the run's end (dq_results' one commit), observers "
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
