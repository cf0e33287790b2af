"""The lake layer: the only package that knows which Delta implementation is in use."""

from __future__ import annotations

from pyspark.sql import SparkSession

from pipeline.lake.base import Commit, Lake, LakeError, MergeSpec, Txn, WriteResult
from pipeline.settings import ConfigError

__all__ = [
    "Commit",
    "Lake",
    "LakeError",
    "MergeSpec",
    "Txn",
    "WriteResult",
    "open_lake",
    "engine_unavailable",
]


def engine_unavailable(engine: str, spark: SparkSession) -> str | None:
    """None when `engine` can run in this session, else why not."""
    if engine == "delta-rs":
        return None
    try:
        from pipeline.lake.delta_spark import delta_spark_available
    except ImportError as exc:
        return f"delta-spark Python package not importable: {exc}"
    return delta_spark_available(spark)


def open_lake(engine: str, spark: SparkSession) -> Lake:
    """`auto` picks delta-spark when its classes load in the JVM (EMR), else delta-rs."""
    if engine == "auto":
        engine = "delta-spark" if engine_unavailable("delta-spark", spark) is None else "delta-rs"
    reason = engine_unavailable(engine, spark)
    if reason:
        raise ConfigError(f"lake.engine: {engine} cannot run here: {reason}; use auto or delta-rs")
    if engine == "delta-spark":
        from pipeline.lake.delta_spark import DeltaSparkLake

        return DeltaSparkLake(spark)
    from pipeline.lake.delta_rs import DeltaRsLake

    return DeltaRsLake(spark)
