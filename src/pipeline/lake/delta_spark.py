"""delta-spark engine: the production engine on EMR, and locally wherever `make setup` fetched the
Delta jars (jvm/jars/spark).

Everything runs inside Spark (distributed writes, MERGE, OPTIMIZE). Idempotent writes use
Delta's own txnAppId/txnVersion; commit metadata rides in commitInfo.userMetadata like the
delta-rs engine, so both read each other's positions.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import urlparse

from delta.tables import DeltaTable
from py4j.java_gateway import JavaClass
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.lake.base import (
    METADATA_PAGE,
    TABLE_DEFAULTS,
    Commit,
    FileStats,
    Lake,
    LakeError,
    MergeSpec,
    Txn,
    WriteResult,
    decode_metadata,
    encode_metadata,
    error_kind,
    failing_as,
    numeric_metrics,
    optimize_summary,
    relative_paths,
    txn_done,
)
from pipeline.spark import DELTA_EXTENSION, jvm_class_exists

TXN_APP_CONF = "spark.databricks.delta.write.txnAppId"
TXN_VERSION_CONF = "spark.databricks.delta.write.txnVersion"
USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"
RETENTION_CHECK_CONF = "spark.databricks.delta.retentionDurationCheck.enabled"
# VACUUM commits (VACUUM START/END) in the table's history, which readers of old versions and the
# change feed look for (gold, maintenance): Delta writes them by default only on some file
# systems (file, hdfs, abfs, gs, ...), not on S3.
VACUUM_LOGGING_CONF = "spark.databricks.delta.vacuum.logging.enabled"
MAX_FILE_SIZE_CONF = "spark.databricks.delta.optimize.maxFileSize"  # OPTIMIZE's target file size
TXN_RETENTION_PROPERTY = "delta.setTransactionRetentionDuration"
MATERIALIZE_SOURCE_CONF = "spark.databricks.delta.merge.materializeSource"
# A persisted MERGE source up to this many rows passes through the driver as Arrow (see
# _computed_source): at ~1 KB a row, 100 MB at most, well within a driver's memory.
LOCAL_SOURCE_ROWS = 100_000


def _kept_on_disk(df: DataFrame) -> bool:
    """Whether `df` is persisted at a level that spills to disk: MERGE then reads it twice (the
    scan for matches, the write) from the same cached blocks, so Delta's copy of the source
    (merge.materializeSource `auto` copies any source that is not a plain Delta scan, to keep a
    source that could change between the two passes from giving wrong results) would only write
    it once more. A block is recomputed only if its executor is lost, which loses Delta's copy as
    well (Delta then restarts the MERGE), and the scan for matches depends only on the source's
    keys, which a recomputation of a silver batch (versioned reads, one row per key) gives again."""
    return df.is_cached and df.storageLevel.useDisk


def _is_local(location: str) -> bool:
    """A plain local path (no scheme): read with Python's file functions, no py4j round trip."""
    return not urlparse(location).scheme


@dataclass(frozen=True)
class CommitFile:
    """What a commit file says that positions and idempotent writes read: its commitInfo's
    userMetadata, and the Txn versions it sets per app id."""

    metadata: dict[str, Any]
    txns: dict[str, int]

    @classmethod
    def parse(cls, text: str) -> CommitFile:
        """A commit file's text: JSON lines, one action each."""
        metadata: dict[str, Any] = {}
        txns: dict[str, int] = {}
        for line in text.splitlines():
            # The test on the text spares parsing the add actions (most of a commit's lines).
            if '"commitInfo"' in line or '"txn"' in line:
                action = json.loads(line)
                if "commitInfo" in action:
                    metadata = decode_metadata(action["commitInfo"].get("userMetadata"))
                elif "txn" in action:
                    txns[action["txn"]["appId"]] = int(action["txn"]["version"])
        return cls(metadata, txns)


def delta_spark_available(spark: SparkSession) -> str | None:
    """None when delta-spark can run in this session, else the reason it cannot."""
    try:
        jvm_class_exists(spark, DELTA_EXTENSION)
    except LookupError:
        return (
            f"Delta jars not on the Spark classpath ({DELTA_EXTENSION} does not load); "
            "EMR ships them, locally `make setup` fetches them into jvm/jars/spark"
        )
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    if DELTA_EXTENSION not in extensions:
        return f"spark.sql.extensions does not include {DELTA_EXTENSION}"
    return None


class DeltaSparkLake(Lake):
    name = "delta-spark"

    def __init__(self, spark: SparkSession):
        super().__init__(spark)
        # What a process need not ask twice: the paths found to be tables, and the metadata of
        # each table's newest commits (a commit never changes), per path: (table id, {version: ...}).
        self._tables: set[str] = set()
        self._commits: dict[str, tuple[str, dict[int, CommitFile]]] = {}

    def exists(self, path: str) -> bool:
        # isDeltaTable costs a listing and ~10 py4j calls; once a path is a table it stays one
        # while its _delta_log folder is there (a dropped table's is gone: asked again).
        if path in self._tables and self._log_folder_exists(path):
            return True
        found = bool(DeltaTable.isDeltaTable(self.spark, path))
        if found:
            self._tables.add(path)
        return found

    def version(self, path: str) -> int | None:
        version = int(self._snapshot(path).version())  # -1 where no table is
        return None if version < 0 else version

    def _java(self, name: str) -> JavaClass:
        """A JVM class by its full name: `jvm.a.b.C` costs a py4j round trip per name segment."""
        return JavaClass(name, self.spark.sparkContext._gateway._gateway_client)  # type: ignore[union-attr]

    @cached_property
    def _delta_log(self) -> JavaClass:
        return self._java("org.apache.spark.sql.delta.DeltaLog")

    @cached_property
    def _no_option(self) -> Any:
        return self._java("scala.Option").empty()

    def _hadoop_file(self, location: str) -> tuple[Any, Any]:
        """(Hadoop Path, its FileSystem) of a location that is not a local path."""
        path = self._java("org.apache.hadoop.fs.Path")(location)
        return path, path.getFileSystem(self.spark.sparkContext._jsc.hadoopConfiguration())  # type: ignore[union-attr]

    def _exists(self, location: str) -> bool:
        if _is_local(location):
            return os.path.exists(location)
        hadoop, fs = self._hadoop_file(location)
        return bool(fs.exists(hadoop))

    def _log_folder_exists(self, path: str) -> bool:
        return self._exists(f"{path.rstrip('/')}/_delta_log")

    def log_from_first_commit(self, path: str) -> bool:
        # One existence check (S3: a HEAD), not the history (DESCRIBE HISTORY reads every commit).
        return self._exists(f"{path.rstrip('/')}/_delta_log/{0:020d}.json")

    def _commit_file(self, path: str, version: int) -> str | None:
        """The text of the table's commit file for `version`, None when there is none."""
        name = f"{path.rstrip('/')}/_delta_log/{version:020d}.json"
        if _is_local(name):
            try:
                with open(name, encoding="utf-8") as fh:
                    return fh.read()
            except FileNotFoundError:
                return None
        hadoop, fs = self._hadoop_file(name)
        if not fs.exists(hadoop):
            return None
        stream = fs.open(hadoop)
        try:
            data = self._java("org.apache.commons.io.IOUtils").toByteArray(stream)
        finally:
            stream.close()
        return bytes(data).decode("utf-8")

    def snapshot_key(self, path: str) -> tuple[str, int] | None:
        snapshot = self._snapshot(path)  # version -1 where no table is
        version = int(snapshot.version())
        return None if version < 0 else (str(snapshot.metadata().id()), version)

    def _snapshot(self, path: str):
        """The table's current snapshot through DeltaLog (internal: the public API has no cheap
        version and no reader for SetTransaction actions; history(1) runs a Spark job per call).
        tests/contract runs both uses on every build: a Delta upgrade that changes this API
        fails them loudly instead of double-writing."""
        try:
            log = self._delta_log.forTable(self.spark._jsparkSession, path)
            return log.update(False, self._no_option, self._no_option)
        except Exception as exc:
            raise LakeError(
                f"{path}: reading the Delta snapshot through DeltaLog failed ({exc}); this internal "
                "API changed with the Delta version: adapt DeltaSparkLake._snapshot"
            ) from exc

    def _table(self, path: str) -> DeltaTable:
        if not self.exists(path):
            raise LakeError(f"{path}: no Delta table here (has its producing step run?)")
        return DeltaTable.forPath(self.spark, path)

    def read(self, path: str, version: int | None = None) -> DataFrame:
        self._table(path)
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(path)

    def _write(self, path, df, mode, predicate, partition_by, metadata, txn) -> WriteResult:
        exists = self.exists(path)
        writer = df.write.format("delta").mode(mode)
        if mode == "append" or predicate:
            writer = writer.option("mergeSchema", "true")
        else:
            writer = writer.option("overwriteSchema", "true")
        if predicate and exists:
            writer = writer.option("replaceWhere", predicate)
        if not exists:
            # Table properties set on creation (the change data feed, as delta-rs sets them), not
            # left to a session default that a config may or may not carry.
            writer = writer.options(**TABLE_DEFAULTS)
            if partition_by:
                writer = writer.partitionBy(*partition_by)
        elif mode == "overwrite" and not predicate:
            # A full overwrite without partitionBy would rewrite the table unpartitioned (Delta
            # takes the writer's partitioning, none, as the new one); delta-rs keeps it.
            columns = self._snapshot(path).metadata().partitionColumns().mkString("\u0000")
            held = partition_by or [c for c in columns.split("\u0000") if c]
            if held:
                writer = writer.partitionBy(*held)
        encoded = encode_metadata(metadata)
        if encoded:
            writer = writer.option("userMetadata", encoded)
        if txn:
            writer = writer.option("txnAppId", txn.app_id).option("txnVersion", str(txn.version))
        before = self.version(path) if txn and exists else None
        try:
            writer.save(path)
        except Exception as exc:
            raise LakeError(f"{path}: {mode} failed: {exc}") from exc
        return self._written(path, before, txn)

    def _written(self, path: str, before: int | None, txn: Txn | None) -> WriteResult:
        """The write's result. Delta skips a write whose Txn its own transaction finds committed
        (another writer's, since the caller's check) without a commit or an error: the version
        read just before it (`before`) unmoved and the Txn recorded say so."""
        after = self.version(path)
        recorded = (
            txn is not None and before == after and txn_done(self.transaction_version(path, txn.app_id), txn)
        )
        return WriteResult(path, after, skipped=recorded)

    def _merge(self, path, df, spec: MergeSpec, metadata, txn) -> WriteResult:
        conf = {"spark.databricks.delta.schema.autoMerge.enabled": "true"}
        if _kept_on_disk(df):
            with failing_as(path, "merge computing its source"):
                df = self._computed_source(df)
            conf[MATERIALIZE_SOURCE_CONF] = "none"
        merger = self._table(path).alias("t").merge(df.alias("s"), spec.join_predicate())
        if spec.delete_when:
            merger = merger.whenMatchedDelete(condition=spec.delete_when)
        if spec.update:
            merger = merger.whenMatchedUpdateAll(condition=spec.update_when)
        if spec.insert:
            merger = merger.whenNotMatchedInsertAll(condition=spec.insert_when)
        before = self.version(path) if txn else None
        with self._session_conf(metadata, txn, conf):
            try:
                merger.execute()
            except Exception as exc:
                raise LakeError(f"{path}: merge on {', '.join(spec.keys)} failed: {exc}") from exc
        return self._written(path, before, txn)

    def _computed_source(self, df: DataFrame) -> DataFrame:
        """A persisted MERGE source, computed into its cache first: MERGE's two passes over a
        cache still empty would each run the source's plan (an SCD2 chain: ~20 broadcast jobs
        each), not read the blocks. A source of at most LOCAL_SOURCE_ROWS rows (an increment's
        batch) is handed over as its rows (a local relation of its Arrow table, the same types):
        MERGE plans its source several times over (the scan for matches, the write, the change
        feed), each walking the whole logical tree even when cached, and a silver or gold batch's
        tree of joins and windows cost seconds of driver time per merge (docs/performance.md)."""
        if df.count() > LOCAL_SOURCE_ROWS or not hasattr(df, "toArrow"):  # Spark 3.5 (EMR 7.x): no toArrow
            return df
        return self.spark.createDataFrame(df.toArrow(), schema=df.schema)

    def _read_changes(self, path: str, after_version: int, until_version: int) -> DataFrame:
        # Tables this engine or delta-rs created carry delta.enableChangeDataFeed (TABLE_DEFAULTS).
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
        table = self._table(path)
        with self._session_conf(metadata, None):
            try:
                table.delete(predicate)
            except Exception as exc:
                # The condition (an erasure's: a person's ids and emails) stays out of the message.
                raise LakeError(f"{path}: delete failed: {error_kind(exc)}") from exc
        return WriteResult(path, self.version(path))

    @contextmanager
    def _session_conf(self, metadata, txn, extra: dict[str, str] | None = None):
        """DML has no writer options: metadata and Txn go through session conf for the one
        operation, then every key gets back the value it had (a cluster default stays)."""
        conf = dict(extra or {})
        encoded = encode_metadata(metadata)
        if encoded:
            conf[USER_METADATA_CONF] = encoded
        if txn:
            conf[TXN_APP_CONF], conf[TXN_VERSION_CONF] = txn.app_id, str(txn.version)
        previous = {key: self.spark.conf.get(key, None) for key in conf}
        for key, value in conf.items():
            self.spark.conf.set(key, value)
        try:
            yield
        finally:
            for key, value in previous.items():
                if value is None:
                    self.spark.conf.unset(key)
                else:
                    self.spark.conf.set(key, value)

    def history(self, path: str, limit: int | None = None) -> list[Commit]:
        table = self._table(path)
        with failing_as(path, "history"):
            rows = (table.history(limit) if limit else table.history()).collect()
        return [
            Commit(
                version=int(r["version"]),
                timestamp_ms=int(r["timestamp"].timestamp() * 1000),
                operation=r["operation"],
                metadata=decode_metadata(r["userMetadata"]),
                metrics=numeric_metrics(r["operationMetrics"]),
            )
            for r in rows
        ]

    def _newest_metadata(self, path: str, limit: int) -> list[dict]:
        # the caller checked that the table exists
        return [commit.metadata for commit in self._newest_commits(path, self._snapshot(path), limit)]

    def _versioned_metadata_after(self, path: str, after: int) -> list[tuple[int, dict]]:
        snapshot = self._snapshot(path)
        current = int(snapshot.version())
        if current <= after:
            return []
        commits = self._newest_commits(path, snapshot, current - after)  # from `current` down
        return [(current - i, commit.metadata) for i, commit in enumerate(commits)]

    def _newest_commits(self, path: str, snapshot: Any, limit: int) -> list[CommitFile]:
        """The snapshot's newest `limit` commits (fewer when the log holds fewer), newest first,
        from their commit files read as text (DeltaLog.getChanges cost a py4j round trip per
        action, 20-50 ms a call) and kept: a commit never changes, so a step's next read of the
        table finds them held and reads only newer commits."""
        table_id, version = str(snapshot.metadata().id()), int(snapshot.version())
        held_id, held = self._commits.get(path, ("", {}))
        held = dict(held) if held_id == table_id else {}  # a table made anew at the path: new id
        found = []
        for v in range(version, max(version - limit, -1), -1):
            if v not in held:
                text = self._commit_file(path, v)
                if text is None and v == version:
                    raise LakeError(
                        f"{path}: commit file of version {v} not found in _delta_log (a table with a "
                        "commit coordinator?); DeltaSparkLake reads the newest commits from their files"
                    )
                if text is None:
                    break  # removed by log cleanup, and every older one with it
                held[v] = CommitFile.parse(text)
            found.append(held[v])
        # Only the newest commits are asked for again (newest_metadata_where's first pages).
        self._commits[path] = (table_id, {v: c for v, c in held.items() if v > version - METADATA_PAGE**2})
        return found

    def transaction_version(self, path: str, app_id: str) -> int | None:
        # A writer's Txn is in one of the newest commits (its last file batch, ledger rows or
        # micro-batch): read from their files. snapshot.transactions reconstructs the whole
        # table state (3 Spark jobs on each new snapshot): only for an app id further back, or
        # where Txns expire (their retention is a table property; the state drops expired ones).
        snapshot = self._snapshot(path)
        if not snapshot.metadata().configuration().contains(TXN_RETENTION_PROPERTY):
            for commit in self._newest_commits(path, snapshot, METADATA_PAGE):
                if app_id in commit.txns:
                    return commit.txns[app_id]
        txns = snapshot.transactions()
        return int(txns.apply(app_id)) if txns.contains(app_id) else None

    def optimize(
        self, path: str, zorder_by: list[str] | None = None, target_file_bytes: int | None = None
    ) -> dict[str, int]:
        builder = self._table(path).optimize()
        size = {MAX_FILE_SIZE_CONF: str(target_file_bytes)} if target_file_bytes else {}
        with self._session_conf(None, None, size), failing_as(path, "optimize"):
            result = builder.executeZOrderBy(*zorder_by) if zorder_by else builder.executeCompaction()
            return optimize_summary(result.collect()[0]["metrics"].asDict(recursive=True))

    def checkpoint(self, path: str) -> None:
        self._table(path)
        jvm = self.spark.sparkContext._jvm  # type: ignore[union-attr]
        with failing_as(path, "checkpoint"):
            jvm.org.apache.spark.sql.delta.DeltaLog.forTable(self.spark._jsparkSession, path).checkpoint()

    def file_stats(self, path: str) -> FileStats:
        self._table(path)
        snapshot = self._snapshot(path)
        return FileStats(int(snapshot.numOfFiles()), int(snapshot.sizeInBytes()))

    def column_max(self, path: str, column: str, version: int | None = None) -> Any:
        self._table(path)
        snapshot = self._snapshot(path)
        if version is not None and version != snapshot.version():
            jvm = self.spark.sparkContext._jvm  # type: ignore[union-attr]
            log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(self.spark._jsparkSession, path)
            empty = jvm.scala.Option.empty()
            snapshot = log.getSnapshotAt(version, empty, empty)  # internal, like _snapshot
        if not snapshot.metadata().partitionColumns().contains(column):
            return super().column_max(path, column, version)
        # The log's file list (the snapshot's cached state): partition values as strings, typed here.
        kind = self.read(path, version).schema[column].dataType
        files = DataFrame(snapshot.allFiles().toDF(), self.spark)
        return files.agg(F.max(F.col("partitionValues")[column].cast(kind))).first()[0]

    def vacuum(self, path: str, retention_hours: int = 168, *, enforce_retention: bool = True) -> list[str]:
        self._table(path)
        check = {RETENTION_CHECK_CONF: str(enforce_retention).lower(), VACUUM_LOGGING_CONF: "true"}
        with self._session_conf(None, None, check), failing_as(path, "vacuum"):
            # delta-spark's vacuum returns nothing: a dry run first lists what it deletes.
            quoted = path.replace("`", "``")
            doomed = self.spark.sql(f"VACUUM delta.`{quoted}` RETAIN {float(retention_hours)} HOURS DRY RUN")
            deleted = [r[0] for r in doomed.collect()]
            DeltaTable.forPath(self.spark, path).vacuum(float(retention_hours))
        return relative_paths(path, deleted)
