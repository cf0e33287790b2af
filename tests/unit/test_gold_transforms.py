"""Gold business rules on hand-built rows; every expected value is worked out by hand here."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal as D

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from pipeline.contracts.model import load_contracts
from pipeline.gold import incremental as I
from pipeline.gold import transforms as T
from tests.helpers import REPO

FX = "rate_date date, currency string, units_per_usd decimal(24,10), rate_to_usd decimal(24,12), base string"
FX_CAL = "fx_date date, currency string, rate_to_usd decimal(24,12), rate_date date"
ACCOUNTS = (
    "account_id string, account_name string, industry string, segment string, country string, "
    "valid_from timestamp, valid_to timestamp, is_current boolean, is_deleted boolean"
)
ORDERS = (
    "order_id string, account_id string, order_ts timestamp, order_date date, status string, "
    "currency string, amount decimal(18,2), updated_at timestamp"
)
FCT = (
    "order_id string, account_id string, order_ts timestamp, order_date date, status string, "
    "currency string, amount decimal(18,2), rate_to_usd decimal(24,12), fx_rate_date date, "
    "amount_usd decimal(18,2), fx_missing boolean, segment string, country string, account_known boolean"
)
OPPS = (
    "opportunity_id string, account_id string, stage string, amount decimal(18,2), currency string, "
    "probability int, close_date date, is_deleted boolean"
)
PIPELINE = (
    "stage string, segment string, opportunity_count bigint, amount_usd decimal(28,2), "
    "weighted_amount_usd decimal(28,2), opportunities_missing_fx bigint"
)
EVENTS = "event_id string, account_id string, user_id string, event_ts timestamp, event_date date"

d = date
ts = datetime


def check(actual, expected):
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def fx_rows(spark, rows):
    """(rate_date, currency, rate_to_usd) -> silver fx_rates rows (units_per_usd is unused here)."""
    return spark.createDataFrame([(r, c, D("1"), D(v), "USD") for r, c, v in rows], FX)


def account_rows(spark):
    """ACC-000001 moved from SMB/US to Enterprise/DE on 2024-01-10; ACC-000002 is Mid-Market;
    ACC-000003 was deleted (its only version is not current)."""
    return spark.createDataFrame(
        [
            ("ACC-000001", "Acme", "Tech", "SMB", "US", ts(2024, 1, 1), ts(2024, 1, 10), False, False),
            ("ACC-000001", "Acme", "Tech", "Enterprise", "DE", ts(2024, 1, 10), None, True, False),
            ("ACC-000002", "Beta", None, "Mid-Market", "US", ts(2024, 1, 2), None, True, False),
            ("ACC-000003", "Gone", "Retail", "SMB", "FR", ts(2024, 1, 3), None, False, True),
        ],
        ACCOUNTS,
    )


# Friday 2024-01-05 and Tuesday 2024-01-09 have EUR rates; the weekend and Monday have none.
# GBP starts on 2024-01-09; JPY has one rate on 2024-01-05.
RATES = [
    (d(2024, 1, 5), "EUR", "1.100000000000"),
    (d(2024, 1, 9), "EUR", "1.200000000000"),
    (d(2024, 1, 9), "GBP", "1.250000000000"),
    (d(2024, 1, 5), "JPY", "0.006900000000"),
]


def test_fx_calendar_forward_fills_gaps_and_adds_usd(spark):
    cal = T.fx_calendar(fx_rows(spark, RATES[:3]), d(2024, 1, 5), d(2024, 1, 9))
    eur1, eur2, gbp = D("1.100000000000"), D("1.200000000000"), D("1.250000000000")
    one = D("1.000000000000")
    expected = [
        (d(2024, 1, 5), "EUR", eur1, d(2024, 1, 5)),
        (d(2024, 1, 6), "EUR", eur1, d(2024, 1, 5)),  # Saturday: Friday's rate
        (d(2024, 1, 7), "EUR", eur1, d(2024, 1, 5)),
        (d(2024, 1, 8), "EUR", eur1, d(2024, 1, 5)),
        (d(2024, 1, 9), "EUR", eur2, d(2024, 1, 9)),
        (d(2024, 1, 9), "GBP", gbp, d(2024, 1, 9)),  # no GBP row before its first rate
    ] + [(d(2024, 1, day), "USD", one, d(2024, 1, day)) for day in range(5, 10)]
    check(cal, spark.createDataFrame(expected, FX_CAL))


def test_fx_calendar_rates_before_the_start_seed_the_fill(spark):
    cal = T.fx_calendar(fx_rows(spark, RATES[:1]), "2024-01-07", "2024-01-08")
    eur = D("1.100000000000")
    one = D("1.000000000000")
    expected = [
        (d(2024, 1, 7), "EUR", eur, d(2024, 1, 5)),
        (d(2024, 1, 8), "EUR", eur, d(2024, 1, 5)),
        (d(2024, 1, 7), "USD", one, d(2024, 1, 7)),
        (d(2024, 1, 8), "USD", one, d(2024, 1, 8)),
    ]
    check(cal, spark.createDataFrame(expected, FX_CAL))


def test_fct_orders_fx_as_of_and_scd2_as_of(spark):
    # fmt: off
    orders = spark.createDataFrame(
        [
            # Saturday order in EUR: Friday's rate 1.10; ACC-000001 is SMB/US until 2024-01-10.
            ("ORD-0000001", "ACC-000001", ts(2024, 1, 6, 12), d(2024, 1, 6), "placed", "EUR", D("33.33"), ts(2024, 1, 6, 12)),
            # At the instant the second version starts: Enterprise/DE; after the last rate: 1.20.
            ("ORD-0000002", "ACC-000001", ts(2024, 1, 10), d(2024, 1, 10), "shipped", "EUR", D("10.00"), ts(2024, 1, 10)),
            # Before the account's first version: none in force, unknown; USD = 1 before any rate.
            ("ORD-0000003", "ACC-000001", ts(2023, 12, 31, 8), d(2023, 12, 31), "placed", "USD", D("50.00"), ts(2024, 1, 1)),
            # Unknown account; GBP has no rate on or before 2024-01-08.
            ("ORD-0000004", "ACC-999999", ts(2024, 1, 8), d(2024, 1, 8), "pending", "GBP", D("20.00"), ts(2024, 1, 8)),
            # JPY 1000 x 0.0069 (Friday's rate, carried to Tuesday) = 6.90; still the first version.
            ("ORD-0000005", "ACC-000001", ts(2024, 1, 9, 23, 59), d(2024, 1, 9), "placed", "JPY", D("1000.00"), ts(2024, 1, 9)),
            # Account deleted later: still known, its (only) version applies.
            ("ORD-0000006", "ACC-000003", ts(2024, 1, 5), d(2024, 1, 5), "placed", "EUR", D("0.05"), ts(2024, 1, 5)),
        ],
        ORDERS,
    )
    # fmt: on
    fct = T.fct_orders(orders, account_rows(spark), T.fx_calendar(fx_rows(spark, RATES)))
    eur1, eur2, jpy, one = D("1.1"), D("1.2"), D("0.0069"), D("1")
    # fmt: off
    expected = spark.createDataFrame(
        [
            ("ORD-0000001", "ACC-000001", ts(2024, 1, 6, 12), d(2024, 1, 6), "placed", "EUR", D("33.33"),
             eur1, d(2024, 1, 5), D("36.66"), False, "SMB", "US", True),  # 33.33 x 1.10 = 36.663
            ("ORD-0000002", "ACC-000001", ts(2024, 1, 10), d(2024, 1, 10), "shipped", "EUR", D("10.00"),
             eur2, d(2024, 1, 9), D("12.00"), False, "Enterprise", "DE", True),
            ("ORD-0000003", "ACC-000001", ts(2023, 12, 31, 8), d(2023, 12, 31), "placed", "USD", D("50.00"),
             one, d(2023, 12, 31), D("50.00"), False, None, None, True),
            ("ORD-0000004", "ACC-999999", ts(2024, 1, 8), d(2024, 1, 8), "pending", "GBP", D("20.00"),
             None, None, None, True, None, None, False),
            ("ORD-0000005", "ACC-000001", ts(2024, 1, 9, 23, 59), d(2024, 1, 9), "placed", "JPY", D("1000.00"),
             jpy, d(2024, 1, 5), D("6.90"), False, "SMB", "US", True),
            ("ORD-0000006", "ACC-000003", ts(2024, 1, 5), d(2024, 1, 5), "placed", "EUR", D("0.05"),
             eur1, d(2024, 1, 5), D("0.06"), False, "SMB", "FR", True),  # 0.055 -> 0.06 (half-up)
        ],
        FCT,
    )
    # fmt: on
    check(fct, expected)


def test_fct_orders_prices_the_largest_amount_at_the_highest_rate_silver_takes(spark):
    """Silver's bounds (orders.amount at most 1e12, fx_rates.units_per_usd at least 0.001, so a
    rate of at most 1,000) keep amount x rate within fct_orders' decimal(18,2): the extreme pair
    is priced exactly, under ANSI mode, where an overflow would fail the job."""
    contracts = load_contracts(REPO / "config" / "contracts", REPO / "config" / "reference")
    top_amount = D(str(int(contracts["orders"].columns["amount"].max)))
    top_rate = 1 / D(str(contracts["fx_rates"].columns["units_per_usd"].min))
    orders = spark.createDataFrame(
        [
            (
                "ORD-0000001",
                "ACC-000002",
                ts(2024, 1, 9),
                d(2024, 1, 9),
                "placed",
                "KWD",
                top_amount,
                ts(2024, 1, 9),
            )
        ],
        ORDERS,
    )
    fx = fx_rows(spark, [(d(2024, 1, 9), "KWD", f"{top_rate:.12f}")])
    fct = T.fct_orders(orders, account_rows(spark), T.fx_calendar(fx)).first()
    assert fct["amount_usd"] == top_amount * top_rate == D("1000000000000000.00")
    assert not fct["fx_missing"]


# ACC-000001: SMB/US from 2024-01-01, Enterprise/DE from 2024-01-10 (open); ACC-000002 from 2024-01-02.
# fmt: off
AS_OF_CASES = [
    ("before-first",  "ACC-000001", ts(2023, 12, 31, 23, 59)),
    ("at-first",      "ACC-000001", ts(2024, 1, 1)),           # valid_from == order_ts: in force
    ("between",       "ACC-000001", ts(2024, 1, 9, 23, 59)),   # the first version, just before its valid_to
    ("at-second",     "ACC-000001", ts(2024, 1, 10)),          # valid_to is exclusive: the second version
    ("after-last",    "ACC-000001", ts(2030, 1, 1)),           # the open version
    ("other-before",  "ACC-000002", ts(2024, 1, 1, 12)),       # single-version account, before it
    ("unknown",       "ACC-999999", ts(2024, 1, 5)),
]
AS_OF_EXPECTED = {
    # policy -> order -> (segment, country, account_known)
    "unknown": {
        "before-first": (None, None, True),
        "at-first": ("SMB", "US", True),
        "between": ("SMB", "US", True),
        "at-second": ("Enterprise", "DE", True),
        "after-last": ("Enterprise", "DE", True),
        "other-before": (None, None, True),
        "unknown": (None, None, False),
    },
    "earliest": {
        "before-first": ("SMB", "US", True),
        "at-first": ("SMB", "US", True),
        "between": ("SMB", "US", True),
        "at-second": ("Enterprise", "DE", True),
        "after-last": ("Enterprise", "DE", True),
        "other-before": ("Mid-Market", "US", True),
        "unknown": (None, None, False),
    },
}
# fmt: on


@pytest.mark.parametrize("policy", ["unknown", "earliest"])
def test_fct_orders_account_as_of_order_ts_per_policy(spark, policy):
    orders = spark.createDataFrame(
        [(o, a, t, t.date(), "placed", "USD", D("1.00"), t) for o, a, t in AS_OF_CASES], ORDERS
    )
    fct = T.fct_orders(
        orders, account_rows(spark), T.fx_calendar(fx_rows(spark, RATES)), before_first_version=policy
    )
    expected = spark.createDataFrame(
        [(o, *AS_OF_EXPECTED[policy][o]) for o, _, _ in AS_OF_CASES],
        "order_id string, segment string, country string, account_known boolean",
    )
    # One row per order: the gap version (unknown) or the stretched first one (earliest) never
    # overlaps another version.
    check(fct.select("order_id", "segment", "country", "account_known"), expected)


def test_fct_orders_rejects_an_unknown_policy(spark):
    accounts = account_rows(spark)
    with pytest.raises(ValueError, match="unknown|earliest"):
        T.fct_orders(accounts, accounts, accounts, before_first_version="latest")


def test_revenue_daily_counts_placed_and_shipped_and_shows_missing_fx(spark):
    schema = "order_date date, country string, segment string, status string, amount_usd decimal(18,2), fx_missing boolean"
    fct = spark.createDataFrame(
        [
            (d(2024, 1, 5), "US", "SMB", "placed", D("10.00"), False),
            (d(2024, 1, 5), "US", "SMB", "shipped", D("5.50"), False),
            (d(2024, 1, 5), "US", "SMB", "pending", D("100.00"), False),
            (d(2024, 1, 5), "US", "SMB", "cancelled", D("100.00"), False),
            (d(2024, 1, 5), "US", "SMB", "returned", D("100.00"), False),
            (d(2024, 1, 5), "US", "SMB", "placed", None, True),
            (d(2024, 1, 6), "DE", "Enterprise", "placed", D("7.00"), False),
            (d(2024, 1, 6), None, None, "shipped", D("1.00"), False),  # unknown account
            (d(2024, 1, 6), None, None, "placed", D("2.00"), False),  # no account version in force
            (d(2024, 1, 7), "FR", "SMB", "cancelled", D("3.00"), False),
            (d(2024, 1, 8), "US", "SMB", "placed", None, True),
        ],
        schema,
    )
    expected = spark.createDataFrame(
        [
            (d(2024, 1, 5), "US", "SMB", D("15.50"), 3, 1),
            (d(2024, 1, 6), "DE", "Enterprise", D("7.00"), 1, 0),
            (d(2024, 1, 6), "unknown", "unknown", D("3.00"), 2, 0),
            (d(2024, 1, 8), "US", "SMB", D("0.00"), 1, 1),
        ],
        "order_date date, country string, segment string, revenue_usd decimal(28,2), "
        "order_count bigint, orders_missing_fx bigint",
    )
    check(T.revenue_daily(fct), expected)


def test_pipeline_summary_open_only_weighted_current_segment(spark):
    opps = spark.createDataFrame(
        [
            # EUR 1000 at Saturday's rate 1.10 = 1100.00; x 50% = 550.00. Current segment Enterprise.
            ("OPP-000001", "ACC-000001", "Proposal", D("1000.00"), "EUR", 50, d(2024, 1, 6), False),
            # 33.33 x 33 / 100 = 10.9989 -> 11.00; future close date, USD.
            ("OPP-000002", "ACC-000001", "Proposal", D("33.33"), "USD", 33, d(2025, 6, 30), False),
            # Close date years past the last rate: the latest EUR rate 1.20 -> 120.00; x 90% = 108.00.
            ("OPP-000003", "ACC-000002", "Negotiation", D("100.00"), "EUR", 90, d(2030, 1, 1), False),
            ("OPP-000004", "ACC-000002", "Closed Won", D("5000.00"), "USD", 100, d(2024, 1, 5), False),
            ("OPP-000005", "ACC-000002", "Closed Lost", D("300.00"), "USD", 0, d(2024, 1, 5), False),
            # Before the first EUR rate: counted, missing FX, out of the sums.
            ("OPP-000006", "ACC-000002", "Negotiation", D("50.00"), "EUR", 80, d(2024, 1, 1), False),
            # Deleted account: no current version, segment `unknown`.
            ("OPP-000007", "ACC-000003", "Prospecting", D("10.00"), "USD", 10, d(2024, 2, 1), False),
        ],
        OPPS,
    )
    fx_cal = T.fx_calendar(fx_rows(spark, RATES[:2]))
    expected = spark.createDataFrame(
        [
            ("Proposal", "Enterprise", 2, D("1133.33"), D("561.00"), 0),
            ("Negotiation", "Mid-Market", 2, D("120.00"), D("108.00"), 1),
            ("Prospecting", "unknown", 1, D("10.00"), D("1.00"), 0),
        ],
        PIPELINE,
    )
    check(T.pipeline_summary(opps, fx_cal, account_rows(spark)), expected)


def test_customer_360_current_accounts_and_30_day_window(spark):
    as_of = d(2024, 3, 31)  # window: 2024-03-02 .. 2024-03-31 (as_of - 30 = 2024-03-01 is out)
    fct = spark.createDataFrame(
        [
            ("ACC-000001", "placed", D("100.00"), d(2024, 1, 5)),
            ("ACC-000001", "shipped", D("50.00"), d(2024, 2, 10)),
            ("ACC-000001", "placed", None, d(2024, 3, 1)),  # missing FX: an order, no revenue
            ("ACC-000001", "cancelled", D("999.00"), d(2024, 3, 20)),  # not revenue, not last order
            ("ACC-000003", "placed", D("10.00"), d(2024, 1, 5)),  # deleted account: no row
        ],
        "account_id string, status string, amount_usd decimal(18,2), order_date date",
    )
    opps_usd = spark.createDataFrame(
        [
            ("ACC-000001", True, D("200.00")),
            ("ACC-000001", True, None),
            ("ACC-000001", False, D("500.00")),
        ],
        "account_id string, is_open boolean, amount_usd decimal(18,2)",
    )
    contacts = spark.createDataFrame(
        [
            ("CON-0000001", "ACC-000001", False),
            ("CON-0000002", "ACC-000001", False),
            ("CON-0000003", "ACC-000002", False),
        ],
        "contact_id string, account_id string, is_deleted boolean",
    )
    behavior = spark.createDataFrame(
        [
            ("w1", "ACC-000001", "U1", ts(2024, 3, 1, 23, 59), d(2024, 3, 1)),  # as_of - 30: out
            ("w2", "ACC-000001", "U1", ts(2024, 3, 2), d(2024, 3, 2)),  # first day in
            ("w3", "ACC-000001", "U2", ts(2024, 3, 31, 23), d(2024, 3, 31)),  # as_of: in
            ("w4", "ACC-000001", "U2", ts(2024, 4, 1, 0, 30), d(2024, 4, 1)),  # after as_of: ignored
            ("w5", None, "U9", ts(2024, 3, 31), d(2024, 3, 31)),
        ],
        EVENTS,
    )
    product = spark.createDataFrame(
        [
            ("p1", "ACC-000001", "U1", ts(2024, 3, 31, 10), d(2024, 3, 31)),
            ("p2", "ACC-000002", "U3", ts(2024, 2, 15, 8), d(2024, 2, 15)),
        ],
        EVENTS,
    )
    got = T.customer_360(account_rows(spark), fct, opps_usd, contacts, behavior, product, as_of)
    # account_id, name, segment, country, industry, lifetime_revenue_usd, order_count, last_order_date,
    # open_pipeline_usd, active_contacts, web_events_30d, product_events_30d, last_activity_ts, as_of
    # fmt: off
    expected = spark.createDataFrame(
        [
            ("ACC-000001", "Acme", "Enterprise", "DE", "Tech", D("150.00"), 3, d(2024, 3, 1),
             D("200.00"), 2, 2, 1, ts(2024, 3, 31, 23), as_of),
            ("ACC-000002", "Beta", "Mid-Market", "US", None, D("0.00"), 0, None,
             D("0.00"), 1, 0, 0, ts(2024, 2, 15, 8), as_of),
        ],
        "account_id string, account_name string, segment string, country string, industry string, "
        "lifetime_revenue_usd decimal(28,2), order_count bigint, last_order_date date, "
        "open_pipeline_usd decimal(28,2), active_contacts bigint, web_events_30d bigint, "
        "product_events_30d bigint, last_activity_ts timestamp, as_of_date date",
    )
    # fmt: on
    check(got, expected)


def test_engagement_daily_distinct_users_across_sources(spark):
    behavior = spark.createDataFrame(
        [
            ("w1", "ACC-000001", "U1", ts(2024, 3, 1, 9), d(2024, 3, 1)),
            ("w2", "ACC-000001", "U2", ts(2024, 3, 1, 10), d(2024, 3, 1)),
            ("w3", "ACC-000001", "U1", ts(2024, 3, 1, 11), d(2024, 3, 1)),
            ("w4", None, "U9", ts(2024, 3, 1, 12), d(2024, 3, 1)),  # no account: excluded
            ("w5", "ACC-000002", "U3", ts(2024, 3, 2, 9), d(2024, 3, 2)),
        ],
        EVENTS,
    )
    product = spark.createDataFrame(
        [
            ("p1", "ACC-000001", "U1", ts(2024, 3, 1, 9), d(2024, 3, 1)),  # U1 again: one user
            ("p2", "ACC-000001", "U4", ts(2024, 3, 1, 9), d(2024, 3, 1)),
            ("p3", "ACC-000001", None, ts(2024, 3, 1, 9), d(2024, 3, 1)),  # an event, not a user
            ("p4", None, "U1", ts(2024, 3, 1, 9), d(2024, 3, 1)),
        ],
        EVENTS,
    )
    expected = spark.createDataFrame(
        [(d(2024, 3, 1), "ACC-000001", 3, 3, 3), (d(2024, 3, 2), "ACC-000002", 1, 0, 1)],
        "event_date date, account_id string, web_events bigint, product_events bigint, distinct_users bigint",
    )
    check(T.engagement_daily(behavior, product), expected)


def test_fx_changes_reach_the_carried_days_and_the_clamped_dates(spark):
    # Friday 2024-01-05 EUR corrected 2 -> 2.5 (carried over Sat and Sun); a new last rate on Tue.
    old = fx_rows(spark, [(d(2024, 1, 5), "EUR", "2"), (d(2024, 1, 8), "EUR", "3")])
    new = fx_rows(
        spark, [(d(2024, 1, 5), "EUR", "2.5"), (d(2024, 1, 8), "EUR", "3"), (d(2024, 1, 9), "EUR", "4")]
    )
    # The change feed: the rows inserted or updated, and Monday's re-delivered with the value it
    # had (silver rewrites a re-delivery): it changes no lookup, so it selects nothing.
    feed = new.exceptAll(old).unionByName(new.where(F.col("rate_date") == d(2024, 1, 8)))
    changed = I.fx_changes(feed, old)
    assert {(r["fx_date"], r["currency"]) for r in changed.collect()} == {
        (d(2024, 1, 5), "EUR"),
        (d(2024, 1, 9), "EUR"),
    }
    orders = spark.createDataFrame(
        [
            ("O1", "ACC-000001", ts(2024, 1, 6, 9), d(2024, 1, 6), "placed", "EUR", D("1"), ts(2024, 1, 6)),
            ("O2", "ACC-000001", ts(2024, 1, 8, 9), d(2024, 1, 8), "placed", "EUR", D("1"), ts(2024, 1, 8)),
            (
                "O3",
                "ACC-000001",
                ts(2024, 1, 20, 9),
                d(2024, 1, 20),
                "placed",
                "EUR",
                D("1"),
                ts(2024, 1, 20),
            ),
            ("O4", "ACC-000001", ts(2024, 1, 6, 9), d(2024, 1, 6), "placed", "USD", D("1"), ts(2024, 1, 6)),
            ("O5", "ACC-000001", ts(2024, 1, 6, 9), d(2024, 1, 6), "placed", "GBP", D("1"), ts(2024, 1, 6)),
        ],
        ORDERS,
    )
    # O1 on the weekend, O3 after the last rate (looked up on the calendar's end), O2 changed in
    # silver; O4 (USD) and O5 (no GBP rate changed) keep their rows.
    affected = I.affected_orders(orders, orders.where("order_id = 'O2'"), (changed, T.fx_calendar(new)))
    assert sorted(r["order_id"] for r in affected.collect()) == ["O1", "O2", "O3"]
    # The selection is exact: fct_orders differs between the two FX versions on O1 and O3 only.
    accounts = account_rows(spark)
    before = T.fct_orders(orders, accounts, T.fx_calendar(old))
    after = T.fct_orders(orders, accounts, T.fx_calendar(new))
    assert sorted(r["order_id"] for r in after.exceptAll(before).collect()) == ["O1", "O3"]


def test_account_changes_select_the_orders_whose_attributes_in_force_changed(spark):
    old = account_rows(spark)
    # A late version of ACC-000001 (Mid-Market/FR from 2024-01-05) splits its first range.
    new = old.where("NOT (account_id = 'ACC-000001' AND segment = 'SMB')").unionByName(
        spark.createDataFrame(
            [
                ("ACC-000001", "Acme", "Tech", "SMB", "US", ts(2024, 1, 1), ts(2024, 1, 5), False, False),
                (
                    "ACC-000001",
                    "Acme",
                    "Tech",
                    "Mid-Market",
                    "FR",
                    ts(2024, 1, 5),
                    ts(2024, 1, 10),
                    False,
                    False,
                ),
            ],
            ACCOUNTS,
        )
    )
    orders = spark.createDataFrame(
        [
            ("O1", "ACC-000001", ts(2024, 1, 3), d(2024, 1, 3), "placed", "USD", D("1"), ts(2024, 1, 3)),
            ("O2", "ACC-000001", ts(2024, 1, 7), d(2024, 1, 7), "placed", "USD", D("1"), ts(2024, 1, 7)),
            ("O3", "ACC-000001", ts(2024, 1, 12), d(2024, 1, 12), "placed", "USD", D("1"), ts(2024, 1, 12)),
            ("O4", "ACC-000001", ts(2023, 12, 1), d(2023, 12, 1), "placed", "USD", D("1"), ts(2023, 12, 1)),
            ("O5", "ACC-000002", ts(2024, 1, 7), d(2024, 1, 7), "placed", "USD", D("1"), ts(2024, 1, 7)),
        ],
        ORDERS,
    )
    # The change feed as silver's SCD2 merge writes it: every version of a touched account (the
    # recomputed chain), here also ACC-000002's, rewritten unchanged.
    feed = new.where("account_id IN ('ACC-000001', 'ACC-000002')")
    changed = I.account_changes(orders, old, new, "unknown", feed)
    assert [r["order_id"] for r in changed.collect()] == ["O2"]  # not O5: ACC-000002 is as it was
    affected = I.affected_orders(orders, orders.where("order_id = 'O5'"), accounts_changed=changed)
    # O2 now falls in the new Mid-Market/FR range; O1 (the first range's unchanged part), O3 (a
    # later range) and O4 (before the first version, still unknown) keep their attributes; O5
    # changed in silver.
    assert sorted(r["order_id"] for r in affected.collect()) == ["O2", "O5"]
    # The selection is exact: fct_orders differs between the two account versions on O2 only.
    fx = T.fx_calendar(fx_rows(spark, [(d(2024, 1, 1), "EUR", "2")]))
    after, before = T.fct_orders(orders, new, fx), T.fct_orders(orders, old, fx)
    assert [r["order_id"] for r in after.exceptAll(before).collect()] == ["O2"]
    # So is the `earliest` policy's: O4 takes the first version either way.
    earliest = I.account_changes(orders, old, new, "earliest", feed)
    assert [r["order_id"] for r in earliest.collect()] == ["O2"]


def test_merge_work_counts_the_rows_of_every_file_holding_a_replaced_row(spark, tmp_path):
    # Three Parquet files of 3, 1 and 2 orders; the batch replaces rows of the first and the
    # third, and holds one new order.
    layout = {"a": [("O1", d(2024, 1, 1)), ("O2", d(2024, 1, 2)), ("O3", None)], "b": [("O4", d(2024, 1, 4))]}
    layout["c"] = [("O6", d(2024, 1, 6)), ("O7", d(2024, 1, 6))]
    for name, rows in layout.items():
        table = pa.table({"order_id": [r[0] for r in rows], "order_date": [r[1] for r in rows]})
        pq.write_table(table, tmp_path / f"{name}.parquet")
    mart = spark.read.parquet(str(tmp_path))
    batch = spark.createDataFrame([("O2",), ("O3",), ("O6",), ("O9",)], "order_id string")
    work = I.merge_work(mart, batch, ("order_id",), "order_date").first()
    # Files a (3 rows) and c (2 rows) hold a replaced row: 5 rewritten; O2, O3 and O6 replaced.
    assert (work["held"], work["matched"], work["rewritten"]) == (6, 3, 5)
    assert sorted(work["dates"], key=lambda s: s[0] or d(1, 1, 1)) == [
        (None,),
        (d(2024, 1, 2),),
        (d(2024, 1, 6),),
    ]
    nothing = I.merge_work(mart, batch.where("order_id = 'O9'"), ("order_id",)).first()
    assert (nothing["held"], nothing["matched"], nothing["rewritten"]) == (6, 0, 0)


def test_merge_work_counts_a_frame_not_read_from_files_as_one_file(spark):
    # delta-rs reads a table of no data file as an empty frame made in memory: no `_metadata`.
    empty = spark.createDataFrame([], "order_id string")
    batch = spark.createDataFrame([("O1",)], "order_id string")
    work = I.merge_work(empty, batch, ("order_id",)).first()
    assert (work["held"], work["matched"], work["rewritten"]) == (0, 0, 0)
    held = spark.createDataFrame([("O1",), ("O2",)], "order_id string")
    work = I.merge_work(held, batch, ("order_id",)).first()
    assert (work["held"], work["matched"], work["rewritten"]) == (2, 1, 2)
