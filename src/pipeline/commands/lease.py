"""`lakehouse lease`: who holds the lake's lease; `--break` frees it. No Spark."""

from __future__ import annotations

import argparse
import os
import socket

from pipeline.app.arguments import settings_from_args
from pipeline.settings import Settings


def lease_holder(settings: Settings):
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
        print(lease_holder(settings)[0])
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
