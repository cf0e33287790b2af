"""The silver step (the I/O edge): bronze changes -> conformed silver + quarantine.

Incremental and exactly-once: the step reads only bronze versions after the one recorded in
silver's last commit (`consumed_version`), and records the new position in the same commit as
the data. Quarantine and silver writes share a Delta transaction id (step, bronze version), so
a retry after a crash between the two writes adds neither twice.

Accounting, reported and checked: bronze rows in = silver rows out + quarantined + duplicates.
"""

from __future__ import annotations

import logging

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipeline.context import RunContext
from pipeline.contracts.model import Contract
from pipeline.dq.gate import gate_step, recheck
from pipeline.freshness import NEWEST_KEY, recorded_newest, table_newest
from pipeline.lake import LakeError, MergeSpec, Txn
from pipeline.silver.conform import (
    VALUE,
    check_evolution,
    conform,
    quarantined,
    rule_count_aggregates,
    rule_counts,
    valid_values,
)
from pipeline.silver.history import distinct_versions, latest_per_key, scd2_changes
from pipeline.silver.pii import pii_key, protect
from pipeline.step_result import StepResult

log = logging.getLogger(__name__)

CONSUMED = "consumed_version"
KEEP = ("_ingestion_ts", "_source_file", "_batch_id")


def build_silver(ctx: RunContext, name: str) -> StepResult:
    contract = ctx.contracts[name]
    bronze_path = ctx.table_path("bronze", contract.source)
    silver_path = ctx.table_path("silver", name)
    bronze_version = ctx.lake.version(bronze_path)
    if bronze_version is None:
        raise LakeError(
            f"silver {name}: bronze table {bronze_path} does not exist; run bronze_{contract.source} first"
        )
    consumed = ctx.lake.latest_metadata(silver_path, CONSUMED)
    if consumed is not None and int(consumed) >= bronze_version:
        # DQ gate (pipeline.dq): nothing new; the last gate's critical failure still stands.
        dq_details = recheck(ctx, f"silver_{name}", name, "silver")
        return StepResult(
            details={
                "bronze_version": bronze_version,
                CONSUMED: consumed,
                "new_bronze_rows": 0,
                NEWEST_KEY: recorded_newest(ctx.lake, silver_path),  # freshness: as old as it was
                **dq_details,
            }
        )

    changes = ctx.lake.read_changes(
        bronze_path, int(consumed) if consumed is not None else -1, bronze_version
    )
    new_columns = check_evolution(changes.schema, contract)
    conformed = conform(changes, contract, ctx.references(contract)).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        newest = (
            f"`{VALUE}{contract.sequence_by}`"
            if contract.sequence_by in contract.columns
            else "_ingestion_ts"
        )
        # DQ (pipeline.dq): per-rule quarantine counts ride on this one aggregate, no extra scan.
        totals = conformed.agg(
            *rule_count_aggregates(contract),
            F.max(newest).alias("newest"),  # freshness: the newest data time this batch carries
        ).first()
        counts = rule_counts(totals, contract)
        rows_in, n_quarantined = counts["rows"], counts["quarantined"]
        txn = Txn(f"silver.{name}", bronze_version)
        meta = {"batch_id": ctx.batch_id(name), "bronze_version": bronze_version}
        if n_quarantined:
            ctx.lake.append(
                ctx.table_path("quarantine", name),
                quarantined(conformed, ctx.batch_id(name)),
                txn=txn,
                metadata=meta,
            )
        valid = valid_values(conformed, contract, KEEP)
        deduped = (distinct_versions if contract.history == "scd2" else latest_per_key)(valid, contract)
        silver_rows = protect(deduped, contract, pii_key(ctx.settings)).persist(StorageLevel.MEMORY_AND_DISK)
        rows_out = silver_rows.count()
        duplicates = rows_in - n_quarantined - rows_out
        newest_at = table_newest(ctx.lake, silver_path, totals["newest"])
        metadata = {
            **meta,
            CONSUMED: bronze_version,
            NEWEST_KEY: newest_at,
            "rows_in": rows_in,
            "quarantined": n_quarantined,
            "duplicates": duplicates,
        }
        write = _write_scd2 if contract.history == "scd2" else _write_merge
        result = write(ctx, contract, silver_path, silver_rows.drop("_ingestion_ts"), metadata, txn)
        silver_rows.unpersist()
    finally:
        conformed.unpersist()
    # --- DQ gate (pipeline.dq): after the silver write, on the whole current silver table ---
    dq_details = gate_step(
        ctx,
        f"silver_{name}",
        name,
        "silver",
        ctx.lake.read(silver_path),
        counts,
    )
    # --- end DQ gate ---
    log.info(
        "silver %s: in %d = out %d + quarantined %d + duplicates %d",
        name,
        rows_in,
        rows_out,
        n_quarantined,
        duplicates,
    )
    return StepResult(
        rows_in=rows_in,
        rows_out=rows_out,
        details={
            "quarantined": n_quarantined,
            "duplicates": duplicates,
            "bronze_version": bronze_version,
            "previous_consumed_version": consumed,
            "new_upstream_columns": new_columns,
            "version": result.version,
            "skipped_replayed_commit": result.skipped,
            NEWEST_KEY: newest_at,
            **dq_details,  # DQ gate: "dq" (list of result dicts) and "dq_seconds"
        },
    )


def _write_merge(ctx: RunContext, contract: Contract, path: str, rows: DataFrame, metadata: dict, txn: Txn):
    seq = contract.sequence_by if contract.sequence_by in rows.columns else "_batch_id"
    if contract.history == "events":
        # Events never change: insert unseen ids; partition columns in the match prune the scan.
        spec = MergeSpec(keys=(*contract.keys, *contract.partition_by), update=False)
    else:
        newer = f"s.`{seq}` >= t.`{seq}`"
        deleted = f"s.`{contract.soft_delete}`" if contract.soft_delete else None
        spec = MergeSpec(
            keys=tuple(contract.keys),
            update_when=newer,
            delete_when=f"{deleted} AND {newer}" if deleted else None,
            insert_when=f"NOT {deleted}" if deleted else None,
        )
    return ctx.lake.merge(path, rows, spec, partition_by=contract.partition_by, metadata=metadata, txn=txn)


def _write_scd2(ctx: RunContext, contract: Contract, path: str, rows: DataFrame, metadata: dict, txn: Txn):
    if ctx.lake.exists(path):
        keys = rows.select(*contract.keys).distinct()
        existing = ctx.lake.read(path).join(keys, list(contract.keys), "left_semi")
    else:
        existing = rows.limit(0).withColumns(
            {
                "valid_from": F.lit(None).cast("timestamp"),
                "valid_to": F.lit(None).cast("timestamp"),
                "is_current": F.lit(None).cast("boolean"),
            }
        )
    changes = scd2_changes(existing, rows, contract)
    superseded = "s.is_current IS NULL"  # the marker of history.scd2_changes
    spec = MergeSpec(
        keys=(*contract.keys, "valid_from"), delete_when=superseded, insert_when=f"NOT ({superseded})"
    )
    return ctx.lake.merge(path, changes, spec, partition_by=contract.partition_by, metadata=metadata, txn=txn)
