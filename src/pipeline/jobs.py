"""Job kinds the DAG can name, and the spark-submit entry point every aws/jobs script calls.

A step in config/pipeline.yaml says `job: <kind>` and `dataset: <name>`; the kind maps to one
function here. New kinds (silver, gold, ...) register the same way.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from pipeline.bronze.ingest import ingest_files
from pipeline.bronze.jdbc import ingest_jdbc
from pipeline.bronze.kafka import ingest_kafka
from pipeline.context import RunContext
from pipeline.settings import ConfigError
from pipeline.step_result import JobOutput, StepResult

JobFn = Callable[[RunContext, str], JobOutput]


def bronze(ctx: RunContext, dataset: str) -> StepResult:
    """Land one dataset in bronze, by the reader its catalogue entry and source settings name."""
    spec = ctx.catalog[dataset]
    if spec.reader == "kafka":
        return ingest_kafka(ctx, dataset, trigger=ctx.stream_trigger)
    source = getattr(ctx.settings.sources, dataset, None)
    if getattr(source, "mode", None) == "jdbc":
        if source.jdbc is None:
            raise ConfigError(f"sources.{dataset}.jdbc: required when sources.{dataset}.mode is jdbc")
        return ingest_jdbc(ctx, dataset, source.jdbc)
    return ingest_files(ctx, dataset)


def silver(ctx: RunContext, dataset: str) -> JobOutput:
    from pipeline.silver.job import build_silver

    return build_silver(ctx, dataset)


def gold(ctx: RunContext, mart: str) -> JobOutput:
    from pipeline.gold import build_gold

    return build_gold(ctx, mart)


def maintain(ctx: RunContext, layer: str) -> StepResult:
    """Table maintenance of one layer (config/maintenance.yaml); `lakehouse maintain` forces it."""
    from pipeline.maintenance import maintain as maintain_layer

    return maintain_layer(ctx, layer, force=getattr(ctx, "force_maintenance", False))


JOBS: dict[str, JobFn] = {"bronze": bronze, "silver": silver, "gold": gold, "maintain": maintain}


def main(step: str | None = None, argv: list[str] | None = None) -> int:
    """spark-submit entry: run one DAG step (and only it) with the shared driver machinery.

    `step`: the step a per-source script (aws/jobs/*_ingest.py) runs; without it, `--step NAME`
    says which (aws/jobs/run_step.py, the entry point of the EMR executors). `--member`: a
    driver elsewhere owns the run (`--run-id`) and its state file; this process writes only the
    step's state file `<lake>/_ops/runs/<run_id>/steps/<step>.json` and runs the step-level
    observers (lineage, metrics, alerts of the step), not the run-level ones.

    One writer per lake (pipeline.lease): on its own, the step holds the lake's lease as a run
    does (refused, naming the holder, when another process holds it); with `--member` it runs
    under its driver's lease, checking that run `--run-id` holds it."""
    from pipeline.cli import add_common_arguments

    parser = argparse.ArgumentParser(
        description=f"Run the pipeline step {step!r} (see config/pipeline.yaml)."
        if step
        else "Run one step of the pipeline DAG (config/pipeline.yaml)."
    )
    add_common_arguments(parser)
    if step is None:
        parser.add_argument("--step", required=True, help="the DAG step to run")
    parser.add_argument(
        "--member",
        action="store_true",
        help="a step of a run a driver elsewhere owns (--run-id required): write only the step's "
        "state file and run the step-level observers",
    )
    args = parser.parse_args(argv)
    return _run(args, only=[step or args.step], member=args.member)


def kafka_main(argv: list[str] | None = None) -> int:
    """Entry for the streaming job, the one step that can also run continuously. Both triggers
    run as the DAG step bronze_kafka_events, so a stopped stream (a refused micro-batch, an
    error after the retries) is a failed step: run state, lineage FAIL, metrics, alert."""
    from pipeline.cli import add_common_arguments

    parser = argparse.ArgumentParser(
        description=(
            "Kafka product events -> bronze.kafka_events (Structured Streaming). The source is "
            "sources.kafka_events.mode in config/<env>.yaml: kafka reads the topic through "
            "Spark's Kafka connector (MSK with IAM auth on AWS), replay reads landing files "
            "in the Kafka record shape (the local default)."
        )
    )
    add_common_arguments(parser)
    parser.add_argument(
        "--trigger",
        choices=["available-now", "continuous"],
        default="available-now",
        help="available-now: drain what is there, then end (default); continuous: run until stopped",
    )
    args = parser.parse_args(argv)
    return _run(args, only=["bronze_kafka_events"], stream_trigger=args.trigger)


def _run(args: argparse.Namespace, **kwargs) -> int:
    """`cli.run_pipeline`; a lake held by another run ends the job with the holder named and the
    CLI's exit status for it (`cli.LAKE_HELD`), not a traceback: the scheduler may retry later."""
    from pipeline.cli import LAKE_HELD, run_pipeline
    from pipeline.lease import LeaseHeld

    try:
        return run_pipeline(args, **kwargs)
    except LeaseHeld as exc:
        print(f"error: {exc}", file=sys.stderr)
        return LAKE_HELD
