"""delta-rs engine (`deltalake`): the local and CI engine, where the Delta jars are absent.

Data crosses between Spark and delta-rs as Arrow: writes collect the DataFrame to the driver
with `toArrow()` (measured: 2M rows in ~4 s), reads hand Spark the snapshot's active file list
so Spark scans it in parallel, as it would any Parquet dataset. The change feed is assembled on
the driver too. So this is the engine for small data: a write or a change feed above `max_bytes`
(settings' `lake.delta_rs_max_bytes`) fails with a LakeError naming the table and the size, rather
than exhausting the driver's memory; so does a write whose collection runs out of the driver's
memory before it can be measured (a driver too small for the limit). delta-spark has no such
limit (it writes from the executors).

On S3 (s3://, s3a://) delta-rs reaches the store itself, with the settings' `lake.storage_options`
(endpoint, region, HTTP, addressing style) and credentials from the AWS default chain. Its commits
there are put-if-absent writes of `_delta_log/<version>.json` (S3 conditional writes), so several
delta-rs writers of one table never lose a commit. delta-rs 1.x has no DynamoDB log store any more
(removed in 1.0; the options AWS_S3_LOCKING_PROVIDER / DELTA_DYNAMO_TABLE_NAME are ignored with a
logged error), so it does not coordinate with delta-spark writers on S3DynamoDBLogStore: this
engine refuses those options rather than let a table be written by both unsafely.
"""

from __future__ import annotations

import os
import re
from typing import Any

import deltalake
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import TableNotFoundError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import ArrayType, MapType, StructType

from pipeline.lake.base import (
    TABLE_DEFAULTS,
    USER_METADATA,
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
from pipeline.settings import ConfigError, LakeSettings

# delta-rs 0.x's options for commits through DynamoDB (S3DynamoDBLogStore's protocol).
DYNAMODB_LOG_STORE_OPTIONS = frozenset(
    {"AWS_S3_LOCKING_PROVIDER", "DELTA_DYNAMO_TABLE_NAME", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_REGION_DYNAMODB"}
)


# How Spark fails a collect that does not fit the driver: its heap ran out while the task results
# came in (the result blocks then count as lost), or they passed spark.driver.maxResultSize.
_DRIVER_FULL = re.compile(r"OutOfMemoryError|Java heap space|TaskResultLost|maxResultSize")


class DeltaRsLake(Lake):
    name = "delta-rs"
    # write_deltalake keeps one writer per partition value and starts a new file only at
    # delta.targetFileSize (100 MiB), however the frame was partitioned in Spark.
    groups_partition_values = True

    def __init__(
        self,
        spark: SparkSession,
        storage_options: dict[str, str] | None = None,
        *,
        max_bytes: int = LakeSettings.delta_rs_max_bytes,
    ):
        super().__init__(spark)
        if max_bytes <= 0:
            raise ConfigError(f"lake.delta_rs_max_bytes: must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        dynamo = sorted(k for k in storage_options or {} if k.upper() in DYNAMODB_LOG_STORE_OPTIONS)
        if dynamo:
            raise ConfigError(
                f"lake.storage_options: {', '.join(dynamo)}: delta-rs {deltalake.__version__} has no "
                "DynamoDB log store (removed in delta-rs 1.0; it would ignore these and commit with S3 "
                "conditional writes, which delta-spark's S3DynamoDBLogStore writers do not respect). "
                "Remove them: delta-rs writers are safe among themselves; a table that delta-spark "
                "writers share through DynamoDB must be written by delta-spark only (lake.engine: delta-spark)"
            )
        self.storage_options = dict(storage_options or {}) or None

    def exists(self, path: str) -> bool:
        return DeltaTable.is_deltatable(path, storage_options=self.storage_options)

    def version(self, path: str) -> int | None:
        return self._table(path).version() if self.exists(path) else None

    def snapshot_key(self, path: str) -> tuple[str, int] | None:
        try:
            table = DeltaTable(path, storage_options=self.storage_options)
        except TableNotFoundError:
            return None
        return table.metadata().id, table.version()

    def _table(self, path: str, version: int | None = None) -> DeltaTable:
        try:
            return DeltaTable(path, version=version, storage_options=self.storage_options)
        except TableNotFoundError as exc:
            raise LakeError(f"{path}: no Delta table here (has its producing step run?)") from exc

    def read(self, path: str, version: int | None = None) -> DataFrame:
        table = self._table(path, version)
        arrow_schema = pa.schema(table.schema().to_arrow())
        schema = _spark_schema(table)
        files = table.file_uris()
        if not files:
            return self.spark.createDataFrame([], schema)
        # basePath keeps partition columns (they live only in the directory names).
        df = (
            self.spark.read.schema(schema)
            .option("basePath", _spark_uri(path))
            .parquet(*[_spark_uri(f) for f in files])
        )
        return df.select(*[f"`{name}`" for name in arrow_schema.names])

    def schema(self, path: str) -> StructType:
        # From the log's metadata: `read` would list every data file for a DataFrame.
        return _spark_schema(self._table(path))

    def _write(self, path, df, mode, predicate, partition_by, metadata, txn) -> WriteResult:
        data = self._to_arrow(path, mode, df)
        exists = self.exists(path)
        # The Txn is checked on the snapshot the write commits against: a writer committing the
        # same Txn after it was loaded makes this commit fail as a conflict, never land twice.
        target = self._table(path) if exists else path
        if txn and exists and txn_done(target.transaction_version(txn.app_id), txn):
            return WriteResult(path, target.version(), skipped=True)
        # Appends and partial overwrites may add columns; a full overwrite replaces the schema.
        schema_mode = "merge" if mode == "append" or predicate else "overwrite"
        if exists and schema_mode == "merge":
            _refuse_retyped(path, mode, _spark_schema(target), df.schema)
        try:
            write_deltalake(
                target,
                data,
                mode=mode if exists else "append",
                predicate=predicate if exists else None,
                partition_by=None if exists else (partition_by or None),
                schema_mode=schema_mode if exists else None,
                configuration=None if exists else TABLE_DEFAULTS,
                commit_properties=_commit_properties(metadata, txn),
                storage_options=self.storage_options,
            )
        except Exception as exc:
            raise LakeError(f"{path}: {mode} failed: {exc}") from exc
        return WriteResult(path, self.version(path))

    def _merge(self, path, df, spec: MergeSpec, metadata, txn) -> WriteResult:
        source = self._to_arrow(path, "merge", df)
        table = self._table(path)
        # The Txn checked again on the snapshot the merge commits against (as _write): another
        # writer's commit of the same Txn since the caller's check is in it. delta-rs's conflict
        # check compares with later commits only, so the merge would land twice.
        if txn and txn_done(table.transaction_version(txn.app_id), txn):
            return WriteResult(path, table.version(), skipped=True)
        merger = table.merge(
            source=source,
            predicate=spec.join_predicate(),
            source_alias="s",
            target_alias="t",
            merge_schema=True,
            commit_properties=_commit_properties(metadata, txn),
        )
        if spec.delete_when:
            merger = merger.when_matched_delete(predicate=spec.delete_when)
        if spec.update:
            merger = merger.when_matched_update_all(predicate=spec.update_when)
        if spec.insert:
            merger = merger.when_not_matched_insert_all(predicate=spec.insert_when)
        try:
            merger.execute()
        except Exception as exc:
            raise LakeError(f"{path}: merge on {', '.join(spec.keys)} failed: {exc}") from exc
        return WriteResult(path, self.version(path))

    def _read_changes(self, path: str, after_version: int, until_version: int) -> DataFrame:
        table = self._table(path)
        schema = _spark_schema(table)
        # delta-rs assembles the change feed on the driver, batch by batch up to max_bytes;
        # delta-spark reads it distributed.
        feed = table.load_cdf(starting_version=after_version + 1, ending_version=until_version)
        kept, size = [], 0
        for batch in pa.RecordBatchReader.from_stream(feed):
            batch = pa.Table.from_batches([batch])
            batch = batch.cast(_plain_types(batch.schema))
            inserted = batch.filter(
                pa.compute.is_in(batch["_change_type"], pa.array(["insert", "update_postimage"]))
            )
            kept.append(inserted.select([f.name for f in schema.fields]))
            size += kept[-1].nbytes
            self._check_size(path, f"change feed of versions {after_version + 1}-{until_version}", size)
        data = pa.concat_tables(kept) if kept else None
        return (
            self.spark.createDataFrame(data, schema=schema)
            if data is not None and data.num_rows
            else self.spark.createDataFrame([], schema)
        )

    def _to_arrow(self, path: str, what: str, df: DataFrame) -> pa.Table:
        """Collect to Arrow, within max_bytes; every column nullable, as Spark's own Delta writer
        would declare it, so a literal column in one batch cannot pin the table schema to NOT NULL."""
        try:
            table = df.toArrow()
        except Exception as exc:
            if not _DRIVER_FULL.search(str(exc)):
                raise LakeError(f"{path}: {what} failed computing its rows: {exc}") from exc
            raise LakeError(
                f"{path}: {what} through the driver did not fit in the driver's memory while Spark "
                f"collected it, before lake.delta_rs_max_bytes ({self.max_bytes / 2**20:,.1f} MiB) could "
                "measure it: delta-rs is the engine for small data. Run this on delta-spark "
                "(lake.engine: delta-spark, `make setup` fetches its jars), or give the driver more "
                "memory (spark.driver_memory) and lower lake.delta_rs_max_bytes below what it holds "
                "(a share of it with steps side by side: spark.parallel_steps, 1 for one at a time)"
            ) from exc
        self._check_size(path, what, table.nbytes)
        return _rebuilt_nested(table).cast(pa.schema([f.with_nullable(True) for f in table.schema]))

    def _check_size(self, path: str, what: str, size: int) -> None:
        if size > self.max_bytes:
            raise LakeError(
                f"{path}: {what} through the driver reached {size / 2**20:,.1f} MiB, above "
                f"lake.delta_rs_max_bytes ({self.max_bytes / 2**20:,.1f} MiB): delta-rs is the engine "
                "for small data. Run this on delta-spark (lake.engine: delta-spark, `make setup` "
                "fetches its jars), or raise lake.delta_rs_max_bytes if the driver has the memory"
            )

    def delete(self, path, predicate, *, metadata=None) -> WriteResult:
        table = self._table(path)
        try:
            table.delete(predicate, commit_properties=_commit_properties(metadata, None))
        except Exception as exc:
            # The condition (an erasure's: a person's ids and emails) stays out of the message.
            raise LakeError(f"{path}: delete failed: {error_kind(exc)}") from exc
        return WriteResult(path, self.version(path))

    def history(self, path: str, limit: int | None = None) -> list[Commit]:
        commits = [
            Commit(
                version=int(entry["version"]),
                timestamp_ms=int(entry.get("timestamp", 0)),
                operation=str(entry.get("operation", "")),
                metadata=decode_metadata(entry.get(USER_METADATA)),
                metrics=numeric_metrics(entry.get("operationMetrics")),
            )
            for entry in self._history(path, limit)
        ]
        return sorted(commits, key=lambda c: c.version, reverse=True)

    def _history(self, path: str, limit: int | None) -> list[dict[str, Any]]:
        table = self._table(path)
        with failing_as(path, "history"):
            return table.history(limit)

    def transaction_version(self, path: str, app_id: str) -> int | None:
        return self._table(path).transaction_version(app_id)

    def optimize(
        self, path: str, zorder_by: list[str] | None = None, target_file_bytes: int | None = None
    ) -> dict[str, int]:
        table = self._table(path)
        with failing_as(path, "optimize"):
            if zorder_by:
                return optimize_summary(table.optimize.z_order(zorder_by, target_size=target_file_bytes))
            return optimize_summary(table.optimize.compact(target_size=target_file_bytes))

    def checkpoint(self, path: str) -> None:
        table = self._table(path)
        with failing_as(path, "checkpoint"):
            table.create_checkpoint()

    def file_stats(self, path: str) -> FileStats:
        sizes = pa.table(self._table(path).get_add_actions(flatten=True)).column("size_bytes")
        return FileStats(len(sizes), int(pa.compute.sum(sizes).as_py() or 0))

    def row_count(self, path: str, version: int | None = None) -> int:
        # The add actions' record counts (delta-rs writes one for every file): no Spark job, 15 ms
        # where counting a silver events table's 140 files took 0.64 s. A file without one (from
        # a writer keeping no statistics) is counted.
        files = pa.table(self._table(path, version).get_add_actions(flatten=True))
        if not files.num_rows:
            return 0
        records = files.column("num_records")
        if records.null_count:
            return super().row_count(path, version)
        return int(pa.compute.sum(records).as_py())

    def column_max(self, path: str, column: str, version: int | None = None) -> Any:
        table = self._table(path, version)
        if column not in table.metadata().partition_columns:
            return super().column_max(path, column, version)
        # A partition column's values are typed in the add actions (a null one is null).
        files = pa.table(table.get_add_actions(flatten=True))
        return pa.compute.max(files.column(f"partition.{column}")).as_py()

    def vacuum(self, path: str, retention_hours: int = 168, *, enforce_retention: bool = True) -> list[str]:
        # full: every file the log no longer references, as delta-spark's VACUUM; the default
        # ("lite") removes only files a commit removed, never the change feed's `_change_data`
        # files (an erasure's deleted rows) or a losing writer's orphaned data files.
        table = self._table(path)
        with failing_as(path, "vacuum"):
            deleted = table.vacuum(
                retention_hours=retention_hours,
                dry_run=False,
                enforce_retention_duration=enforce_retention,
                full=True,
            )
        return relative_paths(path, deleted)


# Integer types delta-spark's schema merge takes into one another (the wider one stays).
_SMALL_INTEGERS = frozenset({"tinyint", "smallint", "int"})


def _refuse_retyped(path: str, mode: str, held: StructType, incoming: StructType) -> None:
    """LakeError naming the column when `incoming` gives a column of `held` another type, as
    delta-spark refuses it (DELTA_FAILED_TO_MERGE_FIELDS): delta-rs's schema merge would cast the
    batch to the table's type instead, 10.5 stored as 10 and '12' as 12. Nested types are left
    to the engine (a struct may gain a field)."""
    atomic = (StructType, ArrayType, MapType)
    types = {f.name.lower(): f.dataType for f in held.fields}
    for field in incoming.fields:
        table_type = types.get(field.name.lower())
        if table_type is None or isinstance(table_type, atomic) or isinstance(field.dataType, atomic):
            continue
        was, now = table_type.simpleString(), field.dataType.simpleString()
        if was != now and not {was, now} <= _SMALL_INTEGERS:
            raise LakeError(
                f"{path}: {mode} failed: column {field.name!r} is {now} in the batch and {was} in the "
                "table; cast it to the table's type, or evolve the table"
            )


def _spark_schema(table: DeltaTable) -> StructType:
    """The table's schema in Spark's types. Arrow's timestamp without a time zone is Delta's
    timestamp_ntz (delta-rs gives `timestamp` a UTC zone): read as Spark's timestamp, a
    TIMESTAMP_NTZ column's type would differ from delta-spark's, and from the files bronze
    compares with it."""
    return from_arrow_schema(pa.schema(table.schema().to_arrow()), prefer_timestamp_ntz=True)


def _commit_properties(metadata: dict[str, Any] | None, txn: Txn | None) -> CommitProperties:
    encoded = encode_metadata(metadata)
    return CommitProperties(
        custom_metadata={USER_METADATA: encoded} if encoded else None,
        app_transactions=[Transaction(txn.app_id, txn.version)] if txn else None,
    )


def _rebuilt_nested(table: pa.Table) -> pa.Table:
    """`table` with its list, map and struct columns copied into fresh buffers. Spark's Arrow
    writer gives an empty child array (the strings of maps or lists that are all empty in a batch)
    an offsets buffer of size zero, which the Arrow format allows and delta-rs's MERGE does not:
    it panics reading offset 0 ("range start index ... out of range", deltalake 1.6). A take
    writes the offsets out in full."""
    nested = [i for i, f in enumerate(table.schema) if pa.types.is_nested(f.type)]
    if not nested:
        return table
    every_row = pa.array(range(table.num_rows), pa.int64())
    for i in nested:
        table = table.set_column(i, table.schema.field(i), table.column(i).take(every_row))
    return table


def _plain_types(schema: pa.Schema) -> pa.Schema:
    """View types (string_view, ...) from the Rust reader, as the plain types Spark converts."""

    def plain(t: pa.DataType) -> pa.DataType:
        if pa.types.is_string_view(t) or pa.types.is_large_string(t):
            return pa.string()
        if pa.types.is_binary_view(t) or pa.types.is_large_binary(t):
            return pa.binary()
        if pa.types.is_map(t):
            return pa.map_(plain(t.key_type), plain(t.item_type))
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
            return pa.list_(plain(t.value_type))
        if pa.types.is_struct(t):
            return pa.struct([f.with_type(plain(f.type)) for f in t])
        return t

    return pa.schema([f.with_type(plain(f.type)) for f in schema])


def _spark_uri(path: str) -> str:
    return path if "://" in path else "file://" + os.path.abspath(path)
