"""The gates' durable record: each gate's results spooled as it judges, `<lake>/_ops/dq_results`
written once when the run ends.

A Delta commit costs the same for one result as for a run's (measured: one dq_results append
0.3 s, every 10th commit a checkpoint of 2-3 s; 13 gates a run made it ~6 s of a scale-1 run's
9 s of gating). So a gate writes its results to a small JSON file of its own (`record`: a plain
file beside the tables, `<lake>/_ops/dq_spool/`), and the check, at the run's end, appends what
this process spooled to dq_results in ONE commit and deletes the files (`flush`): on EMR each job
flushes its own step's gate, a local run the whole run's.

Nothing is lost when a process dies between the two: a verdict is read from the spool and the
table alike (`newest_verdict`: the recheck of an unchanged table, the volume rule), and a later
run's flush takes files other runs left (only a holder of the lake's lease, so no other run is
live; only files LEFTOVER_AFTER old, so none in flight) with a MERGE that inserts only rows
dq_results does not hold yet: a flush that committed and died before deleting its files is not
recorded twice. Such a late gate is marked (LATE_KEY): its commit may follow a newer gate's, so
the newest verdict is taken by time, not by commit.

Older code reads verdicts from commits of one gate each: it does not find these, and would
repeat a verdict from before the upgrade. A lake this code has written is not run by older code.

Every flush commit carries the gates' verdicts in its metadata (GATES_KEY: run, step, dataset,
layer, time and results per gate), so a verdict is found in the newest commits' metadata without
a Spark job. A commit of the earlier format (one gate each: its fields at the top level) is read
alike.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from pyspark.sql.types import BooleanType, StringType, StructField, StructType, TimestampType

from pipeline.files import LakeFiles, files_for
from pipeline.lake import MergeSpec
from pipeline.spark import driver_rows

log = logging.getLogger(__name__)

VERDICT_KEY = "verdict"  # a gate's results in commit metadata, as DqResult fields
GATES_KEY = "gates"  # a flush commit's metadata: the gates it records, each with its verdict
LATE_KEY = "late"  # a gate another run left spooled: recorded after newer gates may have been
STAMP_FORMAT = "%Y%m%dT%H%M%S%fZ"  # a spool file's name starts with its gate's time: names sort by it
LEFTOVER_AFTER = timedelta(minutes=15)  # another run's spool file this old is left over, not in flight

RESULTS_SCHEMA = StructType(
    [
        StructField("run_id", StringType()),
        StructField("step", StringType()),
        StructField("dataset", StringType()),
        StructField("layer", StringType()),
        StructField("rule", StringType()),
        StructField("column", StringType()),
        StructField("severity", StringType()),
        StructField("observed", StringType()),
        StructField("expected", StringType()),
        StructField("passed", BooleanType()),
        StructField("engine", StringType()),
        StructField("evaluated_at", TimestampType()),
    ]
)
# One result of one gate: a leftover file's rows already in dq_results match on these.
RESULT_KEY = ("run_id", "step", "dataset", "layer", "rule", "column", "evaluated_at")


def results_path(ctx: Any) -> str:
    return ctx.settings.lake.path("_ops", "dq_results")


def spool_path(ctx: Any) -> str:
    return ctx.settings.lake.path("_ops", "dq_spool")


class _Spooled:
    """The spool files this process wrote and has not flushed, per spool folder."""

    lock = threading.Lock()
    names: dict[str, list[str]] = {}
    retried: dict[str, bool] = {}  # a flush failed at its commit: the next one MERGEs


def _files(ctx: Any) -> LakeFiles:
    return files_for(spool_path(ctx), ctx.settings.lake.storage_options)


def _part(text: str) -> str:
    """A name part that holds no '.' (the parts' separator)."""
    return quote(text, safe="").replace(".", "%2E")


def _spool_name(at: datetime, run_id: str, layer: str, dataset: str) -> str:
    return f"{at.strftime(STAMP_FORMAT)}.{_part(run_id)}.{_part(layer)}.{_part(dataset)}.{uuid.uuid4().hex[:8]}.json"


@dataclasses.dataclass(frozen=True)
class _Name:
    """What a spool file's name says: its gate's time, run, layer and dataset."""

    name: str
    at: datetime
    run: str
    layer: str
    dataset: str

    @classmethod
    def parse(cls, name: str) -> _Name | None:
        parts = name.split(".")
        if len(parts) != 6 or parts[-1] != "json":
            return None  # not a spool file (a temporary file of a write in flight)
        try:
            at = datetime.strptime(parts[0], STAMP_FORMAT)
        except ValueError:
            return None
        return cls(name, at, parts[1], parts[2], parts[3])


def record(ctx: Any, step: str, dataset: str, layer: str, results: list) -> None:
    """Spool one gate's results (DqResult) for the run's flush into dq_results."""
    if not results:
        return
    at = datetime.now(UTC).replace(tzinfo=None)
    entry = {
        "run_id": ctx.run_id,
        "step": step,
        "dq": dataset,
        "layer": layer,
        "evaluated_at": at.isoformat(timespec="microseconds"),
        VERDICT_KEY: [dataclasses.asdict(r) for r in results],
    }
    folder = spool_path(ctx)
    name = _spool_name(at, ctx.run_id, layer, dataset)
    _files(ctx).write_text(f"{folder}/{name}", json.dumps(entry), content_type="application/json")
    with _Spooled.lock:
        _Spooled.names.setdefault(folder, []).append(name)


def flush(ctx: Any, *, leftovers: bool = True) -> int:
    """Write what this process spooled, and (with `leftovers`: only a holder of the lake's lease,
    so no other run is live) the files other runs left over, to dq_results in one commit, then
    delete those files; the number of gates recorded. A failure is logged, not raised (the gates
    judged, and their files still count): before the commit, this process's files are kept for
    its next flush, which then MERGEs (the failed commit may have landed); after it, the files
    left are another run's leftovers."""
    folder = spool_path(ctx)
    with _Spooled.lock:
        own = _Spooled.names.pop(folder, [])
        retried = bool(_Spooled.retried.pop(folder, False))
    committed, entries = False, []
    try:
        files = _files(ctx)
        now = datetime.now(UTC).replace(tzinfo=None)
        others = [
            n.name
            for n in map(_Name.parse, files.list_names(folder) if leftovers else [])
            if n is not None
            and n.name not in own
            and n.run != _part(ctx.run_id)
            and now - n.at >= LEFTOVER_AFTER
        ]
        read = {n: e for n in own + others if (e := _read(files, f"{folder}/{n}")) is not None}
        for name in others:
            if name in read:
                read[name] = {**read[name], LATE_KEY: True}
        entries = list(read.values())
        if entries:
            _commit(ctx, entries, merge=retried or any(n in read for n in others))
        committed = True
        for name in read:  # an unreadable file stays, for someone to look at
            files.delete(f"{folder}/{name}")
    except Exception:
        log.exception("dq: the gates' results stay in %s; the next run's flush records them", folder)
        if not committed:
            with _Spooled.lock:
                _Spooled.names.setdefault(folder, []).extend(own)
                _Spooled.retried[folder] = True
        return len(entries) if committed else 0
    return len(entries)


def _read(files: LakeFiles, location: str) -> dict | None:
    text = files.read_text(location)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        log.warning("dq: %s is not a gate's results (unreadable JSON); left in place", location)
        return None


def _commit(ctx: Any, entries: list[dict], *, merge: bool) -> None:
    rows = [
        (
            e["run_id"],
            e["step"],
            e["dq"],
            e["layer"],
            r["rule"],
            r.get("column", ""),
            r["severity"],
            r["observed"],
            r["expected"],
            r["passed"],
            r.get("engine", ""),
            datetime.fromisoformat(e["evaluated_at"]),
        )
        for e in entries
        for r in e[VERDICT_KEY]
    ]
    df = driver_rows(ctx.spark, rows, RESULTS_SCHEMA)
    metadata = {"run_id": ctx.run_id, GATES_KEY: entries}
    if merge:
        ctx.lake.merge(results_path(ctx), df, MergeSpec(keys=RESULT_KEY, update=False), metadata=metadata)
    else:
        ctx.lake.append(results_path(ctx), df, metadata=metadata)


def _gates(metadata: dict) -> list[dict]:
    """The gates a dq_results commit records: a flush's list, or the one gate of the earlier
    format (its fields at the top level)."""
    if GATES_KEY in metadata:
        return metadata[GATES_KEY]
    return [metadata] if "dq" in metadata else []


def newest_verdict(ctx: Any, dataset: str, layer: str, *, other_runs: bool = False) -> dict | None:
    """The newest recorded gate of `dataset` in `layer` (of a run other than this one when
    `other_runs`): spooled or in dq_results' commit metadata, whichever is newer. A dict with
    run_id, step, and the results under VERDICT_KEY, unless an earlier format recorded none
    there (then the caller reads the table); None when no gate of it was recorded in the log."""

    def wanted(gate: dict) -> bool:
        return (
            gate.get("dq") == dataset
            and gate.get("layer", layer) == layer
            and not (other_runs and gate.get("run_id") == ctx.run_id)
        )

    # The spool first: a flush commits before it deletes, so a gate it moves between the two
    # reads is still found in the table.
    spooled = _newest_spooled(ctx, dataset, layer, other_runs)
    # The commits back to the newest one holding a gate of it that was not late (recorded at its
    # own run's end, after every earlier run's): a late gate's commit may follow a newer gate's,
    # so the newest of their gates and the spooled one is taken by time. (A page of the search
    # may show a commit twice: a gate found twice changes no maximum.)
    found: list[dict] = [spooled] if spooled is not None else []

    def settles(metadata: dict) -> bool:
        gates = [g for g in _gates(metadata) if wanted(g)]
        found.extend(gates)
        return any(not g.get(LATE_KEY) for g in gates)

    ctx.lake.newest_metadata_where(results_path(ctx), settles)
    return max(found, key=lambda g: g.get("evaluated_at", ""), default=None)


def _newest_spooled(ctx: Any, dataset: str, layer: str, other_runs: bool) -> dict | None:
    folder = spool_path(ctx)
    files = _files(ctx)
    names = sorted(
        (
            n
            for n in map(_Name.parse, files.list_names(folder))
            if n is not None
            and (n.layer, n.dataset) == (_part(layer), _part(dataset))
            and not (other_runs and n.run == _part(ctx.run_id))
        ),
        key=lambda n: n.at,
        reverse=True,
    )
    for n in names:  # the newest readable one (a file deleted by a flush meanwhile is in the table)
        entry = _read(files, f"{folder}/{n.name}")
        if entry is not None:
            return entry
    return None
