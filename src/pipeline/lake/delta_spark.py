"""delta-spark engine: the production engine on EMR, which ships the Delta jars.

Everything runs inside Spark (distributed writes, MERGE, OPTIMIZE). Idempotent writes use
Delta's own txnAppId/txnVersion; commit metadata rides in commitInfo.userMetadata like the
delta-rs engine, so both read each other's positions.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from pipeline.lake.base import (
    Commit,
    Lake,
    LakeError,
    MergeSpec,
    WriteResult,
    decode_metadata,
    encode_metadata,
)
from pipeline.spark import jvm_class_exists

SESSION_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
TXN_APP_CONF = "spark.databricks.delta.write.txnAppId"
TXN_VERSION_CONF = "spark.databricks.delta.write.txnVersion"
USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"


def delta_spark_available(spark: SparkSession) -> str | None:
    """None when delta-spark can run in this session, else the reason it cannot."""
    try:
        jvm_class_exists(spark, SESSION_EXTENSION)
    except LookupError:
        return (
            f"Delta jars not on the Spark classpath ({SESSION_EXTENSION} does not load); "
            "EMR ships them, locally they need Maven access"
        )
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    if SESSION_EXTENSION not in extensions:
        return f"spark.sql.extensions does not include {SESSION_EXTENSION}"
    return None


class DeltaSparkLake(Lake):
    name = "delta-spark"

    def exists(self, path: str) -> bool:
        return DeltaTable.isDeltaTable(self.spark, path)

    def version(self, path: str) -> int | None:
        if not self.exists(path):
            return None
        return int(DeltaTable.forPath(self.spark, path).history(1).collect()[0]["version"])

    def read(self, path: str, version: int | None = None) -> DataFrame:
        if not self.exists(path):
            raise LakeError(f"{path}: no Delta table here (has its producing step run?)")
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(path)

    def _write(self, path, df, mode, predicate, partition_by, metadata, txn) -> WriteResult:
        writer = df.write.format("delta").mode(mode)
        if mode == "append" or predicate:
            writer = writer.option("mergeSchema", "true")
        else:
            writer = writer.option("overwriteSchema", "true")
        if predicate and self.exists(path):
            writer = writer.option("replaceWhere", predicate)
        if partition_by and not self.exists(path):
            writer = writer.partitionBy(*partition_by)
        encoded = encode_metadata(metadata)
        if encoded:
            writer = writer.option("userMetadata", encoded)
        if txn:
            writer = writer.option("txnAppId", txn.app_id).option("txnVersion", str(txn.version))
        try:
            writer.save(path)
        except Exception as exc:
            raise LakeError(f"{path}: {mode} failed: {exc}") from exc
        return WriteResult(path, self.version(path))

    def _merge(self, path, df, spec: MergeSpec, metadata, txn) -> WriteResult:
        merger = DeltaTable.forPath(self.spark, path).alias("t").merge(df.alias("s"), spec.join_predicate())
        if spec.delete_when:
            merger = merger.whenMatchedDelete(condition=spec.delete_when)
        if spec.update:
            merger = merger.whenMatchedUpdateAll(condition=spec.update_when)
        if spec.insert:
            merger = merger.whenNotMatchedInsertAll(condition=spec.insert_when)
        with self._session_conf(metadata, txn, {"spark.databricks.delta.schema.autoMerge.enabled": "true"}):
            try:
                merger.execute()
            except Exception as exc:
                raise LakeError(f"{path}: merge on {', '.join(spec.keys)} failed: {exc}") from exc
        return WriteResult(path, self.version(path))

    def _read_changes(self, path: str, after_version: int, until_version: int) -> DataFrame:
        # Needs delta.enableChangeDataFeed on the table (the dev/prod configs default it on).
        changes = (
            self.spark.read.format("delta")
            .option("readChangeFeed", "true")
            .option("startingVersion", after_version + 1)
            .option("endingVersion", until_version)
            .load(path)
        )
        inserted = changes.filter("_change_type IN ('insert', 'update_postimage')")
        return inserted.drop("_change_type", "_commit_version", "_commit_timestamp")

    def delete(self, path, predicate, *, metadata=None) -> WriteResult:
        with self._session_conf(metadata, None):
            DeltaTable.forPath(self.spark, path).delete(predicate)
        return WriteResult(path, self.version(path))

    @contextmanager
    def _session_conf(self, metadata, txn, extra: dict[str, str] | None = None):
        """DML has no writer options: metadata and Txn go through session conf, then are cleared."""
        conf = dict(extra or {})
        encoded = encode_metadata(metadata)
        if encoded:
            conf[USER_METADATA_CONF] = encoded
        if txn:
            conf[TXN_APP_CONF], conf[TXN_VERSION_CONF] = txn.app_id, str(txn.version)
        for key, value in conf.items():
            self.spark.conf.set(key, value)
        try:
            yield
        finally:
            for key in conf:
                self.spark.conf.unset(key)

    def history(self, path: str, limit: int | None = None) -> list[Commit]:
        table = DeltaTable.forPath(self.spark, path)
        rows = (table.history(limit) if limit else table.history()).collect()
        return [
            Commit(
                version=int(r["version"]),
                timestamp_ms=int(r["timestamp"].timestamp() * 1000),
                operation=r["operation"],
                metadata=decode_metadata(r["userMetadata"]),
                metrics=dict(r["operationMetrics"] or {}),
            )
            for r in rows
        ]

    def transaction_version(self, path: str, app_id: str) -> int | None:
        # Not in the public API: the snapshot's SetTransaction map, read through the JVM.
        jvm = self.spark.sparkContext._jvm  # type: ignore[union-attr]
        log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(self.spark._jsparkSession, path)
        txns = log.update(False, jvm.scala.Option.empty(), jvm.scala.Option.empty()).transactions()
        return int(txns.apply(app_id)) if txns.contains(app_id) else None

    def optimize(self, path: str, zorder_by: list[str] | None = None) -> dict[str, Any]:
        builder = DeltaTable.forPath(self.spark, path).optimize()
        result = builder.executeZOrderBy(*zorder_by) if zorder_by else builder.executeCompaction()
        return result.collect()[0].asDict(recursive=True)

    def vacuum(self, path: str, retention_hours: int = 168, *, enforce_retention: bool = True) -> list[str]:
        check = {"spark.databricks.delta.retentionDurationCheck.enabled": str(enforce_retention).lower()}
        with self._session_conf(None, None, check):
            DeltaTable.forPath(self.spark, path).vacuum(float(retention_hours))
        return []  # delta-spark does not return the deleted paths
