"""Which landing files each bronze table holds: a small Delta table `<lake>/_ops/ingested_files`
(dataset, file, bronze_version, batch_id, size, modified_ms, sha256), so finding new files costs
a read of the ledger plus the bronze commits it has not seen, not a scan of the bronze table and
its whole history.

A delivery is a path, its stamp (size and modification time) and the SHA-256 of its bytes,
hashed when it is listed (every file listed as new, before the read): a file listed with another
stamp than the newest delivery of its path whose bytes are that delivery's (a copy with new
times: `cp -r`, an object store's copy) is recorded under the new stamp in the step's commit (one
of no rows when nothing else is new; `restamped_files`) and not read; otherwise it is a new
delivery, ingested again (its rows beside the first delivery's, with a newer `_ingestion_ts`).
Files ingested before stamps were kept have none (null) and are known by path alone; those
ingested before hashes were kept have no sha256, and another stamp makes them a new delivery.

A file is known by its key: its URI below the lake's landing root (`storage.LandingKeys`,
`crm/accounts/date=2026-07-01/a.csv`), in the ledger, in bronze's commit metadata and in
`_ops/rejected_files`, so a lake moved or copied elsewhere (a renamed folder, a bucket copied for
disaster recovery, `--lake` naming the same data under another mount) finds nothing new. Lakes
written before keys were relative hold absolute URIs (ledger rows, commit metadata, rejected
files, `_source_file` of tables from before the ledger); they are read as keys when read, with no
rewrite: a URI under the current landing root by its part below it, one under another root (the
lake moved) by its part from `/landing/<dataset folder>/` on (`LandingKeys`). One ledger may so
hold a file under both spellings (an old row, a newer delivery's): the newest delivery's stamp is
the one compared. `_source_file` in bronze's rows stays the absolute URI the file was read from.

Bronze is the truth: each bronze file commit lists its files, their stamps and hashes in its
commit metadata (`landing_files`, `landing_file_stamps`, `landing_file_sha256`), and the ledger is a cache of those lists,
kept CATCH_UP_COMMITS commits behind at most: a read takes the bronze commits newer than the
ledger's newest `bronze_version` from bronze's log (their commit files, no Spark job), and adds
them to the ledger once they are that many. So a bronze step's commit is its only one (a ledger
append after each cost ~0.3 s, and a checkpoint of the ledger every 10th), and a crash anywhere
loses nothing the ledger needs. Commits the log no longer holds (cleaned up) are read from the
table instead: its files, with the stamp and hash of each one's newest delivery the ledger holds
(a delivery in a lost commit it lacks is not known: a copy of it is read again), all recorded so
the ledger covers the table's version. A ledger ahead of its table (the table was dropped and rebuilt)
is ignored. Tables written before the ledger existed (no `landing_files` in their commits) are
read the old way once (and recorded at once): the distinct `_source_file` of the table, plus
the `empty_files` of their commits.

A process keeps the ledger's rows it read, keyed by the ledger table's snapshot (`snapshot_key`:
table id and version): a step checks the key (one log read) instead of running a Spark job, and
any commit to the ledger, by another step, process or writer, changes the key and the rows are
read again. Its own append extends the rows it holds when it is the very next commit.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pyspark.sql import functions as F

from pipeline.bronze.readers import SOURCE_FILE
from pipeline.driver.retry import explain
from pipeline.lake import Lake, Txn
from pipeline.spark import driver_rows
from pipeline.storage import LandingKeys, Stamp

log = logging.getLogger(__name__)

FILES_KEY = "landing_files"  # bronze commit metadata: every landing file of the batch
STAMPS_KEY = "landing_file_stamps"  # bronze commit metadata: [size, modified_ms] of each, in order
DIGESTS_KEY = "landing_file_sha256"  # bronze commit metadata: SHA-256 of each file's bytes, in order
# bronze commit metadata: how many of landing_files (the last ones) bronze held already, restamped
RESTAMPED_KEY = "restamped_files"
EMPTY_FILES_KEY = "empty_files"  # bronze commit metadata: the batch's files without records
BATCH_KEY = "batch_id"  # bronze commit metadata of a file batch (not OPTIMIZE, VACUUM, ...)
CATCH_UP_COMMITS = 10  # bronze commits the ledger may lag before a read records them
SCHEMA = (
    "dataset string, file string, bronze_version long, batch_id string, size long, modified_ms long, "
    "sha256 string"
)
Known = dict[str, Stamp | None]  # LandingKeys key -> its newest delivery's stamp (None: not kept)
Digests = dict[str, str]  # LandingKeys key -> SHA-256 of its newest delivery's bytes (where kept)
Row = tuple[str, str, int, Stamp | None, str | None]  # dataset, file, bronze version, stamp, sha256


@dataclass(frozen=True)
class Held:
    """What bronze holds of a dataset's landing files, by key: each newest delivery's stamp
    and, where it was kept, the SHA-256 of its bytes."""

    stamps: Known
    digests: Digests


@dataclass(frozen=True)
class _Rows:
    """The ledger's rows as read (or extended) at one snapshot key, per dataset: each file's
    newest delivery (bronze version, stamp, sha256) under the key as stored (relative, or an
    older absolute URI) and the newest bronze version covered."""

    key: tuple[str, int]
    files: dict[str, dict[str, tuple[int, Stamp | None, str | None]]]
    covered: dict[str, int]

    def plus(self, key: tuple[str, int], rows: Iterable[Row]) -> _Rows:
        files = {d: dict(f) for d, f in self.files.items()}
        covered = dict(self.covered)
        for dataset, file, bronze_version, stamp, digest in rows:
            held = files.setdefault(dataset, {})
            if file not in held or held[file][0] <= bronze_version:
                held[file] = (bronze_version, stamp, digest)
            covered[dataset] = max(covered.get(dataset, -1), bronze_version)
        return _Rows(key, files, covered)

    def held(self, dataset: str, keys: LandingKeys) -> Held:
        """Each file by its key (`keys`) with its newest delivery's stamp and sha256: an absolute
        key and a relative one may name the same file."""
        newest: dict[str, tuple[int, Stamp | None, str | None]] = {}
        for file, (bronze_version, stamp, digest) in self.files.get(dataset, {}).items():
            key = keys(file)
            if key not in newest or newest[key][0] <= bronze_version:
                newest[key] = (bronze_version, stamp, digest)
        return Held(
            {key: stamp for key, (_, stamp, _) in newest.items()},
            {key: digest for key, (_, _, digest) in newest.items() if digest},
        )


def _stamp(size: int | None, modified_ms: int | None) -> Stamp | None:
    return None if size is None or modified_ms is None else (int(size), int(modified_ms))


_HELD: dict[str, _Rows] = {}  # ledger path -> its rows (steps may run in threads: _HELD_LOCK)
_HELD_LOCK = threading.Lock()
_APPEND_LOCK = threading.Lock()


@dataclass(frozen=True)
class Ledger:
    lake: Lake
    path: str  # the ledger table, <lake>/_ops/ingested_files

    def ingested(self, dataset: str, table: str, keys: LandingKeys) -> Held:
        """The landing files in bronze `table` (by `keys`, the dataset's) with the stamp and
        sha256 of each one's newest delivery, brought up to date with bronze's commits first."""
        version = self.lake.version(table)
        if version is None:
            return Held({}, {})
        rows = self._rows()
        held = rows.held(dataset, keys) if rows else Held({}, {})
        done, digests = held.stamps, held.digests
        covered = rows.covered.get(dataset, -1) if rows else -1
        if covered > version:
            log.warning(
                "%s: the ledger is ahead of %s (v%s > v%s); rebuilt from the table",
                dataset,
                table,
                covered,
                version,
            )
            done, digests, covered = {}, {}, -1
        if covered < version:
            found, found_digests, read_table = self._from_bronze(table, covered, version, keys)
            if read_table:
                # The table's files, stamps unknown: the ledger's newest delivery of each (stamp
                # and hash), all recorded, so that the ledger covers this version from now on.
                kept = {f for f, s in found.items() if s is None and f in done}
                found = {f: done[f] if f in kept else s for f, s in found.items()}
                found_digests = {**{f: digests[f] for f in kept if f in digests}, **found_digests}
                changed = found
            else:
                changed = {f: s for f, s in found.items() if f not in done or done[f] != s}
            if read_table or version - covered >= CATCH_UP_COMMITS:
                self.record(dataset, changed, version, "ledger catch-up", found_digests)
            done.update(found)
            # The found deliveries' hashes replace the ledger's (none where a delivery kept none).
            digests = {f: d for f, d in digests.items() if f not in found} | found_digests
        return Held(done, digests)

    def _rows(self) -> _Rows | None:
        """Every dataset's rows at the ledger's current snapshot (None: no ledger yet), read
        with a Spark job only when the snapshot is not the one held."""
        key = self.lake.snapshot_key(self.path)
        if key is None:
            return None
        with _HELD_LOCK:
            held = _HELD.get(self.path)
        if held is not None and held.key == key:
            return held
        table = self.lake.read(self.path, key[1])
        # A ledger written before stamps were kept has no size / modified_ms: known by path;
        # one written before digests were kept has no sha256.
        stamped = {"size", "modified_ms"} <= set(table.columns)
        digested = "sha256" in table.columns
        columns = [
            "dataset",
            "file",
            "bronze_version",
            F.col("size") if stamped else F.lit(None).cast("long"),
            F.col("modified_ms") if stamped else F.lit(None).cast("long"),
            F.col("sha256") if digested else F.lit(None).cast("string"),
        ]
        read = table.select(*columns).collect()
        held = _Rows(key, {}, {}).plus(key, ((r[0], r[1], r[2], _stamp(r[3], r[4]), r[5]) for r in read))
        with _HELD_LOCK:
            _HELD[self.path] = held
        return held

    def record(
        self,
        dataset: str,
        files: Mapping[str, Stamp | None],
        bronze_version: int,
        batch_id: str,
        digests: Mapping[str, str] | None = None,
    ) -> None:
        """Add `files` (LandingKeys key -> stamp; `digests`: key -> sha256, where kept) as held by
        bronze at `bronze_version`. Idempotent per (dataset, bronze version): a second writer's
        copy of the same rows is skipped."""
        if not files:
            return
        digests = digests or {}
        rows = [
            (dataset, f, bronze_version, batch_id, *(s or (None, None)), digests.get(f))
            for f, s in sorted(files.items())
        ]
        df = driver_rows(self.lake.spark, rows, SCHEMA)
        # One append of this process at a time: the version read after it is then this append's
        # (or later, when another process wrote too), never a parallel step's.
        with _APPEND_LOCK:
            try:
                result = self.lake.append(
                    self.path,
                    df,
                    metadata={"dataset": dataset},
                    txn=Txn(f"ingested_files:{dataset}", bronze_version),
                )
            except Exception as exc:
                if not lost_commit_race(exc):
                    raise
                log.info(
                    "%s: another writer recorded bronze v%d in the ledger first", dataset, bronze_version
                )
                return
            if result.skipped or result.version is None:
                return
            with _HELD_LOCK:
                held = _HELD.get(self.path)
                # The version after the one held is this append alone: the rows held plus these.
                if held is not None and result.version == held.key[1] + 1:
                    key = (held.key[0], result.version)
                    _HELD[self.path] = held.plus(
                        key, ((dataset, f, bronze_version, s, digests.get(f)) for f, s in files.items())
                    )

    def _from_bronze(
        self, table: str, after: int, until: int, keys: LandingKeys
    ) -> tuple[Known, Digests, bool]:
        """Landing files of bronze's file commits in (after, until] and their newest stamps and
        sha256 (where kept), from the commits' metadata, and whether the table was read instead: a file commit
        without the list (written before the ledger existed), or one the log no longer holds
        (log cleanup removes commit files older than `delta.logRetentionDuration` once a
        checkpoint covers them: a feed that commits seldom may lag the ledger that long)."""
        found: Known = {}
        digests: Digests = {}
        commits = self.lake.commit_metadata(table, after, until)
        if sorted(commits) != list(range(after + 1, until + 1)):
            log.warning(
                "%s: commits %d-%d are not all in the log; the ledger catches up from the table",
                table,
                after + 1,
                until,
            )
            return legacy_ingested(self.lake, table, keys), {}, True
        for version in sorted(commits, reverse=True):  # newest first: a path's newest stamp wins
            metadata = commits[version]
            if BATCH_KEY not in metadata:
                continue  # OPTIMIZE, VACUUM, a schema change: no landing files
            if FILES_KEY not in metadata:
                return {**legacy_ingested(self.lake, table, keys), **found}, digests, True
            files = metadata[FILES_KEY]  # keys, or absolute URIs in older commits
            stamps = metadata.get(STAMPS_KEY) or [None] * len(files)
            sums = metadata.get(DIGESTS_KEY) or [None] * len(files)
            for file, stamp, digest in zip(files, stamps, sums, strict=True):
                key = keys(file)
                if key not in found:
                    found[key] = _stamp(*stamp) if stamp else None
                    if digest:
                        digests[key] = digest
        return found, digests, False


# Another writer committed first: delta-spark's concurrent-modification exceptions (the same Txn:
# ConcurrentTransactionException; a schema change in the winning commit: MetadataChangedException,
# checked before the Txn), delta-rs's commit conflict ("Concurrent transaction failed").
_LOST_RACE = re.compile(
    # delta-spark's exceptions; delta-rs's CommitFailedError messages
    r"Concurrent\w*Exception|MetadataChangedException|ProtocolChangedException|concurrent transaction"
    r"|(metadata|protocol) changed since last commit",
    re.IGNORECASE,
)


def lost_commit_race(exc: BaseException) -> bool:
    """Whether a commit failed because another writer committed to the table first."""
    return bool(_LOST_RACE.search(" ".join(explain(exc, 2000).chain)))


def legacy_ingested(lake: Lake, table: str, keys: LandingKeys) -> Known:
    """Landing files of a bronze table whose commits do not list them (no stamps): the table's
    distinct `_source_file`, plus the files without records listed in commit metadata."""
    rows = lake.read(table).select(SOURCE_FILE).distinct().collect()
    done: Known = {keys(r[0]): None for r in rows}
    for commit in lake.history(table):
        done.update((keys(file), None) for file in commit.metadata.get(EMPTY_FILES_KEY, []))
    return done
