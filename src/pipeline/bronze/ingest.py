"""File-based bronze ingest: new landing files -> one atomic Delta append.

Which files are already in bronze is read from bronze itself (distinct `_source_file`), plus
the files that held no records, listed in commit metadata. One batch is one commit, so a crash
leaves either the whole batch or none of it, and a rerun picks up exactly what is missing.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime, timedelta

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, StringType, TimestampNTZType, TimestampType

from pipeline.bronze.audit import with_audit_columns
from pipeline.bronze.readers import CORRUPT, READERS, SOURCE_FILE
from pipeline.context import RunContext
from pipeline.freshness import NEWEST_KEY, recorded_newest, table_newest
from pipeline.lake import Lake
from pipeline.step_result import StepResult
from pipeline.storage import LandingFile, file_key, list_files

log = logging.getLogger(__name__)

EMPTY_FILES_KEY = "empty_files"
NEWEST = "newest_us"  # the aggregate of newest_event_time: epoch microseconds, UTC
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ingested_files(lake: Lake, table: str) -> set[str]:
    if not lake.exists(table):
        return set()
    rows = lake.read(table).select(SOURCE_FILE).distinct().collect()
    done = {file_key(r[0]) for r in rows}
    for commit in lake.history(table):
        done.update(file_key(uri) for uri in commit.metadata.get(EMPTY_FILES_KEY, []))
    return done


_LANDING_DATE = re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})(?!\d)")


def landing_date(uri: str) -> date | None:
    """The delivery date a landing path carries (date=2026-07-01/, rates_2026-07-01.json,
    accounts_20260701.csv): the last date in the path, or None."""
    found = _LANDING_DATE.findall(uri)
    if not found:
        return None
    try:
        return date(*map(int, found[-1]))
    except ValueError:
        return None


def new_landing_files(ctx: RunContext, dataset: str) -> list[LandingFile]:
    """Landing files not yet in bronze; with a backfill window (`ctx.window`), only those whose
    landing date it contains (files without a date in their path are not windowed)."""
    spec = ctx.catalog[dataset]
    listed = list_files(ctx.spark, ctx.landing_path(dataset), spec.file_suffix)
    window = getattr(ctx, "window", None)
    if window is not None:
        listed = [f for f in listed if (day := landing_date(f.uri)) is None or window.contains(day)]
    done = ingested_files(ctx.lake, ctx.table_path("bronze", dataset))
    return [f for f in listed if file_key(f.uri) not in done]


def newest_event_time(batch: DataFrame, dataset: str, column: str) -> Column | None:
    """An aggregate: the newest data time of the batch's `column` (the catalogue's `event_time`)
    in epoch microseconds, or None (logged) when the batch cannot say.

    Strings (CSV, JSON) are parsed with `try_to_timestamp` (ANSI mode: never a throwing cast), so
    an unparseable value is ignored; date and timestamp columns are used as they are. Records
    that could not be parsed (`_corrupt_record`) do not count: their values may be shifted."""
    if not column:
        return None
    if column not in batch.columns:
        log.warning(
            "%s: event_time column %r is not in this batch (schema drift?); no newest_data_at",
            dataset,
            column,
        )
        return None
    value = F.col(f"`{column}`")
    dtype = batch.schema[column].dataType
    if isinstance(dtype, StringType):
        ts = F.try_to_timestamp(value)
    elif isinstance(dtype, DateType | TimestampType | TimestampNTZType):
        ts = value.cast(TimestampType())  # dates and NTZ values read in the session time zone (UTC)
    else:
        log.warning(
            "%s: event_time column %r is %s, not a string, date or timestamp; no newest_data_at",
            dataset,
            column,
            dtype.simpleString(),
        )
        return None
    if CORRUPT in batch.columns:
        ts = F.when(F.col(CORRUPT).isNull(), ts)
    # Years past 9999 parse ("99999-01-01") but have no ISO 8601 / Python form: ignored too.
    return F.max(F.when(F.year(ts).between(1, 9999), F.unix_micros(ts))).alias(NEWEST)


def iso_from_micros(micros: int | None) -> str | None:
    """Epoch microseconds -> ISO 8601 in UTC (`2026-07-01T12:00:00+00:00`), None for None."""
    if micros is None:
        return None
    return (_EPOCH + timedelta(microseconds=micros)).isoformat()


def ingest_files(ctx: RunContext, dataset: str) -> StepResult:
    spec = ctx.catalog[dataset]
    table = ctx.table_path("bronze", dataset)
    files = new_landing_files(ctx, dataset)
    if not files:
        log.info("%s: no new landing files under %s", dataset, ctx.landing_path(dataset))
        # Freshness: nothing new, so the table's data is as old as its last commit recorded.
        return StepResult(
            details={"new_files": 0, "table": table, NEWEST_KEY: recorded_newest(ctx.lake, table)}
        )
    raw = READERS[spec.reader](ctx.spark, files, spec, ctx.landing_path(dataset))
    batch_id = ctx.batch_id(dataset)
    batch = with_audit_columns(raw, spec.source_system, batch_id).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        # One aggregation over the cached batch gives per-file and corrupt counts for the report
        # and the newest data time (freshness).
        newest_agg = newest_event_time(batch, dataset, spec.event_time)
        extra = [newest_agg] if newest_agg is not None else []
        stats = (
            batch.groupBy(SOURCE_FILE)
            .agg(F.count(F.lit(1)).alias("rows"), F.count(CORRUPT).alias("corrupt"), *extra)
            .collect()
        )
        rows_per_file = {file_key(r[SOURCE_FILE]): r["rows"] for r in stats}
        rows = sum(rows_per_file.values())
        corrupt = sum(r["corrupt"] for r in stats)
        newest = max((r[NEWEST] for r in stats if r[NEWEST] is not None), default=None) if extra else None
        empty = sorted(f.uri for f in files if file_key(f.uri) not in rows_per_file)
        newest_at = table_newest(ctx.lake, table, iso_from_micros(newest))
        result = ctx.lake.append(
            table,
            batch,
            partition_by=spec.partition_by,
            metadata={
                "batch_id": batch_id,
                "files": len(files),
                "rows": rows,
                EMPTY_FILES_KEY: empty,
                NEWEST_KEY: newest_at,
            },
        )
    finally:
        batch.unpersist()
    if extra and newest is None and rows:
        log.warning("%s: no parseable %s value in this batch; no newest_data_at", dataset, spec.event_time)
    log.info(
        "%s: %d files, %d rows (%d corrupt), newest data at %s -> %s v%s",
        dataset,
        len(files),
        rows,
        corrupt,
        newest_at,
        table,
        result.version,
    )
    return StepResult(
        rows_in=rows,
        rows_out=rows,
        details={
            "new_files": len(files),
            "empty_files": len(empty),
            "corrupt_records": corrupt,
            "table": table,
            "version": result.version,
            NEWEST_KEY: newest_at,
        },
    )
