"""`lakehouse quarantine replay <dataset>`: quarantined rows through the current contract again.

After an upstream fix (a reference list or a contract rule that was wrong), the rows of
quarantine/<dataset> that now pass move to silver, deduplicated and merged exactly as the silver
step merges a batch (an SCD2 key's chain recomputed from all its valid versions, the ones
silver holds and the bronze ones it folded away); the rows that still fail stay, with their current
reason. The check the caller hands in (silver's DQ gate, through the driver's edge) judges the
replayed rows, and the table as their merge will leave it, before the commit.

Exactly once across a crash between the two writes: the replay reads quarantine at version V,
merges into silver under Txn("silver.<dataset>.replay", V), then rewrites quarantine without the
replayed rows. A rerun reads quarantine at V again: its silver write is skipped as committed and
only the quarantine half runs. The silver commit records a digest of the replayed rows; a rerun
that would replay another set (the contract changed again in between) is refused instead of
losing or doubling a row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipeline.context import RunContext
from pipeline.driver.edge import Check, finish
from pipeline.freshness import NEWEST_KEY, recorded_newest, table_newest
from pipeline.lake import LakeError, Txn
from pipeline.settings import ConfigError
from pipeline.silver.conform import RULES, conform, quarantined, valid_values
from pipeline.silver.history import distinct_versions
from pipeline.silver.job import (
    CONSUMED,
    KEEP,
    _merge_plan,
    audited,
    deduplicated,
    newest_column,
    read_target,
    scd2_input,
)
from pipeline.silver.pii import pii_key, protect
from pipeline.step_result import Staged, StepResult, TableAfter

log = logging.getLogger(__name__)

REASON, BATCH = "_quarantine_reason", "_quarantine_batch_id"  # conform.quarantined's columns
_ORIGIN, _OLD_REASON = "__replay_origin_batch", "__replay_old_reason"
REPLAYED_FROM = "replayed_quarantine_version"  # silver and quarantine commit metadata
DIGEST = "replay_digest"


@dataclass(frozen=True)
class ReplayResult:
    dataset: str
    quarantine_version: int | None  # the version read (None: no quarantine table)
    rows: int = 0  # quarantined rows read
    replayed: int = 0  # rows that now pass and leave quarantine
    written: int = 0  # silver rows merged from them (one per key, or per SCD2 version)
    duplicates: int = 0  # replayed rows collapsed into another (same key and version) or deleted since
    still_quarantined: int = 0
    reasons_changed: int = 0  # still failing, for another reason than recorded
    silver_version: int | None = None
    resumed: bool = False  # the silver half of this replay had landed already (interrupted run)
    dry_run: bool = False

    def summary(self) -> str:
        where = f"quarantine/{self.dataset}"
        if self.quarantine_version is None:
            return f"{where}: no quarantine table, nothing to replay"
        head = "dry run, nothing written: " if self.dry_run else ""
        resumed = "; finished an interrupted replay (silver had it already)" if self.resumed else ""
        return (
            f"{head}{where} v{self.quarantine_version}: {self.rows} rows = {self.replayed} replayed "
            f"({self.written} to silver/{self.dataset}, {self.duplicates} duplicates) + "
            f"{self.still_quarantined} still quarantined ({self.reasons_changed} with a new reason)"
            + (f"; silver version {self.silver_version}" if self.silver_version is not None else "")
            + resumed
        )


def replay_quarantine(ctx: RunContext, name: str, *, check: Check, dry_run: bool = False) -> ReplayResult:
    contract = ctx.contracts.get(name)
    if contract is None:
        raise ConfigError(
            f"quarantine replay: no contract for dataset {name!r}; known: {', '.join(sorted(ctx.contracts))}"
        )
    q_path, silver_path = ctx.table_path("quarantine", name), ctx.table_path("silver", name)
    version = ctx.lake.version(q_path)
    if version is None:
        return ReplayResult(name, None, dry_run=dry_run)
    stored = ctx.lake.read(q_path, version)
    bronze_shaped = stored.withColumnRenamed(BATCH, _ORIGIN).withColumnRenamed(REASON, _OLD_REASON)
    conformed = conform(bronze_shaped.drop(RULES), contract, ctx.references(contract))
    conformed = conformed.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        passes = F.size(RULES) == 0
        stored_cols = [F.col(f"`{c}`") for c in bronze_shaped.columns if c not in (RULES, _OLD_REASON)]
        identity = F.xxhash64(F.to_json(F.struct(*stored_cols)))  # as JSON: maps cannot be hashed
        totals = conformed.agg(
            F.count(F.lit(1)).alias("rows"),
            F.count_if(passes).alias("replayed"),
            F.count_if(~passes & (F.array_join(RULES, "; ") != F.col(_OLD_REASON))).alias("changed"),
            # Order-free digest of the replayed rows (decimal: a long sum could overflow under ANSI).
            F.sum(F.when(passes, identity.cast("decimal(38,0)"))).alias("digest"),
            F.max(F.when(passes, F.col(newest_column(contract)))).alias("newest"),
        ).first()
        rows, replayed = int(totals["rows"]), int(totals["replayed"])
        digest = str(totals["digest"] or 0)
        result = ReplayResult(
            name,
            version,
            rows=rows,
            replayed=replayed,
            still_quarantined=rows - replayed,
            reasons_changed=int(totals["changed"]),
            dry_run=dry_run,
        )
        if not replayed and not result.reasons_changed:
            return result
        valid = valid_values(conformed, contract, KEEP)
        # Replayed rows are old deliveries: each is judged against the deletions silver consumed.
        consumed = ctx.lake.latest_metadata(silver_path, CONSUMED)
        deletions_from = int(consumed) if consumed is not None else None
        silver_rows = protect(
            deduplicated(ctx, contract, valid, deletions_from), contract, pii_key(ctx.settings)
        )
        silver_rows = silver_rows.drop("_ingestion_ts")
        silver_rows = silver_rows.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            written = silver_rows.count()
            result = _with(result, written=written, duplicates=replayed - written)
            if dry_run:
                return result
            txn = Txn(f"silver.{name}.replay", version)
            resumed = ctx.lake.already_committed(silver_path, txn)
            if resumed:
                _check_same_replay(ctx, silver_path, version, digest)
            elif written:
                _checked_merge(
                    ctx,
                    check,
                    contract,
                    silver_path,
                    _with_history(ctx, contract, valid) if contract.history == "scd2" else silver_rows,
                    txn,
                    {
                        "batch_id": ctx.batch_id(name),
                        REPLAYED_FROM: version,
                        DIGEST: digest,
                        "rows_in": replayed,
                        "duplicates": replayed - written,
                        # Freshness, and the bound of the versions silver consumed that its
                        # next step compares a batch with (job.scd2_input).
                        NEWEST_KEY: table_newest(ctx.lake, silver_path, totals["newest"]),
                    },
                )
        finally:
            silver_rows.unpersist()
        still = (
            quarantined(conformed, "")
            .withColumn(BATCH, F.col(_ORIGIN))  # a row keeps the batch that quarantined it
            .drop(_ORIGIN, _OLD_REASON)
            .select(*stored.columns)
        )
        _rewrite_quarantine(ctx, q_path, version, still, {REPLAYED_FROM: version, "run_id": ctx.run_id})
    finally:
        conformed.unpersist()
    return _with(result, silver_version=ctx.lake.version(silver_path), resumed=resumed)


def _with(result: ReplayResult, **changes) -> ReplayResult:
    return ReplayResult(**{**result.__dict__, **changes})


def _with_history(ctx: RunContext, contract, replayed: DataFrame) -> DataFrame:
    """The replayed versions with every valid bronze version silver consumed for their keys
    (job.scd2_input), in silver's layout."""
    consumed = ctx.lake.latest_metadata(ctx.table_path("silver", contract.name), CONSUMED)
    if consumed is None:
        return protect(distinct_versions(replayed, contract), contract, pii_key(ctx.settings)).drop(
            "_ingestion_ts"
        )
    return scd2_input(ctx, contract, replayed, int(consumed), None)  # replayed rows: late, all


def _checked_merge(
    ctx: RunContext, check: Check, contract, path: str, rows: DataFrame, txn: Txn, metadata: dict
) -> None:
    """Merge as the silver step does (silver.job's merge plan and Staged publish), after the
    check has judged the rows and the table as the merge will leave it. The replay's quarantine
    ratio is not judged: its rows were quarantined already, a share still failing is no news
    about new data."""
    read_at, target, rows_now = read_target(ctx.lake, path)
    plan = _merge_plan(contract, rows, target, read_at=read_at, rows_now=rows_now)
    cached = []

    def release() -> None:
        for frame in reversed(cached):
            frame.unpersist()

    def publish() -> StepResult:
        plan.write(ctx.lake, path, contract, metadata, txn)
        return StepResult()

    try:
        if plan.stored is not None:  # silver's stored versions of the keys: read once (MergePlan)
            cached.append(plan.stored.persist(StorageLevel.MEMORY_AND_DISK))
        cached.append(plan.source.persist(StorageLevel.MEMORY_AND_DISK))
        staged = Staged(
            contract.name,
            "silver",
            audited(plan.source, contract),
            publish,
            table=lambda: TableAfter(plan.figures.rows, recorded_newest(ctx.lake, path)),
            release=release,
        )
    except BaseException:
        release()
        raise
    finish(ctx, f"replay_{contract.name}", staged, check)


def _check_same_replay(ctx: RunContext, silver_path: str, version: int, digest: str) -> None:
    landed = next(
        (c for c in ctx.lake.history(silver_path) if c.metadata.get(REPLAYED_FROM) == version), None
    )
    if landed is not None and str(landed.metadata.get(DIGEST)) != digest:
        raise LakeError(
            f"quarantine replay {silver_path}: an interrupted replay of quarantine version {version} "
            f"wrote other rows to silver (commit {landed.version}) than this one would replay: the "
            "contract or references changed in between. Restore them as they were for that replay, "
            "rerun it to finish it, then replay again with the new ones"
        )


def _rewrite_quarantine(ctx: RunContext, path: str, version: int, still: DataFrame, metadata: dict) -> None:
    """Replace quarantine by the rows that still fail, unless a writer appended since `version`
    (their rows are not in `still`)."""
    now = ctx.lake.version(path)
    if now != version:
        raise LakeError(
            f"quarantine replay {path}: the table moved from version {version} to {now} while "
            "replaying (a silver step appended to it); silver has the replayed rows: run the "
            "replay again, it finishes the quarantine half from the new version"
        )
    ctx.lake.overwrite(path, still, metadata=metadata)
