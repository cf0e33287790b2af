"""`lakehouse` command line: generate sample data, run the pipeline (or show its plan), show a run."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:  # the context module loads Spark; the CLI answers --help and --plan without it
    from pipeline.context import StreamTrigger


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """--env, --lake, --config-dir, --log-level: what every command needs to find its settings."""
    parser.add_argument("--env", help="config environment: local (default), dev, prod; or LAKEHOUSE_ENV")
    parser.add_argument(
        "--lake", help="lake root (folder or s3:// URI); wins over LAKEHOUSE_LAKE_ROOT and config"
    )
    parser.add_argument("--config-dir", type=Path, help="folder holding <env>.yaml (default ./config)")
    parser.add_argument("--log-level", default=os.environ.get("LAKEHOUSE_LOG_LEVEL", "WARNING"))


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser)
    parser.add_argument(
        "--run-id",
        help="run id to use (default: a new one); an existing run id continues that run: the "
        "selected steps are rerun and recorded in its state",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    return load_settings(args.env, lake_root=args.lake, config_dir=args.config_dir)


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
    (`pipeline.jobs.main --member`). Exit status: 0 when the run succeeded, 1 when any step did not.

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
    run_id = resume_id or args.run_id or _new_run_id()
    with _sigterm_as_exit(), hold_lake(settings, run_id):

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
            executor = local_executor()
            store = default_store(ctx)
            engine = ctx.lake.name
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
        report = _report_path(observers)
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


def _new_run_id() -> str:
    from pipeline.context import new_run_id  # imports pyspark's modules, starts no JVM

    return new_run_id()


def hold_lake(settings: Settings, run_id: str):
    """`with hold_lake(settings, run_id):` the lake's lease (pipeline.lease) for a writer of the
    lake: taken (LeaseHeld, naming the holder, when another holds it), renewed, released at the
    end; a writer whose lease is taken over is interrupted."""
    from pipeline.lease import HeldLease, lease_for

    return HeldLease(lease_for(settings), run_id, _command_line(), on_lost=_stop_run)


def _command_line() -> str:
    """What holds the lease, as the lease shows it: this process's command, clipped."""
    program = Path(sys.argv[0]).name
    text = " ".join(["lakehouse" if program == "__main__.py" else program, *sys.argv[1:]])  # python -m
    return text if len(text) <= 160 else text[:157] + "..."


def _stop_run(lost: Exception) -> None:
    """The lease was taken over (this run's heartbeat stopped for a ttl, or it was broken): stop
    writing. Interrupting the main thread records the run as interrupted, to resume later."""
    import _thread

    print(f"error: {lost}; stopping the run", file=sys.stderr, flush=True)
    _thread.interrupt_main()


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
    with _sigterm_as_exit(), MemberLease(lease_for(settings), args.run_id, what, on_lost=_stop_run):
        runs = settings.lake.path("_ops", "runs")
        ctx = RunContext.create(settings, args.run_id)
        run_store = default_store(ctx)
        driver_state = run_store.load(args.run_id) if run_store.exists(args.run_id) else None
        window = DateWindow.from_dict(driver_state.window) if driver_state else None
        ctx.as_of = _as_of(getattr(args, "as_of", None) or (driver_state.as_of if driver_state else None))
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


def _report_path(observers: list) -> str | None:
    return next((o.last_report_path for o in observers if hasattr(o, "last_report_path")), None)


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


@contextlib.contextmanager
def _sigterm_as_exit():
    """SIGTERM (YARN, a CI timeout, `kill`) raises SystemExit, so the runner records the run as
    interrupted before the process goes; a resume then picks it up."""

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def configure_process(level: str) -> None:
    # Pipeline processes work in UTC end to end (Python, JVM, Spark session, JDBC sessions).
    os.environ["TZ"] = "UTC"
    time.tzset()
    from pipeline.observability.logging import configure_json_logging

    configure_json_logging(level.upper())  # one JSON object per line, with run/step/dataset/layer
    logging.getLogger("py4j").setLevel(logging.WARNING)


def observers_for(settings: Settings, dag, scope: str = "all") -> list:
    """Everything that watches a run: log context, lineage, metrics, alerts, the GX Data Docs
    and, last because it reads what the others wrote, the HTML run report.

    `scope`: "all" (a run in this process), "step" (a `--member` job: the step's lineage,
    metrics and alerts only) or "run" (a driver whose steps run on EMR: the pipeline's lineage,
    the run's metrics, the run_failed alert, Data Docs from every job's validations, the report)."""
    from pipeline.dq.docs import DataDocsObserver
    from pipeline.driver.observers import RunEventsOnly, StepEventsOnly
    from pipeline.lineage import LineageObserver
    from pipeline.observability.alerts import AlertObserver
    from pipeline.observability.emitters import MetricsObserver
    from pipeline.observability.logging import LogContextObserver
    from pipeline.report import ReportObserver

    if scope == "step":
        return [
            LogContextObserver(),
            LineageObserver(settings, pipeline_events=False),
            StepEventsOnly(MetricsObserver(settings)),
            StepEventsOnly(AlertObserver(settings)),
        ]
    if scope == "run":
        return [
            LogContextObserver(),
            LineageObserver(settings, step_events=False),
            RunEventsOnly(MetricsObserver(settings)),
            RunEventsOnly(AlertObserver(settings)),
            DataDocsObserver(),
            ReportObserver(settings, dag),
        ]
    return [
        LogContextObserver(),
        LineageObserver(settings),
        MetricsObserver(settings),
        AlertObserver(settings),
        DataDocsObserver(),
        ReportObserver(settings, dag),
    ]


def cmd_run(args: argparse.Namespace) -> int:
    only = [s for part in (args.only or []) for s in part.split(",") if s]
    return run_pipeline(args, only=only or None, plan=args.plan)


MAINTENANCE_STEPS = ("bronze", "silver", "gold")  # the DAG's maintain_<layer> steps


def cmd_maintain(args: argparse.Namespace) -> int:
    """The maintain_<layer> steps now, whatever their interval (ctx.force_maintenance). A VACUUM
    that would remove files a silver step still needs is refused, naming it (exit 1)."""
    args.force_maintenance = True
    return run_pipeline(
        args, only=[f"maintain_{layer}" for layer in args.layer or MAINTENANCE_STEPS], plan=args.plan
    )


def cmd_status(args: argparse.Namespace) -> int:
    """Print a run's summary from its state file; no SparkSession (plain files or boto3).
    A run recorded as running whose driver is gone (its process on this host, or its heartbeat
    elsewhere) is shown as dead. Under it, who holds the lake's lease. Exit status: 0 succeeded or still running, 1 failed,
    interrupted or dead, 2 no such run."""
    import json
    from dataclasses import asdict
    from datetime import UTC, datetime

    from pipeline.driver.state import (
        RUNNING,
        SUCCEEDED,
        describe_run,
        latest_run_id,
        presumed_dead,
        process_alive,
        state_store_for,
        summary_table,
    )

    settings = settings_from_args(args)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    runs = settings.lake.path("_ops", "runs")
    store = state_store_for(runs, storage_options=settings.lake.storage_options)
    try:
        run_id = args.run_id or latest_run_id(store)
        state = store.load(run_id) if run_id else None
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. no AWS credentials: say so, without a traceback
        print(f"error: cannot read run state under {runs}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if state is None:
        print(f"no runs recorded under {runs}", file=sys.stderr)
        return 2
    dead = presumed_dead(state, host=socket.gethostname(), alive=process_alive, now=datetime.now(UTC))
    lease, holder = _lease_holder(settings)
    if args.json:
        data = json.loads(state.to_json())
        if dead:
            data["dead"] = dead  # the recorded status stays "running": this is the reader's verdict
        data["lease"] = {"holder": asdict(holder) if holder else None, "text": lease}
        print(json.dumps(data, indent=2))
    else:
        print(describe_run(state, store.location(state.run_id), dead))
        print(f"  {lease}")
        print(summary_table(state, full_errors=True))
        for line in _job_runs(state):
            print(line)
    return 0 if state.status in (SUCCEEDED, RUNNING) and not dead else 1


def _lease_holder(settings: Settings):
    """(a line saying who holds the lake's lease or why it is free, the live holder's record)."""
    from pipeline.lease import lease_for

    lease = lease_for(settings)
    current = lease.current()
    if current is None:
        return "lease: free (never taken)", None
    why = lease.expired_because(current)
    if why:
        last = "" if current.broken_by else f"last holder run {current.run_id}: "
        return f"lease: free ({last}{why})", None
    return f"lease: held by {current.describe()}", current


def cmd_lease(args: argparse.Namespace) -> int:
    """Show who holds the lake's lease; with --break, free it whoever holds it. No Spark."""
    from pipeline.lease import lease_for

    settings = settings_from_args(args)
    if not args.break_lease:
        print(_lease_holder(settings)[0])
        return 0
    by = f"{os.environ.get('USER') or 'someone'}@{socket.gethostname()} (pid {os.getpid()})"
    broken = lease_for(settings).break_lease(by)
    if broken is None:
        print(f"lease of {settings.lake.root}: free already; nothing broken")
    else:
        print(
            f"lease of {settings.lake.root} broken: it was held by {broken.describe()}. If that run is "
            "still alive it stops at its next heartbeat; resume it with lakehouse run --resume "
            f"{broken.run_id}"
        )
    return 0


def _job_runs(state) -> list[str]:
    """Where each step of an EMR run ran: job run id, state, logs, console."""
    lines = []
    for s in state.steps:
        emr = (s.details or {}).get("emr")
        if isinstance(emr, dict) and emr.get("job_run_id"):
            lines.append(
                f"{s.step}: {emr.get('executor')} {emr['job_run_id']} {emr.get('state') or ''}, "
                f"logs {emr.get('log_uri')}, console {emr.get('console_url')}"
            )
    return lines


def cmd_generate(args: argparse.Namespace) -> int:
    from pipeline.generate import generate

    configure_process(args.log_level)
    settings = settings_from_args(args)
    if "://" in settings.lake.root:
        raise ConfigError("generate writes a local landing zone; give a local --lake folder")
    g = settings.generator
    landing = Path(settings.lake.root) / "landing"
    started = time.monotonic()
    manifest = generate(
        landing,
        scale=args.scale if args.scale is not None else g.scale,
        seed=args.seed if args.seed is not None else g.seed,
        defect_rate=args.defect_rate if args.defect_rate is not None else g.defect_rate,
        days=args.days if args.days is not None else g.days,
        skew=args.skew,
        **({"end_date": date.fromisoformat(args.end_date)} if args.end_date else {}),
    )
    total = sum(d["records"] for d in manifest["datasets"].values())
    for name, d in sorted(manifest["datasets"].items()):
        print(f"  {name:<20} {d['records']:>10,} records in {d['files']:>4} files")
    print(f"generated {total:,} records in {time.monotonic() - started:.1f}s under {landing}")
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    """Write docs/schemas/ from the contracts, catalogue, DAG and gold marts; no SparkSession.
    With --check: write nothing, list drifted pages, exit 1 when any."""
    from pipeline.docs import DocSources, check_docs, write_docs
    from pipeline.settings import default_config_dir

    sources = DocSources.from_config_dir(args.config_dir or default_config_dir())
    if args.check:
        drifted = check_docs(sources, args.out)
        for name in drifted:
            print(f"drifted: {args.out / name}")
        if drifted:
            print(f"{len(drifted)} page(s) differ from the sources; run `lakehouse docs`", file=sys.stderr)
            return 1
        print(f"{args.out}: up to date")
        return 0
    changed = write_docs(sources, args.out)
    for name in changed:
        print(f"wrote {args.out / name}")
    print(f"{args.out}: {len(changed)} page(s) changed")
    return 0


def _lake_operation(args: argparse.Namespace, operate) -> int:
    """Run `operate(ctx)` (a write to the lake outside a run: replay, erase) under the lake's
    lease unless --dry-run; print what it returns. Exit 1 with the error when it is refused."""
    from pipeline.context import RunContext
    from pipeline.dq.gate import DqGateFailed
    from pipeline.erase import NothingToErase
    from pipeline.lake import LakeError

    configure_process(args.log_level)
    settings = settings_from_args(args)
    run_id = _new_run_id()  # names the operation: lease holder, DQ results, erasure id
    lease = contextlib.nullcontext() if args.dry_run else hold_lake(settings, run_id)
    with _sigterm_as_exit(), lease:
        try:
            print(operate(RunContext.create(settings, run_id)).summary(), flush=True)
        except (NothingToErase, DqGateFailed, LakeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


def cmd_quarantine_replay(args: argparse.Namespace) -> int:
    """Quarantined rows of a silver dataset through the current contract (pipeline.silver.replay)."""
    from pipeline.app import step_check
    from pipeline.silver.replay import replay_quarantine

    return _lake_operation(
        args, lambda ctx: replay_quarantine(ctx, args.dataset, check=step_check(), dry_run=args.dry_run)
    )


def cmd_erase(args: argparse.Namespace) -> int:
    """One person's rows out of bronze, quarantine, silver and gold (pipeline.erase)."""
    from pipeline.app import step_check
    from pipeline.erase import erase_subject

    return _lake_operation(
        args, lambda ctx: erase_subject(ctx, args.subject, check=step_check(), dry_run=args.dry_run)
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lakehouse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write a deterministic sample landing zone under <lake>/landing")
    add_common_arguments(gen)
    gen.add_argument("--scale", type=float, help="1 = about a million records (default from config)")
    gen.add_argument("--seed", type=int, help="random seed; same seed, same files")
    gen.add_argument("--defect-rate", type=float, help="share of records given a realistic defect")
    gen.add_argument("--days", type=int, help="days of history")
    gen.add_argument("--end-date", help="last day of history, YYYY-MM-DD")
    gen.add_argument(
        "--skew",
        action="store_true",
        help="skewed orders: a few accounts place most of them (Zipf) and one day holds a quarter",
    )
    gen.set_defaults(func=cmd_generate)

    run = sub.add_parser(
        "run",
        help="run the pipeline DAG (config/pipeline.yaml): locally in one SparkSession, or one EMR "
        "job run per step (--executor)",
    )
    add_common_arguments(run)
    run.add_argument(
        "--executor",
        choices=["local", "emr-serverless", "emr-ec2"],
        default="local",
        help="where steps run: local (default: this process, one SparkSession, one step at a time); "
        "emr-serverless (a job run per step on the application aws.emr.application_name) or emr-ec2 "
        "(an EMR step per step on the cluster aws.emr.cluster_name), aws.emr.max_parallel_steps "
        "independent steps at once, this process only submitting and polling (no Spark); "
        "with --plan, prints each job run's parameters and calls no AWS API",
    )
    run.add_argument("--only", action="append", help="run only these steps (comma-separated or repeated)")
    run.add_argument(
        "--from", dest="from_step", metavar="STEP", help="run STEP and everything downstream of it"
    )
    run.add_argument(
        "--until", dest="until_step", metavar="STEP", help="run STEP and everything upstream of it"
    )
    run.add_argument(
        "--resume",
        metavar="RUN_ID",
        help="rerun the steps of RUN_ID that did not succeed (failed, skipped, or cut off), "
        "under the same run id and state file; --only/--from/--until narrow them further",
    )
    run.add_argument("--start-date", metavar="YYYY-MM-DD", help="backfill: first landing date (inclusive)")
    run.add_argument("--end-date", metavar="YYYY-MM-DD", help="backfill: last landing date (inclusive)")
    run.add_argument(
        "--as-of",
        metavar="YYYY-MM-DD",
        help="gold's reference date (customer_360's 30-day windows); default: the latest event date "
        "in silver. Pass the same value again with --resume",
    )
    run.add_argument(
        "--full-refresh",
        action="store_true",
        help="gold: rebuild every selected mart in full from silver (default: recompute only the "
        "orders, dates or keys the changed inputs affect, and skip marts whose inputs are unchanged)",
    )
    run.add_argument(
        "--plan",
        action="store_true",
        help="print the execution plan (steps, retry policy, window; with an EMR --executor each "
        "job run's role, entry point and Spark conf) and exit; touches nothing",
    )
    run.set_defaults(func=cmd_run)

    maintain = sub.add_parser(
        "maintain",
        help="table maintenance now, in this process: compact, Z-order, checkpoint and VACUUM every "
        "table (config/maintenance.yaml); the DAG's maintain_* steps without their interval",
    )
    add_common_arguments(maintain)
    maintain.add_argument(
        "--layer",
        action="append",
        choices=MAINTENANCE_STEPS,
        help="only this layer (repeatable): bronze, silver (with quarantine), gold (with _ops/dq_results)",
    )
    maintain.add_argument("--plan", action="store_true", help="print the steps it would run and exit")
    maintain.set_defaults(func=cmd_maintain)

    status = sub.add_parser(
        "status", help="show a run's steps from <lake>/_ops/runs (default: the latest run); no Spark"
    )
    add_settings_arguments(status)
    status.add_argument("run_id", nargs="?", metavar="RUN_ID", help="the run to show (default: the latest)")
    status.add_argument("--json", action="store_true", help="print the run state file as it is")
    status.set_defaults(func=cmd_status)

    lease = sub.add_parser(
        "lease",
        help="show who holds the lake's lease (one writer per lake: run, maintain and every step run "
        "on its own take it; a second one is refused, exit 3); no Spark",
    )
    add_settings_arguments(lease)
    lease.add_argument(
        "--break",
        dest="break_lease",
        action="store_true",
        help="free the lease whoever holds it: only when its holder is certainly gone (another host "
        "died) and waiting lake.lease_ttl_s (120 s) for it to expire is not an option; a holder "
        "still alive stops at its next heartbeat",
    )
    lease.set_defaults(func=cmd_lease)

    docs = sub.add_parser("docs", help="write docs/schemas/<dataset>.md from the contracts; no Spark")
    docs.add_argument(
        "--config-dir", type=Path, help="folder holding contracts/, datasets.yaml, pipeline.yaml"
    )
    docs.add_argument(
        "--out", type=Path, default=Path("docs/schemas"), help="output folder (default docs/schemas)"
    )
    docs.add_argument("--check", action="store_true", help="write nothing; list drifted pages, exit 1 if any")
    docs.set_defaults(func=cmd_docs)

    quarantine = sub.add_parser("quarantine", help="work on quarantined rows (quarantine/<dataset>)")
    quarantine_sub = quarantine.add_subparsers(dest="quarantine_command", required=True)
    replay = quarantine_sub.add_parser(
        "replay",
        help="re-run a silver dataset's quarantined rows through the current contract and references "
        "(after an upstream fix): the rows that now pass move to silver exactly once (merged by key, "
        "SCD2 too, through silver's DQ gate); the others stay, with their current reason. Prints "
        "rows replayed and still quarantined; a rerun finishes an interrupted replay",
    )
    add_settings_arguments(replay)
    replay.add_argument("dataset", help="the silver dataset (a contract in config/contracts)")
    replay.add_argument("--dry-run", action="store_true", help="count what would move; write nothing")
    replay.set_defaults(func=cmd_quarantine_replay)

    erase = sub.add_parser(
        "erase",
        help="remove one person's records from bronze, quarantine and silver (the columns of "
        "config/erasure.yaml; emails matched through silver's keyed hash), rebuild the gold marts "
        "reading them, record the erasure in _ops/erasures (the subject hashed); VACUUM removes the "
        "old files after the retention (config/maintenance.yaml). Exit 1 when nothing matches",
    )
    add_settings_arguments(erase)
    erase.add_argument(
        "--subject", required=True, help="the person's id (e.g. CON-0000123, USR-0000042) or email"
    )
    erase.add_argument(
        "--dry-run", action="store_true", help="list the tables and rows it would erase; write nothing"
    )
    erase.set_defaults(func=cmd_erase)
    return parser


LAKE_HELD = 3  # exit status of a run refused because another holds the lake's lease


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        from pipeline.driver.state import RunNotFound
        from pipeline.lease import LeaseHeld

        if isinstance(exc, LeaseHeld):
            print(f"error: {exc}", file=sys.stderr)
            return LAKE_HELD
        label = "error" if isinstance(exc, RunNotFound) else "configuration error"
        print(f"{label}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
