"""Table maintenance (config/maintenance.yaml): the job `maintain` of the DAG steps
maintain_bronze, maintain_silver and maintain_gold, and `lakehouse maintain`.

One step per layer, so each runs in its layer's role (least privilege: only the ingest and
silver roles read the raw-PII prefixes): `bronze` maintains the bronze tables, `silver` the
silver and quarantine tables, `gold` the gold tables; of the `_ops` tables (each grows a commit
per file batch, gate or erasure), `bronze` keeps the two bronze writes (`ingested_files`,
`rejected_files`) and `gold` the others (`dq_results`, `erasures`). For every such table that
exists: OPTIMIZE towards the target file size (Z-ORDER BY the configured columns), a
checkpoint, VACUUM with the configured retention. The step reports files and mean file size per
table before and after.

The guard. VACUUM deletes files that no current snapshot references once they are older than
the retention. A silver step reads its bronze table's change feed from the version after its
`consumed_version` (from version 0 when it has consumed nothing); once OPTIMIZE has rewritten the
files of those versions, the originals live only until VACUUM. So a bronze table is vacuumed only
when the oldest version each of its consumers still has to read was committed within the
retention window. Otherwise that VACUUM is refused, naming the consumer, and the step fails
(fatal, with what it did in its details) after maintaining everything else.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from pipeline.catalog import STREAM_READERS
from pipeline.driver.retry import FATAL_KIND, ClassifiedError
from pipeline.lease import LeaseHeld, hold_streams
from pipeline.settings import ConfigError, load_yaml, parse_typed
from pipeline.step_result import StepResult

log = logging.getLogger(__name__)

MAINTENANCE_FILE = "maintenance.yaml"
LAYERS = ("bronze", "quarantine", "silver", "gold", "_ops")
NO_DATA_CHANGE = frozenset({"OPTIMIZE", "VACUUM START", "VACUUM END"})  # commits a change feed skips


@dataclass(frozen=True)
class ZOrder:
    table: str  # <layer>/<name>
    columns: list[str]


@dataclass(frozen=True)
class MaintenanceConfig:
    target_file_mb: int = 128
    vacuum_retention_hours: int = 168
    checkpoint: bool = True
    min_interval_hours: float = 20.0
    zorder: list[ZOrder] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.target_file_mb < 1:
            raise ConfigError(f"target_file_mb: expected a positive number, got {self.target_file_mb}")
        if self.vacuum_retention_hours < 168:
            raise ConfigError(
                f"vacuum_retention_hours: {self.vacuum_retention_hours} is below Delta's 168-hour safety "
                "minimum: time travel, slow readers and the change feed of a lagging consumer break"
            )
        bad = [z.table for z in self.zorder if z.table.split("/")[0] not in LAYERS or "/" not in z.table]
        if bad:
            raise ConfigError(f"zorder: expected <layer>/<name> with a layer of {', '.join(LAYERS)}: {bad}")

    def zorder_by(self, key: str) -> list[str]:
        return next((z.columns for z in self.zorder if z.table == key), [])


def load_maintenance(config_dir: Path) -> MaintenanceConfig:
    path = Path(config_dir) / MAINTENANCE_FILE
    if not path.exists():
        return MaintenanceConfig()
    try:
        raw = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_typed(MaintenanceConfig, raw, str(path), "")


@dataclass(frozen=True)
class LakeTable:
    layer: str
    name: str
    path: str
    consumers: tuple[tuple[str, str], ...] = ()  # (consumer table key, its path): change-feed readers

    @property
    def key(self) -> str:
        return f"{self.layer}/{self.name}"


# The tables each maintenance step keeps: layers, and _ops tables by key (bronze keeps the ones
# bronze writes).
MAINTENANCE_LAYERS = {
    "bronze": ("bronze", "_ops/ingested_files", "_ops/rejected_files"),
    "silver": ("silver", "quarantine"),
    "gold": ("gold", "_ops/dq_results", "_ops/erasures"),
}
# The Delta tables under <lake>/_ops, every one kept by a maintenance step.
OPS_TABLES = tuple(
    key.removeprefix("_ops/")
    for keys in MAINTENANCE_LAYERS.values()
    for key in keys
    if key.startswith("_ops/")
)


def lake_tables(ctx: Any) -> list[LakeTable]:
    """Every table the pipeline writes, in layer order."""
    from pipeline.gold.marts import MARTS

    contracts = ctx.contracts
    tables = [
        LakeTable("bronze", name, ctx.table_path("bronze", name), bronze_consumers(ctx, name))
        for name in ctx.catalog.datasets
    ]
    tables += [LakeTable("quarantine", name, ctx.table_path("quarantine", name)) for name in contracts]
    tables += [LakeTable("silver", name, ctx.table_path("silver", name)) for name in contracts]
    tables += [LakeTable("gold", name, ctx.table_path("gold", name)) for name in MARTS]
    tables += [LakeTable("_ops", name, ctx.table_path("_ops", name)) for name in OPS_TABLES]
    return tables


def bronze_consumers(ctx: Any, name: str) -> tuple[tuple[str, str], ...]:
    """(`silver/<name>`, path) of each silver table that reads bronze `name`'s change feed."""
    return tuple(
        (f"silver/{c.name}", ctx.table_path("silver", c.name))
        for c in ctx.contracts.values()
        if c.source == name
    )


def vacuum_blockers(lake: Any, table: LakeTable, retention_hours: int, now_ms: int) -> list[str]:
    """Why VACUUM of `table` would delete files a consumer has yet to read (empty: safe)."""
    from pipeline.silver.job import CONSUMED

    current = lake.version(table.path)
    cutoff = now_ms - retention_hours * 3_600_000
    blockers = []
    for consumer, path in table.consumers:
        consumed = lake.latest_metadata(path, CONSUMED)
        needed = int(consumed) + 1 if consumed is not None else 0
        if needed > current:
            continue  # read everything there is
        # the commits it has yet to read, but maintenance's own: they change no data
        unread = [
            c for c in lake.history(table.path, current - needed + 1) if c.operation not in NO_DATA_CHANGE
        ]
        if not unread:
            continue
        oldest = min(unread, key=lambda c: c.version)
        if oldest.timestamp_ms < cutoff:
            at = datetime.fromtimestamp(oldest.timestamp_ms / 1000, UTC).isoformat(timespec="seconds")
            blockers.append(
                f"{consumer} has read {table.key} up to version {needed - 1} and still needs version "
                f"{oldest.version} (committed {at}), older than the {retention_hours} h retention: run the "
                f"{consumer.replace('/', '_')} step first, or raise vacuum_retention_hours"
            )
    return blockers


def maintain_table(
    lake: Any, table: LakeTable, config: MaintenanceConfig, now_ms: int, *, compact: bool = True
) -> dict[str, Any]:
    before = lake.file_stats(table.path)
    zorder = config.zorder_by(table.key) if compact else []
    summary = (
        lake.optimize(table.path, zorder_by=zorder or None, target_file_bytes=config.target_file_mb << 20)
        if compact
        else {}
    )
    if config.checkpoint:
        lake.checkpoint(table.path)
    blockers = vacuum_blockers(lake, table, config.vacuum_retention_hours, now_ms)
    vacuumed = None if blockers else len(lake.vacuum(table.path, config.vacuum_retention_hours))
    after = lake.file_stats(table.path)
    return {
        "files_before": before.files,
        "files_after": after.files,
        "mean_mb_before": before.mean_mb,
        "mean_mb_after": after.mean_mb,
        "files_compacted": summary.get("numFilesRemoved", 0),
        "zorder_by": zorder,
        "vacuumed_files": vacuumed,
        "vacuum_refused": blockers,
    }


def maintain(ctx: Any, layer: str, *, force: bool = False, now: float | None = None) -> StepResult:
    """Maintain the existing tables of one maintenance layer (bronze, silver or gold); see the
    module docstring. Without `force` (the DAG step), nothing happens within min_interval_hours of
    the last time, and a new lake only starts the clock."""
    from pipeline.storage import read_text, write_text

    if layer not in MAINTENANCE_LAYERS:
        raise ConfigError(
            f"maintain: unknown layer {layer!r}; expected one of {', '.join(MAINTENANCE_LAYERS)}"
        )
    config = load_maintenance(ctx.settings.config_path(""))
    now = time.time() if now is None else now
    state_path = ctx.settings.lake.path("_ops", "maintenance", f"{layer}.json")
    last = _last_run(read_text, ctx.spark, state_path)
    if not force and last is None:  # a new lake has nothing to compact yet: start the clock
        write_text(ctx.spark, state_path, json.dumps({"last_run_epoch": now, "tables": {}}, indent=2))
        due = f"first run on this lake; maintenance is due in {config.min_interval_hours:g} h"
        return StepResult(details={"skipped": due})
    if not force and now - last < config.min_interval_hours * 3600:
        interval = f"min_interval_hours {config.min_interval_hours:g}"
        return StepResult(details={"skipped": f"maintained {(now - last) / 3600:.1f} h ago ({interval})"})
    layers = MAINTENANCE_LAYERS[layer]
    tables = [
        t for t in lake_tables(ctx) if (t.layer in layers or t.key in layers) and ctx.lake.exists(t.path)
    ]
    report = {t.key: _maintain_one(ctx, t, config, int(now * 1000)) for t in tables}
    write_text(ctx.spark, state_path, json.dumps({"last_run_epoch": now, "tables": report}, indent=2))
    details = {"tables": report, "retention_hours": config.vacuum_retention_hours}
    refused = [reason for entry in report.values() for reason in entry["vacuum_refused"]]
    if refused:
        raise ClassifiedError("VACUUM refused: " + "; ".join(refused), FATAL_KIND, details)
    return StepResult(rows_in=len(tables), rows_out=len(tables), details=details)


def _maintain_one(ctx: Any, table: LakeTable, config: MaintenanceConfig, now_ms: int) -> dict[str, Any]:
    """maintain_table; a stream's bronze table under its stream lease. While a stream writes it
    (a continuous stream always does), it is not compacted (said in its entry) but still
    checkpointed and vacuumed: neither conflicts with the stream's appends, and VACUUM removes
    only files older than the retention, so erased rows do not outlive it."""
    spec = ctx.catalog.datasets.get(table.name) if table.layer == "bronze" else None
    if spec is None or spec.reader not in STREAM_READERS:
        return maintain_table(ctx.lake, table, config, now_ms)
    try:
        with hold_streams(
            ctx.settings, ctx.run_id, [table.name], lambda _: f"maintain_bronze ({ctx.run_id})"
        ):
            return maintain_table(ctx.lake, table, config, now_ms)
    except LeaseHeld as exc:
        entry = maintain_table(ctx.lake, table, config, now_ms, compact=False)
        return {**entry, "optimize_skipped": f"a stream writes it: {exc.holder.describe()}"}


def _last_run(read_text: Any, spark: Any, path: str) -> float | None:
    try:
        return float(json.loads(read_text(spark, path))["last_run_epoch"])
    except Exception:  # noqa: BLE001 - no state yet (or unreadable): maintenance is due
        return None
