"""Run ids and the batch ids derived from them, ordered by time.

A generated run id is `YYYYMMDDTHHMMSSZ-xxxxxx` (its UTC start, then a random suffix), so run
ids sort by time. Batch ids (`<run id>:<dataset>`, stamped on every bronze row as `_batch_id`)
must too: silver orders a key's re-deliveries by `_batch_id` when the contract's sequence is the
delivery time itself (`_ingestion_ts`, which silver does not keep), so a later delivery wins.
A custom `--run-id` carries no time; its batch ids get one in front. So does an id in the
generated form whose time is not the run's start (a custom id written that way, a run resumed
later: another run may have written in between)."""

from __future__ import annotations

import argparse
import re
import uuid
from datetime import UTC, datetime, timedelta

TIME_FORMAT = "%Y%m%dT%H%M%SZ"
RUN_ID_RE = re.compile(r"^(\d{8}T\d{6}Z)-[0-9a-f]+$")
# From a generated id to the run's context: the driver starts Spark in between (minutes on a busy
# cluster). An id older than that, or from the future, is not this start's.
START_GAP = timedelta(minutes=15)


# A run id names folders and files (`<lake>/_ops/runs/<run id>/`, lineage and metrics files) and
# is the prefix of batch ids (`<run id>:<dataset>`): no path separator, no leading dot, no colon.
VALID_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def run_id_argument(text: str) -> str:
    """argparse type of --run-id, --resume and `status RUN_ID`: a valid run id, or a usage error
    before anything starts."""
    if not VALID_RUN_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a run id: 1-128 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit (it names the run's folder under <lake>/_ops/runs)"
        )
    return text


def new_run_id() -> str:
    return datetime.now(UTC).strftime(TIME_FORMAT) + "-" + uuid.uuid4().hex[:6]


def batch_id(run_id: str, dataset: str, started: datetime) -> str:
    """`<run id>:<dataset>` for a run id generated at this start; `<started>-<run id>:<dataset>`
    for any other, so that either sorts after every batch of an earlier run, whatever the id says."""
    if (generated := RUN_ID_RE.match(run_id)) is not None:
        at = datetime.strptime(generated[1], TIME_FORMAT).replace(tzinfo=UTC)
        if timedelta(0) <= started - at <= START_GAP:
            return f"{run_id}:{dataset}"
    return f"{started.astimezone(UTC).strftime(TIME_FORMAT)}-{run_id}:{dataset}"
