"""The spark-submit entry points every aws/jobs script calls: one DAG step (`main`; `--step NAME`
for aws/jobs/run_step.py, the EMR executors' entry point) or the Kafka stream (`kafka_main`).
A shell like `lakehouse` (pipeline.cli): it parses the arguments and runs the step through the
composition root (pipeline.app.run). `python -m pipeline.entry --step NAME` runs a step locally.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.app.arguments import add_common_arguments


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
    """`app.run.run_pipeline`; a lake held by another run ends the job with the holder named and
    the CLI's exit status for it (`app.process.LAKE_HELD`), not a traceback: the scheduler may
    retry later."""
    from pipeline.app.process import LAKE_HELD
    from pipeline.app.run import run_pipeline
    from pipeline.lease import LeaseHeld

    try:
        return run_pipeline(args, **kwargs)
    except LeaseHeld as exc:
        print(f"error: {exc}", file=sys.stderr)
        return LAKE_HELD


if __name__ == "__main__":  # python -m pipeline.entry --step NAME
    sys.exit(main())
