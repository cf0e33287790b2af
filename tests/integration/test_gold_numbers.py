"""Gold numbers against an independent computation over the landing files.

The whole DAG (bronze, silver, gold) runs once on a copy of the generated landing zone. The
expected numbers are computed here from the LANDING files only (csv/json/pyarrow/pandas), never
from bronze or silver and never with the pipeline's transforms, re-implementing just enough of
the contracts and business rules:

- cleaning: a record breaking any contract rule (malformed line or JSON, missing key or required
  value, unparseable value, value outside its allowed list / reference / pattern / range) is
  dropped before anything else;
- dedup: orders and CRM current state keep the latest `updated_at` per key, events the latest
  by their load/broker time per event id, FX one rate per (date, currency), accounts keep one
  version per (account, updated_at) and a new SCD2 version only when a tracked attribute or the
  deletion flag changes;
- accounts as of an order: the version with valid_from <= order_ts < valid_to; none (the order
  is older than the account's first version) -> segment and country unknown (null in
  fct_orders, `unknown` in revenue_daily), the account still known;
- FX: rate_to_usd = 1 / units_per_usd (12 decimals, half-up); the rate used for a day is the
  currency's latest rate on or before it (after the last rate: the latest one), USD is 1 on
  every day, no rate on or before the day -> amount_usd null (fx_missing); USD amounts are
  rounded half-up to cents per row.
"""

from __future__ import annotations

import csv
import json
import re
from bisect import bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.driver.dag import load_dag
from pipeline.jobs import JOBS
from tests.helpers import REPO

pytestmark = pytest.mark.slow

DAG = load_dag(REPO / "config" / "pipeline.yaml", set(JOBS))
MARTS = ("fct_orders", "revenue_daily", "pipeline_summary", "customer_360", "engagement_daily")

CENT = Decimal("0.01")
TOLERANCE = Decimal("0.01")  # per row; group sums allow one cent per contributing row
CURRENCIES = frozenset(
    yaml.safe_load((REPO / "config" / "reference" / "currencies.yaml").read_text())["currencies"]
)
SEGMENTS = {"Enterprise", "Mid-Market", "SMB"}
STAGES = {"Prospecting", "Qualification", "Proposal", "Negotiation", "Closed Won", "Closed Lost"}
CLOSED = {"Closed Won", "Closed Lost"}
ORDER_STATUSES = {"pending", "placed", "shipped", "cancelled", "returned"}
REVENUE = {"placed", "shipped"}
WEB_TYPES = {"page_view", "click", "search", "add_to_cart", "signup", "download"}
PRODUCT_TYPES = {"feature_used", "item_viewed", "item_added", "checkout_started", "subscription_changed"}
# Country spellings a CRM user may type, to ISO 3166-1 alpha-2 (written here, not imported).
COUNTRY_NAMES = {
    "UNITED STATES": "US", "USA": "US", "U.S.": "US", "UNITED KINGDOM": "GB", "UK": "GB",
    "GREAT BRITAIN": "GB", "GERMANY": "DE", "DEUTSCHLAND": "DE", "FRANCE": "FR", "CANADA": "CA",
    "AUSTRALIA": "AU", "INDIA": "IN", "BRAZIL": "BR", "NETHERLANDS": "NL", "JAPAN": "JP",
    "IRELAND": "IE", "SWITZERLAND": "CH", "SINGAPORE": "SG", "MEXICO": "MX", "ITALY": "IT",
    "SWEDEN": "SE", "SPAIN": "ES", "POLAND": "PL",
}  # fmt: skip
ACCOUNT_ID = re.compile(r"ACC-[0-9]{6}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
INTEGER = re.compile(r"[+-]?\d+")
TRACKED = ("account_name", "industry", "segment", "country", "owner_email", "annual_revenue", "is_deleted")


class Bad(Exception):
    """The record breaks a contract rule: it never reaches silver."""


# --- value parsing (the contract's types and rules) ---------------------------------------------


def text(value, *, trim=True, case=None, required=False, pattern=None, allowed=None):
    if value is not None and not isinstance(value, str):
        raise Bad(f"not text: {value!r}")
    if value is not None:
        value = value.strip(" ") if trim else value
        value = value.upper() if case == "upper" else value.lower() if case == "lower" else value
    value = value or None  # an empty string is a missing value
    if value is None:
        if required:
            raise Bad("missing")
        return None
    if pattern is not None and not pattern.fullmatch(value):
        raise Bad(f"pattern: {value!r}")
    if allowed is not None and value not in allowed:
        raise Bad(f"not allowed: {value!r}")
    return value


def timestamp(value, required=True) -> datetime | None:
    """ISO-8601 text (or an Arrow/pandas timestamp) -> aware UTC datetime."""
    if isinstance(value, str):
        value = value.strip(" ") or None
    if value is None:
        if required:
            raise Bad("missing timestamp")
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise Bad(f"unparseable timestamp {value!r}") from exc
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def day(value: str | None) -> date:
    if value is None or not value.strip(" "):
        raise Bad("missing date")
    try:
        return date.fromisoformat(value.strip(" "))
    except ValueError as exc:
        raise Bad(f"unparseable date {value!r}") from exc


def decimal(value, scale: int = 2, required=True, minimum=None) -> Decimal | None:
    if isinstance(value, str):
        value = value.strip(" ") or None
    if value is None:
        if required:
            raise Bad("missing number")
        return None
    if isinstance(value, str) and not NUMBER.fullmatch(value):
        raise Bad(f"unparseable number {value!r}")
    try:
        number = Decimal(value).quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:
        raise Bad(f"unparseable number {value!r}") from exc
    if minimum is not None and number < minimum:
        raise Bad(f"below min: {number}")
    return number


def integer(value: str | None, lo: int, hi: int) -> int:
    value = (value or "").strip(" ")
    if not INTEGER.fullmatch(value):
        raise Bad(f"unparseable int {value!r}")
    number = int(value)
    if not lo <= number <= hi:
        raise Bad(f"out of range {number}")
    return number


def boolean(value: str | None) -> bool:
    value = (value or "").strip(" ").lower()
    if value in ("true", "t", "yes", "y", "1"):
        return True
    if value in ("false", "f", "no", "n", "0"):
        return False
    raise Bad(f"not a boolean {value!r}")


def country(value: str | None) -> str:
    code = (value or "").strip(" ").upper()
    return text(COUNTRY_NAMES.get(code, code), required=True, pattern=re.compile(r"[A-Z]{2}"))


def usd(amount: Decimal, rate: Decimal | None) -> Decimal | None:
    return None if rate is None else (amount * rate).quantize(CENT, rounding=ROUND_HALF_UP)


def cleaned(records, parse) -> list[dict]:
    out = []
    for record in records:
        try:
            out.append(parse(record))
        except Bad:
            continue
    return out


# --- landing readers -----------------------------------------------------------------------------


def crm_records(folder: Path) -> list[dict]:
    """Every CSV record of a CRM export folder, by its own file's header; a line whose field count
    differs from the header's is malformed and dropped."""
    records = []
    for path in sorted(folder.glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header:
                continue
            header[0] = header[0].lstrip("\ufeff")
            for pos, row in enumerate(reader):
                if row and len(row) == len(header):
                    records.append({**dict(zip(header, row, strict=True)), "_file": path.name, "_pos": pos})
    return records


def parquet_records(folder: Path, columns: list[str]) -> list[dict]:
    records = []
    for path in sorted(folder.rglob("*.parquet")):
        table = pq.read_table(path, columns=columns)
        for pos, row in enumerate(table.to_pylist()):
            records.append({**row, "_file": str(path.relative_to(folder)), "_pos": pos})
    return records


def kafka_records(folder: Path) -> list[dict]:
    """Kafka replay lines -> the event fields plus the broker coordinates; a line or value that is
    not JSON, or a value that is not an event object, is dropped."""
    records = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                event = json.loads(record["value"])
            except (ValueError, KeyError, TypeError):
                continue
            if not isinstance(record, dict) or not isinstance(event, dict):
                continue
            records.append({**event, "_kafka": record})
    return records


def fx_records(folder: Path) -> list[dict]:
    """Vendor files -> one record per (date, currency); an unreadable file is dropped whole."""
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
        except ValueError:
            continue
        rates = doc.get("rates") if isinstance(doc, dict) else None
        if not isinstance(rates, dict) or not rates:
            continue
        for code, rate in rates.items():
            records.append(
                {"base": doc.get("base"), "rate_date": doc.get("date"), "currency": code, "rate": rate}
            )
    return records


# --- per-dataset cleaning ------------------------------------------------------------------------


def parse_account(r: dict) -> dict:
    return {
        "account_id": text(r["account_id"], case="upper", required=True, pattern=ACCOUNT_ID),
        "account_name": text(r["account_name"], required=True),
        "industry": text(r["industry"]),
        "segment": text(r["segment"], required=True, allowed=SEGMENTS),
        "country": country(r["country"]),
        "owner_email": text(r["owner_email"], case="lower", pattern=EMAIL),
        "annual_revenue": decimal(r["annual_revenue"], required=False, minimum=0),
        "created_at": timestamp(r["created_at"]),
        "updated_at": timestamp(r["updated_at"]),
        "is_deleted": boolean(r["is_deleted"]),
    }


def parse_contact(r: dict) -> dict:
    text(r["email"], case="lower", pattern=EMAIL)
    timestamp(r["created_at"])
    return {
        "contact_id": text(r["contact_id"], case="upper", required=True, pattern=re.compile(r"CON-[0-9]{7}")),
        "account_id": text(r["account_id"], case="upper", required=True, pattern=ACCOUNT_ID),
        "updated_at": timestamp(r["updated_at"]),
        "is_deleted": boolean(r["is_deleted"]),
    }


def parse_opportunity(r: dict) -> dict:
    timestamp(r["created_at"])
    return {
        "opportunity_id": text(
            r["opportunity_id"], case="upper", required=True, pattern=re.compile(r"OPP-[0-9]{6}")
        ),
        "account_id": text(r["account_id"], case="upper", required=True, pattern=ACCOUNT_ID),
        "stage": text(r["stage"], required=True, allowed=STAGES),
        "amount": decimal(r["amount"], minimum=0),
        "currency": text(r["currency"], case="upper", required=True, allowed=CURRENCIES),
        "probability": integer(r["probability"], 0, 100),
        "close_date": day(r["close_date"]),
        "updated_at": timestamp(r["updated_at"]),
        "is_deleted": boolean(r["is_deleted"]),
    }


def parse_order(r: dict) -> dict:
    order_ts = timestamp(r["order_ts"])
    return {
        "order_id": text(r["order_id"], case="upper", required=True, pattern=re.compile(r"ORD-[0-9]{7}")),
        "account_id": text(r["account_id"], case="upper", required=True, pattern=ACCOUNT_ID),
        "order_ts": order_ts,
        "order_date": order_ts.date(),
        "status": text(r["status"], case="lower", required=True, allowed=ORDER_STATUSES),
        "currency": text(r["currency"], case="upper", required=True, allowed=CURRENCIES),
        "amount": decimal(r["amount"], minimum=0),
        "updated_at": timestamp(r["updated_at"]),
    }


def parse_web_event(r: dict) -> dict:
    event_ts = timestamp(r["event_ts"])
    text(r["session_id"])
    return {
        "event_id": text(r["event_id"], case="lower", required=True),
        "account_id": text(r["account_id"], case="upper", pattern=ACCOUNT_ID),
        "user_id": text(r["user_id"], required=True),
        "event_type": text(r["event_type"], case="lower", required=True, allowed=WEB_TYPES),
        "event_ts": event_ts,
        "event_date": event_ts.date(),
        "seq": timestamp(r["loaded_at"]),
    }


def parse_product_event(r: dict) -> dict:
    kafka = r["_kafka"]
    event_ts = timestamp(r.get("event_ts"))
    for field in ("topic", "partition", "offset"):
        if kafka.get(field) is None:
            raise Bad(f"missing {field}")
    if r.get("properties") is not None and not isinstance(r["properties"], dict):
        raise Bad("properties is not a map")
    text(r.get("product_id"))
    return {
        "event_id": text(r.get("event_id"), case="lower", required=True),
        "account_id": text(r.get("account_id"), case="upper", pattern=ACCOUNT_ID),
        "user_id": text(r.get("user_id")),
        "event_type": text(r.get("event_type"), case="lower", required=True, allowed=PRODUCT_TYPES),
        "event_ts": event_ts,
        "event_date": event_ts.date(),
        "seq": timestamp(kafka.get("timestamp")),
    }


def parse_fx(r: dict) -> dict:
    rate = r["rate"]
    if isinstance(rate, str) and not NUMBER.fullmatch(rate.strip(" ")):
        raise Bad(f"unparseable rate {rate!r}")
    units = decimal(rate, scale=10)
    if units <= 0:
        raise Bad("rate not above 0")
    text(r["base"], trim=False, required=True, allowed={"USD"})
    with localcontext() as ctx:
        ctx.prec = 60
        rate_to_usd = (Decimal(1) / units).quantize(Decimal("1e-12"), rounding=ROUND_HALF_UP)
    return {
        "rate_date": day(r["rate_date"]),
        "currency": text(r["currency"], case="upper", required=True, allowed=CURRENCIES),
        "rate_to_usd": rate_to_usd,
    }


def latest(rows: list[dict], key: str, seq: str) -> dict[str, dict]:
    """One row per key: the one with the greatest sequence value."""
    out: dict[str, dict] = {}
    for row in rows:
        k = row[key]
        if k not in out or row[seq] > out[k][seq]:
            out[k] = row
    return out


# --- the independent model ------------------------------------------------------------------------


@dataclass
class Version:
    valid_from: datetime
    valid_to: datetime | None
    segment: str
    country: str
    is_deleted: bool


class Fx:
    """Latest rate on or before a day, per currency; USD is 1 on every day."""

    def __init__(self, rows: list[dict]):
        by_key = {(r["rate_date"], r["currency"]): r["rate_to_usd"] for r in rows}
        series: dict[str, list[tuple[date, Decimal]]] = defaultdict(list)
        for (d, code), rate in sorted(by_key.items()):
            series[code].append((d, rate))
        self.days = {c: [d for d, _ in s] for c, s in series.items()}
        self.rates = {c: [r for _, r in s] for c, s in series.items()}

    def rate(self, currency: str, on: date) -> Decimal | None:
        if currency == "USD":
            return Decimal(1)
        i = bisect_right(self.days.get(currency, []), on)
        return self.rates[currency][i - 1] if i else None


class Landing:
    def __init__(self, root: Path):
        self.accounts = self._accounts(cleaned(crm_records(root / "crm" / "accounts"), parse_account))
        self.current_accounts = {
            a: vs[-1] for a, vs in self.accounts.items() if vs[-1].valid_to is None and not vs[-1].is_deleted
        }
        self.contacts = self._current_state(
            cleaned(crm_records(root / "crm" / "contacts"), parse_contact), "contact_id"
        )
        self.opportunities = self._current_state(
            cleaned(crm_records(root / "crm" / "opportunities"), parse_opportunity), "opportunity_id"
        )
        self.fx = Fx(cleaned(fx_records(root / "fx"), parse_fx))
        order_columns = ["order_id", "account_id", "order_ts", "status", "currency", "amount", "updated_at"]
        orders = cleaned(parquet_records(root / "snowflake" / "orders", order_columns), parse_order)
        self.orders = list(latest(orders, "order_id", "updated_at").values())
        web_columns = [
            "event_id",
            "account_id",
            "user_id",
            "session_id",
            "event_type",
            "event_ts",
            "loaded_at",
        ]
        web = cleaned(parquet_records(root / "redshift" / "behavior_events", web_columns), parse_web_event)
        product = cleaned(kafka_records(root / "kafka" / "product_events"), parse_product_event)
        self.web = pd.DataFrame(list(latest(web, "event_id", "seq").values()))
        self.product = pd.DataFrame(list(latest(product, "event_id", "seq").values()))
        self.as_of = max(self.web["event_date"].max(), self.product["event_date"].max())

    @staticmethod
    def _current_state(rows: list[dict], key: str) -> dict[str, dict]:
        """Latest version per key; a key whose latest version is deleted is gone."""
        return {k: r for k, r in latest(rows, key, "updated_at").items() if not r["is_deleted"]}

    @staticmethod
    def _accounts(rows: list[dict]) -> dict[str, list[Version]]:
        """SCD2: versions by updated_at; a row starts a version only when a tracked attribute or the
        deletion flag differs from the previous row's; valid_to is the next version's valid_from."""
        by_account: dict[str, dict[datetime, dict]] = defaultdict(dict)
        for row in rows:
            by_account[row["account_id"]][row["updated_at"]] = row  # re-deliveries collapse
        history = {}
        for account, versions in by_account.items():
            kept, previous = [], None
            for ts in sorted(versions):
                row = versions[ts]
                fingerprint = tuple(row[c] for c in TRACKED)
                if fingerprint != previous:
                    kept.append(row)
                previous = fingerprint
            history[account] = [
                Version(
                    row["updated_at"],
                    kept[i + 1]["updated_at"] if i + 1 < len(kept) else None,
                    row["segment"],
                    row["country"],
                    row["is_deleted"],
                )
                for i, row in enumerate(kept)
            ]
        return history

    def version_at(self, account_id: str, at: datetime) -> Version | None:
        """The version in force at `at`; None for an unknown account or before its first version."""
        versions = self.accounts.get(account_id, [])
        for v in versions:
            if v.valid_from <= at and (v.valid_to is None or at < v.valid_to):
                return v
        assert not versions or at < versions[0].valid_from, (account_id, at)
        return None

    def fct_orders(self) -> pd.DataFrame:
        rows = []
        for o in self.orders:
            rate = self.fx.rate(o["currency"], o["order_date"])
            version = self.version_at(o["account_id"], o["order_ts"])
            rows.append(
                {
                    **o,
                    "amount_usd": usd(o["amount"], rate),
                    "fx_missing": rate is None,
                    "segment": version.segment if version else None,
                    "country": version.country if version else None,
                    "account_known": o["account_id"] in self.accounts,
                }
            )
        return pd.DataFrame(rows)

    def opportunities_usd(self) -> pd.DataFrame:
        rows = []
        for o in self.opportunities.values():
            amount_usd = usd(o["amount"], self.fx.rate(o["currency"], o["close_date"]))
            weighted = (
                None
                if amount_usd is None
                else (amount_usd * o["probability"] / 100).quantize(CENT, rounding=ROUND_HALF_UP)
            )
            current = self.current_accounts.get(o["account_id"])
            rows.append(
                {
                    **o,
                    "is_open": o["stage"] not in CLOSED,
                    "amount_usd": amount_usd,
                    "weighted_amount_usd": weighted,
                    "segment": current.segment if current else None,
                }
            )
        return pd.DataFrame(rows)


# --- helpers to compare ---------------------------------------------------------------------------


def dsum(values) -> Decimal:
    """Sum of the non-null decimals (0 when none), as the marts' USD sums."""
    return sum((v for v in values if v is not None and not pd.isna(v)), Decimal(0))


def close(actual, expected, tolerance: Decimal = TOLERANCE) -> bool:
    if expected is None or actual is None:
        return actual is None and expected is None
    return abs(Decimal(actual) - Decimal(expected)) <= tolerance


def key(value):
    """Group keys with nulls, comparable across pandas and Spark rows."""
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


def epoch(value: datetime | None) -> float | None:
    """Spark hands back naive local datetimes; ours are aware UTC: compare instants."""
    return None if value is None else value.timestamp()


def assert_no_diffs(diffs: list, what: str, total: int) -> None:
    assert not diffs, f"{what}: {len(diffs)} of {total} differ, e.g. {diffs[:5]}"


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gold(pipeline_run):
    ctx = pipeline_run[0]  # the whole DAG, run once on the generated landing zone
    return {
        name: [r.asDict() for r in ctx.lake.read(ctx.table_path("gold", name)).collect()] for name in MARTS
    }


@pytest.fixture(scope="module")
def landing(generated_landing) -> Landing:
    return Landing(generated_landing)


@pytest.fixture(scope="module")
def fct(landing) -> pd.DataFrame:
    return landing.fct_orders()


# --- checks -------------------------------------------------------------------------------------------


def test_fct_orders_has_one_row_per_clean_latest_order(gold, fct):
    actual = [r["order_id"] for r in gold["fct_orders"]]
    assert len(actual) == len(set(actual))
    assert set(actual) == set(fct["order_id"])


def test_fct_orders_latest_state_and_usd_amount_per_order(gold, fct, landing):
    expected = fct.set_index("order_id").to_dict("index")
    diffs = []
    for row in gold["fct_orders"]:
        exp = expected[row["order_id"]]
        for col in ("account_id", "status", "currency", "amount", "order_date", "fx_missing"):
            if row[col] != exp[col]:
                diffs.append((row["order_id"], col, row[col], exp[col]))
        if not close(row["amount_usd"], exp["amount_usd"]):
            diffs.append((row["order_id"], "amount_usd", row["amount_usd"], exp["amount_usd"]))
        if row["fx_missing"] and row["amount_usd"] is not None:
            diffs.append((row["order_id"], "fx_missing with an amount_usd", row["amount_usd"]))
    assert_no_diffs(diffs, "fct_orders amounts", len(expected))
    # The data exercises the rule: orders before the first rate (missing FX), and non-USD orders on
    # days without a published rate (weekends) priced with the previous rate.
    assert fct["fx_missing"].any()
    rate_days = set(landing.fx.days["EUR"])
    carried = [
        o
        for o in fct.itertuples()
        if o.currency != "USD" and not o.fx_missing and o.order_date not in rate_days
    ]
    assert carried


def test_fct_orders_segment_and_country_as_of_the_order_time(gold, fct, landing):
    expected = fct.set_index("order_id").to_dict("index")
    diffs = [
        (row["order_id"], row["account_id"], col, row[col], expected[row["order_id"]][col])
        for row in gold["fct_orders"]
        for col in ("segment", "country", "account_known")
        if row[col] != expected[row["order_id"]][col]
    ]
    assert_no_diffs(diffs, "fct_orders as-of account attributes", len(expected))
    # The data exercises every branch of the as-of rule: orders whose version at order time is not
    # the account's latest, orders placed before the account's first version (known account,
    # unknown attributes), unknown accounts.
    known = fct[fct["account_known"]]
    latest_version = {a: vs[-1] for a, vs in landing.accounts.items()}
    assert any(
        o.segment is not None
        and (o.segment, o.country)
        != (latest_version[o.account_id].segment, latest_version[o.account_id].country)
        for o in known.itertuples()
    )
    assert any(o.order_ts < landing.accounts[o.account_id][0].valid_from for o in known.itertuples())
    assert (~fct["account_known"]).any()


def test_dq_counts_orders_with_no_account_version_in_force(pipeline_run, landing):
    """The warn rule's observed count is the number of orders older than their (known) account's
    first version, counted here from the landing files; it never fails the step."""
    ctx, _, steps = pipeline_run
    expected = sum(
        1
        for o in landing.orders
        if o["account_id"] in landing.accounts
        and o["order_ts"] < landing.accounts[o["account_id"]][0].valid_from
    )
    assert expected > 0
    [result] = [
        r for r in steps["gold_fct_orders"].details["dq"] if r["rule"] == "count:account_version_missing"
    ]
    assert (result["severity"], result["passed"]) == ("warn", False)
    assert result["observed"] == f"{expected} of {len(landing.orders)} rows"


def test_revenue_daily_matches_groupby_over_placed_and_shipped_orders(gold, fct):
    revenue = fct[fct["status"].isin(REVENUE)]
    # Unknown country/segment (unknown account, or no version in force) are shown as `unknown`.
    labelled = revenue.assign(
        country=revenue["country"].fillna("unknown"), segment=revenue["segment"].fillna("unknown")
    )
    assert (labelled["segment"] == "unknown").any()
    grouped = labelled.groupby(["order_date", "country", "segment"], dropna=False).agg(
        revenue_usd=("amount_usd", dsum),
        order_count=("order_id", "size"),
        orders_missing_fx=("fx_missing", "sum"),
    )
    expected = {tuple(key(k) for k in idx): row for idx, row in grouped.iterrows()}
    actual = {(r["order_date"], r["country"], r["segment"]): r for r in gold["revenue_daily"]}
    assert set(actual) == set(expected)
    diffs = []
    for k, exp in expected.items():
        row = actual[k]
        if row["order_count"] != exp["order_count"] or row["orders_missing_fx"] != exp["orders_missing_fx"]:
            diffs.append((k, row["order_count"], exp["order_count"]))
        if not close(row["revenue_usd"], exp["revenue_usd"], TOLERANCE * int(exp["order_count"])):
            diffs.append((k, row["revenue_usd"], exp["revenue_usd"]))
    assert_no_diffs(diffs, "revenue_daily", len(expected))
    total = sum(r["revenue_usd"] for r in gold["revenue_daily"])
    assert abs(total - dsum(revenue["amount_usd"])) <= Decimal("1e-9") * max(total, Decimal(1))


def test_pipeline_summary_open_opportunities_by_stage_and_segment(gold, landing):
    """Current-state opportunities (latest version; soft-deleted ones are gone), open stages only,
    USD as of the close date, segment of the account's current version (`unknown` if none)."""
    opps = landing.opportunities_usd().fillna({"segment": "unknown"})
    open_opps = opps[opps["is_open"]].assign(fx_missing=lambda df: df["amount_usd"].isna())
    grouped = open_opps.groupby(["stage", "segment"], dropna=False).agg(
        opportunity_count=("opportunity_id", "size"),
        amount_usd=("amount_usd", dsum),
        weighted_amount_usd=("weighted_amount_usd", dsum),
        opportunities_missing_fx=("fx_missing", "sum"),
    )
    expected = {tuple(key(k) for k in idx): row for idx, row in grouped.iterrows()}
    actual = {(r["stage"], r["segment"]): r for r in gold["pipeline_summary"]}
    assert set(actual) == set(expected)
    diffs = []
    for k, exp in expected.items():
        row, tol = actual[k], TOLERANCE * int(exp["opportunity_count"])
        for col in ("opportunity_count", "opportunities_missing_fx"):
            if row[col] != exp[col]:
                diffs.append((k, col, row[col], exp[col]))
        for col in ("amount_usd", "weighted_amount_usd"):
            if not close(row[col], exp[col], tol):
                diffs.append((k, col, row[col], exp[col]))
    assert_no_diffs(diffs, "pipeline_summary", len(expected))
    # Close dates run past the last published rate, so the latest-rate rule is exercised.
    assert (open_opps["close_date"] > max(max(d) for d in landing.fx.days.values())).any()


def test_customer_360_as_of_is_the_latest_event_date(gold, landing):
    assert {r["as_of_date"] for r in gold["customer_360"]} == {landing.as_of}


def test_customer_360_one_row_per_current_account_with_its_numbers(gold, landing, fct):
    as_of = landing.as_of
    start = as_of - timedelta(days=30)  # exclusive
    revenue = fct[fct["status"].isin(REVENUE)].groupby("account_id")
    lifetime = revenue["amount_usd"].agg(dsum).to_dict()
    order_count = revenue.size().to_dict()
    last_order = revenue["order_date"].max().to_dict()
    opps = landing.opportunities_usd()
    open_by_account = opps[opps["is_open"]].groupby("account_id")
    pipeline = open_by_account["amount_usd"].agg(dsum).to_dict()
    open_count = open_by_account.size().to_dict()
    contacts = Counter(c["account_id"] for c in landing.contacts.values())

    def in_window(events: pd.DataFrame) -> dict:
        e = events[
            events["account_id"].notna() & (events["event_date"] > start) & (events["event_date"] <= as_of)
        ]
        return e.groupby("account_id").size().to_dict()

    web_30d, product_30d = in_window(landing.web), in_window(landing.product)
    # Both window edges are populated: events on as_of - 30 (out) and on as_of (in).
    assert (landing.web["event_date"] == start).any() and (landing.web["event_date"] == as_of).any()
    both = pd.concat([landing.web, landing.product])
    both = both[both["account_id"].notna() & (both["event_date"] <= as_of)]
    last_activity = both.groupby("account_id")["event_ts"].max().to_dict()

    actual = {r["account_id"]: r for r in gold["customer_360"]}
    assert set(actual) == set(landing.current_accounts)
    diffs = []
    for account, row in actual.items():
        expected = {
            "segment": landing.current_accounts[account].segment,
            "country": landing.current_accounts[account].country,
            "order_count": order_count.get(account, 0),
            "last_order_date": last_order.get(account),
            "active_contacts": contacts.get(account, 0),
            "web_events_30d": web_30d.get(account, 0),
            "product_events_30d": product_30d.get(account, 0),
        }
        diffs += [(account, c, row[c], v) for c, v in expected.items() if row[c] != v]
        tol = TOLERANCE * max(1, expected["order_count"])
        if not close(row["lifetime_revenue_usd"], lifetime.get(account, Decimal(0)), tol):
            diffs.append(
                (account, "lifetime_revenue_usd", row["lifetime_revenue_usd"], lifetime.get(account))
            )
        tol = TOLERANCE * max(1, open_count.get(account, 0))
        if not close(row["open_pipeline_usd"], pipeline.get(account, Decimal(0)), tol):
            diffs.append((account, "open_pipeline_usd", row["open_pipeline_usd"], pipeline.get(account)))
        exp_ts = last_activity.get(account)
        if epoch(row["last_activity_ts"]) != epoch(exp_ts.to_pydatetime() if exp_ts is not None else None):
            diffs.append((account, "last_activity_ts", row["last_activity_ts"], exp_ts))
    assert_no_diffs(diffs, "customer_360", len(actual))
    assert any(r["web_events_30d"] for r in actual.values()) and any(
        r["order_count"] for r in actual.values()
    )


def test_engagement_daily_per_day_and_account(gold, landing):
    web = landing.web.assign(web=1, product=0)
    product = landing.product.assign(web=0, product=1)
    events = pd.concat([web, product])
    events = events[events["account_id"].notna()]
    grouped = events.groupby(["event_date", "account_id"]).agg(
        web_events=("web", "sum"),
        product_events=("product", "sum"),
        distinct_users=("user_id", "nunique"),
    )
    expected = {idx: row for idx, row in grouped.iterrows()}
    actual = {(r["event_date"], r["account_id"]): r for r in gold["engagement_daily"]}
    assert set(actual) == set(expected)
    diffs = [
        (k, c, actual[k][c], int(exp[c]))
        for k, exp in expected.items()
        for c in ("web_events", "product_events", "distinct_users")
        if actual[k][c] != int(exp[c])
    ]
    assert_no_diffs(diffs, "engagement_daily", len(expected))
