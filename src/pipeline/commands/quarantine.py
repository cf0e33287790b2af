"""`lakehouse quarantine replay`: quarantined rows of a silver dataset through the current contract."""

from __future__ import annotations

import argparse

from pipeline.app.operation import lake_operation


def cmd_quarantine_replay(args: argparse.Namespace) -> int:
    """Quarantined rows of a silver dataset through the current contract (pipeline.silver.replay)."""
    from pipeline.app import step_check
    from pipeline.silver.replay import replay_quarantine

    return lake_operation(
        args, lambda ctx: replay_quarantine(ctx, args.dataset, check=step_check(), dry_run=args.dry_run)
    )
