"""`lakehouse erase --subject <id or email>`: one person's records out of the lake.

Where (config/erasure.yaml): per silver dataset, the columns that identify a person. The subject
is matched in bronze (the contract's source columns, normalised as the contract normalises
them, and the raw text of records that did not parse), in quarantine (the same raw columns) and
in silver (ids as stored, emails through the keyed hash silver stores: silver.pii). A subject
named by email brings the ids of the bronze rows holding it, and the emails of rows holding
those ids, so every version of a contact goes, also from before an address change. An email
selects a row only where the row names no person by id (another contact's rows holding an
address the subject used are theirs), and an id never brings other ids.

Refused before any delete while a silver table has yet to read the bronze versions holding the
subject's rows: its change feed would bring them back.

What: one DELETE commit per table holding rows of the subject, its metadata naming the erasure
(never the subject), each followed by its row in `_ops/erasures` (the subject as its keyed hash,
when, rows removed, table versions before and after, when the bytes are gone); silver and
quarantine first, bronze last and of it last the tables naming emails, so a rerun after a kill
finds the subject's ids again. Then the gold marts that read an erased silver table are rebuilt
in full (gold holds aggregates, no rows of a person; one an erasure cut short left is rebuilt
by the next run, which finds the DELETE in its input's history). The deleted rows stay in files
older snapshots reference until VACUUM: the maintain steps remove them once older than
vacuum_retention_hours (config/maintenance.yaml), recorded as `files_gone_after`.

Re-ingest: bronze's ledger of ingested files (bronze.ledger, `_ops/ingested_files`) keeps the
files whose rows are erased; rebuilt from bronze itself (its `_source_file` values plus the
files commits list under `empty_files`), it would miss a file whose every row was the
subject's, so the delete commit lists those under `empty_files`: a run never ingests them again. The landing zone itself is
the sources' drop zone, not the lake's: the files holding the subject's records are named in the
output and in the audit rows, for the operator to remove or redact there; a source delivering a
file again (a new file, or new content) brings its records back.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from pipeline.bronze.ledger import EMPTY_FILES_KEY
from pipeline.catalog import STREAM_READERS
from pipeline.contracts.model import Column, Contract, pii_outputs
from pipeline.driver.edge import Check, finish
from pipeline.lake import LakeError
from pipeline.lease import hold_streams
from pipeline.maintenance import load_maintenance
from pipeline.settings import ConfigError, load_yaml, parse_typed
from pipeline.silver.conform import WHITESPACE
from pipeline.silver.pii import keyed_hash, pii_key
from pipeline.spark import driver_rows

log = logging.getLogger(__name__)

ERASURE_FILE = "erasure.yaml"
ERASURE_OPERATION = "erasure"  # the `operation` in a delete commit's metadata
SOURCE_FILE = "_source_file"
AUDIT_SCHEMA = StructType(
    [
        StructField("erasure_id", StringType()),
        StructField("subject_hash", StringType()),  # HMAC-SHA256 under the PII key, as silver's emails
        StructField("erased_at", TimestampType()),
        StructField("table", StringType()),  # <layer>/<name>
        StructField("rows_erased", LongType()),
        StructField("version_before", LongType()),
        StructField("version_after", LongType()),
        StructField("files_gone_after", TimestampType()),  # VACUUM removes the old files from then on
        StructField("sources", ArrayType(StringType())),  # landing files that held the records
        StructField("gold_rebuilt", ArrayType(StringType())),
    ]
)


class ErasureError(Exception):
    """An erasure that cannot go ahead; the message says why and what to do."""


class NothingToErase(ErasureError):
    """No table holds a row of the subject; the message names where it looked."""


class SilverBehind(ErasureError):
    """A silver table has yet to read bronze versions holding the subject's rows."""


@dataclass(frozen=True)
class SubjectColumns:
    dataset: str
    ids: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ErasureConfig:
    subjects: list[SubjectColumns]
    raw_text: list[str] = field(default_factory=list)


def load_erasure(config_dir: Path, contracts: dict[str, Contract]) -> ErasureConfig:
    path = Path(config_dir) / ERASURE_FILE
    try:
        raw = load_yaml(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc}); erase needs the columns naming a person") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    config = parse_typed(ErasureConfig, raw, str(path), "")
    for i, s in enumerate(config.subjects):
        contract = contracts.get(s.dataset)
        if contract is None:
            raise ConfigError(f"{path}: subjects[{i}]: no contract for dataset {s.dataset!r}")
        for name in s.ids + s.emails:
            col = contract.columns.get(name)
            if col is None or col.expr:
                raise ConfigError(f"{path}: subjects[{i}]: {s.dataset} has no read column {name!r}")
            if set(col.normalize) - {"trim", "lower", "upper"}:
                raise ConfigError(f"{path}: subjects[{i}]: {s.dataset}.{name} normalises with "
                                  f"{col.normalize}: only trim/lower/upper identify a person")  # fmt: skip
        bad = [e for e in s.emails if contract.columns[e].pii != "email"]
        if bad:
            raise ConfigError(f"{path}: subjects[{i}]: {s.dataset}.{bad} are not pii: email in the contract")
    return config


@dataclass(frozen=True)
class Match:
    """The rows of one table holding the subject."""

    table: str  # <layer>/<name>
    path: str
    predicate: str
    rows: int
    version: int
    sources: tuple[str, ...] = ()  # bronze: the landing files of those rows
    emptied: tuple[str, ...] = ()  # bronze: files whose every row is the subject's


@dataclass(frozen=True)
class Erasure:
    erasure_id: str
    subject_hash: str
    matches: list[Match]
    looked_in: list[str]
    dry_run: bool
    files_gone_after: datetime | None = None
    gold_rebuilt: list[str] = field(default_factory=list)

    def summary(self) -> str:
        total = sum(m.rows for m in self.matches)
        verb = "would erase" if self.dry_run else "erased"
        lines = [f"erasure {self.erasure_id} (subject {self.subject_hash[:12]}…): {verb} {total} rows"]
        lines += [f"  {m.table:<28} {m.rows:>6} rows" for m in self.matches]
        sources = sorted({s for m in self.matches for s in m.sources})
        if sources:
            lines.append(
                f"landing files holding the subject's records ({len(sources)}): remove or redact them at "
                "the source; bronze will not ingest again the ones erased whole"
            )
            lines += [f"  {s}" for s in sources]
        if self.dry_run:
            lines.append("dry run: nothing written")
            return "\n".join(lines)
        if self.gold_rebuilt:
            lines.append(f"gold rebuilt: {', '.join(self.gold_rebuilt)}")
        lines.append(
            f"recorded in _ops/erasures; the erased rows stay in files older table versions reference "
            f"until VACUUM: the maintain steps delete those files from {self.files_gone_after:%Y-%m-%d %H:%M} "
            "UTC on (vacuum_retention_hours; `lakehouse maintain` to run them then)"
        )
        return "\n".join(lines)


def erase_subject(ctx, subject: str, *, check: Check, dry_run: bool = False) -> Erasure:
    """Find the subject's rows everywhere, delete them (unless `dry_run`), record the erasure."""
    text = subject.strip()
    if not text:
        raise ConfigError("erase --subject: empty; give a person's id (e.g. CON-0000123) or email")
    config = load_erasure(ctx.settings.config_path(""), ctx.contracts)
    key = pii_key(ctx.settings)
    if "@" in text:  # the rows holding the address name the subject's ids; theirs, its other addresses
        emails = {text.lower()}
        ids = _found(ctx, config, set(), emails, "ids")
    else:  # another person's rows holding an address the subject used are not the subject's
        ids, emails = {text}, set()
    emails |= _found(ctx, config, ids, set(), "emails")
    matches, looked_in = _matches(ctx, config, ids, emails, key)
    erasure_id = ctx.run_id
    subject_hash = keyed_hash(key, text.lower() if "@" in text else text)
    if not matches:
        raise NothingToErase(
            f"erase: no row matches the subject (keyed hash {subject_hash[:12]}…) in {', '.join(looked_in)}; "
            f"the columns searched are in {ctx.settings.config_path(ERASURE_FILE)}"
        )
    _refuse_unread(ctx, matches)
    if dry_run:
        return Erasure(erasure_id, subject_hash, matches, looked_in, dry_run=True)
    retention = load_maintenance(ctx.settings.config_path("")).vacuum_retention_hours
    erased_at = datetime.now(UTC)
    gone = erased_at + timedelta(hours=retention)
    gold = _affected_marts(ctx, {m.table.split("/", 1)[1] for m in matches if m.table.startswith("silver/")})
    # A stream table is written by its stream too (pipeline.lease.stream_scope): the erasure holds
    # its lease while it deletes, and is refused before any delete while a stream runs.
    streams = [
        name for layer, name in (m.table.split("/", 1) for m in matches)
        if layer == "bronze" and ctx.catalog[name].reader in STREAM_READERS
    ]  # fmt: skip
    with hold_streams(ctx.settings, ctx.run_id, streams, lambda _: f"lakehouse erase ({erasure_id})"):
        for m in _deletion_order(ctx, config, matches):
            metadata = {"erasure_id": erasure_id, "operation": ERASURE_OPERATION}
            if m.emptied:
                metadata[EMPTY_FILES_KEY] = list(m.emptied)  # bronze: never ingest these files again
            after = ctx.lake.delete(m.path, m.predicate, metadata=metadata).version
            # each table's row as its delete commits: an erasure killed midway leaves the record
            # of what it did (a rerun finds the rest, gold rebuilds on an erased input)
            row = (
                erasure_id,
                subject_hash,
                erased_at,
                m.table,
                m.rows,
                m.version,
                after,
                gone,
                list(m.sources),
                gold,
            )
            audit = driver_rows(ctx.spark, [row], AUDIT_SCHEMA)
            ctx.lake.append(ctx.table_path("_ops", "erasures"), audit, metadata={"erasure_id": erasure_id})
    _rebuild(ctx, gold, check)
    return Erasure(erasure_id, subject_hash, matches, looked_in, False, gone, gold)


def _refuse_unread(ctx, matches: list[Match]) -> None:
    """SilverBehind when a silver table has yet to read bronze versions holding the subject's
    rows: it reads bronze's change feed, which would bring the deleted rows back from the
    versions they were added in. Unread versions without them (maintenance, another erasure,
    other people's rows) refuse nothing."""
    from pipeline.maintenance import bronze_consumers
    from pipeline.silver.job import CONSUMED

    behind = []
    for m in matches:
        layer, name = m.table.split("/", 1)
        if layer != "bronze":
            continue
        for consumer, path in bronze_consumers(ctx, name):
            consumed = ctx.lake.latest_metadata(path, CONSUMED)  # None: it will read a snapshot
            if consumed is None or int(consumed) >= m.version:
                continue
            unread = ctx.lake.read_changes(m.path, int(consumed), m.version)
            if unread.filter(m.predicate).limit(1).count():
                behind.append(f"{consumer} has read {m.table} up to version {consumed} of {m.version}")
    if behind:
        steps = " ".join(sorted({b.split(" ", 1)[0].replace("/", "_") for b in behind}))
        raise SilverBehind(
            f"erase: refused before any delete: {'; '.join(behind)}. Its next read of the change "
            f"feed would bring the erased rows back; run `lakehouse run --only {steps.replace(' ', ',')}`, "
            "then erase again"
        )


def _deletion_order(ctx, config: ErasureConfig, matches: list[Match]) -> list[Match]:
    """Silver and quarantine first, then bronze, last the bronze tables naming emails: a rerun
    after a kill finds the subject's ids again through those, and so the rest."""
    by_email = {f"bronze/{ctx.contracts[c.dataset].source}" for c in config.subjects if c.emails}

    def rank(m: Match) -> int:
        return 0 if not m.table.startswith("bronze/") else 2 if m.table in by_email else 1

    return sorted(matches, key=rank)  # stable: each rank keeps the order tables were found in


def _sql_text(value: str) -> str:
    """A SQL string both engines read as `value`. A quote or backslash has no common spelling
    inside a literal (Spark reads 'a''b' as 'a' 'b' concatenated and backslash escapes, DataFusion
    neither), so those characters are spliced in as chr() of their code."""
    parts = re.split(r"(['\\])", value)
    if len(parts) == 1:
        return f"'{value}'"
    spelled = [f"chr({ord(p)})" if p in ("'", "\\") else f"'{p}'" for p in parts if p]
    return f"concat({', '.join(spelled)})"


def _normalised(col: Column, sql: str) -> str:
    """`sql` normalised as silver's conformance normalises the column: trim removes Unicode's
    white space (SQL's trim removes spaces only), then lower, upper."""
    for step in col.normalize:
        sql = f"btrim({sql}, {_sql_text(WHITESPACE)})" if step == "trim" else f"{step}({sql})"
    return sql


def _source_sql(contract: Contract, name: str) -> str:
    """Contract column `name` as bronze holds it (its source column), normalised as silver does."""
    col = contract.columns[name]
    return _normalised(col, f"`{col.source_column}`")


def _normalise_value(col: Column, value: str) -> str:
    for step in col.normalize:
        value = {"trim": lambda v: v.strip(WHITESPACE), "lower": str.lower, "upper": str.upper}[step](value)
    return value


def _raw_terms(config: ErasureConfig, columns: list[str], values: set[str]) -> list[str]:
    return [
        f"position({_sql_text(v.lower())} IN lower(`{c}`)) > 0"
        for c in config.raw_text
        if c in columns
        for v in sorted(values)
    ]


def _in(sql: str, values: list[str]) -> str:
    return f"{sql} IN ({', '.join(_sql_text(v) for v in sorted(set(values)))})"


def _raw_predicate(
    config: ErasureConfig, contract: Contract, cols: SubjectColumns, columns: list[str], ids, emails
) -> str:
    """Bronze and quarantine: the source columns, normalised, and the raw text columns. An email
    the subject used selects a row only where the row names no person by id: a row holding it
    beside another id is that person's (a shared or reassigned address)."""

    id_columns = [
        (contract.columns[n], _source_sql(contract, n))
        for n in cols.ids
        if contract.columns[n].source_column in columns
    ]
    terms = [_in(sql, [_normalise_value(col, v) for v in ids]) for col, sql in id_columns if ids]
    no_id = " AND ".join(f"coalesce({sql}, '') = ''" for _, sql in id_columns)
    for name in cols.emails:
        col, sql = contract.columns[name], _source_sql(contract, name)
        if col.source_column in columns and emails:
            term = _in(sql, [_normalise_value(col, v) for v in emails])
            terms.append(f"({term} AND {no_id})" if no_id else term)
    terms += _raw_terms(config, columns, ids | emails)
    return " OR ".join(terms)


def _silver_predicate(contract: Contract, cols: SubjectColumns, columns: list[str], ids, emails, key) -> str:
    """Silver: ids as stored; an email through its keyed hash, on a row naming no person by id."""
    id_names = [n for n in cols.ids if n in columns]
    terms = [_in(f"`{n}`", [_normalise_value(contract.columns[n], v) for v in ids]) for n in id_names if ids]
    no_id = " AND ".join(f"`{n}` IS NULL" for n in id_names)
    for name in cols.emails:
        hashed = pii_outputs(contract.columns[name])[0]
        if hashed in columns and emails:
            col = contract.columns[name]
            term = _in(f"`{hashed}`", [keyed_hash(key, _normalise_value(col, e)) for e in emails])
            terms.append(f"({term} AND {no_id})" if no_id else term)
    return " OR ".join(terms)


def _found(ctx, config: ErasureConfig, ids: set[str], emails: set[str], kind: str) -> set[str]:
    """The ids (`kind` "ids") or emails ("emails") on the bronze rows holding any of `ids`, or
    any of `emails` in the email columns (raw text aside: a line holding an address names no
    column's value)."""
    found: set[str] = set()
    for cols in config.subjects:
        contract = ctx.contracts[cols.dataset]
        path = ctx.table_path("bronze", contract.source)
        if not ctx.lake.exists(path):
            continue
        bronze = ctx.lake.read(path)
        terms = [
            _in(_source_sql(contract, n), [_normalise_value(contract.columns[n], v) for v in values])
            for names, values in ((cols.ids, ids), (cols.emails, emails))
            for n in names
            if values and contract.columns[n].source_column in bronze.columns
        ]
        wanted = [
            F.expr(_source_sql(contract, n)).alias(n)
            for n in (cols.ids if kind == "ids" else cols.emails)
            if contract.columns[n].source_column in bronze.columns
        ]
        if not terms or not wanted:
            continue
        for row in bronze.filter(" OR ".join(terms)).select(*wanted).distinct().collect():
            # a defect (a phone, a name) in an email column is nobody's address
            found |= {str(v) for v in row if v and (kind == "ids" or "@" in v)}
    return found


def _matches(ctx, config: ErasureConfig, ids, emails, key) -> tuple[list[Match], list[str]]:
    matches, looked_in = [], []
    for cols in config.subjects:
        contract = ctx.contracts[cols.dataset]
        for layer, name in (
            ("bronze", contract.source),
            ("quarantine", cols.dataset),
            ("silver", cols.dataset),
        ):
            path = ctx.table_path(layer, name)
            version = ctx.lake.version(path)
            if version is None:
                continue
            table = f"{layer}/{name}"
            looked_in.append(table)
            df = ctx.lake.read(path, version)
            if layer == "silver":
                predicate = _silver_predicate(contract, cols, df.columns, ids, emails, key)
            else:
                predicate = _raw_predicate(config, contract, cols, df.columns, ids, emails)
            if not predicate:
                continue
            hit = F.expr(predicate)
            if layer != "bronze" or SOURCE_FILE not in df.columns:
                rows = df.filter(hit).count()
                if rows:
                    matches.append(Match(table, path, predicate, rows, version))
                continue
            per_file = (
                df.groupBy(SOURCE_FILE)
                .agg(F.count_if(hit).alias("hits"), F.count(F.lit(1)).alias("rows"))
                .filter("hits > 0")
                .collect()
            )
            rows = sum(int(r["hits"]) for r in per_file)
            if rows:
                sources = tuple(sorted(str(r[SOURCE_FILE]) for r in per_file))
                emptied = tuple(sorted(str(r[SOURCE_FILE]) for r in per_file if r["hits"] == r["rows"]))
                matches.append(Match(table, path, predicate, rows, version, sources, emptied))
    return matches, looked_in


def _affected_marts(ctx, erased_silver: set[str]) -> list[str]:
    """Existing gold marts reading an erased silver table, or a mart affected in turn (in build order)."""
    from pipeline.gold.marts import MARTS

    affected: list[str] = []
    for name, spec in MARTS.items():  # in dependency order: a gold input comes first
        reads_erased = set(spec.silver) & erased_silver or set(spec.gold) & set(affected)
        if reads_erased and ctx.lake.exists(ctx.table_path("gold", name)):
            affected.append(name)
    return affected


def _rebuild(ctx, marts: list[str], check: Check) -> None:
    """Rebuild the marts in full (an incremental update reads only rows silver gained), at the
    as-of date each was last built with, each judged by `check` before its write."""
    from datetime import date

    from pipeline.gold.marts import FINGERPRINT_KEY, build_gold

    ctx.full_refresh = True
    for name in marts:
        built = ctx.lake.latest_metadata(ctx.table_path("gold", name), FINGERPRINT_KEY) or {}
        as_of = built.get("as_of") if isinstance(built, dict) else None
        ctx.as_of = date.fromisoformat(as_of) if as_of else None
        try:
            finish(ctx, f"gold_{name}", build_gold(ctx, name), check)
        except Exception as exc:
            raise LakeError(
                f"erase {ctx.run_id}: the subject's rows are erased and recorded in _ops/erasures, but "
                f"rebuilding gold {name} failed ({exc}); the next run rebuilds it from silver"
            ) from exc
        log.info("erase: gold %s rebuilt", name)
