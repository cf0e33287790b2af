"""Landing files bronze cannot read: found, named and set aside, so their neighbours land.

A file is rejected by a cheap check before the batch read (a name Hadoop cannot hold, Parquet
magic numbers and footer length, a plausible CSV header), or, when the batch read still fails,
by reading each file on its own (only then) and setting aside those that fail with a
non-transient error, or, when the batch (or, on a failed read, a file of it) holds a column with
another type than the bronze table's, by comparing each file's schema with the table's. Each
rejection goes to the Delta table `<lake>/_ops/rejected_files` with the dataset, path, size, SHA-256 of the
bytes, the root cause, the run and batch, and the time. A later run skips a rejected file while
its checksum is unchanged, and retries it once it changed (same path, new bytes). The path is the
file's key below the landing root (`storage.LandingKeys`, as the ledger's), so a lake moved
elsewhere does not judge its rejected files again; rows written with absolute URIs are read by
the same rule.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, StructField, StructType

from pipeline.bronze.readers import READERS, LandingFormatError, castable, check_parquet, csv_header
from pipeline.catalog import DatasetSpec
from pipeline.driver.retry import explain, is_transient
from pipeline.lake import Lake
from pipeline.spark import driver_rows
from pipeline.storage import LandingFile, LandingKeys, file_key, path_part, sha256

log = logging.getLogger(__name__)

SCHEMA = (
    "dataset string, path string, size long, sha256 string, reason string, run_id string, "
    "batch_id string, rejected_at timestamp"
)

# One record of this process at a time. Bronze steps side by side (`spark.parallel_steps`) each
# append here, and the first two appends of a lake would both create the table: Delta takes one
# version 0 and fails the other. Appends to an existing table never conflict; another process
# writes the lake only under its lease.
_RECORD_LOCK = threading.Lock()

Check = Callable[[SparkSession, LandingFile, DatasetSpec, frozenset[str]], object]
CHECKS: dict[str, Check] = {
    "csv": csv_header,
    "parquet": lambda spark, f, spec, known: check_parquet(spark, f, spec),
}


@dataclass(frozen=True)
class Rejection:
    file: LandingFile
    reason: str


def reason_of(exc: BaseException) -> str:
    """The root cause of a read failure in one line, not py4j's wrapper."""
    return str(exc) if isinstance(exc, LandingFormatError) else explain(exc, 500).cause


def unnamable(spec: DatasetSpec, f: LandingFile) -> str | None:
    """Why Hadoop cannot name the file, or None: a ':' in a folder or file name (an ISO time,
    `T10:00:00`) is taken for a URI scheme wherever Hadoop joins a name to its folder (Spark's
    read, the `.crc` beside a local file), so the file cannot be read at all."""
    names = path_part(f.path).split("/")
    odd = next((n for n in names if ":" in n), None)
    if odd is None:
        return None
    return (
        f"{spec.name}: {f.uri}: the name {odd!r} holds ':', which a Hadoop path cannot hold "
        "(Spark cannot read the file); rename it without ':' (e.g. 10-00-00 for a time of day)"
    )


def precheck(
    spark: SparkSession, spec: DatasetSpec, files: list[LandingFile], known: frozenset[str]
) -> tuple[list[LandingFile], list[Rejection]]:
    """(readable-looking files, rejections) by the file's name (`unnamable`) and the reader's
    cheap per-file check."""
    check = CHECKS.get(spec.reader)
    good, rejected = [], []
    for f in files:
        why = unnamable(spec, f)
        if why:
            rejected.append(Rejection(f, why))
            continue
        if check is None:
            good.append(f)
            continue
        try:
            check(spark, f, spec, known)
        except Exception as exc:
            if is_transient(exc):
                raise
            rejected.append(Rejection(f, reason_of(exc)))
        else:
            good.append(f)
    return good, rejected


def probe(
    spark: SparkSession, spec: DatasetSpec, files: list[LandingFile], landing_root: str
) -> list[Rejection]:
    """After a failed batch read: the files that fail on their own, each read in full (a no-op
    sink materialises every column). Transient errors are raised, never taken for a bad file."""
    bad = []
    for f in files:
        try:
            READERS[spec.reader](spark, [f], spec, landing_root).write.format("noop").mode("overwrite").save()
        except Exception as exc:
            if is_transient(exc):
                raise
            bad.append(Rejection(f, reason_of(exc)))
    return bad


def type_conflicts(table: StructType, batch: StructType) -> dict[str, tuple[DataType, DataType]]:
    """{column: (type in the batch, type in the table)} of the columns both hold with another
    type that bronze does not take value by value (`castable`; names as Spark matches them,
    case-insensitively)."""
    held = {f.name.lower(): f.dataType for f in table.fields}
    return {
        f.name: (f.dataType, held[f.name.lower()])
        for f in batch.fields
        if f.name.lower() in held
        and f.dataType != held[f.name.lower()]
        and not castable(f.dataType, held[f.name.lower()])
    }


def void_columns(
    spark: SparkSession, spec: DatasetSpec, f: LandingFile, landing_root: str, columns: list[str]
) -> set[str]:
    """The `columns` holding no value in file `f` (one aggregate over the file alone)."""
    counts = READERS[spec.reader](spark, [f], spec, landing_root).agg(
        *[F.count(F.col(f"`{c}`")) for c in columns]
    )
    return {c for c, n in zip(columns, counts.first() or (), strict=True) if n == 0}


def retyped(
    spark: SparkSession,
    spec: DatasetSpec,
    files: list[LandingFile],
    landing_root: str,
    table: StructType,
    table_path: str,
    where: Mapping[str, str] | None = None,
    schemas: Mapping[LandingFile, StructType] | None = None,
) -> tuple[list[Rejection], dict[LandingFile, dict[str, DataType]]]:
    """(rejections, voids): the files holding a column with another type than bronze's (a
    changed export: an amount as text, a timestamp as epoch seconds), and the files whose
    column of another type holds no value (file -> column -> bronze's type), which fit any type
    and are read as such (`readers.read_batch`). Bronze keeps one type per column: delta-spark
    would fail the commit, delta-rs would cast the values (epoch seconds read as microseconds),
    and either way every run would meet the file again. Each file's schema alone (its footer).
    Before bronze has a table, `table` is the reference the first load is held to, and `where`
    says where each column's type comes from (lower-case name -> "the contract orders", ...);
    `schemas`: the files' schemas when the caller read them already (`file_schemas`)."""
    where = where or {}
    schemas = schemas or file_schemas(spark, spec, files, landing_root)
    bad, voids = [], {}
    for f in files:
        conflicts = type_conflicts(table, schemas[f])
        if conflicts:
            void = void_columns(spark, spec, f, landing_root, list(conflicts))
            voids.update({f: {c: conflicts[c][1] for c in void}} if void else {})
            conflicts = {c: types for c, types in conflicts.items() if c not in void}
        if conflicts:
            shown = ", ".join(
                f"`{c}` is {got.simpleString()} here, {want.simpleString()} in {where.get(c.lower(), 'bronze')}"
                for c, (got, want) in conflicts.items()
            )
            bad.append(
                Rejection(
                    f,
                    f"column type changed: {shown} ({table_path}); re-deliver the file with those types "
                    "(an export whose types changed), it is retried once its bytes change",
                )
            )
    return bad, voids


def struct_of(spark: SparkSession, types: Mapping[str, str]) -> StructType:
    """{column: SQL type} as a schema (empty for none)."""
    if not types:
        return StructType()
    return driver_rows(spark, [], ", ".join(f"`{c}` {t}" for c, t in types.items())).schema


def file_schemas(
    spark: SparkSession, spec: DatasetSpec, files: list[LandingFile], landing_root: str
) -> dict[LandingFile, StructType]:
    """Each file's schema, the file read alone (a Parquet footer)."""
    return {f: READERS[spec.reader](spark, [f], spec, landing_root).schema for f in files}


def first_load_reference(
    spark: SparkSession,
    spec: DatasetSpec,
    landing_root: str,
    schemas: Mapping[LandingFile, StructType],
    contract: Mapping[str, str],
    contract_name: str,
) -> tuple[StructType, dict[str, str]]:
    """(reference schema, where each column's type comes from) for a first load, which has no
    bronze types to be held to: the contract's type of each column it types (`contract`: source
    column -> SQL type; silver fails on a typed column of another type), else the type most
    files hold (the first file's, in path order, on a tie); `schemas`: each file's (`file_schemas`).
    Where files disagree on a column's type, a file whose column holds no value (`void_columns`;
    pyarrow's null type reads as int) has no say: a mostly empty new column is typed by the files
    that fill it, not refused in them."""
    seen: dict[str, Counter[DataType]] = defaultdict(Counter)
    names: dict[str, str] = {}
    for schema in schemas.values():
        for field in schema.fields:
            seen[field.name.lower()][field.dataType] += 1
            names.setdefault(field.name.lower(), field.name)
    typed = {c.lower(): c for c in contract}
    disputed = {c for c, counts in seen.items() if c not in typed and len(counts) > 1}
    filled = {c: Counter(seen[c]) for c in disputed}  # the votes of files holding a value
    for f, schema in schemas.items():
        columns = [field.name for field in schema.fields if field.name.lower() in disputed]
        for column in void_columns(spark, spec, f, landing_root, columns) if columns else ():
            filled[column.lower()][schema[column].dataType] -= 1
    votes = {c: +filled.get(c, Counter()) or counts for c, counts in seen.items()}  # none filled: all
    held = struct_of(spark, contract)
    fields = [f for f in held.fields if f.name.lower() in seen]
    fields += [
        StructField(names[c], counts.most_common(1)[0][0]) for c, counts in votes.items() if c not in typed
    ]
    where = {c: f"the contract {contract_name}" for c in typed}
    where.update({c: "most files of this first load" for c in seen if c not in typed})
    return StructType(fields), where


def unread(
    spark: SparkSession,
    spec: DatasetSpec,
    files: list[LandingFile],
    landing_root: str,
    rows_per_file: Mapping[str, int],
) -> list[Rejection]:
    """The files the batch read returned no row of (by `rows_per_file`, file key -> rows) that
    hold rows when read alone: recorded as empty, their rows would never land. Only the files
    that look empty are read again (a zero-row unload is rare)."""
    bad = []
    for f in files:
        if not f.size or file_key(f.uri) in rows_per_file:  # 0 bytes: no rows to lose
            continue
        rows = READERS[spec.reader](spark, [f], spec, landing_root).count()
        if rows:
            bad.append(
                Rejection(
                    f,
                    f"{spec.name}: {f.uri}: holds {rows} row(s) but the batch read with the dataset's "
                    "other files returned none of them (a folder layout the reader does not take?); "
                    "not recorded as ingested, so its rows are not lost: deliver it beside the other "
                    "files, it is retried once its bytes change",
                )
            )
    return bad


@dataclass(frozen=True)
class RejectedFiles:
    lake: Lake
    path: str  # <lake>/_ops/rejected_files

    def unchanged(
        self, dataset: str, files: list[LandingFile], keys: LandingKeys, digests: Mapping[str, str]
    ) -> list[LandingFile]:
        """The files among `files` (by `keys`, the dataset's) rejected before with the same bytes
        (`digests`: each file's SHA-256 by URI, `storage.sha256_of`; none: gone since listed)."""
        if not files or not self.lake.exists(self.path):
            return []
        listed = {keys(f.uri): f for f in files}
        # All of the dataset's rows: an absolute path written before keys were relative is known
        # by its key only once read (rejections are few: a file's own, a row per delivery).
        rows = (
            self.lake.read(self.path).filter(F.col("dataset") == dataset).select("path", "sha256").collect()
        )
        sums: dict[str, set[str]] = {}
        for r in rows:
            sums.setdefault(keys(r["path"]), set()).add(r["sha256"])
        return [f for key, f in sorted(listed.items()) if key in sums and digests.get(f.uri) in sums[key]]

    def record(
        self,
        dataset: str,
        rejections: list[Rejection],
        run_id: str,
        batch_id: str,
        keys: LandingKeys,
        digests: Mapping[str, str],
    ) -> None:
        """Record `rejections` with the SHA-256 of each file's bytes as they were listed
        (`digests`; a file without one is hashed now)."""
        if not rejections:
            return
        now = datetime.now(UTC)
        rows = [
            (
                dataset,
                keys(r.file.uri),
                r.file.size,
                digests.get(r.file.uri) or sha256(self.lake.spark, r.file.path),
                r.reason,
                run_id,
                batch_id,
                now,
            )
            for r in rejections
        ]
        for r in rejections:
            log.warning("%s: rejected %s: %s", dataset, r.file.uri, r.reason)
        frame = driver_rows(self.lake.spark, rows, SCHEMA)
        with _RECORD_LOCK:
            self.lake.append(self.path, frame, metadata={"batch_id": batch_id})
