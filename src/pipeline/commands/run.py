"""`lakehouse run` and `lakehouse maintain`: the DAG's steps through pipeline.app.run."""

from __future__ import annotations

import argparse

from pipeline.app.run import run_pipeline

MAINTENANCE_STEPS = ("bronze", "silver", "gold")  # the DAG's maintain_<layer> steps


def cmd_run(args: argparse.Namespace) -> int:
    only = [s for part in (args.only or []) for s in part.split(",") if s]
    return run_pipeline(args, only=only or None, plan=args.plan)


def cmd_maintain(args: argparse.Namespace) -> int:
    """The maintain_<layer> steps now, whatever their interval (ctx.force_maintenance). A VACUUM
    that would remove files a silver step still needs is refused, naming it (exit 1)."""
    args.force_maintenance = True
    return run_pipeline(
        args, only=[f"maintain_{layer}" for layer in args.layer or MAINTENANCE_STEPS], plan=args.plan
    )
