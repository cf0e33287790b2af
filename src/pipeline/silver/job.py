"""The silver step (the I/O edge): bronze changes -> conformed silver + quarantine.

Incremental and exactly-once: the step reads only bronze versions after the one recorded in
silver's last commit (`consumed_version`), and records the new position in the same commit as
the data. Quarantine and silver writes share a Delta transaction id (step, bronze version), so
a retry after a crash between the two writes adds neither twice.

Write, audit, publish: the step returns its batch `Staged`; the driver's check (the DQ gate)
judges it (the rows about to be merged, and the table's row count and newest data time as the
merge will leave them, `merge_effect`) BEFORE either write (`driver.edge`). A critical failure therefore leaves silver, quarantine and `consumed_version` as they
were, and the rerun after a fix reads the same bronze versions again: no row is lost, none
doubled. Why derive the table figures rather than stage the batch in a staging table: a staging
table costs one more write and read of every batch and a publish step that both engines would
need to make atomic; the merge's outcome is computable from the batch and the target's key (and
sequence) columns alone, with the MergeSpec's own conditions, so both engines agree by
construction.

Accounting, reported and checked: bronze rows in = silver rows out + quarantined + duplicates.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import NamedTuple

from pyspark import StorageLevel
from pyspark.sql import DataFrame, Row
from pyspark.sql import functions as F

from pipeline.context import RunContext
from pipeline.contracts.model import Contract
from pipeline.freshness import NEWEST_KEY, recorded_newest, table_newest
from pipeline.lake import Lake, LakeError, MergeSpec, Txn, WriteResult
from pipeline.silver.conform import (
    RULES,
    VALUE,
    check_evolution,
    conform,
    conform_rows,
    flag_conflicts,
    quarantined,
    rule_count_aggregates,
    rule_counts,
    valid_values,
)
from pipeline.silver.history import (
    after_deletes,
    distinct_versions,
    late,
    latest_per_key,
    scd2_changes,
    scd2_incoming,
)
from pipeline.silver.pii import pii_key, protect
from pipeline.step_result import AUDIT_ROWS, Staged, StepResult, TableAfter

log = logging.getLogger(__name__)

CONSUMED = "consumed_version"
KEEP = ("_ingestion_ts", "_source_file", "_batch_id")
SUPERSEDED = "s.is_current IS NULL"  # the marker of history.scd2_changes
# A batch up to this many rows is transformed as one partition (on the 1 % increment, 33-5,378
# rows: 2-4 fewer Spark jobs per step); a full run's batch keeps Spark's parallelism. The DQ gate's
# own bound (dq.gate.ONE_PARTITION_ROWS) is larger: it only aggregates over a cached frame.
SMALL_BATCH_ROWS = 100_000


def _source_of(ctx: RunContext, dataset: str) -> str:
    """Where bronze reads `dataset` from, for an error: its landing folder, JDBC table or topic
    (never the JDBC URL, which may hold credentials)."""
    source = ctx.catalog.source(ctx.settings, dataset)
    if source.mode == "jdbc" and source.jdbc is not None:
        return f"its JDBC table {source.jdbc.table}"
    if source.mode == "kafka" and source.kafka is not None:
        return f"its Kafka topic {source.kafka.topic}"
    return f"its landing files under {ctx.landing_path(dataset)}"


def build_silver(ctx: RunContext, name: str) -> Staged | StepResult:
    contract = ctx.contracts[name]
    bronze_path = ctx.table_path("bronze", contract.source)
    silver_path = ctx.table_path("silver", name)
    bronze_version = ctx.lake.version(bronze_path)
    if bronze_version is None:
        # A source that has delivered nothing yet (a new deployment): its bronze step succeeds
        # with no rows and makes no table, so running it again is not the fix.
        raise LakeError(
            f"silver {name}: bronze table {bronze_path} does not exist: bronze_{contract.source} "
            f"has not run on this lake, or has ingested nothing yet from {_source_of(ctx, contract.source)}; "
            "run it once the source has delivered its first data, or leave this dataset's steps "
            "out of the run until then (--only)"
        )
    consumed = ctx.lake.latest_metadata(silver_path, CONSUMED)
    if consumed is not None and int(consumed) >= bronze_version:
        # Nothing new. Every batch published passed its gate (a refused one is not committed and
        # leaves consumed_version behind, so it is judged again), so there is no verdict to repeat.
        return StepResult(
            details={
                "bronze_version": bronze_version,
                CONSUMED: consumed,
                "new_bronze_rows": 0,
                NEWEST_KEY: recorded_newest(ctx.lake, silver_path),  # freshness: as old as it was
            }
        )

    changes = ctx.lake.read_changes(
        bronze_path, int(consumed) if consumed is not None else -1, bronze_version
    )
    new_columns = check_evolution(changes.schema, contract)
    rows = conform_rows(changes, contract, ctx.references(contract)).persist(StorageLevel.MEMORY_AND_DISK)
    cached = [rows]

    def release() -> None:
        for df in reversed(cached):
            df.unpersist()

    try:
        conformed = flag_conflicts(rows, contract)
        if conformed is not rows:
            conformed = conformed.persist(StorageLevel.MEMORY_AND_DISK)
            cached.append(conformed)
        history = contract.history == "scd2" and consumed is not None
        deletes = contract.history == "current" and bool(contract.soft_delete) and consumed is not None
        consumed_newest = _consumed_newest(ctx, silver_path) if history or deletes else None
        # DQ: per-rule quarantine counts ride on this one aggregate, no extra scan; so does the
        # count of late versions (the only ones that need bronze's earlier deliveries: SCD2's
        # chains, a deletion they may come after).
        totals = conformed.agg(
            *rule_count_aggregates(contract),
            F.max(newest_column(contract)).alias("newest"),  # freshness: the batch's newest data time
            *([_late_count(contract, consumed_newest)] if history or deletes else []),
            *_range_aggregates(contract),
        ).first()
        counts = rule_counts(totals, contract)
        rows_in, n_quarantined = counts["rows"], counts["quarantined"]
        if rows_in <= SMALL_BATCH_ROWS:
            # A small batch read from its cache as one partition: the dedup window, the counts
            # and the merge source's joins need no shuffle, and each write gets one file.
            conformed = conformed.coalesce(1)
        valid = valid_values(conformed, contract, KEEP)
        deletions_from = int(consumed) if deletes and totals["late"] else None
        silver_rows = protect(
            deduplicated(ctx, contract, valid, deletions_from), contract, pii_key(ctx.settings)
        )
        silver_rows = silver_rows.drop("_ingestion_ts")
        silver_rows = silver_rows.persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(silver_rows)
        rows_out = silver_rows.count()
        duplicates = rows_in - n_quarantined - rows_out
        newest_at = table_newest(ctx.lake, silver_path, totals["newest"])
        read_at, target, rows_now = read_target(ctx.lake, silver_path)
        merged = silver_rows
        if history and totals["late"]:
            # Cached: the plan reads it more than once (the stored versions of its keys, the
            # chains, the keys they keep), each a tree of broadcast joins over bronze's history
            # otherwise.
            merged = scd2_input(ctx, contract, valid, int(consumed), consumed_newest)
            merged = merged.persist(StorageLevel.MEMORY_AND_DISK)
            cached.append(merged)
        plan = _merge_plan(
            contract,
            merged,
            target,
            _target_range(contract, totals),
            rows_in <= SMALL_BATCH_ROWS,
            read_at,
            rows_now,
        )
        if plan.stored is not None:
            cached.append(plan.stored.persist(StorageLevel.MEMORY_AND_DISK))
        if plan.source is not silver_rows:
            cached.append(plan.source.persist(StorageLevel.MEMORY_AND_DISK))
    except BaseException:
        release()
        raise

    def publish() -> StepResult:
        txn = Txn(f"silver.{name}", bronze_version)
        meta = {"batch_id": ctx.batch_id(name), "bronze_version": bronze_version}
        if n_quarantined:
            ctx.lake.append(
                ctx.table_path("quarantine", name),
                quarantined(conformed, ctx.batch_id(name)),
                txn=txn,
                metadata=meta,
            )
        metadata = {
            **meta,
            CONSUMED: bronze_version,
            NEWEST_KEY: newest_at,
            "rows_in": rows_in,
            "quarantined": n_quarantined,
            "duplicates": duplicates,
        }
        result = plan.write(ctx.lake, silver_path, contract, metadata, txn)
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
            },
        )

    # Write, audit, publish: the driver's check judges the batch (its current rows; the table's
    # figures as the merge will leave them) before publish() writes anything.
    audit = audited(plan.source, contract)
    return Staged(
        name,
        "silver",
        audit,
        publish,
        # The frame judged is the one counted as rows_out (but for SCD2's chains): not again.
        counts={**counts, AUDIT_ROWS: rows_out} if audit is silver_rows else counts,
        table=lambda: TableAfter(plan.figures.rows, newest_at),
        release=release,
    )


def audited(source: DataFrame, contract: Contract) -> DataFrame:
    """What a check judges of a merge source: for SCD2 the versions it keeps, not the markers
    of the ones it supersedes (history.scd2_changes)."""
    return source.where("is_current IS NOT NULL") if contract.history == "scd2" else source


class MergeFigures(NamedTuple):
    rows: int  # the table's rows once the merge is committed
    matched: int  # (source, table) row pairs that match: 0 exactly when no source row matches


def merge_figures(
    source: DataFrame,
    target: DataFrame | None,
    spec: MergeSpec,
    stored: DataFrame | None = None,
    rows_now: int = 0,
) -> MergeFigures:
    """What merging `source` into `target` by `spec` will do, in one query (each query costs its
    planning and a file listing of the table, more than its work on a small batch): the table's
    rows after it (`rows_now`, the table's rows before, from the lake's log: `Lake.row_count`,
    plus the merge's net effect) and the matching (source, table) row pairs. `stored`: the
    target's rows the merge can match, cached (MergePlan.stored); the effect is counted against
    them instead of a second scan of the table."""
    row = merge_effect(source, target if stored is None else stored, spec).first()
    return MergeFigures(rows_now + row["inserted"] - row["deleted"], row["matched"])


def newest_column(contract: Contract) -> str:
    """The conformed column whose maximum is a batch's newest data time (freshness): the
    sequence, or the delivery time when silver does not keep the sequence."""
    if contract.sequence_by in contract.columns:
        return f"`{VALUE}{contract.sequence_by}`"
    return "_ingestion_ts"


def _late_count(contract: Contract, consumed_newest: datetime | None):
    """Aggregate over a conformed batch: its valid versions that are history.late (by the column
    whose maximum silver records as its newest data time, `newest_column`)."""
    return F.count_if((F.size(RULES) == 0) & late(F.col(newest_column(contract)), consumed_newest)).alias(
        "late"
    )


def _consumed_newest(ctx: RunContext, silver_path: str) -> datetime | None:
    """The newest sequence value of every version silver consumed: the table's recorded newest
    data time (freshness), the maximum over every batch it took, quarantined rows included, so
    an upper bound of the versions it holds or folded away (history.late)."""
    recorded = recorded_newest(ctx.lake, silver_path)
    return datetime.fromisoformat(recorded) if recorded else None


def scd2_input(
    ctx: RunContext, contract: Contract, batch: DataFrame, consumed: int, consumed_newest: datetime | None
) -> DataFrame:
    """What an SCD2 merge recomputes, in silver's layout: the batch's valid rows and, for the
    keys with a late version (history.scd2_incoming; every key when `consumed_newest` is None),
    every valid version bronze held at `consumed` (`consumed_valid`)."""
    versions = scd2_incoming(batch, consumed_valid(ctx, contract, consumed), contract, consumed_newest)
    return protect(versions, contract, pii_key(ctx.settings)).drop("_ingestion_ts")


def deduplicated(
    ctx: RunContext, contract: Contract, valid: DataFrame, deletions_from: int | None
) -> DataFrame:
    """A batch's valid rows as silver takes them, before PII protection: one per key (SCD2: per
    key and version), less the versions of keys deleted since (`history.after_deletes`) among
    bronze's deliveries up to version `deletions_from` (None: none to consider: a first batch, or
    no late version in it). What is dropped counts with the duplicates."""
    deduped = (distinct_versions if contract.history == "scd2" else latest_per_key)(valid, contract)
    if contract.soft_delete and contract.history == "current" and deletions_from is not None:
        deduped = after_deletes(deduped, consumed_valid(ctx, contract, deletions_from), contract)
    return deduped


def consumed_valid(ctx: RunContext, contract: Contract, consumed: int) -> DataFrame:
    """Every valid row bronze held at `consumed` (the deliveries silver took before), conformed
    under today's contract, in the layout of a batch's valid rows: a row replayed from quarantine
    or erased from bronze counts as it does now. Read only for a batch with a late version
    (SCD2 chains; current-state deletions), or a quarantine replay: a whole read of bronze."""
    bronze = ctx.lake.read(ctx.table_path("bronze", contract.source), consumed)
    return valid_values(conform(bronze, contract, ctx.references(contract)), contract, KEEP)


def _bounded(contract: Contract) -> tuple[str, ...]:
    """The contract columns whose batch range bounds what a merge into silver reads of it
    (_target_range): the keys, and for events the date partition, whose files prune the scan."""
    return (*contract.keys, *contract.partition_by) if contract.history == "events" else tuple(contract.keys)


# A value written into a predicate as it is: both engines' SQL parsers read these the same way
# (no quote, no backslash, which Spark's parser unescapes and DataFusion's does not).
_PLAIN = re.compile(r"[\w .:@+/-]*", re.ASCII)


def _range_aggregates(contract: Contract) -> list:
    """Aggregates over a conformed batch: the lowest and highest valid value of each bounded
    column (_bounded, for _target_range), riding on the step's one aggregate."""
    valid = F.size(RULES) == 0
    out = []
    for i, name in enumerate(_bounded(contract)):
        value = F.when(valid, F.col(f"`{VALUE}{name}`"))
        out += [F.min(value).alias(f"_lo_{i}"), F.max(value).alias(f"_hi_{i}")]
    return out


def _target_range(contract: Contract, totals: Row) -> str | None:
    """A predicate over silver alone that bounds what the batch's merge reads and matches: each
    bounded column between the batch's lowest and highest value (_range_aggregates); an events
    partition date widened by the contract's redelivery_days, the window in which an event id
    delivered again on another date matches. The engines skip the files (and partitions)
    outside it, by their min/max statistics, in the merge and in merge_effect. Only plain
    literals: a column whose values are not plain strings, dates or integers (or that PII
    protection rewrites) is left out."""
    ranges = []
    for i, name in enumerate(_bounded(contract)):
        lo, hi = totals[f"_lo_{i}"], totals[f"_hi_{i}"]
        if name in contract.partition_by and type(lo) is date and type(hi) is date:  # not datetimes
            lo, hi = _widened(lo, hi, contract.redelivery_days)
        literals = [_literal(lo), _literal(hi)]
        if contract.columns[name].pii in ("none", "name") and None not in literals:
            ranges.append(f"t.`{name}` BETWEEN {literals[0]} AND {literals[1]}")
    return " AND ".join(ranges) or None


def _widened(lo: date, hi: date, days: int) -> tuple[date, date]:
    """lo - days .. hi + days, within the dates Python holds (silver keeps years 1-9999)."""
    step = timedelta(days=days)
    return (lo - step if lo - date.min >= step else date.min), (
        hi + step if date.max - hi >= step else date.max
    )


def _literal(value) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, str) and _PLAIN.fullmatch(value):
        return f"'{value}'"
    return None


@dataclass
class MergePlan:
    """What to merge into silver and how, and what the merge will do: its figures, computed
    once by the check (the table's rows after it), then used by the publish (a batch that
    matches no row is appended: Lake.merge's `matched`)."""

    source: DataFrame  # what to merge into silver
    spec: MergeSpec
    target: DataFrame | None  # silver as it is; None before its first batch
    # Every target row the merge can match, where the plan reads them itself (SCD2: the stored
    # versions of the batch's keys), else None. The caller caches it before computing `source`,
    # whose plan reads it more than once (the chains, the versions they keep, the ones they
    # supersede), and the figures count against it: one scan of silver.
    stored: DataFrame | None = None
    # The table's snapshot (Lake.snapshot_key) when `target` was read: the figures hold for the
    # publish only while the table is still at it.
    read_at: tuple[str, int] | None = None
    small: bool = False  # `source` is a small batch in one partition (_merge_plan's `small`)
    # The table's rows at `read_at`, from the lake's log (read_target); None before its first batch.
    rows_now: Callable[[], int] | None = None
    _figures: MergeFigures | None = field(default=None, init=False, repr=False)

    @property
    def figures(self) -> MergeFigures:
        # Kept in a plain attribute: Python 3.11's cached_property takes one lock for every
        # instance, which would queue the figures of silver steps running side by side.
        if self._figures is None:
            if self.target is not None and self.rows_now is None:
                raise TypeError("MergePlan: a target table without its row count (read_target gives both)")
            rows_now = self.rows_now() if self.rows_now is not None else 0
            self._figures = merge_figures(self.source, self.target, self.spec, self.stored, rows_now)
        return self._figures

    def write(self, lake: Lake, path: str, contract: Contract, metadata: dict, txn: Txn) -> WriteResult:
        """The publish: an append when the check counted no matching row and the table is still
        at the snapshot it was counted on (a writer in between, past the lake's lease, makes it
        a MERGE again); a MERGE otherwise. It counts nothing itself: with the gates off it
        merges, at no extra query."""
        unmatched = (
            self.target is not None
            and self._figures is not None
            and self._figures.matched == 0
            and lake.snapshot_key(path) == self.read_at
        )
        source = self.source
        appends = unmatched or self.target is None
        if contract.partition_by and not self.small and appends and not lake.groups_partition_values:
            # An append of a large batch: one file per partition value, not one per task and
            # value (dedup spreads the dates over every task: a full run's events left ~4 files
            # a date, 380 at scale 1, and gold's scans of them open every one), on a lake that
            # does not group the values itself (Lake.groups_partition_values).
            source = source.repartition(*[F.col(f"`{c}`") for c in contract.partition_by])
        return lake.merge(
            path,
            source,
            self.spec,
            partition_by=contract.partition_by,
            metadata=metadata,
            txn=txn,
            matched=0 if unmatched else None,
        )


class Target(NamedTuple):
    """Silver as a merge plan reads it (read_target)."""

    read_at: tuple[str, int] | None  # the snapshot it is at (MergePlan.read_at)
    frame: DataFrame | None  # the table; None before its first batch
    rows: Callable[[], int] | None  # its rows at read_at, from the lake's log (MergePlan.rows_now)


def read_target(lake: Lake, path: str) -> Target:
    """Silver as a merge plan reads it, all at one version (a writer past the lease may commit
    before the figures are computed: they then still add up); Target(None, None, None) before
    its first batch."""
    read_at = lake.snapshot_key(path)
    if read_at is None:
        return Target(None, None, None)
    version = read_at[1]
    return Target(read_at, lake.read(path, version), lambda: lake.row_count(path, version))


def _merge_plan(
    contract: Contract,
    rows: DataFrame,
    target: DataFrame | None,
    target_range: str | None = None,
    small: bool = False,
    read_at: tuple[str, int] | None = None,
    rows_now: Callable[[], int] | None = None,
) -> MergePlan:
    """What to merge into silver and how: the batch's rows by key, or for SCD2 the recomputed
    version chains of the batch's keys (history.scd2_changes) by (key, valid_from). `target_range`:
    the batch's key range (_target_range), to read only the part of silver that can match.
    `small`: `rows` is a small batch in one partition; so are the stored versions of its keys,
    and the chains are recomputed without a shuffle. For SCD2 the stored versions it reads are
    returned too (`MergePlan.stored`), for the caller to cache before computing the source."""
    if contract.history == "scd2":
        stored = None
        if target is not None:
            keys = rows.select(*contract.keys).distinct()
            existing = target.join(F.broadcast(keys) if small else keys, list(contract.keys), "left_semi")
            existing = stored = existing.coalesce(1) if small else existing
        else:
            existing = rows.limit(0).withColumns(
                {
                    "valid_from": F.lit(None).cast("timestamp"),
                    "valid_to": F.lit(None).cast("timestamp"),
                    "is_current": F.lit(None).cast("boolean"),
                }
            )
        spec = MergeSpec(
            keys=(*contract.keys, "valid_from"),
            delete_when=SUPERSEDED,
            insert_when=f"NOT ({SUPERSEDED})",
            target_only=target_range,
        )
        return MergePlan(
            scd2_changes(existing, rows, contract, small), spec, target, stored, read_at, small, rows_now
        )
    if contract.history == "events":
        # Events never change: insert unseen ids. Matched on the id alone within the target range
        # (the batch's dates widened by redelivery_days, which prunes the scan): an id delivered
        # again on another date matches. Without a range (dates no literal carries alike to both
        # engines, a quarantine replay) on id and date, which prune as well.
        dated = any(f"t.`{p}`" in (target_range or "") for p in contract.partition_by)
        keys = tuple(contract.keys) if dated else (*contract.keys, *contract.partition_by)
        spec = MergeSpec(keys=keys, update=False, target_only=target_range)
        return MergePlan(rows, spec, target, read_at=read_at, small=small, rows_now=rows_now)
    # A sequence silver does not keep (_ingestion_ts, the delivery time): the batch id, which
    # sorts by delivery time under any run id (pipeline.run_id).
    seq = contract.sequence_by if contract.sequence_by in rows.columns else "_batch_id"
    newer = f"s.`{seq}` >= t.`{seq}`"
    deleted = f"s.`{contract.soft_delete}`" if contract.soft_delete else None
    spec = MergeSpec(
        keys=tuple(contract.keys),
        update_when=newer,
        delete_when=f"{deleted} AND {newer}" if deleted else None,
        insert_when=f"NOT {deleted}" if deleted else None,
        target_only=target_range,
    )
    return MergePlan(rows, spec, target, read_at=read_at, small=small, rows_now=rows_now)


def merge_effect(source: DataFrame, target: DataFrame | None, spec: MergeSpec) -> DataFrame:
    """One row (`inserted`, `deleted`, `matched`): the rows a MERGE of `source` into `target` by
    `spec` inserts and deletes, and the (source, target) row pairs that match, computed with the
    spec's own conditions (a pure transform: the gate knows the table's row count after the
    publish before anything is written). `target` None: no table yet, every source row the
    insert clause accepts is inserted.

    Exact when `source` has one row per merge key (silver batches are deduplicated by key), as
    Delta's MERGE requires anyway. Only the target's columns the conditions use are read."""
    inserted = F.lit(spec.insert) & (F.expr(spec.insert_when) if spec.insert_when else F.lit(True))
    if target is None:  # nothing to match: delete_when (which may name t) never applies
        none = F.lit(0).cast("bigint")
        return source.alias("s").agg(
            F.count_if(inserted).alias("inserted"), none.alias("deleted"), none.alias("matched")
        )
    marked = target.withColumn("__matched", F.lit(True)).alias("t")
    joined = source.alias("s").join(marked, F.expr(spec.join_predicate()), "left")
    matched = F.col("t.__matched").isNotNull()
    deleted = matched & F.expr(spec.delete_when) if spec.delete_when else F.lit(False)
    return joined.agg(
        F.count_if(~matched & inserted).alias("inserted"),
        F.count_if(deleted).alias("deleted"),
        F.count_if(matched).alias("matched"),
    )
