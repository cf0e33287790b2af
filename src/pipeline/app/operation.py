"""A write to the lake outside a run (quarantine replay, erasure), under the lake's lease."""

from __future__ import annotations

import argparse
import contextlib
import sys

from pipeline.app import step_check
from pipeline.app.arguments import settings_from_args
from pipeline.app.process import configure_process, hold_lake, sigterm_as_exit
from pipeline.run_id import new_run_id


def lake_operation(args: argparse.Namespace, operate) -> int:
    """Run `operate(ctx)` (a write to the lake outside a run: replay, erase) under the lake's
    lease unless --dry-run; print what it returns. Exit 1 with the error when it is refused."""
    from pipeline.context import RunContext
    from pipeline.dq.gate import DqGateFailed
    from pipeline.erase import ErasureError
    from pipeline.lake import LakeError

    configure_process(args.log_level)
    settings = settings_from_args(args)
    run_id = new_run_id()  # names the operation: lease holder, DQ results, erasure id
    lease = contextlib.nullcontext() if args.dry_run else hold_lake(settings, run_id)
    with sigterm_as_exit(), lease:
        ctx = None
        try:
            ctx = RunContext.create(settings, run_id)
            print(operate(ctx).summary(), flush=True)
        except (ErasureError, DqGateFailed, LakeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            if ctx is not None and not args.dry_run:  # a dry run judges nothing, holds no lease
                step_check().close_run(ctx)  # the gates' results, refusals included, to dq_results
    return 0
