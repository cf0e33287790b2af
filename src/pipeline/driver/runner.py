"""Run DAG steps in order in one SparkSession; skip dependants of failures; persist run state."""

from __future__ import annotations

import json
import logging
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import TextIO

from pipeline.context import RunContext
from pipeline.driver.dag import Dag
from pipeline.jobs import JOBS
from pipeline.storage import write_text

log = logging.getLogger(__name__)


@dataclass
class StepOutcome:
    step: str
    status: str = "pending"  # pending | running | succeeded | failed | skipped
    rows_in: int = 0
    rows_out: int = 0
    seconds: float = 0.0
    error: str | None = None
    details: dict = field(default_factory=dict)


@dataclass
class RunState:
    run_id: str
    steps: list[StepOutcome]
    status: str = "running"

    @property
    def failed(self) -> bool:
        return any(s.status in ("failed", "skipped") for s in self.steps)


def run_steps(ctx: RunContext, dag: Dag, selected: list[str], out: TextIO) -> RunState:
    state = RunState(ctx.run_id, [StepOutcome(s) for s in selected])
    by_name = {o.step: o for o in state.steps}
    state_path = ctx.settings.lake.path("_ops", "runs", f"{ctx.run_id}.json")
    for i, outcome in enumerate(state.steps, 1):
        step = dag.steps[outcome.step]
        blocked = [d for d in step.depends_on if d in by_name and by_name[d].status != "succeeded"]
        if blocked:
            outcome.status, outcome.error = "skipped", f"upstream not succeeded: {', '.join(blocked)}"
            print(f"[{i}/{len(selected)}] {outcome.step}: skipped ({outcome.error})", file=out, flush=True)
            continue
        print(
            f"[{i}/{len(selected)}] {outcome.step}: running {step.job} on {step.dataset} ...",
            file=out,
            flush=True,
        )
        outcome.status = "running"
        _persist(ctx, state, state_path)
        started = time.monotonic()
        try:
            result = JOBS[step.job](ctx, step.dataset)
        except Exception as exc:  # the step fails; the run goes on with what does not depend on it
            outcome.status, outcome.error = "failed", f"{type(exc).__name__}: {exc}"
            log.error("step %s failed:\n%s", outcome.step, traceback.format_exc())
        else:
            outcome.status = "succeeded"
            outcome.rows_in, outcome.rows_out, outcome.details = (
                result.rows_in,
                result.rows_out,
                result.details,
            )
        outcome.seconds = round(time.monotonic() - started, 2)
        print(
            f"[{i}/{len(selected)}] {outcome.step}: {outcome.status} in {outcome.seconds:.1f}s"
            + (f", {outcome.rows_out:,} rows" if outcome.status == "succeeded" else f": {outcome.error}"),
            file=out,
            flush=True,
        )
    state.status = "failed" if state.failed else "succeeded"
    _persist(ctx, state, state_path)
    print(summary_table(state), file=out)
    print(f"run {state.run_id}: {state.status}; state in {state_path}", file=out, flush=True)
    return state


def _persist(ctx: RunContext, state: RunState, path: str) -> None:
    write_text(ctx.spark, path, json.dumps(asdict(state), indent=2, default=str))


def summary_table(state: RunState) -> str:
    header = ("step", "status", "rows in", "rows out", "seconds")
    rows = [(s.step, s.status, f"{s.rows_in:,}", f"{s.rows_out:,}", f"{s.seconds:.1f}") for s in state.steps]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "-+-".join("-" * w for w in widths)

    def fmt(row: tuple) -> str:  # text columns left-aligned, figures right-aligned
        cells = zip(row, widths, strict=True)
        return " | ".join(str(v).ljust(w) if i < 2 else str(v).rjust(w) for i, (v, w) in enumerate(cells))

    return "\n".join([line, fmt(header), line, *[fmt(r) for r in rows], line])
