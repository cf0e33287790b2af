"""The landing-zone generator: determinism, manifest truthfulness, defects, coherence, history.

Everything the manifest claims is re-derived here straight from the files with csv / pyarrow /
json, never through the generator's own code, so a bookkeeping bug cannot hide itself.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipeline import cli
from pipeline.generate import Volumes, generate
from pipeline.generate.defects import CsvFile
from pipeline.generate.writers import write_csv

SCALE = 0.01
DATASETS = {
    "crm_accounts",
    "crm_contacts",
    "crm_opportunities",
    "snowflake_orders",
    "redshift_behavior",
    "fx_rates",
    "kafka_events",
}
CSV_DATASETS = {"crm_accounts": "accounts", "crm_contacts": "contacts", "crm_opportunities": "opportunities"}
LATE_MS = 2 * 3_600_000  # the documented Kafka late_event threshold
# fmt: off
EXPECTED_DEFECTS = {
    "crm_accounts": {"malformed_line", "bad_number", "bad_date", "null_key", "duplicate", "schema_drift",
                     "empty_file"},
    "crm_contacts": {"malformed_line", "bad_date", "null_key", "duplicate", "schema_drift", "empty_file"},
    "crm_opportunities": {"malformed_line", "bad_number", "bad_date", "null_key", "duplicate",
                          "unknown_currency", "schema_drift", "empty_file"},
    "snowflake_orders": {"null_key", "duplicate", "unknown_currency", "negative_amount", "schema_drift",
                         "empty_file"},
    "redshift_behavior": {"null_key", "duplicate", "late_event", "schema_drift"},
    "fx_rates": {"bad_number", "unknown_currency", "corrupt_file"},
    "kafka_events": {"malformed_value", "null_key", "duplicate", "late_event", "out_of_order", "schema_drift"},
}
# fmt: on


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lake") / "landing"
    generate(root, scale=SCALE, seed=42)
    return root


@pytest.fixture(scope="module")
def manifest(landing: Path) -> dict:
    return json.loads((landing / "_manifest.json").read_text())


@pytest.fixture(scope="module")
def clean_landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clean") / "landing"
    generate(root, scale=SCALE, seed=42, defect_rate=0.0)
    return root


# --- independent readers -----------------------------------------------------------------------


def files_of(root: Path, dataset_path: str) -> list[Path]:
    return sorted(p for p in (root / dataset_path).rglob("*") if p.is_file())


def all_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def csv_records(path: Path) -> tuple[list[str] | None, list[list[str]]]:
    """(header, records); strict parsing proves the quoting is well-formed."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, strict=True))
    return (rows[0], rows[1:]) if rows else (None, [])


def kafka_records(root: Path) -> list[tuple[Path, dict]]:
    out = []
    for path in files_of(root, "kafka/product_events"):
        out.extend((path, json.loads(line)) for line in path.read_text().splitlines())
    return out


def parse_value(value: str) -> dict | None:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return None


def quoted_currencies(root: Path) -> set[str]:
    """Currencies the FX vendor quotes in every readable file (pass a defect-free landing)."""
    docs = [parse_value(p.read_text()) for p in files_of(root, "fx")]
    return set.intersection(*(set(d["rates"]) for d in docs if d)) | {"USD"}


def iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def independent_records(root: Path, manifest: dict, name: str) -> int:
    entry = manifest["datasets"][name]
    paths = files_of(root, entry["path"])
    if name in CSV_DATASETS:
        return sum(len(csv_records(p)[1]) for p in paths)
    if name in ("snowflake_orders", "redshift_behavior"):
        return sum(pq.read_metadata(p).num_rows for p in paths)
    if name == "fx_rates":
        total = 0
        for p in paths:
            try:
                total += len(json.loads(p.read_text())["rates"])
            except json.JSONDecodeError:
                total += 1  # a corrupt file counts as one record
        return total
    return sum(len(p.read_text().splitlines()) for p in paths)


# --- determinism -------------------------------------------------------------------------------


def test_same_seed_is_byte_identical(landing: Path, tmp_path: Path) -> None:
    again = tmp_path / "landing"
    generate(again, scale=SCALE, seed=42)
    assert all_bytes(again) == all_bytes(landing)


def test_different_seed_differs(landing: Path, manifest: dict, tmp_path: Path) -> None:
    other = tmp_path / "landing"
    generate(other, scale=SCALE, seed=7)
    a, b = all_bytes(landing), all_bytes(other)
    for entry in manifest["datasets"].values():
        # Quiet-day header-only CSVs may coincide; every dataset as a whole must differ.
        prefix = entry["path"] + "/"
        assert {k: v for k, v in a.items() if k.startswith(prefix)} != {
            k: v for k, v in b.items() if k.startswith(prefix)
        }, entry["path"]
    data_files = [k for k in set(a) & set(b) if k.endswith((".parquet", ".jsonl", ".json"))]
    assert all(a[k] != b[k] for k in data_files)


def test_regenerating_replaces_previous_output(landing: Path, tmp_path: Path) -> None:
    root = tmp_path / "landing"
    generate(root, scale=SCALE, seed=42, days=30)
    (root / "notes.txt").write_text("not the generator's")
    generate(root, scale=SCALE, seed=42)
    assert all_bytes(root) == {**all_bytes(landing), "notes.txt": all_bytes(root)["notes.txt"]}
    assert not [p for p in tmp_path.iterdir() if p.name != "landing"]  # no staging folder left


def test_regenerating_the_same_landing_zone_touches_no_file(tmp_path: Path) -> None:
    """Bronze takes a file whose modification time changed as a new delivery: generating the same
    data again (`make demo` twice) must leave every file as it was; a changed option rewrites
    only the files whose bytes differ."""
    root = tmp_path / "landing"
    generate(root, scale=0.002, seed=1, days=10)

    def stamps() -> dict[str, int]:
        return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}

    before = stamps()
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # an old time a rewrite would change
    generate(root, scale=0.002, seed=1, days=10)
    assert set(stamps()) == set(before) and set(stamps().values()) == {1_000_000_000}
    old_bytes = all_bytes(root)
    generate(root, scale=0.002, seed=1, days=10, defect_rate=0.2)
    new_bytes, after = all_bytes(root), stamps()
    rewritten = {k for k, v in after.items() if v != 1_000_000_000}
    assert rewritten == {k for k in new_bytes if old_bytes.get(k) != new_bytes[k]}
    assert set(new_bytes) - rewritten  # days without defects: the same bytes, left alone


# The default sample at SCALE, seed 42, by content (Parquet files by schema and rows, so a
# pyarrow upgrade that rewrites file metadata does not count). An option added to the generator
# must leave it as it is: every pinned figure and test fixture in the project rests on it.
DEFAULT_SAMPLE_SHA256 = "ae49595f8a2a811aa296b21adefd8f2aaf0f75fe49f2fe43b79040b61da36539"


def content_sha256(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            digest.update(repr((str(table.schema), table.to_pylist())).encode())
        else:
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_default_sample_is_unchanged(landing: Path) -> None:
    assert content_sha256(landing) == DEFAULT_SAMPLE_SHA256


def orders_by_first_delivery(root: Path) -> dict[str, tuple[str, str]]:
    """order_id -> (account_id, order date) from the order files, straight from Parquet."""
    first: dict[str, tuple[str, str]] = {}
    for path in files_of(root, "snowflake/orders"):
        table = pq.read_table(path)
        if not {"order_id", "account_id", "order_ts"} <= set(table.column_names):
            continue  # an empty or drifted unload
        for order, account, ts in zip(
            *(table[c].to_pylist() for c in ("order_id", "account_id", "order_ts")), strict=True
        ):
            if order and account and ts and order not in first:
                first[order] = (account, ts.date().isoformat())
    return first


def test_skew_puts_most_orders_on_a_few_accounts_and_one_day(
    landing: Path, manifest: dict, tmp_path: Path
) -> None:
    skewed = tmp_path / "landing"  # through the CLI, with generate()'s defaults spelled out
    args = ["generate", "--lake", str(tmp_path), "--scale", str(SCALE), "--seed", "42"]
    assert (
        cli.main([*args, "--defect-rate", "0.01", "--days", "90", "--end-date", "2026-09-30", "--skew"]) == 0
    )
    skewed_manifest = json.loads((skewed / "_manifest.json").read_text())

    def shares(root: Path) -> tuple[float, float, int]:
        """(share of the busiest 10 % of accounts, share of the busiest day, orders)."""
        orders = orders_by_first_delivery(root)
        accounts = Counter(a for a, _ in orders.values())
        days = Counter(d for _, d in orders.values())
        top = sum(n for _, n in accounts.most_common(Volumes.at(SCALE).accounts // 10))
        return top / len(orders), days.most_common(1)[0][1] / len(orders), len(orders)

    plain_top, plain_day, plain_n = shares(landing)
    top, day, n = shares(skewed)
    assert top > 0.5 and plain_top < 0.35  # a few accounts place most orders
    assert day > 0.2 and plain_day < 0.05  # one hot day
    assert abs(n - plain_n) <= 0.02 * plain_n  # the same volume, distributed differently
    assert skewed_manifest["skew"] is True and "skew" not in manifest
    # only the orders change
    a, b = all_bytes(landing), all_bytes(skewed)
    others = {k for k in a if not k.startswith("snowflake/") and k != "_manifest.json"}
    assert others and {k: a[k] for k in others} == {k: b[k] for k in others}


# --- manifest ----------------------------------------------------------------------------------


def test_manifest_header(manifest: dict, landing: Path) -> None:
    assert manifest["generator_version"] == 1
    assert (manifest["seed"], manifest["scale"], manifest["defect_rate"], manifest["days"]) == (
        42,
        SCALE,
        0.01,
        90,
    )
    assert (manifest["start_date"], manifest["end_date"]) == ("2026-07-03", "2026-09-30")
    assert set(manifest["datasets"]) == DATASETS
    text = (landing / "_manifest.json").read_text()
    assert text == json.dumps(manifest, sort_keys=True, indent=2) + "\n"


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_manifest_counts_match_files(landing: Path, manifest: dict, name: str) -> None:
    entry = manifest["datasets"][name]
    assert entry["files"] == len(files_of(landing, entry["path"]))
    assert entry["records"] == independent_records(landing, manifest, name)
    assert entry["records"] > 0


def test_volumes_scale_linearly(manifest: dict) -> None:
    # Scale-1 targets: ~1M records in total, of which 180k orders, 540k web and 230k Kafka events.
    records = {k: v["records"] for k, v in manifest["datasets"].items()}
    assert 1_700 <= records["snowflake_orders"] <= 2_000
    assert 5_000 <= records["redshift_behavior"] <= 6_000
    assert 2_100 <= records["kafka_events"] <= 2_500
    assert 60 <= records["crm_accounts"] <= 120


# --- defects -----------------------------------------------------------------------------------


def test_every_defect_type_present(manifest: dict) -> None:
    for name, types in EXPECTED_DEFECTS.items():
        defects = manifest["datasets"][name]["defects"]
        assert set(defects) == types, name
        assert all(count >= 1 for count in defects.values()), (name, defects)
        for file_level in ("schema_drift", "empty_file", "corrupt_file"):
            if file_level in defects and name != "kafka_events":  # Kafka drift is per record
                assert defects[file_level] == 1, (name, file_level)


def test_no_defects_when_rate_is_zero(clean_landing: Path) -> None:
    manifest = json.loads((clean_landing / "_manifest.json").read_text())
    for name, entry in manifest["datasets"].items():
        assert set(entry["defects"].values()) == {0}, name
        assert entry["records"] == independent_records(clean_landing, manifest, name)
    for name in CSV_DATASETS:
        for path in files_of(clean_landing, manifest["datasets"][name]["path"]):
            header, rows = csv_records(path)
            assert header is not None and all(len(r) == len(header) and r[0] for r in rows)
    for _, record in kafka_records(clean_landing):
        value = parse_value(record["value"])
        assert value is not None and value["event_id"] and "experiment_id" not in value
    for path in files_of(clean_landing, "fx"):
        rates = json.loads(path.read_text())["rates"]
        assert all(isinstance(v, float) for v in rates.values())


def test_csv_defects_match_files(landing: Path, manifest: dict, clean_landing: Path) -> None:
    fx_codes = quoted_currencies(clean_landing)
    for name, stem in CSV_DATASETS.items():
        entry = manifest["datasets"][name]
        paths = files_of(landing, entry["path"])
        base_header = csv_records(paths[0])[0]
        seen: set[tuple[str, ...]] = set()
        found = Counter()
        for path in paths:
            assert path.name.startswith(f"{stem}_") and path.suffix == ".csv"
            if path.stat().st_size == 0:
                found["empty_file"] += 1
                continue
            header, rows = csv_records(path)
            if header != base_header:
                assert header[:-1] == base_header  # one extra trailing column
                found["schema_drift"] += 1
                continue
            for row in rows:
                if tuple(row) in seen:
                    found["duplicate"] += 1
                elif len(row) != len(header):
                    found["malformed_line"] += 1
                elif row[0] == "":
                    found["null_key"] += 1
                elif "currency" in header and row[header.index("currency")] not in fx_codes:
                    found["unknown_currency"] += 1
                seen.add(tuple(row))
        defects = entry["defects"]
        for kind in ("duplicate", "malformed_line", "null_key", "unknown_currency", "schema_drift"):
            assert found[kind] == defects.get(kind, 0), (name, kind)
        # Accounts' empty export is 0 bytes; for contacts and opportunities it is header-only, which
        # at this scale is indistinguishable from a quiet day.
        assert found["empty_file"] == (1 if name == "crm_accounts" else 0)


def test_parquet_defects_match_files(landing: Path, manifest: dict, clean_landing: Path) -> None:
    fx_codes = quoted_currencies(clean_landing)
    orders = manifest["datasets"]["snowflake_orders"]
    tables = [pq.read_table(p) for p in files_of(landing, orders["path"])]
    assert sum(t.num_rows == 0 for t in tables) == orders["defects"]["empty_file"]
    assert sum("channel" in t.column_names for t in tables) == 1
    nulls = negative = unknown = dups = 0
    for t in tables:
        nulls += t["order_id"].null_count
        negative += pc.sum(pc.less(t["amount"], 0)).as_py() or 0
        unknown += sum(c not in fx_codes for c in t["currency"].to_pylist())
        rows = Counter(tuple(r.values()) for r in t.to_pylist())
        dups += sum(n - 1 for n in rows.values())
    assert (nulls, dups, unknown, negative) == tuple(
        orders["defects"][k] for k in ("null_key", "duplicate", "unknown_currency", "negative_amount")
    )

    behavior = manifest["datasets"]["redshift_behavior"]
    nulls = late = dups = drift = 0
    for path in files_of(landing, behavior["path"]):
        t = pq.read_table(path)
        assert path.name == "0000_part_00.parquet" and "event_date" not in t.column_names
        partition = date.fromisoformat(path.parent.name.removeprefix("event_date="))
        drift += "referrer" in t.column_names
        nulls += t["event_id"].null_count
        lags = Counter((partition - ts.date()).days for ts in t["event_ts"].to_pylist())
        late += sum(n for lag, n in lags.items() if 2 <= lag <= 5)
        assert set(lags) <= {0, 2, 3, 4, 5}
        dups += sum(n - 1 for n in Counter(t["event_id"].drop_null().to_pylist()).values())
        assert pc.all(pc.greater_equal(t["loaded_at"], t["event_ts"])).as_py()
    assert (nulls, dups, late, drift) == tuple(
        behavior["defects"][k] for k in ("null_key", "duplicate", "late_event", "schema_drift")
    )


def test_fx_defects_match_files(landing: Path, manifest: dict) -> None:
    entry = manifest["datasets"]["fx_rates"]
    corrupt = bad = unknown = 0
    for path in files_of(landing, "fx"):
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError:
            corrupt += 1
            continue
        assert doc["base"] == "USD" and path.name == f"rates_{doc['date']}.json" and "USD" not in doc["rates"]
        assert date.fromisoformat(doc["date"]).weekday() < 5
        bad += sum(not isinstance(v, float) for v in doc["rates"].values())
        unknown += sum(code in ("XXX", "ZZZ", "XYZ", "QQQ") for code in doc["rates"])
        assert 25 <= len(doc["rates"]) <= 40
    assert (corrupt, bad, unknown) == tuple(
        entry["defects"][k] for k in ("corrupt_file", "bad_number", "unknown_currency")
    )


def test_kafka_records_and_defects_match_files(landing: Path, manifest: dict) -> None:
    records = kafka_records(landing)
    by_partition: dict[int, list[tuple[Path, dict]]] = {}
    for path, record in records:
        by_partition.setdefault(record["partition"], []).append((path, record))
    assert set(by_partition) == {0, 1, 2}
    found = Counter()
    seen_ids: set[str] = set()
    for p, items in by_partition.items():
        assert [r["offset"] for _, r in items] == list(range(len(items)))  # contiguous from 0
        previous_ts: int | None = None
        for path, record in items:
            first_offset = int(path.stem.rsplit("-", 1)[1])
            assert path.stem.startswith(f"product_events-p{p}-") and first_offset <= record["offset"]
            assert record["topic"] == "product_events" and record["timestampType"] == 0
            value = parse_value(record["value"])
            if value is None:
                found["malformed_value"] += 1
                previous_ts = None
                continue
            found["schema_drift"] += "experiment_id" in value
            event_ts = iso_ms(value["event_ts"])
            if value["event_id"] is None:
                found["null_key"] += 1
            elif value["event_id"] in seen_ids:
                found["duplicate"] += 1
            else:
                seen_ids.add(value["event_id"])
                if iso_ms(record["timestamp"]) - event_ts >= LATE_MS:
                    found["late_event"] += 1
                elif previous_ts is not None and event_ts < previous_ts:
                    found["out_of_order"] += 1
            assert record["key"] in (None, value["account_id"])
            previous_ts = event_ts
    assert dict(found) == manifest["datasets"]["kafka_events"]["defects"]


# --- coherence and history ---------------------------------------------------------------------


def account_references(root: Path) -> tuple[set[str], list[str]]:
    """(account ids in the accounts export, account ids referenced by every other dataset)."""
    accounts = {row[0] for p in files_of(root, "crm/accounts") for row in csv_records(p)[1] if row and row[0]}
    referenced = []
    for path in files_of(root, "crm/contacts") + files_of(root, "crm/opportunities"):
        referenced += [row[1] for row in csv_records(path)[1] if len(row) > 1]
    for dataset in ("snowflake/orders", "redshift/behavior_events"):
        for path in files_of(root, dataset):
            referenced += pq.read_table(path, columns=["account_id"])["account_id"].to_pylist()
    referenced += [v["account_id"] for _, r in kafka_records(root) if (v := parse_value(r["value"]))]
    return accounts, referenced


def test_referential_coherence(landing: Path, clean_landing: Path) -> None:
    accounts, referenced = account_references(clean_landing)
    assert len(accounts) >= 20 and referenced
    assert all(a in accounts for a in referenced)
    # With defects, an account whose only export row lost its id orphans its activity: still most.
    accounts, referenced = account_references(landing)
    assert sum(a in accounts for a in referenced) >= 0.95 * len(referenced)


def test_history_covers_the_requested_days(landing: Path, manifest: dict) -> None:
    start, end = date(2026, 7, 3), date(2026, 9, 30)
    expected = {start + timedelta(days=i) for i in range(90)}
    for stem in CSV_DATASETS.values():
        dates = {
            datetime.strptime(p.stem.split("_")[1], "%Y%m%d").date() for p in files_of(landing, f"crm/{stem}")
        }
        assert dates == expected
    order_days = {
        date.fromisoformat(p.parent.name.split("=")[1]) for p in files_of(landing, "snowflake/orders")
    }
    assert order_days == expected
    event_days = {
        date.fromisoformat(p.parent.name.split("=")[1]) for p in files_of(landing, "redshift/behavior_events")
    }
    assert event_days == expected
    kafka_days = {
        datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")).date()
        for _, r in kafka_records(landing)
    }
    assert min(kafka_days) == start and max(kafka_days) == end and len(kafka_days) >= 85


def test_other_period_and_crm_first_day_is_full(tmp_path: Path) -> None:
    manifest = generate(tmp_path / "landing", scale=SCALE, seed=3, days=14, end_date=date(2025, 1, 15))
    assert (manifest["start_date"], manifest["end_date"]) == ("2025-01-02", "2025-01-15")
    accounts = files_of(tmp_path / "landing", "crm/accounts")
    assert [p.name for p in accounts][0] == "accounts_20250102.csv" and len(accounts) == 14
    _, first_day = csv_records(accounts[0])
    assert len(first_day) >= 0.8 * 50  # the full export holds (nearly) every one of the 50 accounts


def test_csv_quoting_round_trips(tmp_path: Path) -> None:
    rows = [["ACC-1", 'Smith, Jones & "Partners"', "Renewal\nNotes: multi-year", " US ", ""]]
    path = tmp_path / "x.csv"
    assert write_csv(path, CsvFile(["a", "b", "c", "d", "e"], rows)) == 1
    assert csv_records(path) == (["a", "b", "c", "d", "e"], rows)
    assert '"Smith, Jones & ""Partners"""' in path.read_text()
