"""File-based bronze ingest: new landing files -> one atomic Delta append.

Which files are already in bronze is read from bronze itself (distinct `_source_file`), plus
the files that held no records, listed in commit metadata. One batch is one commit, so a crash
leaves either the whole batch or none of it, and a rerun picks up exactly what is missing.
"""

from __future__ import annotations

import logging
import re
from datetime import date

from pyspark import StorageLevel
from pyspark.sql import functions as F

from pipeline.bronze.audit import with_audit_columns
from pipeline.bronze.readers import CORRUPT, READERS, SOURCE_FILE
from pipeline.context import RunContext
from pipeline.lake import Lake
from pipeline.step_result import StepResult
from pipeline.storage import LandingFile, list_files

log = logging.getLogger(__name__)

EMPTY_FILES_KEY = "empty_files"


def ingested_files(lake: Lake, table: str) -> set[str]:
    if not lake.exists(table):
        return set()
    rows = lake.read(table).select(SOURCE_FILE).distinct().collect()
    done = {r[0] for r in rows}
    for commit in lake.history(table):
        done.update(commit.metadata.get(EMPTY_FILES_KEY, []))
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
    return [f for f in listed if f.uri not in done]


def ingest_files(ctx: RunContext, dataset: str) -> StepResult:
    spec = ctx.catalog[dataset]
    table = ctx.table_path("bronze", dataset)
    files = new_landing_files(ctx, dataset)
    if not files:
        log.info("%s: no new landing files under %s", dataset, ctx.landing_path(dataset))
        return StepResult(details={"new_files": 0, "table": table})
    raw = READERS[spec.reader](ctx.spark, files, spec, ctx.landing_path(dataset))
    batch_id = ctx.batch_id(dataset)
    batch = with_audit_columns(raw, spec.source_system, batch_id).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        # One aggregation over the cached batch gives per-file and corrupt counts for the report.
        stats = (
            batch.groupBy(SOURCE_FILE)
            .agg(F.count(F.lit(1)).alias("rows"), F.count(CORRUPT).alias("corrupt"))
            .collect()
        )
        rows_per_file = {r[SOURCE_FILE]: r["rows"] for r in stats}
        rows = sum(rows_per_file.values())
        corrupt = sum(r["corrupt"] for r in stats)
        empty = sorted(f.uri for f in files if f.uri not in rows_per_file)
        result = ctx.lake.append(
            table,
            batch,
            partition_by=spec.partition_by,
            metadata={"batch_id": batch_id, "files": len(files), "rows": rows, EMPTY_FILES_KEY: empty},
        )
    finally:
        batch.unpersist()
    log.info(
        "%s: %d files, %d rows (%d corrupt) -> %s v%s",
        dataset,
        len(files),
        rows,
        corrupt,
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
        },
    )
