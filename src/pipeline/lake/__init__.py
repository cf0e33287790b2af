"""The lake layer: the only package that knows which Delta implementation is in use."""

from __future__ import annotations

import logging

from pyspark.sql import SparkSession

from pipeline.lake.base import Commit, FileStats, Lake, LakeError, MergeSpec, Txn, WriteResult
from pipeline.settings import ConfigError, LakeSettings

__all__ = [
    "Commit",
    "FileStats",
    "Lake",
    "LakeError",
    "MergeSpec",
    "Txn",
    "WriteResult",
    "open_lake",
    "engine_unavailable",
    "SCHEMA_MISMATCH_ERRORS",
]

log = logging.getLogger(__name__)


def _schema_mismatch_errors() -> tuple[type[BaseException], ...]:
    """The engines' own exception types for rows that do not fit a table's schema (delta-spark's
    surface as AnalysisException, recognised by their error class in driver.retry)."""
    try:
        from deltalake.exceptions import SchemaMismatchError
    except ImportError:  # pragma: no cover - deltalake is a dependency of record
        return ()
    return (SchemaMismatchError,)


SCHEMA_MISMATCH_ERRORS = _schema_mismatch_errors()


def engine_unavailable(engine: str, spark: SparkSession) -> str | None:
    """None when `engine` can run in this session, else why not."""
    if engine == "delta-rs":
        return None
    try:
        from pipeline.lake.delta_spark import delta_spark_available
    except ImportError as exc:
        return f"delta-spark Python package not importable: {exc}"
    return delta_spark_available(spark)


def open_lake(
    engine: str,
    spark: SparkSession,
    storage_options: dict[str, str] | None = None,
    *,
    max_bytes: int = LakeSettings.delta_rs_max_bytes,
) -> Lake:
    """`auto` picks delta-spark when its classes load in the JVM (EMR, or local jars fetched by
    `make setup`), else delta-rs, saying so in one line. `storage_options` (settings'
    `lake.storage_options`) reach delta-rs, which talks to object stores itself; delta-spark goes
    through the session's Hadoop file systems, configured by the Spark conf. `max_bytes`
    (`lake.delta_rs_max_bytes`) bounds what delta-rs moves through the driver at once."""
    if engine == "auto":
        reason = engine_unavailable("delta-spark", spark)
        engine = "delta-spark" if reason is None else "delta-rs"
        if reason:
            log.warning(
                "lake.engine auto: delta-rs, since delta-spark cannot run here (%s); "
                "run `make setup` to fetch the Delta jars into jvm/jars/spark",
                reason,
            )
    reason = engine_unavailable(engine, spark)
    if reason:
        raise ConfigError(f"lake.engine: {engine} cannot run here: {reason}; use auto or delta-rs")
    if engine == "delta-spark":
        from pipeline.lake.delta_spark import DeltaSparkLake

        return DeltaSparkLake(spark)
    from pipeline.lake.delta_rs import DeltaRsLake

    return DeltaRsLake(spark, storage_options, max_bytes=max_bytes)
