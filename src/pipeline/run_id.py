"""Run ids and the batch ids derived from them, ordered by time.

A generated run id is `YYYYMMDDTHHMMSSZ-xxxxxx` (its UTC start, then a random suffix), so run
ids sort by time. Batch ids (`<run id>:<dataset>`, stamped on every bronze row as `_batch_id`)
must too: silver orders a key's re-deliveries by `_batch_id` when the contract's sequence is the
delivery time itself (`_ingestion_ts`, which silver does not keep), so a later delivery wins.
A custom `--run-id` carries no time; its batch ids get one in front."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

TIME_FORMAT = "%Y%m%dT%H%M%SZ"
RUN_ID_RE = re.compile(r"^(\d{8}T\d{6}Z)-[0-9a-f]+$")


def new_run_id() -> str:
    return datetime.now(UTC).strftime(TIME_FORMAT) + "-" + uuid.uuid4().hex[:6]


def batch_id(run_id: str, dataset: str, started: datetime) -> str:
    """`<run id>:<dataset>` for a generated run id; `<started>-<run id>:<dataset>` for a custom
    one, so that either sorts after every batch of an earlier run, whatever the id says."""
    if RUN_ID_RE.match(run_id):
        return f"{run_id}:{dataset}"
    return f"{started.astimezone(UTC).strftime(TIME_FORMAT)}-{run_id}:{dataset}"
