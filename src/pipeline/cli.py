"""`lakehouse` command line: generate sample data, run the pipeline (or show its plan), show a run."""

# The shell only: the parser and the dispatch. Each command's body is in pipeline.commands, the
# run's composition in pipeline.app.

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.app.arguments import add_common_arguments, add_settings_arguments
from pipeline.app.process import LAKE_HELD
from pipeline.commands.docs import cmd_docs
from pipeline.commands.erase import cmd_erase
from pipeline.commands.generate import cmd_generate
from pipeline.commands.lease import cmd_lease
from pipeline.commands.quarantine import cmd_quarantine_replay
from pipeline.commands.run import MAINTENANCE_STEPS, cmd_maintain, cmd_run
from pipeline.commands.status import cmd_status
from pipeline.run_id import run_id_argument
from pipeline.settings import ConfigError


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
        help="where steps run: local (default: this process, one SparkContext, spark.parallel_steps "
        "independent steps at once, 3 in the local config); "
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
        type=run_id_argument,
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
    status.add_argument(
        "run_id",
        nargs="?",
        metavar="RUN_ID",
        type=run_id_argument,
        help="the run to show (default: the latest)",
    )
    status.add_argument("--json", action="store_true", help="print the run state file as it is")
    status.set_defaults(func=cmd_status)

    lease = sub.add_parser(
        "lease",
        help="show who holds the lake's lease (one writer per lake: run, maintain and every step run "
        "on its own take it; a second one is refused, exit 3) and each stream table's (a continuous "
        "stream holds only its table's); no Spark",
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
    lease.add_argument(
        "--stream",
        metavar="DATASET",
        help="the stream table's lease of DATASET (a streamed dataset, e.g. kafka_events) instead of the lake's",
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
