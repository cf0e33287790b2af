"""`lakehouse lease`: who holds the lake's lease and each stream table's; `--break` frees one. No Spark."""

from __future__ import annotations

import argparse
import os
import socket

from pipeline.app.arguments import settings_from_args
from pipeline.settings import ConfigError, Settings


def stream_datasets(settings: Settings) -> list[str]:
    """The datasets whose bronze table a stream writes, each with a lease of its own."""
    from pipeline.catalog import STREAM_READERS, load_catalog

    catalog = load_catalog(settings.config_path(settings.datasets_file))
    return sorted(name for name, spec in catalog.datasets.items() if spec.reader in STREAM_READERS)


def lease_holder(settings: Settings, dataset: str | None = None):
    """(a line saying who holds the lake's lease, or `dataset`'s stream lease, or why it is free;
    the live holder's record)."""
    from pipeline.lease import lease_for, stream_scope

    lease = lease_for(settings, scope=stream_scope(dataset)) if dataset else lease_for(settings)
    label = f"stream {dataset} lease" if dataset else "lease"
    current = lease.current()
    if current is None:
        return f"{label}: free (never taken)", None
    why = lease.expired_because(current)
    if why:
        last = "" if current.broken_by else f"last holder run {current.run_id}: "
        return f"{label}: free ({last}{why})", None
    return f"{label}: held by {current.describe()}", current


def lease_lines(settings: Settings) -> list[tuple[str | None, str, object]]:
    """(dataset or None for the lake, line, live holder) for the lake and every stream table."""
    return [(d, *lease_holder(settings, d)) for d in [None, *stream_datasets(settings)]]


def cmd_lease(args: argparse.Namespace) -> int:
    """Show who holds the lake's lease and each stream table's; with --break, free the lake's
    (or with --stream DATASET that stream's) whoever holds it. No Spark."""
    from pipeline.lease import lease_for, stream_scope

    settings = settings_from_args(args)
    if not args.break_lease:
        if args.stream:
            _check_stream(settings, args.stream)
            print(lease_holder(settings, args.stream)[0])
        else:
            for _, line, _ in lease_lines(settings):
                print(line)
        return 0
    by = f"{os.environ.get('USER') or 'someone'}@{socket.gethostname()} (pid {os.getpid()})"
    if args.stream:
        _check_stream(settings, args.stream)
        what = f"stream {args.stream} lease of {settings.lake.root}"
        broken = lease_for(settings, scope=stream_scope(args.stream)).break_lease(by)
    else:
        what = f"lease of {settings.lake.root}"
        broken = lease_for(settings).break_lease(by)
    if broken is None:
        print(f"{what}: free already; nothing broken")
    else:
        print(
            f"{what} broken: it was held by {broken.describe()}. If that run is "
            "still alive it stops at its next heartbeat; resume it with lakehouse run --resume "
            f"{broken.run_id}"
        )
    return 0


def _check_stream(settings: Settings, dataset: str) -> None:
    streams = stream_datasets(settings)
    if dataset not in streams:
        raise ConfigError(
            f"lease --stream {dataset}: not a streamed dataset of "
            f"{settings.config_path(settings.datasets_file)} (streamed: {', '.join(streams) or 'none'})"
        )
