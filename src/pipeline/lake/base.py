"""The lake interface: every Delta table operation the pipeline performs, engine-neutral.

Jobs, transforms, DQ, lineage and the driver talk to a `Lake`; only the engines in this
package import `delta` (delta-spark) or `deltalake` (delta-rs). Both engines must give the
same table contents for the same calls: tests/contract runs one suite against each.

Predicates are SQL boolean expressions over the table's columns (both engines parse them);
merge conditions may use the aliases `t` (target) and `s` (source).
"""

from __future__ import annotations

import contextlib
import copy
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

# Commit metadata travels in the standard commitInfo.userMetadata field as JSON, so tables
# written by either engine carry positions (watermarks, consumed versions) the other can read.
USER_METADATA = "userMetadata"

# Properties of every table either engine creates: a change data feed, so downstream steps read
# a table incrementally (read_changes) whichever engine wrote it.
TABLE_DEFAULTS = {"delta.enableChangeDataFeed": "true"}

# What optimize() reports, the same keys and integer values from both engines.
OPTIMIZE_SUMMARY = ("numFilesAdded", "numFilesRemoved", "partitionsOptimized", "totalConsideredFiles")

# latest_metadata's first page of commits (then 64, 512, ...).
METADATA_PAGE = 8


class LakeError(RuntimeError):
    """A lake operation failed; the message names the table and the operation."""


def txn_done(recorded: int | None, txn: Txn) -> bool:
    """Whether a table whose latest Txn version for txn.app_id is `recorded` (None: none) holds
    `txn`'s write already."""
    return recorded is not None and recorded >= txn.version


@contextlib.contextmanager
def failing_as(path: str, what: str):
    """`with failing_as(path, "optimize"):` an engine's error as a LakeError naming the table and
    the operation (the cause kept: retries classify the chain)."""
    try:
        yield
    except LakeError:
        raise
    except Exception as exc:
        raise LakeError(f"{path}: {what} failed: {exc}") from exc


def error_kind(exc: BaseException) -> str:
    """What kind of error `exc` is, without its message (which may quote data, e.g. a DELETE's
    condition): Spark's error class, else the Java exception's class, else the Python type."""
    try:  # both ask the JVM, which may be the thing that failed
        error_class = getattr(exc, "getErrorClass", None)
        if callable(error_class) and error_class():
            return str(error_class())
        java = getattr(exc, "java_exception", None)
        if java is not None:
            return str(java.getClass().getName())
    except Exception:  # noqa: BLE001 - the Python type says enough then
        pass
    return type(exc).__name__


@dataclass(frozen=True)
class Txn:
    """Idempotent-write key: a commit for (app_id, version) lands at most once per table."""

    app_id: str
    version: int


@dataclass(frozen=True)
class Commit:
    version: int
    timestamp_ms: int
    operation: str
    metadata: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FileStats:
    """The data files of a table's current snapshot: how many, and their total size."""

    files: int
    bytes: int

    @property
    def mean_mb(self) -> float:
        return round(self.bytes / self.files / 1e6, 3) if self.files else 0.0


@dataclass(frozen=True)
class WriteResult:
    """What a write did: the new table version, or `skipped` when its Txn had already landed."""

    table: str
    version: int | None
    skipped: bool = False


@dataclass(frozen=True)
class MergeSpec:
    """Upsert by key: delete matched rows when `delete_when` holds (checked first), update the
    other matches (when `update` is set, and only where `update_when` holds), insert the
    unmatched (when `insert` is set, and only where `insert_when` holds). `target_only`: a
    predicate over the target alone that every target row matching a source row satisfies (the
    source's key range, say), so the engine reads only the target files that can match."""

    keys: tuple[str, ...]
    update: bool = True
    update_when: str | None = None
    delete_when: str | None = None
    insert: bool = True
    insert_when: str | None = None
    target_only: str | None = None

    def join_predicate(self) -> str:
        on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in self.keys)
        return f"{on} AND ({self.target_only})" if self.target_only else on

    def inserts_when_unmatched(self, source: DataFrame) -> DataFrame:
        """What a merge inserts when no source row matches (into a table that does not exist
        yet, or one the caller counted no match in): only the insert clause applies."""
        if not self.insert:
            return source.limit(0)
        if self.insert_when:
            return source.alias("s").filter(self.insert_when).select(*[f"`{c}`" for c in source.columns])
        return source


class Lake(ABC):
    """One Delta engine. Paths are table locations (local folder or s3:// URI)."""

    name: str
    # Whether an append writes each partition value of a frame in as few files as its size
    # needs, whatever the frame's own partitioning. Where it does not (each task writes a file
    # per value it holds), a caller wanting one file per value repartitions the frame by the
    # partition columns first: a shuffle a lake that groups them does not need.
    groups_partition_values: bool = False

    def __init__(self, spark: SparkSession):
        self.spark = spark

    def on_session(self, spark: SparkSession) -> Lake:
        """This lake working through `spark` (a step's own session, `RunContext.for_step`)."""
        lake = copy.copy(self)
        lake.spark = spark
        return lake

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def version(self, path: str) -> int | None:
        """The current version, or None when no table exists at `path`."""

    @abstractmethod
    def snapshot_key(self, path: str) -> tuple[str, int] | None:
        """(table id, version) of the table's current snapshot, or None when no table is at
        `path`: one log read, no Spark job. Equal keys mean equal contents (a table created anew
        at the path has a new id), so what was read at a key can be kept while it holds."""

    @abstractmethod
    def read(self, path: str, version: int | None = None) -> DataFrame:
        """The table (at `version`, default current) as a Spark DataFrame."""

    def schema(self, path: str) -> StructType:
        """The table's current schema, as `read` would give it, without planning a scan."""
        return self.read(path).schema

    def append(
        self,
        path: str,
        df: DataFrame,
        *,
        partition_by: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        txn: Txn | None = None,
    ) -> WriteResult:
        """Add rows; new nullable columns evolve the schema, conflicting types fail."""
        if self.already_committed(path, txn):
            return WriteResult(path, self.version(path), skipped=True)
        return self._write(path, df, "append", None, partition_by, metadata, txn)

    def overwrite(
        self,
        path: str,
        df: DataFrame,
        *,
        predicate: str | None = None,
        partition_by: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        txn: Txn | None = None,
    ) -> WriteResult:
        """Replace the whole table, or only the rows matching `predicate` (every row of `df`
        must match it)."""
        if self.already_committed(path, txn):
            return WriteResult(path, self.version(path), skipped=True)
        return self._write(path, df, "overwrite", predicate, partition_by, metadata, txn)

    def merge(
        self,
        path: str,
        df: DataFrame,
        spec: MergeSpec,
        *,
        partition_by: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        txn: Txn | None = None,
        matched: int | None = None,
    ) -> WriteResult:
        """Upsert `df` by `spec.keys`; creates the table from `df` when it does not exist.
        `matched`: how many of `df`'s rows match a row of the table, when the caller counted them
        (a check's merge figures). 0 makes the merge an insert of the rows the insert clause
        takes, written as an append: no scan of the table for matches and no rewrite (a one-row
        MERGE commit costs 1.2 s on delta-spark, an append 0.3 s; docs/performance.md). The
        count must be of the table as this commit finds it: under the lake's lease, one writer."""
        if matched == 0 or not self.exists(path):
            return self.append(
                path, spec.inserts_when_unmatched(df), partition_by=partition_by, metadata=metadata, txn=txn
            )
        if self.already_committed(path, txn):
            return WriteResult(path, self.version(path), skipped=True)
        return self._merge(path, df, spec, metadata, txn)

    @abstractmethod
    def _write(self, path, df, mode, predicate, partition_by, metadata, txn) -> WriteResult:
        """One append or overwrite commit (the Txn is known not to have landed yet)."""

    @abstractmethod
    def _merge(self, path, df, spec: MergeSpec, metadata, txn) -> WriteResult:
        """One MERGE commit into an existing table (the Txn is known not to have landed yet)."""

    def read_changes(self, path: str, after_version: int, until_version: int) -> DataFrame:
        """Rows inserted by commits in (after_version, until_version] (after -1: from the start):
        the incremental feed of an append-only table. Compaction (OPTIMIZE) adds no rows here."""
        if after_version < 0:
            return self.read(path, until_version)  # everything: a plain distributed snapshot read
        if until_version <= after_version:
            return self.read(path).limit(0)
        return self._read_changes(path, after_version, until_version)

    @abstractmethod
    def _read_changes(self, path: str, after_version: int, until_version: int) -> DataFrame:
        """The engine's change feed for a non-empty version range."""

    @abstractmethod
    def delete(self, path: str, predicate: str, *, metadata: dict[str, Any] | None = None) -> WriteResult:
        """Delete the rows matching `predicate`; LakeError when no table exists at `path`."""

    @abstractmethod
    def history(self, path: str, limit: int | None = None) -> list[Commit]:
        """Commits, newest first; operation metrics as numbers (see numeric_metrics)."""

    @abstractmethod
    def transaction_version(self, path: str, app_id: str) -> int | None:
        """The latest Txn version committed for `app_id`, or None."""

    @abstractmethod
    def optimize(
        self, path: str, zorder_by: list[str] | None = None, target_file_bytes: int | None = None
    ) -> dict[str, int]:
        """Compact small files towards `target_file_bytes` (the engine's default when None),
        Z-ordered by `zorder_by` when given; the OPTIMIZE_SUMMARY counts."""

    @abstractmethod
    def checkpoint(self, path: str) -> None:
        """Write a checkpoint of the current version, so readers replay a bounded log."""

    @abstractmethod
    def file_stats(self, path: str) -> FileStats:
        """Data files of the current snapshot, from the log (no data read)."""

    @abstractmethod
    def vacuum(self, path: str, retention_hours: int = 168, *, enforce_retention: bool = True) -> list[str]:
        """Delete files no longer referenced and older than the retention; returns the deleted
        files' paths relative to the table, sorted. Below Delta's 7-day safety minimum only with
        enforce_retention=False (time travel and slow readers break)."""

    # Shared behaviour, written once on top of the primitives above.

    def latest_metadata(self, path: str, key: str) -> Any:
        """The newest value of `key` in commit metadata (e.g. a watermark), or None."""
        found = self.newest_metadata_where(path, lambda metadata: key in metadata)
        return None if found is None else found[key]

    def newest_metadata_where(
        self, path: str, match: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any] | None:
        """The metadata of the newest commit for which `match` holds, or None.

        Reads the newest commits in pages growing METADATA_PAGE-fold: a step writes its positions
        in every commit, so the match sits in the last few (maintenance adds some without), and
        finding it costs the same at 10 commits of history as at 10,000. Only a match the table
        never had reads the whole history."""
        if not self.exists(path):
            return None
        limit = METADATA_PAGE
        while True:
            found = self._newest_metadata(path, limit)
            for metadata in found:
                if match(metadata):
                    return metadata
            if len(found) < limit:
                return None
            limit *= METADATA_PAGE

    def log_from_first_commit(self, path: str) -> bool:
        """Whether the table's log still holds its first commit (version 0): then a search of its
        commit metadata that found nothing saw every commit the table had (log cleanup removes
        the oldest commits first, and only once a checkpoint covers them)."""
        return self.exists(path) and any(commit.version == 0 for commit in self.history(path))

    def commit_metadata(self, path: str, after: int, until: int) -> dict[int, dict[str, Any]]:
        """The metadata of each commit in (after, until] that the log still holds, by version:
        a read of the commits after `after` only (no Spark job on either engine)."""
        if until <= after or not self.exists(path):
            return {}
        return {v: m for v, m in self._versioned_metadata_after(path, after) if v <= until}

    def _versioned_metadata_after(self, path: str, after: int) -> list[tuple[int, dict[str, Any]]]:
        """(version, metadata) of the commits after `after` still in the log, newest first: the
        engine's bounded history read, unless it has a cheaper one."""
        current = self.version(path)
        if current is None or current <= after:
            return []
        return [(c.version, c.metadata) for c in self.history(path, current - after) if c.version > after]

    def _newest_metadata(self, path: str, limit: int) -> list[dict[str, Any]]:
        """Commit metadata of the newest `limit` commits, newest first (fewer when the log holds
        fewer): the engine's bounded history read, unless it has a cheaper one."""
        return [commit.metadata for commit in self.history(path, limit)]

    def column_max(self, path: str, column: str, version: int | None = None) -> Any:
        """The largest non-null value of `column` in the table (at `version`, default current),
        None when it has none: max() over the table. An engine answers a partition column from
        the partition values of the log's data files, without reading data; this aggregates."""
        return self.read(path, version).agg(F.max(column)).first()[0]

    def row_count(self, path: str, version: int | None = None) -> int:
        """The table's rows (at `version`, default current). An engine answers from the record
        counts of the log's data files where it can, without reading data; this counts them
        (delta-spark's count() does the same from the log itself)."""
        return self.read(path, version).count()

    def already_committed(self, path: str, txn: Txn | None) -> bool:
        if txn is None or not self.exists(path):
            return False
        return txn_done(self.transaction_version(path, txn.app_id), txn)


def encode_metadata(metadata: dict[str, Any] | None) -> str | None:
    return json.dumps(metadata, sort_keys=True, default=str) if metadata else None


# delta-rs names write metrics its own way; these are Delta's (delta-spark's) names for them.
_METRIC_ALIASES = {"numAddedRows": "numOutputRows", "numAddedFiles": "numFiles"}


def numeric_metrics(raw: dict[str, Any] | None) -> dict[str, Any]:
    """Operation metrics under Delta's camelCase names, numbers as numbers: delta-spark reports
    every value as a string, delta-rs numbers under snake_case names; values that are not
    numbers are kept as they are."""
    out: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        head, *rest = key.split("_")
        key = head + "".join(part[:1].upper() + part[1:] for part in rest)
        key = _METRIC_ALIASES.get(key, key)
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                with contextlib.suppress(ValueError):
                    value = float(value)
        out[key] = value
    return out


def optimize_summary(metrics: dict[str, Any]) -> dict[str, int]:
    return {key: int(metrics.get(key) or 0) for key in OPTIMIZE_SUMMARY}


def relative_paths(table: str, files: list[str]) -> list[str]:
    """Data file paths (absolute URIs, plain paths or already relative) relative to `table`."""
    roots = {table.rstrip("/") + "/"}
    if "://" not in table:
        roots.add("file:" + table.rstrip("/") + "/")
        roots.add("file://" + table.rstrip("/") + "/")
    out = []
    for f in files:
        root = next((r for r in sorted(roots, key=len, reverse=True) if f.startswith(r)), "")
        out.append(f[len(root) :])
    return sorted(out)


def decode_metadata(raw: Any) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {"text": raw}
    return value if isinstance(value, dict) else {"value": value}
