"""Landing files bronze cannot read: found, named and set aside, so their neighbours land.

A file is rejected by a cheap check before the batch read (a name Hadoop cannot hold, Parquet
magic numbers and footer length, a plausible CSV header), or, when the batch read still fails,
by reading each file on its own (only then) and setting aside those that fail with a
non-transient error, or, when the batch (or, on a failed read, a file of it) holds a column with
another type than the bronze table's, by comparing each file's schema with the table's. Each
rejection goes to the Delta table `<lake>/_ops/rejected_files` with the dataset, path, size, SHA-256 of the
bytes, the root cause, the run and batch, and the time. A later run skips a rejected file while
its checksum is unchanged, and retries it once it changed (same path, new bytes).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from pipeline.bronze.readers import READERS, LandingFormatError, check_parquet, csv_header
from pipeline.catalog import DatasetSpec
from pipeline.driver.retry import explain, is_transient
from pipeline.lake import Lake
from pipeline.spark import driver_rows
from pipeline.storage import LandingFile, file_key, sha256

log = logging.getLogger(__name__)

SCHEMA = (
    "dataset string, path string, size long, sha256 string, reason string, run_id string, "
    "batch_id string, rejected_at timestamp"
)

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


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(//[^/]*)?")  # scheme and authority of a path


def unnamable(spec: DatasetSpec, f: LandingFile) -> str | None:
    """Why Hadoop cannot name the file, or None: a ':' in a folder or file name (an ISO time,
    `T10:00:00`) is taken for a URI scheme wherever Hadoop joins a name to its folder (Spark's
    read, the `.crc` beside a local file), so the file cannot be read at all."""
    names = _SCHEME.sub("", f.path).split("/")
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


def type_conflicts(table: StructType, batch: StructType) -> dict[str, tuple[str, str]]:
    """{column: (type in the batch, type in the table)} of the columns both hold with another
    type (names as Spark matches them, case-insensitively)."""
    held = {f.name.lower(): f.dataType for f in table.fields}
    return {
        f.name: (f.dataType.simpleString(), held[f.name.lower()].simpleString())
        for f in batch.fields
        if f.name.lower() in held and f.dataType != held[f.name.lower()]
    }


def retyped(
    spark: SparkSession,
    spec: DatasetSpec,
    files: list[LandingFile],
    landing_root: str,
    table: StructType,
    table_path: str,
) -> list[Rejection]:
    """The files holding a column with another type than bronze's (a changed export: an amount
    as text, a timestamp as epoch seconds). Bronze keeps one type per column: delta-spark would
    fail the commit, delta-rs would cast the values (epoch seconds read as microseconds), and
    either way every run would meet the file again. Each file's schema alone (its footer)."""
    bad = []
    for f in files:
        conflicts = type_conflicts(table, READERS[spec.reader](spark, [f], spec, landing_root).schema)
        if conflicts:
            shown = ", ".join(
                f"`{c}` is {got} here, {want} in bronze" for c, (got, want) in conflicts.items()
            )
            bad.append(
                Rejection(
                    f,
                    f"column type changed: {shown} ({table_path}); re-deliver the file with bronze's types "
                    "(an export whose types changed), it is retried once its bytes change",
                )
            )
    return bad


@dataclass(frozen=True)
class RejectedFiles:
    lake: Lake
    path: str  # <lake>/_ops/rejected_files

    def unchanged(self, dataset: str, files: list[LandingFile]) -> list[LandingFile]:
        """The files among `files` rejected before with the same bytes (checksums are computed
        only for files with a rejection on record)."""
        if not files or not self.lake.exists(self.path):
            return []
        keys = {file_key(f.uri): f for f in files}
        rows = (
            self.lake.read(self.path)
            .filter((F.col("dataset") == dataset) & F.col("path").isin(list(keys)))
            .select("path", "sha256")
            .collect()
        )
        sums: dict[str, set[str]] = {}
        for r in rows:
            sums.setdefault(r["path"], set()).add(r["sha256"])
        return [
            f
            for key, f in sorted(keys.items())
            if key in sums and sha256(self.lake.spark, f.path) in sums[key]
        ]

    def record(self, dataset: str, rejections: list[Rejection], run_id: str, batch_id: str) -> None:
        if not rejections:
            return
        now = datetime.now(UTC)
        rows = [
            (
                dataset,
                file_key(r.file.uri),
                r.file.size,
                sha256(self.lake.spark, r.file.path),
                r.reason,
                run_id,
                batch_id,
                now,
            )
            for r in rejections
        ]
        for r in rejections:
            log.warning("%s: rejected %s: %s", dataset, r.file.uri, r.reason)
        self.lake.append(
            self.path, driver_rows(self.lake.spark, rows, SCHEMA), metadata={"batch_id": batch_id}
        )
