"""JDBC extraction by watermark (Redshift behaviour events; PostgreSQL locally and in tests).

Each run reads rows with low < watermark_column <= high, where low is the watermark committed
with the previous bronze batch and high is the source's max at the start of the run (so rows
arriving during the read wait for the next run instead of being half-read). The new watermark
is written in the same Delta commit as the rows: a crash can neither skip nor repeat a window.
The read is split into `num_partitions` parallel range queries over the watermark column.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.bronze.audit import with_audit_columns
from pipeline.bronze.ingest import NEWEST, iso_from_micros, newest_event_time
from pipeline.bronze.readers import CORRUPT, ERROR, SOURCE_FILE
from pipeline.context import RunContext
from pipeline.freshness import NEWEST_KEY, recorded_newest, table_newest
from pipeline.settings import ConfigError, JdbcSettings
from pipeline.spark import require_jdbc_driver
from pipeline.step_result import StepResult

log = logging.getLogger(__name__)

WATERMARK_KEY = "jdbc_watermark"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def _options(conf: JdbcSettings) -> dict[str, str]:
    return {
        "url": conf.url,
        "user": conf.user,
        "password": conf.password.resolve(),
        "driver": conf.driver,
        "fetchsize": str(conf.fetch_size),
    }


def _literal(ts: datetime) -> str:
    return f"TIMESTAMP '{ts.strftime('%Y-%m-%d %H:%M:%S.%f')}'"


def redacted_url(url: str) -> str:
    """The JDBC URL without credentials or query parameters, fit for `_source_file` and logs."""
    return re.sub(r"//[^/@]*@", "//", url).split("?")[0]


def _bounds(
    spark: SparkSession, conf: JdbcSettings, low: datetime | None
) -> tuple[datetime, datetime] | None:
    col, where = conf.watermark_column, ""
    if low is not None:
        where = f" WHERE {col} > {_literal(low)}"
    query = f"SELECT MIN({col}) AS lo, MAX({col}) AS hi FROM {conf.table}{where}"
    row = spark.read.format("jdbc").options(**_options(conf)).option("query", query).load().first()
    if row is None or row["hi"] is None:
        return None
    return row["lo"], row["hi"]


def extract_window(
    spark: SparkSession, conf: JdbcSettings, low: datetime | None, high: datetime, lo: datetime
) -> DataFrame:
    col = conf.watermark_column
    predicate = f"{col} <= {_literal(high)}" + (f" AND {col} > {_literal(low)}" if low is not None else "")
    return (
        spark.read.format("jdbc")
        .options(**_options(conf))
        .option("dbtable", f"(SELECT * FROM {conf.table} WHERE {predicate}) AS src")
        .option("partitionColumn", col)
        .option("lowerBound", lo.strftime("%Y-%m-%d %H:%M:%S.%f"))
        .option("upperBound", high.strftime("%Y-%m-%d %H:%M:%S.%f"))
        .option("numPartitions", conf.num_partitions)
        .load()
    )


def ingest_jdbc(ctx: RunContext, dataset: str, conf: JdbcSettings) -> StepResult:
    for name, value in (("table", conf.table), ("watermark_column", conf.watermark_column)):
        if not _IDENTIFIER.match(value):
            raise ConfigError(f"sources.{dataset}.jdbc.{name}: {value!r} is not a plain SQL identifier")
    require_jdbc_driver(ctx.spark, conf.driver, dataset)
    spec = ctx.catalog[dataset]
    table = ctx.table_path("bronze", dataset)
    committed = ctx.lake.latest_metadata(table, WATERMARK_KEY)
    low = datetime.fromisoformat(committed) if committed else None
    bounds = _bounds(ctx.spark, conf, low)
    if bounds is None:
        log.info("%s: no rows past watermark %s", dataset, committed)
        return StepResult(
            details={"watermark": committed, "table": table, NEWEST_KEY: recorded_newest(ctx.lake, table)}
        )
    lo, high = bounds
    rows = extract_window(ctx.spark, conf, low, high, lo)
    if "event_date" in spec.partition_by and "event_date" not in rows.columns:
        rows = rows.withColumn("event_date", F.to_date("event_ts"))
    source = f"{redacted_url(conf.url)}/{conf.table}"
    staged = rows.withColumns(
        {
            SOURCE_FILE: F.lit(source),
            CORRUPT: F.lit(None).cast("string"),
            ERROR: F.lit(None).cast("string"),
        }
    )
    batch_id = ctx.batch_id(dataset)
    batch = with_audit_columns(staged, spec.source_system, batch_id).cache()
    try:
        # One aggregation over the cached batch: the row count and the newest data time. That is
        # the catalogue's event_time (event_ts), not the watermark column (loaded_at, when
        # Redshift loaded the row), so freshness means the same in files and JDBC mode.
        newest_agg = newest_event_time(batch, dataset, spec.event_time)
        totals = batch.agg(
            F.count(F.lit(1)).alias("rows"), *([newest_agg] if newest_agg is not None else [])
        ).first()
        count = totals["rows"]
        newest = totals[NEWEST] if newest_agg is not None else None
        newest_at = table_newest(ctx.lake, table, iso_from_micros(newest))
        result = ctx.lake.append(
            table,
            batch,
            partition_by=spec.partition_by,
            metadata={
                "batch_id": batch_id,
                "rows": count,
                WATERMARK_KEY: high.isoformat(),
                "source": source,
                NEWEST_KEY: newest_at,
            },
        )
    finally:
        batch.unpersist()
    log.info("%s: %d rows from %s, watermark %s -> %s", dataset, count, source, committed, high.isoformat())
    return StepResult(
        rows_in=count,
        rows_out=count,
        details={
            "watermark": high.isoformat(),
            "previous_watermark": committed,
            "table": table,
            "version": result.version,
            NEWEST_KEY: newest_at,
        },
    )
