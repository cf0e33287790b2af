"""Which landing files each bronze table holds: a small Delta table `<lake>/_ops/ingested_files`
(dataset, file, bronze_version, batch_id), so finding new files costs a read of the ledger plus
the bronze commits it has not seen, not a scan of the bronze table and its whole history.

Bronze is the truth: each bronze file commit lists its files in its commit metadata
(`landing_files`), and the ledger is a cache of those lists. The ledger is written after the
bronze commit; a crash in between leaves bronze commits newer than the ledger's newest
`bronze_version`, which the next read takes from bronze's log and adds to the ledger. A ledger
ahead of its table (the table was dropped and rebuilt) is ignored. Tables written before the
ledger existed (no `landing_files` in their commits) are read the old way once: the distinct
`_source_file` of the table, plus the `empty_files` of their commits.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from pyspark.sql import functions as F

from pipeline.bronze.readers import SOURCE_FILE
from pipeline.driver.retry import explain
from pipeline.lake import Lake, Txn
from pipeline.storage import file_key

log = logging.getLogger(__name__)

FILES_KEY = "landing_files"  # bronze commit metadata: every landing file of the batch
EMPTY_FILES_KEY = "empty_files"  # bronze commit metadata: the batch's files without records
BATCH_KEY = "batch_id"  # bronze commit metadata of a file batch (not OPTIMIZE, VACUUM, ...)
SCHEMA = "dataset string, file string, bronze_version long, batch_id string"


@dataclass(frozen=True)
class Ledger:
    lake: Lake
    path: str  # the ledger table, <lake>/_ops/ingested_files

    def ingested(self, dataset: str, table: str) -> set[str]:
        """File keys (storage.file_key) of the landing files in bronze `table`, brought up to date
        with bronze's commits first."""
        version = self.lake.version(table)
        if version is None:
            return set()
        rows = []
        if self.lake.exists(self.path):
            rows = (
                self.lake.read(self.path)
                .filter(F.col("dataset") == dataset)
                .select("file", "bronze_version")
                .collect()
            )
        covered = max((r["bronze_version"] for r in rows), default=-1)
        if covered > version:
            log.warning(
                "%s: the ledger is ahead of %s (v%s > v%s); rebuilt from the table",
                dataset,
                table,
                covered,
                version,
            )
            rows, covered = [], -1
        done = {r["file"] for r in rows}
        if covered < version:
            found = self._from_bronze(table, covered, version)
            self.record(dataset, sorted(found - done), version, "ledger catch-up")
            done |= found
        return done

    def record(self, dataset: str, files: list[str], bronze_version: int, batch_id: str) -> None:
        """Add `files` (file keys) as held by bronze at `bronze_version`. Idempotent per
        (dataset, bronze version): a second writer's copy of the same rows is skipped."""
        if not files:
            return
        df = self.lake.spark.createDataFrame([(dataset, f, bronze_version, batch_id) for f in files], SCHEMA)
        try:
            self.lake.append(
                self.path,
                df,
                metadata={"dataset": dataset},
                txn=Txn(f"ingested_files:{dataset}", bronze_version),
            )
        except Exception as exc:
            if not lost_commit_race(exc):
                raise
            log.info("%s: another writer recorded bronze v%d in the ledger first", dataset, bronze_version)

    def _from_bronze(self, table: str, after: int, until: int) -> set[str]:
        """Landing files of bronze's file commits in (after, until], from their metadata; a
        file commit without the list (written before the ledger existed) means a full read."""
        found: set[str] = set()
        for commit in self.lake.history(table, limit=until - after):
            if not after < commit.version <= until or BATCH_KEY not in commit.metadata:
                continue
            if FILES_KEY not in commit.metadata:
                return legacy_ingested(self.lake, table)
            found.update(file_key(uri) for uri in commit.metadata[FILES_KEY])
        return found


# Another writer committed first: delta-spark's concurrent-modification exceptions (the same Txn:
# ConcurrentTransactionException; a schema change in the winning commit: MetadataChangedException,
# checked before the Txn), delta-rs's commit conflict ("Concurrent transaction failed").
_LOST_RACE = re.compile(
    r"Concurrent\w*Exception|MetadataChangedException|ProtocolChangedException|concurrent transaction",
    re.IGNORECASE,
)


def lost_commit_race(exc: BaseException) -> bool:
    """Whether a commit failed because another writer committed to the table first."""
    return bool(_LOST_RACE.search(" ".join(explain(exc, 2000).chain)))


def legacy_ingested(lake: Lake, table: str) -> set[str]:
    """Landing files of a bronze table whose commits do not list them: the table's distinct
    `_source_file`, plus the files without records listed in commit metadata."""
    rows = lake.read(table).select(SOURCE_FILE).distinct().collect()
    done = {file_key(r[0]) for r in rows}
    for commit in lake.history(table):
        done.update(file_key(uri) for uri in commit.metadata.get(EMPTY_FILES_KEY, []))
    return done
