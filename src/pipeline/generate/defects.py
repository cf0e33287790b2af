"""Defect injection, with exact counts of what was injected.

Every record-level defect hits a distinct, otherwise clean record (defects are never stacked), and
file-level defects (schema drift, empty and corrupt files) get files with no record-level defects.
That is what makes each manifest count an exact, unambiguous expectation for the pipeline. Each
record-level type is injected into max(1, round(rate * records)) records when rate > 0 (fewer only
if the dataset has too few eligible records), and nothing at all when rate == 0.

File-level defects are counted per file, record-level defects per record.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BAD_NUMBERS = ("12,5x", "N/A", "1.2.3")
UNKNOWN_CURRENCIES = ("XXX", "ZZZ")
FX_UNKNOWN_CURRENCIES = ("XXX", "ZZZ", "XYZ", "QQQ")
# Kafka: a record is late when its event_ts is at least this much older than its broker timestamp;
# clean records lag by under 31 s and deliberately out-of-order ones by less than this.
LATE_AFTER_MS = 2 * 3_600_000


def target(rate: float, n: int) -> int:
    """How many records of one defect type a dataset of n records gets."""
    return 0 if rate <= 0 or n == 0 else max(1, round(rate * n))


def allocate(rng: np.random.Generator, eligible: np.ndarray, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """Disjoint random subsets of `eligible`, one per defect type (sorted), shrunk pro rata if short."""
    total = sum(sizes.values())
    if total > len(eligible):
        sizes = {k: min(v, max(1, v * len(eligible) // total)) for k, v in sizes.items()}
    perm = rng.permutation(np.asarray(eligible))
    picks, pos = {}, 0
    for kind, size in sizes.items():
        picks[kind] = np.sort(perm[pos : pos + size])
        pos += len(picks[kind])
    return picks


def truncate_text(rng: np.random.Generator, text: str) -> str:
    """Cut text part-way, as an interrupted transfer would (never a valid JSON document)."""
    return text[: max(1, int(len(text) * rng.uniform(0.3, 0.8)))]


def _choose_day(rng: np.random.Generator, candidates: list[int]) -> int:
    return candidates[int(rng.integers(len(candidates)))]


# --- CSV (CRM exports) -------------------------------------------------------------------------


@dataclass(frozen=True)
class CsvDefects:
    """Where each CSV defect goes in one CRM entity's rows."""

    key: str
    dates: tuple[str, ...]
    drift_column: str
    drift_values: tuple[str, ...]
    numbers: tuple[str, ...] = ()
    currency: str | None = None
    # Accounts' empty export is a 0-byte file, the others' a header-only file.
    empty_without_header: bool = False

    @property
    def record_types(self) -> tuple[str, ...]:
        optional = (("bad_number", bool(self.numbers)), ("unknown_currency", self.currency is not None))
        return ("malformed_line", "bad_date", "null_key", "duplicate") + tuple(k for k, on in optional if on)

    @property
    def types(self) -> tuple[str, ...]:
        return self.record_types + ("schema_drift", "empty_file")


@dataclass
class CsvFile:
    """One daily export; `header` None means a 0-byte file."""

    header: list[str] | None
    rows: list[list[str]] = field(default_factory=list)


def inject_csv(
    rng: np.random.Generator,
    header: tuple[str, ...],
    days: list[list[list[str]]],
    spec: CsvDefects,
    rate: float,
) -> tuple[list[CsvFile], dict[str, int]]:
    files = [CsvFile(list(header), [list(r) for r in rows]) for rows in days]
    counts = dict.fromkeys(spec.types, 0)
    if rate <= 0:
        return files, counts

    # The failed export's changes are caught up by the next day's export, so nothing is lost.
    empty = int(rng.integers(1, len(files) - 1))
    files[empty + 1].rows[:0] = files[empty].rows
    files[empty] = CsvFile(None if spec.empty_without_header else list(header))
    with_rows = [d for d in range(1, len(files)) if d != empty and files[d].rows]
    drift = _choose_day(rng, with_rows or [d for d in range(1, len(files)) if d != empty])
    files[drift].header.append(spec.drift_column)
    for row in files[drift].rows:
        row.append(spec.drift_values[int(rng.integers(len(spec.drift_values)))])
    counts.update(schema_drift=1, empty_file=1)

    coords = [(d, i) for d, f in enumerate(files) if d not in (empty, drift) for i in range(len(f.rows))]
    sizes = {kind: target(rate, len(coords)) for kind in spec.record_types}
    picks = allocate(rng, np.arange(len(coords)), sizes)
    col = {name: i for i, name in enumerate(header)}
    for kind, chosen in picks.items():
        counts[kind] = len(chosen)
        if kind == "duplicate":
            continue
        for c in chosen:
            d, i = coords[c]
            files[d].rows[i] = _corrupt_row(rng, kind, files[d].rows[i], spec, col)
    _insert_duplicates(rng, files, [coords[c] for c in picks["duplicate"]], {empty, drift})
    return files, counts


def _corrupt_row(
    rng: np.random.Generator, kind: str, row: list[str], spec: CsvDefects, col: dict[str, int]
) -> list[str]:
    row = list(row)
    if kind == "malformed_line":
        if rng.random() < 0.5:
            # A field lost in the middle; keeping the id and updated_at keeps the line unique, so it
            # can never pass for a duplicate of another version of the same entity.
            j = int(rng.integers(1, len(row) - 2))
            return row[:j] + row[j + 1 :]
        # An unquoted comma inside a text value: one field becomes two.
        j = int(rng.integers(1, len(row)))
        head, _, tail = row[j].partition(" ")
        return row[:j] + [head, tail] + row[j + 1 :]
    if kind == "bad_number":
        row[col[spec.numbers[int(rng.integers(len(spec.numbers)))]]] = BAD_NUMBERS[
            int(rng.integers(len(BAD_NUMBERS)))
        ]
    elif kind == "bad_date":
        j = col[spec.dates[int(rng.integers(len(spec.dates)))]]
        year = row[j][:4] if row[j][:4].isdigit() else "2026"
        row[j] = (f"{year}-13-45", "yesterday", f"31/02/{year}")[int(rng.integers(3))]
    elif kind == "null_key":
        row[col[spec.key]] = ""
    elif kind == "unknown_currency":
        row[col[spec.currency]] = UNKNOWN_CURRENCIES[int(rng.integers(len(UNKNOWN_CURRENCIES)))]
    return row


def _insert_duplicates(
    rng: np.random.Generator, files: list[CsvFile], sources: list[tuple[int, int]], excluded: set[int]
) -> None:
    """Repeat each source row later in its own file, or (30%) anywhere in a later normal file."""
    keyed = [[(float(i), row) for i, row in enumerate(f.rows)] for f in files]
    for d, i in sources:
        row = list(files[d].rows[i])
        later = [t for t in range(d + 1, len(files)) if t not in excluded]
        if later and rng.random() < 0.3:
            t = _choose_day(rng, later)
            keyed[t].append((rng.random() * len(files[t].rows) - 0.5, row))
        else:
            keyed[d].append((i + 0.5 + rng.random() * (len(files[d].rows) - 1 - i), row))
    for f, rows in zip(files, keyed, strict=True):
        f.rows = [row for _, row in sorted(rows, key=lambda kv: kv[0])]


# --- Parquet (Snowflake orders, Redshift behaviour) --------------------------------------------


@dataclass(frozen=True)
class TableDefects:
    """Where each defect goes in a daily Parquet source."""

    key: str
    drift_column: str
    drift_values: tuple[str, ...]
    currency: str | None = None  # unknown_currency
    amount: str | None = None  # negative_amount
    late_ts: str | None = None  # late_event: shifted 2-5 days before the partition date
    empty_file: bool = False

    @property
    def record_types(self) -> tuple[str, ...]:
        optional = (
            ("unknown_currency", self.currency),
            ("negative_amount", self.amount),
            ("late_event", self.late_ts),
        )
        return ("null_key", "duplicate") + tuple(k for k, on in optional if on)

    @property
    def types(self) -> tuple[str, ...]:
        return self.record_types + ("schema_drift",) + (("empty_file",) if self.empty_file else ())


def inject_table(
    rng: np.random.Generator, table: pa.Table, day: np.ndarray, n_days: int, spec: TableDefects, rate: float
) -> tuple[dict[int, pa.Table], dict[str, int]]:
    """Returns the table of each day that has a file (`table` must be sorted by `day`)."""
    counts = dict.fromkeys(spec.types, 0)
    day = day.copy()
    empty = drift = -1
    if rate > 0:
        if spec.empty_file:
            # As for CRM: the empty extract's rows arrive with the next day's extract.
            empty = int(rng.integers(1, n_days - 1))
            day[day == empty] = empty + 1
            counts["empty_file"] = 1
        drift = _choose_day(rng, sorted(set(np.unique(day).tolist()) - {empty}))
        counts["schema_drift"] = 1
        eligible = np.flatnonzero((day != empty) & (day != drift))
        picks = allocate(rng, eligible, {k: target(rate, len(eligible)) for k in spec.record_types})
        for kind, chosen in picks.items():
            counts[kind] = len(chosen)
            table = _corrupt_column(rng, table, kind, chosen, spec) if kind != "duplicate" else table
        table, day = _duplicate_rows(rng, table, day, picks["duplicate"])

    bounds = np.searchsorted(day, np.arange(n_days + 1))
    files = {}
    for d in range(n_days):
        part = table.slice(bounds[d], bounds[d + 1] - bounds[d])
        if d == drift:
            values = rng.integers(0, len(spec.drift_values), part.num_rows)
            part = part.append_column(
                spec.drift_column, pa.array([spec.drift_values[v] for v in values], pa.string())
            )
        if part.num_rows or d == empty:
            files[d] = part
    return files, counts


def _corrupt_column(
    rng: np.random.Generator, table: pa.Table, kind: str, rows: np.ndarray, spec: TableDefects
) -> pa.Table:
    name = {
        "null_key": spec.key,
        "unknown_currency": spec.currency,
        "negative_amount": spec.amount,
        "late_event": spec.late_ts,
    }[kind]
    column = table.column(name).combine_chunks()
    mask = np.zeros(table.num_rows, dtype=bool)
    mask[rows] = True
    if kind == "null_key":
        new = pc.if_else(pa.array(mask), pa.scalar(None, column.type), column)
    elif kind == "unknown_currency":
        codes = [UNKNOWN_CURRENCIES[i] for i in rng.integers(0, len(UNKNOWN_CURRENCIES), len(rows))]
        new = pc.replace_with_mask(column, pa.array(mask), pa.array(codes, column.type))
    elif kind == "negative_amount":
        new = pc.if_else(pa.array(mask), pc.negate(column), column)
    else:  # late_event: whole days earlier, so the event date is 2-5 days before its partition
        shift = np.zeros(table.num_rows, dtype=np.int64)
        shift[rows] = rng.integers(2, 6, len(rows)) * 86_400_000_000
        micros = column.cast(pa.int64()).to_numpy() - shift
        new = pa.array(micros, pa.int64()).cast(column.type)
    return table.set_column(table.schema.get_field_index(name), name, new)


def _duplicate_rows(
    rng: np.random.Generator, table: pa.Table, day: np.ndarray, sources: np.ndarray
) -> tuple[pa.Table, np.ndarray]:
    """Repeat each source row at a random later position of the same day's file."""
    day_end = np.searchsorted(day, day[sources], side="right")  # first row after the source's day
    position = np.concatenate(
        [np.arange(len(day), dtype=float), sources + 0.5 + rng.random(len(sources)) * (day_end - 1 - sources)]
    )
    index = np.concatenate([np.arange(len(day)), sources])
    order = index[np.argsort(position, kind="stable")]
    return table.take(pa.array(order)), day[order]


# --- FX vendor JSON ----------------------------------------------------------------------------

FX_TYPES = ("bad_number", "unknown_currency", "corrupt_file")


def inject_fx(rng: np.random.Generator, docs: list[dict], rate: float) -> tuple[int | None, dict[str, int]]:
    """Mutates the documents' rate maps; returns the index of the document to write truncated."""
    counts = dict.fromkeys(FX_TYPES, 0)
    if rate <= 0:
        return None, counts
    corrupt = int(rng.integers(len(docs)))
    counts["corrupt_file"] = 1
    entries = [(i, code) for i, doc in enumerate(docs) if i != corrupt for code in doc["rates"]]
    bad = allocate(rng, np.arange(len(entries)), {"bad_number": target(rate, len(entries))})["bad_number"]
    for c in bad:
        i, code = entries[c]
        docs[i]["rates"][code] = "N/A" if rng.random() < 0.5 else None
    counts["bad_number"] = len(bad)
    slots = [(i, code) for i in range(len(docs)) if i != corrupt for code in FX_UNKNOWN_CURRENCIES]
    chosen = allocate(rng, np.arange(len(slots)), {"unknown_currency": target(rate, len(entries))})[
        "unknown_currency"
    ]
    for c in chosen:
        i, code = slots[c]
        docs[i]["rates"] = dict(
            sorted((docs[i]["rates"] | {code: round(float(rng.uniform(0.5, 2.0)), 4)}).items())
        )
    counts["unknown_currency"] = len(chosen)
    return corrupt, counts


# --- Kafka product events ----------------------------------------------------------------------

KAFKA_TYPES = ("malformed_value", "null_key", "duplicate", "late_event", "out_of_order", "schema_drift")


def inject_kafka(
    rng: np.random.Generator, table: pa.Table, rate: float
) -> tuple[pa.Table, np.ndarray, dict[str, int]]:
    """Returns the records with defects (plus an `experiment_id` column, null unless drifted) and a
    mask of records whose serialised value must be truncated (malformed_value).

    `table` is sorted by (partition, kafka_ms) with non-decreasing event_ms per partition, so:
    out_of_order = event_ms below its predecessor's and within LATE_AFTER_MS of kafka_ms;
    late_event = event_ms at least LATE_AFTER_MS before kafka_ms; a duplicate directly follows its
    original (a producer retry) with the same event_ms, so it never counts as out of order.
    """
    n = table.num_rows
    counts = dict.fromkeys(KAFKA_TYPES, 0)
    experiment = pa.nulls(n, pa.string())
    if rate <= 0:
        return table.append_column("experiment_id", experiment), np.zeros(n, dtype=bool), counts
    partition = table.column("partition").to_numpy()
    kafka_ms = table.column("kafka_ms").to_numpy()
    event_ms = table.column("event_ms").to_numpy().copy()

    # Out-of-order first: each needs a clean predecessor in its partition, close enough in time
    # that moving the event just before the predecessor's event_ts cannot make it look late.
    ok = np.zeros(n, dtype=bool)
    ok[1:] = (partition[1:] == partition[:-1]) & (kafka_ms[1:] - event_ms[:-1] < LATE_AFTER_MS - 130_000)
    taken = np.zeros(n, dtype=bool)
    blocked = np.zeros(n, dtype=bool)
    out_of_order, wanted = [], target(rate, n)
    for i in rng.permutation(np.flatnonzero(ok)):
        if len(out_of_order) >= wanted:
            break
        if not (taken[i] or blocked[i] or taken[i - 1]):
            out_of_order.append(i)
            taken[i] = blocked[i - 1] = True
    out_of_order = np.sort(np.array(out_of_order, dtype=np.int64))
    event_ms[out_of_order] = event_ms[out_of_order - 1] - rng.integers(1_000, 120_000, len(out_of_order))
    counts["out_of_order"] = len(out_of_order)

    others = ("malformed_value", "null_key", "duplicate", "late_event", "schema_drift")
    picks = allocate(rng, np.flatnonzero(~taken & ~blocked), {k: target(rate, n) for k in others})
    counts.update({k: len(v) for k, v in picks.items()})
    late = picks["late_event"]
    event_ms[late] = kafka_ms[late] - rng.integers(LATE_AFTER_MS, 72 * 3_600_000, len(late))
    null_key = np.zeros(n, dtype=bool)
    null_key[picks["null_key"]] = True
    drift = np.zeros(n, dtype=bool)
    drift[picks["schema_drift"]] = True
    experiments = [f"exp-{int(v):03d}" for v in rng.integers(1, 40, int(drift.sum()))]
    experiment = pc.replace_with_mask(experiment, pa.array(drift), pa.array(experiments, pa.string()))
    malformed = np.zeros(n, dtype=bool)
    malformed[picks["malformed_value"]] = True

    table = table.set_column(table.schema.get_field_index("event_ms"), "event_ms", pa.array(event_ms))
    table = table.set_column(
        table.schema.get_field_index("event_id"),
        "event_id",
        pc.if_else(pa.array(null_key), pa.scalar(None, pa.string()), table.column("event_id")),
    ).append_column("experiment_id", experiment)

    # Producer retries: the copy is appended right after the original, slightly later.
    dup = picks["duplicate"]
    index = np.sort(np.concatenate([np.arange(n), dup]), kind="stable")
    table = table.take(pa.array(index))
    is_copy = np.zeros(len(index), dtype=bool)
    is_copy[1:] = index[1:] == index[:-1]
    kafka_ms = table.column("kafka_ms").to_numpy().copy()
    kafka_ms[is_copy] += rng.integers(1, 500, int(is_copy.sum()))
    part = table.column("partition").to_numpy()
    for p in np.unique(part):
        seg = part == p
        kafka_ms[seg] = np.maximum.accumulate(kafka_ms[seg])
    table = table.set_column(table.schema.get_field_index("kafka_ms"), "kafka_ms", pa.array(kafka_ms))
    return table, malformed[index] & ~is_copy, counts


# --- Hostile files (opt-in, for tests): files bronze must reject or flag, never choke on -----------

# One file per kind, added next to a generated landing zone's own files: (kind, dataset folder).
HOSTILE_FILES = (
    ("truncated_parquet", "snowflake/orders"),
    ("garbage_csv", "crm/contacts"),
    ("broken_gzip_json", "fx"),
    ("invalid_utf8_csv", "crm/accounts"),
)


def add_hostile_files(landing: Path) -> dict[str, Path]:
    """Add one hostile file of each kind to a generated landing zone (not part of its manifest):
    a Parquet unload cut in half, binary garbage named like a CRM export, a gzip FX file cut short,
    and a CRM export (a copy of the last one with rows) whose first row holds invalid UTF-8 bytes
    in its second column. Returns the path of each by kind."""
    added = {}
    for kind, folder in HOSTILE_FILES:
        root = landing / folder
        sources = sorted(p for p in root.rglob("*") if p.is_file() and p.stat().st_size > 0)
        source = sources[-1]
        if kind == "truncated_parquet":
            data = source.read_bytes()
            target_path = source.with_name("hostile_truncated.parquet")
            target_path.write_bytes(data[: len(data) // 2])
        elif kind == "garbage_csv":
            target_path = root / "contacts_29990101.csv"
            target_path.write_bytes(bytes(range(256)) * 4)
        elif kind == "broken_gzip_json":
            packed = gzip.compress(source.read_bytes())
            target_path = root / "rates_2999-01-01.json.gz"
            target_path.write_bytes(packed[: len(packed) // 2])
        else:
            header, first, *rest = source.read_bytes().split(b"\n")
            fields = first.split(b",")
            fields[1] = fields[1] + b"\xff\xfe"
            target_path = root / "accounts_29990101.csv"
            target_path.write_bytes(b"\n".join([header, b",".join(fields), *rest]))
        added[kind] = target_path
    return added
