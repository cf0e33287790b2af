"""Silver conformance (pipeline.silver.conform) on generated hostile rows.

1. Accounting, for the committed orders contract: every bronze row ends exactly once as a silver
   row, a quarantined row (with a reason) or a duplicate of a kept row's key, and the kept row
   is the key's latest valid one: `in = out + quarantined + duplicates`, as the silver job
   reports it.
2. Rule compilation: for random contract columns (types, rules, normalisers) and random raw
   values (almost-numbers, ANSI overflow, boundary values, impossible dates, blanks, nulls), the
   rules `conform` reports equal a direct evaluation in Python of the same contract.
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from pyspark.sql import functions as F

from pipeline.contracts.model import Column, Contract, load_contract, reference_values
from pipeline.silver.conform import (
    COUNTRY_ALIASES,
    RULES,
    VALUE,
    WHITESPACE,
    conform,
    quarantined,
    valid_values,
)
from pipeline.silver.history import latest_per_key

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "config" / "reference"
ORDERS = load_contract(REPO / "config" / "contracts" / "orders.yaml", REFERENCE)
CURRENCIES = reference_values(REFERENCE, "currencies")
REFERENCES = {"currencies": CURRENCIES}
KEEP = ("_ingestion_ts", "_source_file", "_batch_id", "_row")  # the silver job's, plus a row id
T0 = datetime(2026, 3, 1)

# ------------------------------------------------------------------ 1. accounting (orders)

timestamps = st.one_of(
    st.integers(min_value=0, max_value=4).map(lambda h: (T0 + timedelta(hours=h)).isoformat() + "Z"),
    st.sampled_from(["2026-02-30T00:00:00", "2026-13-01", "yesterday", "", "  ", None]),
)
# Valid values, values that normalise into valid ones, and defects of every rule.
defects = {
    "order_id": st.one_of(
        st.integers(min_value=1, max_value=3).map(lambda n: f"ORD-{n:07d}"),  # few keys: duplicates
        st.sampled_from([" ord-0000001 ", "ORD-12", "", None]),
    ),
    "account_id": st.sampled_from(["ACC-000001", " acc-000002", "ACC-1", None]),
    "order_ts": timestamps,
    "status": st.sampled_from(["placed", " Shipped ", "lost", "", None]),
    "currency": st.sampled_from(["USD", " eur", "XXX", None]),
    "amount": st.sampled_from(["12.50", "0", "-0.01", "1e3", "12,50", "99999999999999999999", "abc", None]),
    "updated_at": timestamps,
}
bronze_rows = st.lists(st.fixed_dictionaries(defects), min_size=1, max_size=12)
BRONZE = [*defects, "_ingestion_ts", "_source_file", "_batch_id", "_row"]
BRONZE_TYPES = {"_ingestion_ts": "timestamp", "_row": "int"}  # the rest arrives as text (CSV)
BRONZE_SCHEMA = ", ".join(f"{c} {BRONZE_TYPES.get(c, 'string')}" for c in BRONZE)


@given(bronze_rows)
def test_every_bronze_row_is_kept_quarantined_or_a_duplicate_exactly_once(spark, rows):
    bronze = spark.createDataFrame(
        [
            (*(r[c] for c in defects), T0 + timedelta(seconds=i), "part-0.csv", "b1", i)
            for i, r in enumerate(rows)
        ],
        BRONZE_SCHEMA,
    )
    conformed = conform(bronze, ORDERS, REFERENCES)
    valid = valid_values(conformed, ORDERS, KEEP)
    seen = F.struct("order_id", F.col("updated_at").cast("string"), "_ingestion_ts")  # newest wins
    parts = [
        quarantined(conformed, "b1").select(F.lit("quarantined").alias("fate"), "_row", "_quarantine_reason"),
        valid.select(F.lit("valid"), "_row", seen.cast("string")),
        latest_per_key(valid, ORDERS).select(F.lit("kept"), "_row", seen.cast("string")),
    ]
    fates = parts[0].unionAll(parts[1]).unionAll(parts[2]).collect()  # one Spark job
    by_fate: dict[str, dict[int, str]] = {"quarantined": {}, "valid": {}, "kept": {}}
    for fate, row_id, detail in fates:
        assert row_id not in by_fate[fate], f"row {row_id} twice as {fate}"
        by_fate[fate][row_id] = detail
    quarantined_, valid_, kept = by_fate["quarantined"], by_fate["valid"], by_fate["kept"]
    # Quarantined: exactly the rows breaking a rule in a direct evaluation, with those rules as reason.
    expected = {i: set(broken) for i, r in enumerate(rows) if (broken := orders_rules(r))}
    assert {i: set(reason.split("; ")) for i, reason in quarantined_.items()} == expected
    # Every row once: in = kept + quarantined + duplicates (the valid rows not kept).
    assert set(quarantined_).isdisjoint(valid_) and set(quarantined_) | set(valid_) == set(range(len(rows)))
    assert set(kept) <= set(valid_)
    # The kept row of a key is its newest valid row; each duplicate's key has a kept row.
    newest: dict[str, str] = {}
    for row_id in valid_:
        key = conformed_key(rows[row_id])
        newest[key] = max(newest.get(key, ""), valid_[row_id])
    assert sorted(kept.values()) == sorted(newest.values())


def conformed_key(row: dict) -> str:
    return row["order_id"].strip().upper()


def orders_rules(row: dict) -> list[str]:
    """The rules a bronze row breaks; a derived column (order_date) breaks none when its inputs
    are valid, and is not reported when they are not."""
    return [r for col in ORDERS.read_columns for r in expected_rules(col, row[col.source_column], REFERENCES)]


# ------------------------------------------------------------------ 2. rules vs Python

INT_RANGE = {"int": 2**31, "bigint": 2**63}
NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
DOUBLE_WORDS = {"nan": math.nan, "inf": math.inf, "infinity": math.inf}
BOOLEANS = {**dict.fromkeys(["t", "true", "y", "yes", "1"], True), **dict.fromkeys(["f", "false", "n", "no", "0"], False)}  # fmt: skip
# A full date (a year alone or a time alone does not name a day), then a time part that is not
# looked at.
DATE = re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})(?:[T ].*)?")
EARLIEST = date(1900, 1, 1)  # the contracts' default `not_before`
TIMESTAMP = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:T([0-9]{2}):([0-9]{2}):([0-9]{2})Z?)?")
MAX_DIGITS = 38  # Spark's largest decimal precision: a number needing more digits is no decimal


def parse(text: str, type_: str):
    """Spark's documented string -> type cast (try_cast: None when it does not parse), for the
    shapes generated here; control characters and spaces around the value do not count."""
    s = text.strip("".join(map(chr, range(33))))
    if type_ == "string":
        return text
    if type_ in INT_RANGE:
        if not re.fullmatch(r"[+-]?[0-9]+", s):
            return None
        n = int(s)
        return n if -INT_RANGE[type_] <= n < INT_RANGE[type_] else None
    if type_ == "double":
        sign, word = (-1, s[1:]) if s[:1] == "-" else (1, s.removeprefix("+"))
        if word.lower() in DOUBLE_WORDS:
            return sign * DOUBLE_WORDS[word.lower()]
        number = s[:-1] if s[-1:] in ("d", "D", "f", "F") else s  # Java's double and float suffixes
        return float(number) if NUMBER.fullmatch(number) else None
    if type_ == "boolean":
        return BOOLEANS.get(s.lower())
    if type_ == "timestamp":  # the ISO forms generated (Spark reads more)
        m = TIMESTAMP.fullmatch(s)
        try:
            return datetime(*(int(g or 0) for g in m.groups())) if m else None
        except ValueError:  # February 30th
            return None
    if type_ == "date":
        m = DATE.fullmatch(s)
        if not m:
            return None
        year, month, day = (int(g or 1) for g in m.groups())
        if not 1 <= year <= 9999:  # a Spark date, but no ISO 8601 or Python one: unparseable
            return None
        try:
            date(year, month, day)
        except ValueError:  # month 13, February 30th
            return None
        return date(year, month, day)
    precision, scale = map(int, re.fullmatch(r"decimal\((\d+),(\d+)\)", type_).groups())
    if not NUMBER.fullmatch(s):
        return None
    exact = Decimal(s)
    if exact.adjusted() + 1 > MAX_DIGITS:  # 1e400, also 0e400
        return None
    value = exact.quantize(
        Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP, context=Context(prec=2 * MAX_DIGITS)
    )
    return value if abs(value) < Decimal(10) ** (precision - scale) else None


def normalized(text: str | None, col: Column) -> str | None:
    value = text
    for step in col.normalize:
        if value is None:
            break
        if step == "trim":
            value = value.strip(WHITESPACE)
        elif step == "lower":
            value = value.lower()
        elif step == "upper":
            value = value.upper()
        elif step == "country_code":
            value = COUNTRY_ALIASES.get(value.strip(WHITESPACE).upper(), value.strip(WHITESPACE).upper())
    return None if value == "" else value


def expected_rules(col: Column, text: str | None, references: dict) -> list[str]:
    """The contract's rules for one value, evaluated directly: what the value must satisfy."""
    raw = normalized(text, col)
    v = None if raw is None else parse(raw, col.type)
    # A decimal rounded by the cast: digits beyond the scale (not trailing zeros) changed it.
    rounded = isinstance(v, Decimal) and v != Decimal(raw.strip("".join(map(chr, range(33)))))
    # Bounds compare exactly: a double as a double, an integer or decimal as a decimal.
    number = Decimal(v) if col.type in NUMERIC and isinstance(v, int | Decimal) else v
    broken = {
        "missing": not col.nullable and raw is None,
        "unparseable": col.type != "string" and raw is not None and v is None,
        "scale": rounded,
        "control_character": col.type == "string" and not col.allowed and not col.reference and v is not None and any(
            unicodedata.category(ch) == "Cc" and ch not in "\t\n\r" for ch in v
        ),
        "not_allowed": v is not None and bool(col.allowed) and v not in col.allowed,
        f"not_in_{col.reference}": v is not None and bool(col.reference) and v not in references[col.reference],
        "pattern": v is not None and bool(col.pattern) and not re.fullmatch(col.pattern, v),  # the whole value
        "below_min": v is not None and col.min is not None and not number >= bound(col.min, v),
        "above_max": v is not None and col.max is not None and not number <= bound(col.max, v),
        "not_above_min": v is not None and col.min_exclusive is not None and not number > bound(col.min_exclusive, v),
        "too_early": isinstance(v, date) and (v.date() if isinstance(v, datetime) else v) < EARLIEST,
    }  # fmt: skip
    return sorted(f"{col.name}:{rule}" for rule, is_broken in broken.items() if is_broken)


def bound(limit: float, v):
    return limit if isinstance(v, float) else Decimal(str(limit))


NUMERIC = ["int", "bigint", "double", "decimal(18,2)", "decimal(5,3)"]
BOUNDS = st.sampled_from([None, -1, 0, 0.5, 1, 100, 2147483647])
PATTERNS = ["^[A-Z]{2}$", "^ORD-[0-9]{7}$", "[0-9]"]


@st.composite
def columns(draw, name: str) -> Column:
    type_ = draw(st.sampled_from([*NUMERIC, "string", "boolean", "date"]))
    rules: dict = {"nullable": draw(st.booleans())}
    if type_ in NUMERIC:
        rules.update(min=draw(BOUNDS), max=draw(BOUNDS), min_exclusive=draw(BOUNDS))
    if type_ == "string":
        rules.update(
            normalize=draw(st.lists(st.sampled_from(["trim", "lower", "upper", "country_code"]), max_size=2)),
            allowed=draw(st.sampled_from([[], ["US", "placed"]])),
            pattern=draw(st.sampled_from(["", *PATTERNS])),
            reference=draw(st.sampled_from(["", "currencies"])),
        )
    return Column(type=type_, name=name, **rules)


def almost_numbers() -> st.SearchStrategy[str]:
    """Numbers around the types' limits and the rules' bounds, written as people and exports do."""
    magnitude = st.sampled_from(["0", "1", "7", "100", "2147483647", "2147483648", "9223372036854775807", "9223372036854775808", "10000000000000000", "99999999999999999999"])  # fmt: skip
    fraction = st.sampled_from(["", ".", ".5", ".005", ".0049", ".999"])
    exponent = st.sampled_from(["", "e3", "E-2", "e400"])
    suffix = st.sampled_from(["", "d", "f", "x", "%"])
    pad = st.sampled_from(["", " ", "\t"])
    return st.builds(
        lambda p, s, m, f, e, x, q: f"{p}{s}{m}{f}{e}{x}{q}",
        pad, st.sampled_from(["", "+", "-"]), magnitude, fraction, exponent, suffix, pad,
    )  # fmt: skip


def dates() -> st.SearchStrategy[str]:
    """ISO dates, some impossible (month 0 or 13, day 0 or 30 February), some with a time part."""
    return st.builds(
        lambda y, m, d, t: f"{y:04d}-{m:02d}-{d:02d}{t}",
        st.sampled_from([1, 1970, 2024, 2026, 9999, 10000, 275760]),
        st.integers(min_value=0, max_value=13),
        st.integers(min_value=0, max_value=32),
        st.sampled_from(["", "T00:00:00Z", " 12:30", "T25:61:00"]),
    )


raw_values = st.one_of(
    st.none(),
    almost_numbers(),
    dates(),
    st.sampled_from(
        [
            "",
            " ",
            "true",
            " No ",
            "yes",
            "Infinity",
            "-inf",
            "NaN",
            "1_000",
            "0x1F",
            "1,5",
            " us ",
            "united kingdom",
            "eur",
            "ORD-0000001",
            "placed",
            "nul\x00",
            "tab\there",
            "\x1b[0m",
        ]
    ),  # fmt: skip
    st.text(alphabet="aZ09 -.@", max_size=6),
)


@st.composite
def contracts_and_values(draw):
    cols = {f"c{i}": draw(columns(f"c{i}")) for i in range(draw(st.integers(min_value=1, max_value=4)))}
    contract = Contract(
        name="t", description="d", grain="g", source="s", keys=["c0"], sequence_by="c0", history="current",
        columns=cols,
    )  # fmt: skip
    rows = draw(st.lists(st.tuples(*[raw_values for _ in cols]), min_size=1, max_size=15))
    return contract, rows


@given(contracts_and_values())
def test_compiled_rules_equal_a_direct_evaluation_of_the_contract(spark, contract_rows):
    contract, rows = contract_rows
    # A delivery a row: rows sharing the key (c0) are versions of it, not a conflict (one window).
    bronze = spark.createDataFrame(
        [(i, T0 + timedelta(seconds=i), *r) for i, r in enumerate(rows)],
        ", ".join(["_row int", "_ingestion_ts timestamp", *(f"{c} string" for c in contract.columns)]),
    )
    got = dict(conform(bronze, contract, REFERENCES).select("_row", F.array_sort(RULES)).collect())
    for i, values in enumerate(rows):
        expected = sorted(
            rule for col, text in zip(contract.columns.values(), values, strict=True)
            for rule in expected_rules(col, text, REFERENCES)
        )  # fmt: skip
        assert got[i] == expected, f"row {values!r} of {list(contract.columns.values())!r}"


def test_nan_breaks_a_lower_bound(spark):
    col = Column(type="double", name="rate", min=0, min_exclusive=0)
    contract = Contract(name="t", description="d", grain="g", source="s", keys=["rate"], sequence_by="rate", history="current", columns={"rate": col})  # fmt: skip
    got = conform(spark.createDataFrame([("NaN",)], "rate string"), contract, {}).first()[RULES]
    assert sorted(got) == expected_rules(col, "NaN", {}) == ["rate:below_min", "rate:not_above_min"]


def test_a_timestamp_past_year_9999_is_quarantined_and_the_batch_summary_still_collects(spark):
    row = {**{c: None for c in defects}, "order_id": "ORD-0000001", "account_id": "ACC-000001",
           "order_ts": "2026-03-01", "status": "placed", "currency": "USD", "amount": "1", "updated_at": "10000-01-01"}  # fmt: skip
    bronze = spark.createDataFrame([(*(row[c] for c in defects), T0, "part-0.csv", "b1", 0)], BRONZE_SCHEMA)
    conformed = conform(bronze, ORDERS, REFERENCES)
    conformed.agg(F.max(f"{VALUE}updated_at")).first()  # what the silver job collects (freshness)
    assert [r.split(":")[0] for r in conformed.select(RULES).first()[0]] == ["updated_at"]
