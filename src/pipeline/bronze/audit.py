"""Audit columns every bronze row carries (a pure transform)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipeline.bronze.readers import CORRUPT, ERROR, SOURCE_FILE
from pipeline.catalog import AUDIT_COLUMNS


def with_audit_columns(df: DataFrame, source_system: str, batch_id: str) -> DataFrame:
    """Source columns first, then the audit columns in a fixed order."""
    source_columns = [c for c in df.columns if c not in AUDIT_COLUMNS]
    return df.select(
        *[F.col(f"`{c}`") for c in source_columns],
        F.current_timestamp().alias("_ingestion_ts"),
        F.lit(source_system).alias("_source_system"),
        F.col(SOURCE_FILE).cast("string").alias(SOURCE_FILE),
        F.lit(batch_id).alias("_batch_id"),
        F.col(CORRUPT).cast("string").alias(CORRUPT),
        F.col(ERROR).cast("string").alias(ERROR),
    )
