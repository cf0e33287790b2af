"""Gold business definitions as pure DataFrame -> DataFrame functions.

Each function is a node: it takes silver (or gold) DataFrames, returns a DataFrame, and does no
I/O and no Spark action, so it is tested on hand-built rows and composed by `marts.py`, the
I/O edge. The docstrings state the business rule; config/contracts/*.yaml gives the inputs.

Conventions shared by every mart:
- Money in USD is decimal(18,2) per row (rounded half-up to cents) and decimal(28,2) summed.
- "Revenue" orders are those with status `placed` or `shipped` (REVENUE_STATUSES).
- "Open" opportunities are those whose stage is not Closed Won / Closed Lost.
- A row without an FX rate keeps `amount_usd` null, is flagged `fx_missing`, is counted, and is
  left out of every USD sum.
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from pipeline.spark import date_value

REVENUE_STATUSES = ("placed", "shipped")
BEFORE_FIRST_VERSION = ("unknown", "earliest")  # fct_orders' policies for orders before an account
UNKNOWN = "unknown"  # revenue_daily's country/segment where fct_orders has none
CLOSED_STAGES = ("Closed Won", "Closed Lost")
ACTIVITY_WINDOW_DAYS = 30

USD_ROW = "decimal(18,2)"
USD_SUM = "decimal(28,2)"
RATE = "decimal(24,12)"


def _date_lit(value: date | str | None) -> Column | None:
    if value is None:
        return None
    if isinstance(value, str):
        return F.to_date(F.lit(value))
    return date_value(value)


def _usd(amount: Column, rate: Column) -> Column:
    return F.round(amount * rate, 2).cast(USD_ROW)


def _usd_sum(col: str) -> Column:
    """Sum of a USD column, nulls (missing FX) excluded; 0 when nothing qualifies."""
    return F.coalesce(F.sum(col), F.lit(0)).cast(USD_SUM)


def fx_calendar(
    fx_rates: DataFrame, start_date: date | str | None = None, end_date: date | str | None = None
) -> DataFrame:
    """The FX as-of rule as an equi-join table: (fx_date, currency) -> rate_to_usd.

    For every calendar day in [start_date, end_date] and every currency, `rate_to_usd` is that of
    the currency's latest `rate_date` on or before the day (weekends and holidays carry the
    previous business day's rate forward); `rate_date` says which rate was used. USD is 1 on
    every day. Days before a currency's first rate have no row, so a lookup finds nothing and the
    caller flags the amount as missing FX.

    Defaults: start = the first rate date, end = the last rate date. Rates before `start_date`
    still seed the forward fill. A lookup beyond the end must be clamped to the end (see
    `fx_lookup`): with the default end the last day holds each currency's latest rate, which is
    exactly the as-of answer for any later day.

    Why a calendar and not a range join (rate_date <= day, latest wins): the range join needs a
    join on currency plus a window to pick the latest rate per row, and grows with rows x rates;
    bench/bench_pipeline.py measures both on the same orders (scale 1: range join 1.94 s,
    calendar 1.21 s including its build). The calendar is days x currencies (a few thousand
    rows per year), so callers broadcast it and the lookup is a broadcast hash join on
    (fx_date, currency).
    """
    rates = fx_rates.where(F.col("currency") != "USD").select(
        F.col("rate_date").alias("fx_date"),
        "currency",
        F.col("rate_to_usd").cast(RATE).alias("rate_to_usd"),
        F.col("rate_date").alias("src_rate_date"),
    )
    bounds = rates.agg(F.min("fx_date").alias("lo"), F.max("fx_date").alias("hi"))
    start = _date_lit(start_date)
    end = _date_lit(end_date)
    first = F.col("lo") if start is None else start
    last = F.col("hi") if end is None else end
    # The grid starts at the earlier of `first` and the first rate, so the fill sees older rates
    # (least() skips nulls: no rates at all -> the grid starts at `first`).
    grid_start = F.least(F.col("lo"), first)
    days = bounds.select(
        first.alias("first"),
        F.explode(F.when(grid_start <= last, F.sequence(grid_start, last, F.expr("INTERVAL 1 DAY")))).alias(
            "fx_date"
        ),
    )
    currencies = rates.select("currency").distinct()
    fill = (
        Window.partitionBy("currency")
        .orderBy("fx_date")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    filled = (
        days.crossJoin(currencies)
        .join(rates, ["fx_date", "currency"], "left")
        .select(
            "fx_date",
            "currency",
            F.last("rate_to_usd", ignorenulls=True).over(fill).alias("rate_to_usd"),
            F.last("src_rate_date", ignorenulls=True).over(fill).alias("rate_date"),
            "first",
        )
        .where(F.col("rate_to_usd").isNotNull() & (F.col("fx_date") >= F.col("first")))
        .drop("first")
    )
    usd = days.where(F.col("fx_date") >= F.col("first")).select(
        "fx_date",
        F.lit("USD").alias("currency"),
        F.lit(1).cast(RATE).alias("rate_to_usd"),
        F.col("fx_date").alias("rate_date"),
    )
    return filled.unionByName(usd)


def fx_lookup(df: DataFrame, fx_cal: DataFrame, on_date: str) -> DataFrame:
    """Add `rate_to_usd` and `fx_rate_date` for (on_date, currency) from the calendar.

    The lookup date is clamped to the calendar's last day, so a date beyond the calendar (an
    order after the last published rate, a close date in the future) gets the latest rate on
    or before it, as the as-of rule says.
    """
    cal_end = fx_cal.agg(F.max("fx_date").alias("_fx_cal_end"))
    cal = fx_cal.select(
        F.col("fx_date").alias("_fx_date"),
        F.col("currency").alias("_fx_currency"),
        "rate_to_usd",
        F.col("rate_date").alias("fx_rate_date"),
    )
    keyed = df.crossJoin(F.broadcast(cal_end)).withColumn(
        "_fx_lookup", F.least(F.col(on_date), F.col("_fx_cal_end"))
    )
    is_usd = F.col("currency") == "USD"
    return (
        keyed.join(
            F.broadcast(cal),
            (F.col("_fx_lookup") == F.col("_fx_date")) & (F.col("currency") == F.col("_fx_currency")),
            "left",
        )
        # USD is 1 on every day, also outside the calendar (before the first published rate).
        .withColumn("rate_to_usd", F.when(is_usd, F.lit(1).cast(RATE)).otherwise(F.col("rate_to_usd")))
        .withColumn("fx_rate_date", F.when(is_usd, F.col(on_date)).otherwise(F.col("fx_rate_date")))
        .drop("_fx_cal_end", "_fx_lookup", "_fx_date", "_fx_currency")
    )


def account_versions(accounts: DataFrame, before_first_version: str = "unknown") -> DataFrame:
    """The account attributes fct_orders looks up, one row per validity range:
    (_acc_id, segment, country, _valid_from, _valid_to); a null bound is open. With `unknown`, a
    row with null attributes covers the time before the account's first version; with
    `earliest`, the first version reaches back indefinitely (see `fct_orders`)."""
    if before_first_version not in BEFORE_FIRST_VERSION:
        raise ValueError(
            f"before_first_version: expected one of {'|'.join(BEFORE_FIRST_VERSION)}, got {before_first_version!r}"
        )
    versions = accounts.select(
        F.col("account_id").alias("_acc_id"),
        F.col("segment"),
        F.col("country"),
        F.col("valid_from").alias("_valid_from"),
        F.col("valid_to").alias("_valid_to"),
    )
    if before_first_version == "earliest":
        # The first version reaches back indefinitely (a null valid_from has no lower bound).
        first_from = F.min("_valid_from").over(Window.partitionBy("_acc_id"))
        versions = versions.withColumn(
            "_valid_from", F.when(F.col("_valid_from") > first_from, F.col("_valid_from"))
        )
    else:
        # Nothing is in force before the first version: a version with unknown attributes fills
        # that gap, so the order still finds its account (account_known) in one join.
        gap = versions.groupBy("_acc_id").agg(F.min("_valid_from").alias("_valid_to"))
        versions = versions.unionByName(
            gap.select(
                "_acc_id",
                F.lit(None).cast(accounts.schema["segment"].dataType).alias("segment"),
                F.lit(None).cast(accounts.schema["country"].dataType).alias("country"),
                F.lit(None).cast(accounts.schema["valid_from"].dataType).alias("_valid_from"),
                "_valid_to",
            )
        )
    return versions


def in_force() -> Column:
    """An order (account_id, order_ts) joined to the `account_versions` row in force then."""
    return (
        (F.col("account_id") == F.col("_acc_id"))
        & (F.col("_valid_from").isNull() | (F.col("_valid_from") <= F.col("order_ts")))
        & (F.col("_valid_to").isNull() | (F.col("order_ts") < F.col("_valid_to")))
    )


def fct_orders(
    orders: DataFrame, accounts: DataFrame, fx_cal: DataFrame, before_first_version: str = "unknown"
) -> DataFrame:
    """One row per order (silver's latest state), in USD, with the account as of the order.

    - `amount_usd` = amount x `rate_to_usd` of the latest FX rate on or before `order_date`
      (USD = 1), rounded half-up to cents. No such rate: `amount_usd` null, `fx_missing` true.
    - `segment`, `country`: the account's SCD2 version in force at `order_ts`, i.e. the one with
      valid_from <= order_ts < coalesce(valid_to, far future). This assumes silver's versions of
      an account are contiguous and non-overlapping (valid_to = next valid_from).
    - An order placed before its account's first version has no version in force: segment and
      country are unknown (null) and `account_known` stays true; the warn-level DQ rule
      `count:account_version_missing` (config/dq.yaml) counts these orders. The option
      `fct_orders.before_first_version` in config/marts.yaml switches to `earliest`: such an
      order takes the account's first version (a late-arriving-dimension policy: the CRM export
      first saw the account after the order); the default is `unknown`.
    - An order whose account is not in silver accounts keeps null segment/country and
      `account_known` false. Deleted accounts are known: their versions stay in silver.
    """
    versions = account_versions(accounts, before_first_version)
    priced = fx_lookup(orders, fx_cal, "order_date")
    return priced.join(versions, in_force(), "left").select(
        "order_id",
        "account_id",
        "order_ts",
        "order_date",
        "status",
        "currency",
        "amount",
        "rate_to_usd",
        "fx_rate_date",
        _usd(F.col("amount"), F.col("rate_to_usd")).alias("amount_usd"),
        F.col("rate_to_usd").isNull().alias("fx_missing"),
        "segment",
        "country",
        F.col("_acc_id").isNotNull().alias("account_known"),
    )


def revenue_daily(fct: DataFrame) -> DataFrame:
    """Revenue by (order_date, country, segment) over orders with status placed or shipped.

    `revenue_usd` sums `amount_usd` (orders missing FX are left out of the sum); `order_count`
    counts every qualifying order, and `orders_missing_fx` how many of them the sum leaves out.
    Orders whose country or segment fct_orders leaves null (unknown account, or no account version
    in force at the order time) are kept under the value `unknown`, so every qualifying order is
    in some row and the totals reconcile with fct_orders. No real value collides with it (country
    is an ISO code, segment one of the contract's allowed values).
    """
    unknown = F.lit(UNKNOWN)
    return (
        fct.where(F.col("status").isin(*REVENUE_STATUSES))
        .groupBy(
            "order_date",
            F.coalesce("country", unknown).alias("country"),
            F.coalesce("segment", unknown).alias("segment"),
        )
        .agg(
            _usd_sum("amount_usd").alias("revenue_usd"),
            F.count(F.lit(1)).alias("order_count"),
            F.count_if(F.col("fx_missing")).alias("orders_missing_fx"),
        )
    )


def opportunities_usd(opportunities: DataFrame, accounts: DataFrame, fx_cal: DataFrame) -> DataFrame:
    """One row per opportunity in USD, with its account's current segment.

    - `amount_usd` = amount x `rate_to_usd` as of `close_date` (the fx_calendar rule). Close dates
      are often in the future, past the last published rate: the lookup is clamped to the
      calendar's end, i.e. the latest available rate is used. No rate on or before the close
      date: `amount_usd` null and `fx_missing` true.
    - `weighted_amount_usd` = amount_usd x probability / 100, rounded half-up to cents.
    - `is_open`: stage is not Closed Won / Closed Lost.
    - `segment` comes from the account's CURRENT version (is_current); an opportunity of a
      deleted or unknown account has a null segment.
    """
    current = accounts.where(F.col("is_current")).select(
        F.col("account_id").alias("_acc_id"), F.col("segment")
    )
    priced = fx_lookup(opportunities, fx_cal, "close_date")
    amount_usd = _usd(F.col("amount"), F.col("rate_to_usd"))
    return priced.join(current, F.col("account_id") == F.col("_acc_id"), "left").select(
        "opportunity_id",
        "account_id",
        "stage",
        (~F.col("stage").isin(*CLOSED_STAGES)).alias("is_open"),
        "amount",
        "currency",
        "probability",
        "close_date",
        "rate_to_usd",
        "fx_rate_date",
        amount_usd.alias("amount_usd"),
        F.round(amount_usd * F.col("probability") / F.lit(100), 2).cast(USD_ROW).alias("weighted_amount_usd"),
        F.col("rate_to_usd").isNull().alias("fx_missing"),
        "segment",
    )


def pipeline_summary(opportunities: DataFrame, fx_cal: DataFrame, accounts: DataFrame) -> DataFrame:
    """Open pipeline by (stage, segment): opportunity_count, amount_usd, weighted_amount_usd.

    Open = stage not Closed Won / Closed Lost. Amounts in USD as of the close date, segment from
    the current account version (see `opportunities_usd`); opportunities of a deleted or unknown
    account are kept under the segment `unknown`, as revenue_daily keeps orders without one.
    Opportunities missing FX are counted in `opportunity_count` and `opportunities_missing_fx`
    and left out of both sums.
    """
    return summarize_pipeline(opportunities_usd(opportunities, accounts, fx_cal))


def summarize_pipeline(opps_usd: DataFrame) -> DataFrame:
    """The aggregation of `pipeline_summary` over `opportunities_usd` rows."""
    return (
        opps_usd.where(F.col("is_open"))
        .groupBy("stage", F.coalesce("segment", F.lit(UNKNOWN)).alias("segment"))
        .agg(
            F.count(F.lit(1)).alias("opportunity_count"),
            _usd_sum("amount_usd").alias("amount_usd"),
            _usd_sum("weighted_amount_usd").alias("weighted_amount_usd"),
            F.count_if(F.col("fx_missing")).alias("opportunities_missing_fx"),
        )
    )


def customer_360(
    accounts: DataFrame,
    fct: DataFrame,
    opportunities_usd: DataFrame,
    contacts: DataFrame,
    behavior: DataFrame,
    product: DataFrame,
    as_of: date,
) -> DataFrame:
    """One row per current account (is_current: open version, not deleted), as of `as_of`.

    - lifetime_revenue_usd, order_count, last_order_date: over the account's orders with status
      placed or shipped (as revenue_daily); revenue leaves out orders missing FX. Orders are
      current state and not cut at as_of (lifetime means everything silver holds).
    - open_pipeline_usd: amount_usd of the account's open opportunities (missing FX left out).
    - active_contacts: the account's contacts in silver (current state, soft deletes removed).
    - web_events_30d / product_events_30d: events with as_of - 30 days < event_date <= as_of,
      i.e. the 30 calendar days ending on as_of inclusive (as_of - 29 .. as_of); an event on
      as_of - 30 is out, one on as_of is in.
    - last_activity_ts: the latest event_ts over both sources on or before the end of the as_of
      day (event_date <= as_of; event_date is to_date(event_ts) in UTC); null when none.
    - Zero, not null, for counts and sums when the account has nothing.
    """
    as_of_col = date_value(as_of)
    window_start = F.date_sub(as_of_col, ACTIVITY_WINDOW_DAYS)  # exclusive
    current = accounts.where(F.col("is_current")).select(
        "account_id", "account_name", "segment", "country", "industry"
    )
    revenue = (
        fct.where(F.col("status").isin(*REVENUE_STATUSES))
        .groupBy("account_id")
        .agg(
            F.sum("amount_usd").alias("lifetime_revenue_usd"),
            F.count(F.lit(1)).alias("order_count"),
            F.max("order_date").alias("last_order_date"),
        )
    )
    pipeline = (
        opportunities_usd.where(F.col("is_open"))
        .groupBy("account_id")
        .agg(F.sum("amount_usd").alias("open_pipeline_usd"))
    )
    if "is_deleted" in contacts.columns:
        contacts = contacts.where(~F.coalesce(F.col("is_deleted"), F.lit(False)))
    people = contacts.groupBy("account_id").agg(F.count(F.lit(1)).alias("active_contacts"))
    events = (
        behavior.select("account_id", "event_ts", "event_date", F.lit(True).alias("_web"))
        .unionByName(product.select("account_id", "event_ts", "event_date", F.lit(False).alias("_web")))
        .where(F.col("account_id").isNotNull() & (F.col("event_date") <= as_of_col))
    )
    in_window = F.col("event_date") > window_start
    activity = events.groupBy("account_id").agg(
        F.count_if(in_window & F.col("_web")).alias("web_events_30d"),
        F.count_if(in_window & ~F.col("_web")).alias("product_events_30d"),
        F.max("event_ts").alias("last_activity_ts"),
    )
    zero = F.lit(0)
    return (
        current.join(revenue, "account_id", "left")
        .join(pipeline, "account_id", "left")
        .join(people, "account_id", "left")
        .join(activity, "account_id", "left")
        .select(
            "account_id",
            "account_name",
            "segment",
            "country",
            "industry",
            F.coalesce("lifetime_revenue_usd", zero).cast(USD_SUM).alias("lifetime_revenue_usd"),
            F.coalesce("order_count", zero.cast("bigint")).alias("order_count"),
            "last_order_date",
            F.coalesce("open_pipeline_usd", zero).cast(USD_SUM).alias("open_pipeline_usd"),
            F.coalesce("active_contacts", zero.cast("bigint")).alias("active_contacts"),
            F.coalesce("web_events_30d", zero.cast("bigint")).alias("web_events_30d"),
            F.coalesce("product_events_30d", zero.cast("bigint")).alias("product_events_30d"),
            "last_activity_ts",
            as_of_col.alias("as_of_date"),
        )
    )


def engagement_daily(behavior: DataFrame, product: DataFrame) -> DataFrame:
    """Engagement by (event_date, account_id): web_events, product_events, distinct_users.

    `distinct_users` counts distinct non-null user_id across both sources that day (a user seen on
    the web and in the product counts once). Events with a null account_id cannot be attributed
    to an account and are excluded (they stay in silver).
    """
    events = (
        behavior.select("event_date", "account_id", "user_id", F.lit(True).alias("_web"))
        .unionByName(product.select("event_date", "account_id", "user_id", F.lit(False).alias("_web")))
        .where(F.col("account_id").isNotNull())
    )
    return events.groupBy("event_date", "account_id").agg(
        F.count_if(F.col("_web")).alias("web_events"),
        F.count_if(~F.col("_web")).alias("product_events"),
        F.countDistinct("user_id").alias("distinct_users"),
    )
