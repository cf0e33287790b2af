"""`lakehouse erase`: one person's rows out of the lake."""

from __future__ import annotations

import argparse

from pipeline.app.operation import lake_operation


def cmd_erase(args: argparse.Namespace) -> int:
    """One person's rows out of bronze, quarantine, silver and gold (pipeline.erase)."""
    from pipeline.app import step_check
    from pipeline.erase import erase_subject

    return lake_operation(
        args, lambda ctx: erase_subject(ctx, args.subject, check=step_check(), dry_run=args.dry_run)
    )
