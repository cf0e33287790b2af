"""Run DAG steps in order (independent ones in parallel, up to the executor's limit); retry
transient failures; skip dependants of failures; persist run state.

`run_steps` needs from the context only `run_id` and `settings.lake.path(...)` (for the default
state store); the executor gets the whole context. Everything with a side effect is a
parameter (executor, state store, sleep, random source), so tests run without Spark or waiting.
"""

from __future__ import annotations

import contextvars
import logging
import os
import random
import socket
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from datetime import datetime
from typing import Any, TextIO

from pipeline.driver.dag import Dag, Step
from pipeline.driver.executors import Executor, LocalExecutor, StepAttempt
from pipeline.driver.observers import StepObserver, notify
from pipeline.driver.retry import TRANSIENT, RetryPolicy, classify, explain, short_error
from pipeline.driver.state import (
    FAILED,
    HEARTBEAT_S,
    INTERRUPTED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    RunState,
    StateStore,
    StepOutcome,
    state_store_for,
    summary_table,
    utc_now,
)
from pipeline.driver.window import DateWindow
from pipeline.settings import ConfigError

__all__ = [
    "RunState",
    "StepOutcome",
    "default_store",
    "plan_text",
    "resume_selection",
    "run_steps",
    "summary_table",
]

log = logging.getLogger(__name__)

STOP_WAIT_S = 120.0  # how long an interrupted run waits for its running steps to be cancelled


def default_store(ctx: Any) -> StateStore:
    """`<lake>/_ops/runs` of the context's lake, through its SparkSession when not local."""
    return state_store_for(ctx.settings.lake.path("_ops", "runs"), getattr(ctx, "spark", None))


def run_steps(
    ctx: Any,
    dag: Dag,
    selected: list[str],
    out: TextIO,
    *,
    executor: Executor,
    window: DateWindow | None = None,
    store: StateStore | None = None,
    policy: RetryPolicy | None = None,
    state: RunState | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    observers: Sequence[StepObserver] = (),
    max_parallel: int | None = None,
    heartbeat_s: float = HEARTBEAT_S,
) -> RunState:
    """Run `selected` (in DAG order) under `ctx.run_id` and return the run state.

    `state`: an existing run to continue (`--resume`): the selected steps are rerun and their
    earlier outcomes kept under `previous`; the run's other steps keep their outcomes and count
    as upstream results. `window` is set on the context as `ctx.window` for the jobs to read.
    The retry policy defaults to the DAG's. `observers` are told of every step's start and end
    and of the run's end (lineage, metrics, alerts, reports); the stored state calls a step
    succeeded or failed only once they have been told of its end, so a run killed in between
    reruns it on `--resume` instead of keeping a success whose lineage never closed.

    `max_parallel` (default: the executor's `max_parallel`, else 1): how many independent steps
    run at once. Steps start in DAG order as soon as their selected upstream steps have ended;
    a step whose upstream did not succeed is skipped, as in a sequential run. With 1 every step
    runs in this thread, one after the other; with more, in worker threads, while this thread
    starts steps, tells the observers and writes the run state.

    While the run goes on, the state is written at least every `heartbeat_s` seconds (its
    `heartbeat_at`), so `lakehouse status` elsewhere can tell a killed driver from a long step.
    """
    policy = policy or dag.retry
    store = store or default_store(ctx)
    rng = rng or random.Random()
    limit = max_parallel or getattr(executor, "max_parallel", 1) or 1
    if limit < 1:
        raise ConfigError(f"max_parallel: expected a positive number, got {limit}")
    unknown = sorted(set(selected) - set(dag.steps))
    if unknown:
        raise ConfigError(f"unknown step(s) {', '.join(unknown)}; the DAG has: {', '.join(dag.order())}")
    chosen = set(selected)
    selected = [s for s in dag.order() if s in chosen]  # dependencies first, whatever the caller gave
    ctx.window = window
    state = _prepare_state(ctx.run_id, dag, selected, state, window, executor)
    # For the run's jobs in other processes (EMR member steps read them from the run state).
    if getattr(ctx, "as_of", None) is not None:
        state.as_of = ctx.as_of.isoformat()
    state.full_refresh = bool(getattr(ctx, "full_refresh", False))
    location = store.location(state.run_id)
    state.heartbeat_at = utc_now()
    store.save(state)  # fails before any work when the state location is not writable
    clock = _Clock(time.monotonic())
    total = len(selected)
    position = {name: i for i, name in enumerate(selected, 1)}
    guard = threading.RLock()  # one writer of the state, the output and the store at a time

    def say(i: int, name: str, text: str) -> None:
        with guard:
            print(f"[{i}/{total} {clock.elapsed()}] {name}: {text}", file=out, flush=True)

    # Steps started whose end the observers have not been told yet (lineage's COMPLETE, metrics,
    # alerts): the stored state shows them running until they are, so a driver killed in between
    # leaves them to `--resume` (every step is idempotent), not a success whose events never came.
    untold: set[str] = set()

    def persist() -> None:
        with guard:
            _save_quietly(store, _as_told(state, untold), out)

    def attempt_one(name: str) -> None:
        outcome = state.step(name)
        assert outcome is not None
        with guard:
            untold.add(name)
        _run_one(
            dag.steps[name], outcome, position[name], ctx, executor, policy, say, persist, sleep, rng, guard
        )

    def tell_ended(name: str) -> None:
        notify(observers, "step_finished", out, ctx, dag.steps[name], state.step(name))
        with guard:
            untold.discard(name)
        persist()

    pending = list(selected)
    running: dict[Future, str] = {}
    contexts: dict[str, contextvars.Context] = {}
    pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="step") if limit > 1 else None
    stop_heartbeat = threading.Event()
    threading.Thread(
        target=_heartbeat, args=(stop_heartbeat, heartbeat_s, persist), name="heartbeat", daemon=True
    ).start()
    try:
        while pending or running:
            for name in list(pending):
                step = dag.steps[name]
                if any(d in chosen and (d in pending or d in running.values()) for d in step.depends_on):
                    continue  # an upstream step of this run has not ended yet
                outcome = state.step(name)
                assert outcome is not None
                blocked = [
                    d for d in step.depends_on if (up := state.step(d)) is not None and up.status != SUCCEEDED
                ]
                if blocked:
                    pending.remove(name)
                    with guard:
                        outcome.status, outcome.error_kind = SKIPPED, "upstream"
                        outcome.error = f"upstream not succeeded: {', '.join(blocked)}"
                        outcome.started_at = outcome.ended_at = utc_now()
                    say(position[name], name, f"skipped ({outcome.error})")
                    persist()
                    notify(observers, "step_finished", out, ctx, step, outcome)
                    continue
                if len(running) >= limit:
                    continue  # no free slot: it may still be a skip further down the list
                pending.remove(name)
                if pool is None:
                    notify(observers, "step_started", out, ctx, step, outcome)
                    attempt_one(name)
                    tell_ended(name)
                    break  # rescan from the top: what this step ended may unblock earlier ones
                # The step's own context variables (the log context the observers set at its
                # start): its thread runs in them, and its end is told in them, here.
                contexts[name] = contextvars.copy_context()
                contexts[name].run(notify, observers, "step_started", out, ctx, step, outcome)
                running[pool.submit(contexts[name].run, attempt_one, name)] = name
            if running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in sorted(finished, key=lambda f: position[running[f]]):
                    name = running.pop(future)
                    future.result()  # a step interrupted in its thread interrupts the run
                    contexts.pop(name).run(tell_ended, name)
    except BaseException as exc:  # Ctrl-C, SIGTERM as SystemExit: record how far the run got
        _stop_running(executor, running, out)
        for name in sorted(untold, key=position.__getitem__):  # ended, or stopped just now
            if state.step(name).status != RUNNING:
                (contexts.pop(name, None) or contextvars.copy_context()).run(tell_ended, name)
        code = f"({exc.code})" if isinstance(exc, SystemExit) else ""
        with guard:
            for outcome in state.steps:
                if outcome.step in chosen and outcome.status == RUNNING:
                    outcome.status, outcome.error_kind = FAILED, "interrupted"
                    outcome.error = f"interrupted: {type(exc).__name__}{code}"
                    outcome.ended_at = utc_now()
                    outcome.seconds = _seconds_between(outcome.started_at, outcome.ended_at)
            state.finish()
            state.status = INTERRUPTED
            _save_quietly(store, state, out)
        _close_run(executor, ctx, out)
        notify(observers, "run_finished", out, ctx, state)
        print(f"run {state.run_id}: interrupted; state in {location}", file=out, flush=True)
        raise
    finally:
        stop_heartbeat.set()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
    state.finish()
    _save_quietly(store, state, out)
    _close_run(executor, ctx, out)
    notify(observers, "run_finished", out, ctx, state)
    print(summary_table(state), file=out)
    print(f"run {state.run_id}: {state.status}; state in {location}", file=out, flush=True)
    return state


def _close_run(executor: Executor, ctx: Any, out: TextIO) -> None:
    """The executor's end of the run (optional: a local one's check writes what it recorded). A
    failure is told, not raised: the steps' outcomes stand, and the observers still hear the end."""
    close = getattr(executor, "close_run", None)
    if close is None:
        return
    try:
        close(ctx)
    except Exception as exc:  # noqa: BLE001 - whatever it is, the run's end goes on
        log.exception("closing the run failed")
        print(f"warning: closing the run failed: {type(exc).__name__}: {exc}", file=out, flush=True)


def _as_told(state: RunState, untold: set[str]) -> RunState:
    """`state` as it may be stored: a step whose end the observers have not been told yet shows
    as still running."""
    steps = [replace(o, status=RUNNING, ended_at=None) if o.step in untold else o for o in state.steps]
    return replace(state, steps=steps)


def _heartbeat(stop: threading.Event, every_s: float, persist: Callable[[], None]) -> None:
    """Write the state every `every_s` seconds until `stop`: a step may run for hours without
    changing it, and the write time is how another host sees the driver is alive."""
    while not stop.wait(every_s):
        persist()


def _stop_running(executor: Executor, running: dict[Future, str], out: TextIO) -> None:
    """The run is being stopped while steps run in worker threads: ask the executor to cancel
    them (EMR job runs would otherwise go on, and cost, without a driver) and give the threads
    a bounded time to record it."""
    if not running:
        return
    interrupt = getattr(executor, "interrupt", None)
    if callable(interrupt):
        try:
            interrupt()
        except Exception as exc:  # noqa: BLE001 - stopping must go on
            print(f"warning: could not cancel running steps: {short_error(exc)}", file=out, flush=True)
    wait(running, timeout=STOP_WAIT_S)


def _prepare_state(
    run_id: str,
    dag: Dag,
    selected: list[str],
    state: RunState | None,
    window: DateWindow | None,
    executor: Executor,
) -> RunState:
    now = utc_now()
    if state is None:
        state = RunState(run_id, [StepOutcome(s) for s in selected], started_at=now)
    else:
        if state.run_id != run_id:
            raise ConfigError(f"continuing run {state.run_id} under another run id {run_id}")
        for name in selected:
            outcome = state.step(name)
            if outcome is None:
                state.steps.append(StepOutcome(name))
            else:
                outcome.reset_for_rerun()
        position = {name: i for i, name in enumerate(dag.order())}
        state.steps.sort(key=lambda s: position.get(s.step, len(position)))
        state.resumes.append(now)
        state.ended_at = None
    state.status = RUNNING
    state.window = window.to_dict() if window else None
    state.executor = executor.name
    state.host, state.pid = socket.gethostname(), os.getpid()
    return state


def _run_one(step, outcome, i, ctx, executor, policy, say, persist, sleep, rng, guard) -> None:
    """Run one step with retries; fill in `outcome` (changed under `guard`, which the state's
    writer holds while it serialises the state)."""
    with guard:
        outcome.status, outcome.started_at = RUNNING, utc_now()
    started = time.monotonic()
    run_attempt = getattr(executor, "run_attempt", None)
    rerun = len(outcome.previous)
    for attempt in range(1, policy.max_attempts + 1):
        with guard:
            outcome.attempts = attempt
        tries = f" (attempt {attempt}/{policy.max_attempts})" if attempt > 1 else ""
        say(i, step.name, f"running {step.job} on {step.dataset}{tries} ...")
        persist()
        try:
            if run_attempt is not None:
                result = run_attempt(step, ctx, StepAttempt(ctx.run_id, step.name, attempt, rerun))
            else:
                result = executor.run(step, ctx)
        except Exception as exc:  # the step fails; the run goes on with what does not depend on it
            kind, report = classify(exc), explain(exc, job=step.job, dataset=step.dataset)
            message = report.message
            log.error("step %s attempt %d failed (%s):\n%s", step.name, attempt, kind, traceback.format_exc())
            with guard:
                outcome.error, outcome.error_kind = message, kind
            if kind == TRANSIENT and attempt < policy.max_attempts:
                wait_s = policy.delay(attempt, rng)
                with guard:
                    outcome.retries.append(
                        {"attempt": attempt, "error": message, "wait_s": round(wait_s, 3), "at": utc_now()}
                    )
                say(
                    i,
                    step.name,
                    f"attempt {attempt} failed (transient): {report.cause}; retrying in {wait_s:.1f}s",
                )
                persist()
                sleep(wait_s)
                continue
            with guard:
                outcome.status = FAILED
                # A step may say what it found before failing (a DQ gate's results, for example).
                outcome.details = dict(getattr(exc, "details", None) or {})
                # The whole cause chain, unless the step's own process recorded it (EMR, --member).
                outcome.details.setdefault("error_chain", report.chain)
                if report.path:
                    outcome.details.setdefault("error_file", report.path)
            break
        else:
            with guard:
                outcome.status, outcome.error, outcome.error_kind = SUCCEEDED, None, None
                outcome.rows_in, outcome.rows_out = result.rows_in, result.rows_out
                outcome.details = result.details
            break
    with guard:
        outcome.ended_at = utc_now()
        outcome.seconds = round(time.monotonic() - started, 2)
    if outcome.status == SUCCEEDED:
        done = f"succeeded in {outcome.seconds:.1f}s, {outcome.rows_out:,} rows"
    elif outcome.error_kind == TRANSIENT:
        done = f"failed after {outcome.attempts} attempts (transient): {outcome.error}"
    else:
        done = f"failed (fatal, not retried): {outcome.error}"
    say(
        i,
        step.name,
        done
        + (f" (attempt {outcome.attempts})" if outcome.attempts > 1 and outcome.status == SUCCEEDED else ""),
    )  # the caller stores the end once the observers have been told of it


def _seconds_between(start: str | None, end: str) -> float:
    if not start:
        return 0.0
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 2)


class _Clock:
    def __init__(self, start: float):
        self.start = start

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.start)
        return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _save_quietly(store: StateStore, state: RunState, out: TextIO) -> None:
    """A failed state write must not fail the data work: warn and go on (the next write may
    succeed; every write carries the whole state)."""
    state.heartbeat_at = utc_now()
    try:
        store.save(state)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not write run state to %s: %s", store.location(state.run_id), exc)
        print(f"warning: could not write run state: {short_error(exc)}", file=out, flush=True)


def resume_selection(state: RunState, dag: Dag, narrow: list[str] | None = None) -> list[str]:
    """The steps `--resume` reruns: those of the run that did not succeed (failed, skipped, or
    left pending/running by a killed run), in DAG order; `narrow` (a `Dag.select`) limits them."""
    todo = state.unfinished()
    gone = [s for s in todo if s not in dag.steps]
    if gone:
        raise ConfigError(
            f"run {state.run_id}: step(s) {', '.join(gone)} are no longer in the pipeline DAG; cannot resume them"
        )
    chosen = set(todo) if narrow is None else set(todo) & set(narrow)
    return [s for s in dag.order() if s in chosen]


def plan_text(
    dag: Dag,
    selected: list[str],
    heading: str,
    *,
    window: DateWindow | None = None,
    executor_name: str = LocalExecutor.name,
    resume: RunState | None = None,
    describe: Callable[[Step], str] | None = None,
) -> str:
    """What `lakehouse run --plan` prints: the steps in order, retry policy, window, executor;
    under each step what `describe` says of it (an EMR executor's job run)."""
    lines = [heading]
    lines.append(f"  executor: {executor_name}")
    lines.append(f"  retry: {dag.retry.describe()}")
    lines.append(f"  window: {window.landing_filter if window else 'all landing dates'}")
    if resume is not None:
        lines.append(
            f"  resume run {resume.run_id} ({resume.status}): rerun {len(selected)} of {len(resume.steps)} step(s)"
        )
    for i, name in enumerate(selected, 1):
        step = dag.steps[name]
        after = f" after {', '.join(step.depends_on)}" if step.depends_on else ""
        was = ""
        if resume is not None and (previous := resume.step(name)) is not None:
            was = f" (was {previous.status}{': ' + previous.error if previous.error else ''})"
        lines.append(f"  {i}. {name}: {step.job} {step.dataset}{after}{was}")
        if describe is not None:
            lines.append(describe(step))
    if not selected:
        lines.append("  nothing to run")
    return "\n".join(lines)
