"""`lakehouse` command line: generate sample data, run the pipeline, show the plan."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from datetime import date
from pathlib import Path

from pipeline.settings import ConfigError, Settings, load_settings


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", help="config environment: local (default), dev, prod; or LAKEHOUSE_ENV")
    parser.add_argument(
        "--lake", help="lake root (folder or s3:// URI); wins over LAKEHOUSE_LAKE_ROOT and config"
    )
    parser.add_argument("--config-dir", type=Path, help="folder holding <env>.yaml (default ./config)")
    parser.add_argument("--run-id", help="run id to use (default: a new one)")
    parser.add_argument("--log-level", default=os.environ.get("LAKEHOUSE_LOG_LEVEL", "WARNING"))


def settings_from_args(args: argparse.Namespace) -> Settings:
    return load_settings(args.env, lake_root=args.lake, config_dir=args.config_dir)


def run_pipeline(args: argparse.Namespace, only: list[str] | None = None, plan: bool = False) -> int:
    from pipeline.driver.dag import load_dag
    from pipeline.jobs import JOBS

    configure_process(args.log_level)
    settings = settings_from_args(args)
    dag = load_dag(settings.config_path(settings.pipeline_file), set(JOBS))
    selected = dag.select(only)
    if plan:
        print(f"plan ({settings.env}, lake {settings.lake.root}, engine {settings.lake.engine}):")
        for i, name in enumerate(selected, 1):
            step = dag.steps[name]
            after = f" after {', '.join(step.depends_on)}" if step.depends_on else ""
            print(f"  {i}. {name}: {step.job} {step.dataset}{after}")
        return 0
    from pipeline.context import RunContext
    from pipeline.driver.runner import run_steps

    started = time.monotonic()
    ctx = RunContext.create(settings, args.run_id)
    print(
        f"run {ctx.run_id}: {len(selected)} step(s), lake {settings.lake.root}, engine {ctx.lake.name}",
        flush=True,
    )
    state = run_steps(ctx, dag, selected, sys.stdout)
    print(f"total {time.monotonic() - started:.1f}s", flush=True)
    return 1 if state.failed else 0


def configure_process(level: str) -> None:
    # Pipeline processes work in UTC end to end (Python, JVM, Spark session, JDBC sessions).
    os.environ["TZ"] = "UTC"
    time.tzset()
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)


def cmd_run(args: argparse.Namespace) -> int:
    only = [s for part in (args.only or []) for s in part.split(",") if s]
    return run_pipeline(args, only=only or None, plan=args.plan)


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
        **({"end_date": date.fromisoformat(args.end_date)} if args.end_date else {}),
    )
    total = sum(d["records"] for d in manifest["datasets"].values())
    for name, d in sorted(manifest["datasets"].items()):
        print(f"  {name:<20} {d['records']:>10,} records in {d['files']:>4} files")
    print(f"generated {total:,} records in {time.monotonic() - started:.1f}s under {landing}")
    return 0


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
    gen.set_defaults(func=cmd_generate)

    run = sub.add_parser("run", help="run the pipeline DAG (config/pipeline.yaml) in one SparkSession")
    add_common_arguments(run)
    run.add_argument("--only", action="append", help="run only these steps (comma-separated or repeated)")
    run.add_argument("--plan", action="store_true", help="print the execution plan and exit; touches nothing")
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
