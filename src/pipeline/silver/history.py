"""Deduplication and history as pure transforms.

Ties are broken deterministically: by the contract's sequence column, then the bronze ingestion
time, then the source file, then the row's values (a hash), so two runs over the same data pick the
same row, whatever order the rows reach the window in. One file giving a key two different
versions at one sequence value never gets here: conformance quarantines both
(`conform.conflict_rule`); what is left to collapse are exact duplicates and earlier deliveries.
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DataType, MapType, StructType

from pipeline.contracts.model import Contract

TIEBREAK = ("_ingestion_ts", "_source_file")


def _holds_map(t: DataType) -> bool:
    if isinstance(t, MapType):
        return True
    if isinstance(t, ArrayType):
        return _holds_map(t.elementType)
    return isinstance(t, StructType) and any(_holds_map(f.dataType) for f in t.fields)


def values_hash(df: DataFrame, names: list[str]) -> Column:
    """A hash of the named columns' values; a map (which Spark does not hash) by its JSON."""
    types = {f.name: f.dataType for f in df.schema.fields}
    return F.xxhash64(
        *[F.to_json(F.col(f"`{n}`")) if _holds_map(types[n]) else F.col(f"`{n}`") for n in names]
    )


def _tiebreak(df: DataFrame) -> list[Column]:
    """TIEBREAK, then a hash of the row's values (Spark hashes no map: columns holding one are
    left out of it)."""
    hashed = [F.col(f"`{f.name}`") for f in df.schema.fields if not _holds_map(f.dataType)]
    return [*[F.col(c).desc_nulls_last() for c in TIEBREAK], F.xxhash64(*hashed).desc()]


def latest_per_key(df: DataFrame, contract: Contract) -> DataFrame:
    """One row per key: the latest by the sequence column (current-state tables, events)."""
    w = Window.partitionBy(*contract.keys).orderBy(
        F.col(contract.sequence_by).desc_nulls_last(), *_tiebreak(df)
    )
    return df.withColumn("__rank", F.row_number().over(w)).filter("__rank = 1").drop("__rank")


def after_deletes(batch: DataFrame, earlier: DataFrame, contract: Contract) -> DataFrame:
    """A current-state batch less the versions a deletion silver consumed before supersedes: a
    key's row that sorts before its latest deletion among `earlier` (the deliveries silver
    consumed, valid rows in the batch's layout), by the sequence and then the delivery time, as
    `latest_per_key` orders them (a batch row, delivered later, wins a tie of sequence; a row
    replayed from quarantine keeps its own delivery time). Silver removes a soft-deleted key's
    row, so nothing is left for such a version to lose to: the merge would insert it again. A
    version after the deletion (the key created again) stays."""
    keys, flag = list(contract.keys), contract.soft_delete
    order = F.struct(F.col(contract.sequence_by).alias("s"), F.col(TIEBREAK[0]).alias("t"))
    deleted = (
        earlier.where(F.col(flag))
        .join(batch.select(*keys).distinct(), keys, "left_semi")  # at most one row per batch key
        .groupBy(*keys)
        .agg(F.max(order).alias("__deleted"))
    )
    joined = batch.join(deleted, keys, "left")
    stale = F.col("__deleted").isNotNull() & ~F.col(flag) & (order <= F.col("__deleted"))
    return joined.where(~F.coalesce(stale, F.lit(False))).drop("__deleted")


def distinct_versions(df: DataFrame, contract: Contract) -> DataFrame:
    """One row per (key, sequence value): re-deliveries of the same version collapse (SCD2 input)."""
    w = Window.partitionBy(*contract.keys, contract.sequence_by).orderBy(*_tiebreak(df))
    return df.withColumn("__rank", F.row_number().over(w)).filter("__rank = 1").drop("__rank")


def with_earlier_versions(batch: DataFrame, earlier: DataFrame, contract: Contract) -> DataFrame:
    """An SCD2 batch's versions together with every earlier version of the keys it touches, one
    row per (key, sequence value) (`distinct_versions`; the batch, ingested later, wins a tie).

    Silver keeps only the versions that change a tracked attribute, so a late version between
    two equal ones needs back the later one, folded into its predecessor when it arrived: the
    touched keys' chains are recomputed from all their versions, as one run over every delivery
    would build them. `batch` and `earlier`: valid rows in the same layout (with TIEBREAK)."""
    touched = batch.select(*contract.keys).distinct()
    before = earlier.join(touched, list(contract.keys), "left_semi")
    return distinct_versions(batch.unionByName(before), contract)


def late(sequence: Column, newest_consumed: datetime | None) -> Column:
    """True for a version that is not after every version silver consumed before (the table's
    recorded newest sequence value, an upper bound of them; None: unknown, so every version is
    late). Only a late version can change or reorder what silver holds for its key."""
    if newest_consumed is None:
        return F.lit(True)
    return ~F.coalesce(sequence > F.lit(newest_consumed), F.lit(False))


def scd2_incoming(
    batch: DataFrame, earlier: DataFrame, contract: Contract, newest_consumed: datetime | None
) -> DataFrame:
    """An SCD2 batch's versions to merge: for a key with a `late` version, with every earlier
    version of it (`with_earlier_versions`: its chain is rebuilt from all its deliveries); for a
    key whose versions all come after everything consumed, its own versions alone
    (`distinct_versions`). Why that is enough: silver holds each key's chain folded from the
    deliveries so far, and a version newer than all of them only extends the chain, comparing
    itself with the newest stored version (`scd2_versions`), whose attributes are those of the
    newest delivery. A late version may sit between two equal versions whose later one silver
    folded away, so it needs the deliveries back."""
    late_keys = (
        batch.where(late(F.col(contract.sequence_by), newest_consumed)).select(*contract.keys).distinct()
    )
    keys = list(contract.keys)
    in_order = distinct_versions(batch.join(late_keys, keys, "left_anti"), contract)
    return in_order.unionByName(
        with_earlier_versions(batch.join(late_keys, keys, "left_semi"), earlier, contract)
    )


def scd2_versions(
    existing: DataFrame, incoming: DataFrame, contract: Contract, one_partition: bool = False
) -> DataFrame:
    """The full version chain of every key present in `incoming`, merged with what silver already
    holds for those keys. A version is kept only when a tracked attribute (or the deletion flag)
    changes; valid_to is the next version's valid_from; is_current marks the open, undeleted one.

    `existing`: silver rows (with valid_from/valid_to/is_current) for the incoming keys.
    `incoming`: new rows in silver's column layout, without the history columns.
    `one_partition`: both are small and one partition each; the chain stays one partition, so
    its windows need no shuffle (a union of two partitions would need one).
    """
    # One row per (key, valid_from): a re-delivered version replaces the stored one, as in a
    # one-go run the later ingested delivery wins (history.TIEBREAK).
    new = incoming.withColumn("valid_from", F.col(contract.sequence_by)).withColumn("__stored", F.lit(False))
    old = existing.drop("valid_to", "is_current").withColumn("__stored", F.lit(True))
    delivery = Window.partitionBy(*contract.keys, "valid_from").orderBy(F.col("__stored").asc())
    both = old.unionByName(new, allowMissingColumns=True)
    chain = (
        (both.coalesce(1) if one_partition else both)
        .withColumn("__rank", F.row_number().over(delivery))
        .filter("__rank = 1")
    )
    changed_on = [*contract.tracked, *([contract.soft_delete] if contract.soft_delete else [])]
    fingerprint = F.sha2(F.to_json(F.struct(*[F.col(c) for c in changed_on])), 256)
    in_order = Window.partitionBy(*contract.keys).orderBy(F.col("valid_from").asc())
    versions = (
        chain.withColumn("__fp", fingerprint)
        .withColumn("__prev_fp", F.lag("__fp").over(in_order))
        .filter(F.col("__prev_fp").isNull() | (F.col("__fp") != F.col("__prev_fp")))
    )
    deleted = F.coalesce(F.col(contract.soft_delete), F.lit(False)) if contract.soft_delete else F.lit(False)
    return (
        versions.withColumn("valid_to", F.lead("valid_from").over(in_order))
        .withColumn("is_current", F.col("valid_to").isNull() & ~deleted)
        .drop("__stored", "__rank", "__fp", "__prev_fp")
    )


def scd2_changes(
    existing: DataFrame, incoming: DataFrame, contract: Contract, one_partition: bool = False
) -> DataFrame:
    """What to merge into an SCD2 table on (keys, valid_from): the recomputed chains
    (`scd2_versions`) and, marked superseded by is_current NULL (which no kept version has), the
    stored versions they no longer hold: a late version that repeats its successor's attributes
    absorbs it, so an incremental run ends where a one-go run over the same rows does.
    `one_partition`: as for scd2_versions (the join with `existing` needs no shuffle either)."""
    versions = scd2_versions(existing, incoming, contract, one_partition)
    identity = [*contract.keys, "valid_from"]
    kept = versions.select(*identity)
    # A small chain is broadcast: a sort-merge join would shuffle both sides to use every core.
    kept = F.broadcast(kept) if one_partition else kept
    superseded = existing.join(kept, identity, "left_anti").withColumn(
        "is_current", F.lit(None).cast("boolean")
    )
    return versions.unionByName(superseded)
