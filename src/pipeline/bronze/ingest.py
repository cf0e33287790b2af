"""File-based bronze ingest: new landing files -> one atomic Delta append.

Which files are already in bronze is read from the ledger (`bronze/ledger.py`), kept up to date
from bronze's own commits, each of which lists its landing files. One batch is one commit, so a
crash leaves either the whole batch or none of it, and a rerun picks up exactly what is missing.
A file that cannot be read is rejected (`bronze/rejected.py`) and the rest of the batch lands.

Two writers that both got past the run lease cannot add a file twice: each file commit carries
the Txn (TXN_APP, the table's last Txn version + 1, read before listing). The second writer with
that version is skipped, or loses the commit race; it then lists again (finding the files in
bronze) and tries once more.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, DateType, StringType, StructType, TimestampNTZType, TimestampType

from pipeline.bronze.audit import with_audit_columns
from pipeline.bronze.ledger import (
    BATCH_KEY,
    DIGESTS_KEY,
    EMPTY_FILES_KEY,
    FILES_KEY,
    RESTAMPED_KEY,
    STAMPS_KEY,
    Held,
    Ledger,
    lost_commit_race,
)
from pipeline.bronze.readers import CORRUPT, SOURCE_FILE, TYPED_READERS, fitted, read_batch
from pipeline.bronze.rejected import (
    RejectedFiles,
    Rejection,
    file_schemas,
    first_load_reference,
    precheck,
    probe,
    retyped,
    struct_of,
    type_conflicts,
    unread,
)
from pipeline.catalog import DatasetSpec
from pipeline.context import RunContext
from pipeline.driver.retry import explain, is_transient
from pipeline.freshness import (
    DELIVERY_DATE,
    FULL_DATE,
    NEWEST_KEY,
    arrival_micros,
    recorded_newest,
    table_newest,
)
from pipeline.lake import Txn
from pipeline.step_result import StepResult
from pipeline.storage import (
    LandingFile,
    LandingKeys,
    Listing,
    file_key,
    list_landing,
    location_uri,
    sha256_of,
)

log = logging.getLogger(__name__)

NEWEST = "newest_us"  # the aggregate of newest_event_time: epoch microseconds, UTC
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_MICROS = 86_400_000_000  # how far past its arrival a batch's data time may be (clock skew)
TXN_APP = "bronze-landing-files"  # Txn app id of bronze file commits (one sequence per table)
# Landing files may come gzip-compressed (Spark decompresses by extension), except Parquet.
COMPRESSED = ".gz"
IGNORED_SHOWN = 20  # files matching no suffix named in the step's details (all are counted)


def ledger(ctx: RunContext) -> Ledger:
    return Ledger(ctx.lake, ctx.table_path("_ops", "ingested_files"))


def rejected_files(ctx: RunContext) -> RejectedFiles:
    return RejectedFiles(ctx.lake, ctx.table_path("_ops", "rejected_files"))


def landing_keys(ctx: RunContext, dataset: str) -> LandingKeys:
    """How the ledger, bronze's commits and rejected files name the dataset's landing files."""
    return LandingKeys(location_uri(ctx.spark, ctx.landing_root()), ctx.catalog[dataset].landing)


_LANDING_DATE = re.compile(DELIVERY_DATE)


def landing_date(uri: str) -> date | None:
    """The delivery date a landing path carries (date=2026-07-01/, rates_2026-07-01.json,
    accounts_20260701.csv): the last date in the path, or None."""
    found = _LANDING_DATE.findall(uri)
    if not found:
        return None
    try:
        return date(*map(int, found[-1]))
    except ValueError:
        return None


def landing_suffixes(spec: DatasetSpec) -> tuple[str, ...]:
    """The file suffixes of a dataset's landing files: its `file_suffix`, and (text formats)
    that plus `.gz`; other files in its folder are not deliveries."""
    if spec.reader == "parquet":
        return (spec.file_suffix,)
    return (spec.file_suffix, spec.file_suffix + COMPRESSED)


def new_landing_files(ctx: RunContext, dataset: str, keys: LandingKeys) -> tuple[Listing, Held]:
    """The dataset folder's listing (`list_landing`) of landing files not listed in bronze as
    they are now: files bronze does not hold, and files with another stamp (size or
    modification time) than when it ingested them (a rewrite, or a copy: `restamped`); with a
    backfill window (`ctx.window`), only those whose landing date it contains (files without a
    date in their path are not windowed). Beside them in the listing: the URIs of the files
    that match none of the dataset's suffixes (not hidden ones, nor those its `ignore` leaves
    alone), and how many its `ignore` left alone. With it, what bronze holds (by `keys`)."""
    done = ledger(ctx).ingested(dataset, ctx.table_path("bronze", dataset), keys)
    spec = ctx.catalog[dataset]
    listing = list_landing(
        ctx.spark, ctx.landing_path(dataset), landing_suffixes(spec), done.stamps, keys, tuple(spec.ignore)
    )
    window = getattr(ctx, "window", None)
    if window is not None:
        listing = dataclasses.replace(
            listing,
            files=[f for f in listing.files if (day := landing_date(f.uri)) is None or window.contains(day)],
        )
    return listing, done


def newest_event_time(batch: DataFrame, dataset: str, column: str) -> Column | None:
    """An aggregate: the newest data time of the batch's `column` (the catalogue's `event_time`)
    in epoch microseconds, or None (logged) when the batch cannot say.

    Strings (CSV, JSON) holding a full date are parsed with `try_to_timestamp` (ANSI mode: never a
    throwing cast), so an unparseable value is ignored, and so is one without a date (Spark reads
    "T10:00" as today at 10:00); date and timestamp columns are used as they are. Records
    that could not be parsed (`_corrupt_record`) do not count: their values may be shifted."""
    if not column:
        return None
    if column not in batch.columns:
        log.warning(
            "%s: event_time column %r is not in this batch (schema drift?); no newest_data_at",
            dataset,
            column,
        )
        return None
    value = F.col(f"`{column}`")
    dtype = batch.schema[column].dataType
    if isinstance(dtype, StringType):
        ts = F.when(value.rlike(FULL_DATE), F.try_to_timestamp(value))  # "T10:00" is no time
    elif isinstance(dtype, DateType | TimestampType | TimestampNTZType):
        ts = value.cast(TimestampType())  # dates and NTZ values read in the session time zone (UTC)
    else:
        log.warning(
            "%s: event_time column %r is %s, not a string, date or timestamp; no newest_data_at",
            dataset,
            column,
            dtype.simpleString(),
        )
        return None
    if CORRUPT in batch.columns:
        ts = F.when(F.col(CORRUPT).isNull(), ts)
    # Years past 9999 parse ("99999-01-01") but have no ISO 8601 / Python form: ignored too; so
    # is a time later than the batch's arrival plus a day (a source clock gone wrong, a 9999-12-31
    # placeholder), which would pass freshness for good (silver quarantines it: after_arrival).
    micros = F.unix_micros(ts)
    plausible = F.year(ts).between(1, 9999) & (micros <= arrival_micros(batch) + F.lit(_DAY_MICROS))
    return F.max(F.when(plausible, micros)).alias(NEWEST)


def iso_from_micros(micros: int | None) -> str | None:
    """Epoch microseconds -> ISO 8601 in UTC (`2026-07-01T12:00:00+00:00`), None for None."""
    if micros is None:
        return None
    return (_EPOCH + timedelta(microseconds=micros)).isoformat()


def contract_types(ctx: RunContext, dataset: str) -> dict[str, str]:
    """{bronze column: SQL type} the dataset's contracts read (empty when it has no contract;
    the first contract's type where two read one column)."""
    types: dict[str, str] = {}
    for contract in ctx.contracts.values():
        if contract.source == dataset:
            for c in contract.read_columns:
                types.setdefault(c.source_column, c.type)
    return types


def contract_columns(ctx: RunContext, dataset: str) -> frozenset[str]:
    """The bronze columns the dataset's contracts read (empty when it has no contract): a CSV
    header must name at least one of them."""
    return frozenset(contract_types(ctx, dataset))


def contract_names(ctx: RunContext, dataset: str) -> str:
    return ", ".join(sorted(c.name for c in ctx.contracts.values() if c.source == dataset))


def ingest_files(ctx: RunContext, dataset: str) -> StepResult:
    try:
        return _ingest_new_files(ctx, dataset)
    except Exception as exc:
        if not lost_commit_race(exc):
            raise
        log.warning("%s: another writer committed these landing files first; listing again", dataset)
    result = _ingest_new_files(ctx, dataset)
    result.details["commit_race_lost"] = True
    return result


def _ingest_new_files(ctx: RunContext, dataset: str) -> StepResult:
    spec = ctx.catalog[dataset]
    table = ctx.table_path("bronze", dataset)
    root = ctx.landing_path(dataset)
    # Read before listing: a writer that lists after another's commit finds its files in bronze.
    exists = ctx.lake.exists(table)
    done = ctx.lake.transaction_version(table, TXN_APP) if exists else None
    txn = Txn(TXN_APP, (done or 0) + 1)
    keys = landing_keys(ctx, dataset)
    listing, done = new_landing_files(ctx, dataset, keys)
    listed, ignored = listing.files, listing.ignored
    # Hashed before the read: a file rewritten after it is one whose bytes bronze does not hold.
    # One whose size changed since the listing (still being written) waits for the next run.
    hashed = sha256_of(ctx.spark, listed)
    digests, listed = hashed.digests, [f for f in listed if f not in hashed.changed]
    skipped = set(rejected_files(ctx).unchanged(dataset, listed, keys, digests))
    restamped = [f for f in listed if _same_bytes(done.digests.get(keys(f.uri)), digests.get(f.uri))]
    not_read = skipped.union(restamped)
    files = [f for f in listed if f not in not_read]
    details: dict = {"table": table, "new_files": len(files), "rejected_files": 0, "rejected": []}
    if hashed.changed:
        details["changed_since_listed"] = [f.uri for f in hashed.changed]
    if ignored:
        # Not a rejection (a README beside the exports is no failed delivery), but a misnamed
        # one (`.txt`, `.csv.tmp`) must not vanish without a word: named every run it is there.
        log.warning(
            "%s: %d landing file(s) match none of the dataset's suffixes (%s) and are not read: %s; "
            "rename a delivery to one of them; move what is no delivery out of %s, or name it in "
            "datasets.%s.ignore of %s (e.g. 'README*')",
            dataset,
            len(ignored),
            ", ".join(landing_suffixes(spec)),
            ", ".join(ignored[:5]) + (" ..." if len(ignored) > 5 else ""),
            root,
            dataset,
            ctx.settings.config_path(ctx.settings.datasets_file),
        )
        details.update(ignored_files=len(ignored), ignored=ignored[:IGNORED_SHOWN])
    if listing.left_alone:
        log.info(
            "%s: %d landing file(s) left alone by datasets.%s.ignore", dataset, listing.left_alone, dataset
        )
        details["left_alone_files"] = listing.left_alone
    if redelivered := [f for f in files if keys(f.uri) in done.stamps]:
        # A correction sent under the old name: its rows land beside the first delivery's.
        log.warning(
            "%s: %d landing file(s) rewritten since bronze ingested them, ingested again as new "
            "deliveries: %s",
            dataset,
            len(redelivered),
            ", ".join(f.uri for f in redelivered[:5]) + (" ..." if len(redelivered) > 5 else ""),
        )
        details["redelivered"] = [f.uri for f in redelivered]
    if skipped:
        log.info("%s: %d landing files skipped, rejected before and unchanged", dataset, len(skipped))
        details["rejected_unchanged"] = len(skipped)
    if restamped:
        # Copied with new times (a lake copied elsewhere, a restore): bronze holds these bytes.
        log.info(
            "%s: %d landing file(s) have a new size or modification time but the bytes bronze "
            "holds; their new stamps are recorded, their rows not ingested again",
            dataset,
            len(restamped),
        )
        details[RESTAMPED_KEY] = len(restamped)
    if not files and not restamped:
        log.info("%s: no new landing files under %s", dataset, root)
        # Freshness: nothing new, so the table's data is as old as its last commit recorded.
        return StepResult(details={**details, NEWEST_KEY: recorded_newest(ctx.lake, table)})
    batch, stats = None, None
    if files:
        batch_id = ctx.batch_id(dataset)
        files, rejections = precheck(ctx.spark, spec, files, contract_columns(ctx, dataset))
        held = ctx.lake.schema(table) if exists else None  # bronze's column types
        try:
            batch, stats, files = _read_setting_aside(ctx, dataset, files, held, batch_id, rejections)
        finally:  # what was found bad is recorded even when the step then fails on something else
            rejected_files(ctx).record(dataset, rejections, ctx.run_id, batch_id, keys, digests)
        details.update(
            rejected_files=len(rejections),
            rejected=[{"path": r.file.uri, "reason": r.reason} for r in rejections],
        )
    if batch is None or stats is None:
        if not restamped:
            return StepResult(details={**details, NEWEST_KEY: recorded_newest(ctx.lake, table)})
        # A commit of no rows: the restamped files' new stamps alone.
        batch = ctx.spark.createDataFrame([], ctx.lake.schema(table))
        stats, files = BatchStats({}, 0, None, False), []
    try:
        return _commit(ctx, dataset, Landed(files, restamped, digests), keys, batch, stats, txn, details)
    finally:
        batch.unpersist()


def _read_setting_aside(
    ctx: RunContext,
    dataset: str,
    files: list[LandingFile],
    held: StructType | None,
    batch_id: str,
    rejections: list[Rejection],
) -> tuple[DataFrame | None, BatchStats | None, list[LandingFile]]:
    """(batch, stats, the files in it): the files read as one batch, less those set aside (added
    to `rejections`): a file that fails on its own, else ones whose column types differ from
    bronze's (`held`; files of one batch disagreeing on a column's type fail the read together),
    again until the batch reads and matches bronze, and files the batch read returned no row of
    while they hold rows. (None, None, []) when no file is left.

    A file whose column of another type holds no value is read again with it typed as bronze's
    (`voids`), not set aside.

    A first load (no bronze table) of a reader that keeps the source's types (Parquet) is held
    to the contract's types and, for the columns it does not type, to most files' types: the
    table it creates is what later loads are held to, and silver fails on a typed column of
    another type than the contract's."""
    spec = ctx.catalog[dataset]
    root, table = ctx.landing_path(dataset), ctx.table_path("bronze", dataset)
    first_load = held is None and spec.reader in TYPED_READERS
    typed = contract_types(ctx, dataset) if first_load else {}
    # What a batch that read is checked against: bronze's types, else the contract's.
    reference = held if held is not None else struct_of(ctx.spark, typed)

    # A file's columns of another type holding no value (file -> column -> bronze's type): they
    # fit any type, so the file is read again with them typed as bronze's instead of set aside.
    voids: dict[LandingFile, dict[str, DataType]] = {}

    def retyped_files() -> list[Rejection]:
        if held is not None:
            bad, found = retyped(ctx.spark, spec, files, root, held, table)
        elif first_load:
            schemas = file_schemas(ctx.spark, spec, files, root)  # read once, judged twice
            types, where = first_load_reference(
                ctx.spark, spec, root, schemas, typed, contract_names(ctx, dataset)
            )
            bad, found = retyped(
                ctx.spark, spec, files, root, types, f"first load of {table}", where, schemas
            )
        else:
            return []
        voids.update(found)
        return bad

    while files:
        known_voids = len(voids)
        try:
            batch, stats = _read(ctx, dataset, files, batch_id, held, reference, voids)
        except Exception as exc:
            if is_transient(exc):
                raise
            bad = probe(ctx.spark, spec, files, root) or retyped_files()
            if not bad and len(voids) == known_voids:
                raise  # no file fails on its own nor differs from bronze: not a bad file
            if bad:
                log.warning(
                    "%s: batch read failed (%s); %d file(s) set aside", dataset, explain(exc).cause, len(bad)
                )
        else:
            if type_conflicts(reference, batch.schema) and (
                (bad := retyped_files()) or len(voids) > known_voids
            ):
                if bad:
                    log.warning(
                        "%s: %d file(s) hold a column with another type than bronze's", dataset, len(bad)
                    )
            elif bad := unread(ctx.spark, spec, files, root, stats.rows_per_file):
                log.error("%s: %d file(s) with rows the batch read left out", dataset, len(bad))
            else:
                return batch, stats, files
            batch.unpersist()
        rejections += bad
        files = [f for f in files if f not in {r.file for r in bad}]
    return None, None, []


def _same_bytes(held: str | None, now: str | None) -> bool:
    """Whether a listed file holds the bytes of the delivery bronze holds under its key (both
    hashed; a delivery ingested before hashes were kept is never the same)."""
    return held is not None and held == now


@dataclass(frozen=True)
class BatchStats:
    rows_per_file: dict[str, int]
    corrupt: int
    newest: int | None  # epoch microseconds
    has_event_time: bool


@dataclass(frozen=True)
class Landed:
    """What a bronze commit lists: the files read into its batch, the files bronze held
    already with the same bytes under a new stamp (read from none), and every file's SHA-256
    by URI."""

    read: list[LandingFile]
    restamped: list[LandingFile]
    digests: dict[str, str]


def create_empty(ctx: RunContext, table: str, batch: DataFrame, partition_by: list[str]) -> None:
    """Create bronze `table` without rows before its first file commit: the engines check a
    commit's Txn against concurrent commits only on an existing table, so two writers creating
    it with the same files would both land them. A writer that loses the creation race finds
    the table there and goes on."""
    try:
        ctx.lake.append(table, batch.limit(0), partition_by=partition_by)
    except Exception:
        if not ctx.lake.exists(table):
            raise
        log.info("%s: created by another writer at the same moment", table)


def _read(
    ctx: RunContext,
    dataset: str,
    files: list[LandingFile],
    batch_id: str,
    held: StructType | None,
    reference: StructType,
    voids: dict[LandingFile, dict[str, DataType]],
) -> tuple[DataFrame, BatchStats]:
    """The batch with its audit columns, cached, and its statistics: computing them reads every
    file in full, so an unreadable file fails here, before anything is written. A column bronze
    holds under another case (`ORDER_ID`, `order_id`) takes bronze's spelling, one it does not
    hold yet the contract's: Spark matches names ignoring case, delta-rs refuses a second
    spelling of a column, and silver reads the contract's names. A decimal of another precision
    than `reference`'s (bronze's types, or on a first load the contract's) is stored as that
    type where its value fits (`readers.fitted`); `voids`: see `readers.read_batch`."""
    spec = ctx.catalog[dataset]
    raw = read_batch(ctx.spark, spec, files, ctx.landing_path(dataset), voids)
    contract = contract_columns(ctx, dataset)
    folds = Counter(c.lower() for c in contract)
    spelling = {c.lower(): c for c in contract if folds[c.lower()] == 1}  # unambiguous ones
    spelling.update({f.name.lower(): f.name for f in held.fields} if held is not None else {})
    renamed = {c: spelling[c.lower()] for c in raw.columns if spelling.get(c.lower(), c) != c}
    raw = fitted(raw.withColumnsRenamed(renamed) if renamed else raw, reference)
    batch = with_audit_columns(raw, spec.source_system, batch_id).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        # One aggregation over the cached batch gives per-file and corrupt counts for the report
        # and the newest data time (freshness).
        newest_agg = newest_event_time(batch, dataset, spec.event_time)
        extra = [newest_agg] if newest_agg is not None else []
        rows = (
            batch.groupBy(SOURCE_FILE)
            .agg(F.count(F.lit(1)).alias("rows"), F.count(CORRUPT).alias("corrupt"), *extra)
            .collect()
        )
    except Exception:
        batch.unpersist()
        raise
    newest = max((r[NEWEST] for r in rows if r[NEWEST] is not None), default=None) if extra else None
    return batch, BatchStats(
        {file_key(r[SOURCE_FILE]): r["rows"] for r in rows},
        sum(r["corrupt"] for r in rows),
        newest,
        bool(extra),
    )


def _commit(
    ctx: RunContext,
    dataset: str,
    landed: Landed,
    keys: LandingKeys,
    batch: DataFrame,
    stats: BatchStats,
    txn: Txn,
    details: dict,
) -> StepResult:
    spec = ctx.catalog[dataset]
    table = ctx.table_path("bronze", dataset)
    batch_id = ctx.batch_id(dataset)
    rows = sum(stats.rows_per_file.values())
    files, listed = landed.read, landed.read + landed.restamped
    empty = sorted(keys(f.uri) for f in files if file_key(f.uri) not in stats.rows_per_file)
    newest_at = table_newest(ctx.lake, table, iso_from_micros(stats.newest))
    if not ctx.lake.exists(table):
        create_empty(ctx, table, batch, spec.partition_by)
    result = ctx.lake.append(
        table,
        batch,
        partition_by=spec.partition_by,
        metadata={
            BATCH_KEY: batch_id,
            "files": len(files),
            "rows": rows,
            FILES_KEY: [keys(f.uri) for f in listed],
            STAMPS_KEY: [list(f.stamp) for f in listed],
            DIGESTS_KEY: [landed.digests.get(f.uri) for f in listed],
            EMPTY_FILES_KEY: empty,
            RESTAMPED_KEY: len(landed.restamped),  # the last of landing_files
            NEWEST_KEY: newest_at,
        },
        txn=txn,
    )
    if result.skipped:
        log.warning(
            "%s: another writer ingested these landing files (Txn %s v%d is in %s); nothing added",
            dataset,
            txn.app_id,
            txn.version,
            table,
        )
        return StepResult(
            details={**details, "already_committed": True, NEWEST_KEY: recorded_newest(ctx.lake, table)}
        )
    assert result.version is not None  # its commit metadata lists the files: the ledger's source
    if stats.has_event_time and stats.newest is None and rows:
        log.warning("%s: no parseable %s value in this batch; no newest_data_at", dataset, spec.event_time)
    log.info(
        "%s: %d files, %d rows (%d corrupt), newest data at %s -> %s v%s",
        dataset,
        len(files),
        rows,
        stats.corrupt,
        newest_at,
        table,
        result.version,
    )
    return StepResult(
        rows_in=rows,
        rows_out=rows,
        details={
            **details,
            "empty_files": len(empty),
            "corrupt_records": stats.corrupt,
            "version": result.version,
            NEWEST_KEY: newest_at,
        },
    )
