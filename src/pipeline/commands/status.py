"""`lakehouse status`: a run's steps from its state file, and who holds the lake's and the stream
tables' leases; no Spark."""

from __future__ import annotations

import argparse
import logging
import socket
import sys

from pipeline.app.arguments import settings_from_args
from pipeline.commands.lease import lease_holder, lease_lines
from pipeline.settings import ConfigError


def cmd_status(args: argparse.Namespace) -> int:
    """Print a run's summary from its state file; no SparkSession (plain files or boto3).
    A run recorded as running whose driver is gone (its process on this host, or its heartbeat
    elsewhere) is shown as dead. Under it, who holds the lake's lease and each stream table's. Exit
    status: 0 succeeded or still running, 1 failed, interrupted or dead, 2 no such run."""
    import json
    from dataclasses import asdict
    from datetime import UTC, datetime

    from pipeline.driver.state import (
        RUNNING,
        SUCCEEDED,
        describe_run,
        latest_run_id,
        presumed_dead,
        process_alive,
        state_store_for,
        summary_table,
    )

    settings = settings_from_args(args)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    runs = settings.lake.path("_ops", "runs")
    store = state_store_for(runs, storage_options=settings.lake.storage_options)
    try:
        run_id = args.run_id or latest_run_id(store)
        state = store.load(run_id) if run_id else None
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. no AWS credentials: say so, without a traceback
        print(f"error: cannot read run state under {runs}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if state is None:
        print(f"no runs recorded under {runs}", file=sys.stderr)
        return 2
    dead = presumed_dead(state, host=socket.gethostname(), alive=process_alive, now=datetime.now(UTC))
    unshown = None  # why the stream leases are not shown
    try:
        (_, lease, holder), *streams = lease_lines(settings)
    except ConfigError as exc:  # the catalogue names the streams; the run's status stands without it
        lease, holder = lease_holder(settings)
        streams, unshown = [], f"stream leases: not shown ({exc})"
    if args.json:
        data = json.loads(state.to_json())
        if dead:
            data["dead"] = dead  # the recorded status stays "running": this is the reader's verdict
        data["lease"] = {"holder": asdict(holder) if holder else None, "text": lease}
        data["stream_leases"] = (
            None
            if unshown
            else {
                dataset: {"holder": asdict(held) if held else None, "text": text}
                for dataset, text, held in streams
            }
        )
        if unshown:
            data["stream_leases_not_shown"] = unshown
        print(json.dumps(data, indent=2))
    else:
        print(describe_run(state, store.location(state.run_id), dead))
        for line in [lease, *(text for _, text, _ in streams), *([unshown] if unshown else [])]:
            print(f"  {line}")
        print(summary_table(state, full_errors=True))
        for line in _job_runs(state):
            print(line)
    return 0 if state.status in (SUCCEEDED, RUNNING) and not dead else 1


def _job_runs(state) -> list[str]:
    """Where each step of an EMR run ran: job run id, state, logs, console."""
    lines = []
    for s in state.steps:
        emr = (s.details or {}).get("emr")
        if isinstance(emr, dict) and emr.get("job_run_id"):
            lines.append(
                f"{s.step}: {emr.get('executor')} {emr['job_run_id']} {emr.get('state') or ''}, "
                f"logs {emr.get('log_uri')}, console {emr.get('console_url')}"
            )
    return lines
