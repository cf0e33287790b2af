"""Running the pipeline DAG: a run in this process (`lakehouse run`, `lakehouse maintain`, a step
run on its own by a spark-submit script), a driver whose steps run on EMR, or one step of such a
run (`--member`). The shells parse the arguments; this puts the run together (settings, DAG,
executor, run state, observers) and holds the lake's lease while it runs."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from pipeline.app.arguments import settings_from_args
from pipeline.app.observers import observers_for, report_path
from pipeline.app.process import (
    configure_process,
    hold_continuous_streams,
    hold_lake,
    sigterm_as_exit,
    stop_run,
)
from pipeline.run_id import new_run_id
from pipeline.settings import ConfigError, Settings

if TYPE_CHECKING:  # the context module loads Spark; the CLI answers --help and --plan without it
    from pipeline.context import StreamTrigger


def run_pipeline(
    args: argparse.Namespace,
    only: list[str] | None = None,
    plan: bool = False,
    stream_trigger: StreamTrigger = "available-now",
    member: bool = False,
) -> int:
    """Run (or with `plan`, show) the selected DAG steps. Besides `only`, reads the optional
    `from_step`, `until_step`, `resume`, `start_date`, `end_date` and `executor` of `args` (the
    `lakehouse run` flags), so the aws/jobs entry points, whose parsers lack them, call it unchanged.
    `stream_trigger`: the Kafka step's trigger (the streaming entry point's --trigger).
    `member`: run the one step of `only` as part of the run `args.run_id` a driver elsewhere owns
    (`pipeline.entry.main --member`). Exit status: 0 when the run succeeded, 1 when any step did not.

    A run (or a step run on its own) holds the lake's lease (pipeline.lease) from before Spark
    starts to its end; LeaseHeld, naming the holder, when another run holds it. A `member` step
    runs under its driver's lease: it verifies its run holds it and takes none."""
    from pipeline.app import local_executor
    from pipeline.driver.dag import load_dag
    from pipeline.driver.executors import EXECUTORS
    from pipeline.driver.runner import plan_text, resume_selection
    from pipeline.driver.state import SUCCEEDED, RunState, is_local, state_store_for
    from pipeline.driver.window import DateWindow, parse_window
    from pipeline.jobs import JOBS

    configure_process(args.log_level)
    settings = settings_from_args(args)
    dag = load_dag(settings.config_path(settings.pipeline_file), set(JOBS))
    if member:
        return _run_member(args, settings, dag, only or [], stream_trigger)
    executor_name = getattr(args, "executor", None) or "local"
    if executor_name not in EXECUTORS:
        raise ConfigError(
            f"--executor: unknown executor {executor_name!r}; choose one of {', '.join(EXECUTORS)}"
        )
    remote = executor_name != "local"
    from_step, until_step = getattr(args, "from_step", None), getattr(args, "until_step", None)
    resume_id = getattr(args, "resume", None)
    window = parse_window(getattr(args, "start_date", None), getattr(args, "end_date", None))
    narrow = (
        dag.select(only, from_step=from_step, until_step=until_step)
        if (only or from_step or until_step)
        else None
    )
    if resume_id:
        if args.run_id and args.run_id != resume_id:
            raise ConfigError(
                f"--run-id {args.run_id} and --resume {resume_id}: a resumed run keeps its run id"
            )
        if window:
            raise ConfigError("--start-date/--end-date: a resumed run keeps the window it was started with")
    runs = settings.lake.path("_ops", "runs")
    heading = f"plan ({settings.env}, lake {settings.lake.root}, engine {settings.lake.engine}):"

    def selection(previous: RunState | None) -> list[str]:
        if resume_id:
            assert previous is not None
            chosen = resume_selection(previous, dag, narrow)
            unfinished = previous.unfinished()
            if unfinished and not chosen:
                raise ConfigError(
                    f"run {resume_id}: its unfinished step(s) {', '.join(unfinished)} are outside "
                    "the --only/--from/--until selection"
                )
            return chosen
        return narrow if narrow is not None else dag.order()

    if plan:
        previous = (
            state_store_for(runs, storage_options=settings.lake.storage_options).load(resume_id)
            if resume_id
            else None
        )
        if previous is not None:
            window = DateWindow.from_dict(previous.window)
        print(
            plan_text(
                dag,
                selection(previous),
                heading,
                window=window,
                executor_name=executor_name,
                resume=previous,
                describe=_submission_describer(settings, executor_name, resume_id or args.run_id)
                if remote
                else None,
            )
        )
        return 0

    # One writer per lake: taken before anything reads or writes a table (and before Spark
    # starts, so a refusal is quick), renewed while the run lives, released however it ends.
    # A continuous stream writes its own table only, under that table's lease (bronze.kafka):
    # holding the lake for days would stop every batch run.
    run_id = resume_id or args.run_id or new_run_id()
    if stream_trigger == "continuous":
        lease = hold_continuous_streams(
            settings, run_id, [dag.steps[s].dataset for s in only or [] if dag.steps[s].job == "bronze"]
        )
    else:
        lease = hold_lake(settings, run_id)
    with sigterm_as_exit(), lease:

        def prepare(store) -> tuple[RunState | None, list[str]]:
            previous = _previous_run(store, resume_id or args.run_id, required=bool(resume_id))
            return previous, selection(previous)

        previous, selected = None, []
        if (
            is_local(runs) or remote
        ):  # answer "no such run" / "nothing to resume" before spending seconds on Spark
            store = state_store_for(runs, storage_options=settings.lake.storage_options)
            previous, selected = prepare(store)
            if resume_id and not selected:
                return _nothing_to_resume(resume_id, store.location(resume_id))

        from pipeline.driver.runner import default_store, run_steps

        started = time.monotonic()
        if remote:
            from pipeline.driver.executors import executor_for

            # The steps run on EMR: no SparkSession here (the driver may be a CI box), run state
            # through plain files or boto3.
            ctx = DriverContext(settings, run_id)
            executor = executor_for(settings, executor_name)
            engine = f"{settings.lake.engine}, executor {executor.name} ({executor.max_parallel} at once)"
        else:
            from pipeline.context import RunContext

            ctx = RunContext.create(settings, run_id)
            executor = local_executor(settings.spark.parallel_steps)
            store = default_store(ctx)
            engine = f"{ctx.lake.name}, {executor.max_parallel} step(s) at once"
            if not is_local(runs):
                previous, selected = prepare(store)
                if resume_id and not selected:
                    return _nothing_to_resume(resume_id, store.location(resume_id))
        ctx.as_of = _as_of(getattr(args, "as_of", None))
        ctx.stream_trigger = stream_trigger
        ctx.force_maintenance = getattr(args, "force_maintenance", False)  # lakehouse maintain
        ctx.full_refresh = getattr(args, "full_refresh", False)  # gold: rebuild marts in full
        if previous is not None and resume_id:
            window = DateWindow.from_dict(previous.window)
        what = "resuming" if resume_id else ("continuing" if previous is not None else "run")
        print(
            f"{what} {ctx.run_id}: {len(selected)} step(s), lake {settings.lake.root}, engine {engine}"
            + (f", {window.landing_filter}" if window else ""),
            flush=True,
        )
        from pipeline.observability.logging import log_context

        observers = observers_for(settings, dag, scope="run" if remote else "all")
        with log_context(run_id=ctx.run_id):
            state = run_steps(
                ctx,
                dag,
                selected,
                sys.stdout,
                window=window,
                executor=executor,
                store=store,
                state=previous,
                observers=observers,
            )
        report = report_path(observers)
        if report:
            print(f"report {report}", flush=True)
        print(f"total {time.monotonic() - started:.1f}s", flush=True)
        return 0 if state.status == SUCCEEDED else 1


@dataclass
class DriverContext:
    """What the runner and the run-level observers need of a run whose steps run elsewhere
    (EMR): settings and ids, no SparkSession."""

    settings: Settings
    run_id: str
    as_of: date | None = None
    stream_trigger: str = "available-now"
    window: object = None


def _submission_describer(settings: Settings, executor_name: str, run_id: str | None):
    """`--plan` for an EMR executor: each step's job run as it would be submitted (no AWS call)."""
    from pipeline.deploy.submit import job_submission

    mode = "serverless" if executor_name == "emr-serverless" else "ec2"

    def describe(step) -> str:
        run = run_id or "<run-id>"
        return job_submission(settings, step.name, step.job, run, mode=mode, dataset=step.dataset).describe()

    return describe


def _run_member(args: argparse.Namespace, settings: Settings, dag, only: list[str], stream_trigger) -> int:
    """One step of a run a driver elsewhere owns (an EMR job run): its outcome goes to its own
    step-state file, the window and --as-of come from the driver's run state (read, never
    written), and only the step-level observers run."""
    from pipeline.app import local_executor
    from pipeline.context import RunContext
    from pipeline.driver.runner import default_store, run_steps
    from pipeline.driver.state import SUCCEEDED, StepStateStore
    from pipeline.driver.window import DateWindow
    from pipeline.files import files_for
    from pipeline.lease import MemberLease, lease_for
    from pipeline.observability.logging import log_context

    if len(only) != 1 or not args.run_id:
        raise ConfigError("--member runs one step (--step) of an existing run (--run-id, the driver's)")
    dag.select(only)  # names an unknown step before Spark starts
    # Under its driver's lease, taking none: refused before Spark starts when another run holds
    # the lake or none does; interrupted when its run stops holding it (its driver died).
    what = f"step {only[0]} of run {args.run_id}"
    with sigterm_as_exit(), MemberLease(lease_for(settings), args.run_id, what, on_lost=stop_run):
        runs = settings.lake.path("_ops", "runs")
        ctx = RunContext.create(settings, args.run_id)
        run_store = default_store(ctx)
        driver_state = run_store.load(args.run_id) if run_store.exists(args.run_id) else None
        window = DateWindow.from_dict(driver_state.window) if driver_state else None
        ctx.as_of = _as_of(getattr(args, "as_of", None) or (driver_state.as_of if driver_state else None))
        ctx.full_refresh = bool(driver_state and driver_state.full_refresh)  # the driver's --full-refresh
        ctx.stream_trigger = stream_trigger
        store = StepStateStore(runs, only[0], files_for(runs, settings.lake.storage_options), run_store)
        print(f"step {only[0]} of run {ctx.run_id}: state {store.location(ctx.run_id)}", flush=True)
        with log_context(run_id=ctx.run_id):
            state = run_steps(
                ctx,
                dag,
                only,
                sys.stdout,
                window=window,
                executor=local_executor(),
                store=store,
                observers=observers_for(settings, dag, scope="step"),
            )
        return 0 if state.status == SUCCEEDED else 1


def _as_of(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--as-of: expected a date YYYY-MM-DD, got {text!r}") from None


def _nothing_to_resume(run_id: str, location: str) -> int:
    print(f"run {run_id}: nothing to resume, every step succeeded ({location})", flush=True)
    return 0


def _previous_run(store, run_id: str | None, *, required: bool):
    """The recorded state of `run_id` (resume: must exist; --run-id: may), refusing a run that
    is still going on this host."""
    from pipeline.driver.state import RUNNING, process_alive

    if not run_id or (not required and not store.exists(run_id)):
        return None
    state = store.load(run_id)  # RunNotFound names where it looked
    if (
        state.status == RUNNING
        and state.host == socket.gethostname()
        and state.pid
        and state.pid != os.getpid()
        and process_alive(state.pid)
    ):
        raise ConfigError(
            f"run {run_id} is still running (pid {state.pid} on {state.host}); wait for it or stop it first"
        )
    return state
