"""Which keys of a gold mart its changed inputs affect: pure DataFrame functions, used by the I/O
edge (`marts.build_gold`) to recompute and replace only those keys.

Each function starts from an input's change feed between the versions recorded in the mart's last
commit and the current ones, and looks the changed rows up through the very lookup the mart uses
(broadcast, one pass over the orders), so a key is selected when its computed row can differ: an
order that looks up a changed FX rate or whose account attributes in force changed, a date
holding a changed order, an event date with new events.
"""

from __future__ import annotations

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipeline.gold import transforms as T


def fx_changes(changed_rates: DataFrame, old_rates: DataFrame) -> DataFrame:
    """(fx_date, currency) of the FX rates inserted or updated between two fx_rates versions (the
    change feed's rows; USD is 1 whatever silver holds). A rate re-delivered with the value it had
    (silver rewrites a re-delivery) changes no lookup and is left out: a vendor resending a window
    of rates must not recompute every order priced with them."""
    cols = ["rate_date", "currency", "rate_to_usd"]
    return (
        changed_rates.where(F.col("currency") != "USD")
        .select(*cols)
        .join(F.broadcast(old_rates.select(*cols)), cols, "left_anti")
        .select(F.col("rate_date").alias("fx_date"), "currency")
    )


def account_changes(
    orders: DataFrame,
    old_accounts: DataFrame,
    new_accounts: DataFrame,
    before_first_version: str,
    changed_accounts: DataFrame,
) -> DataFrame:
    """order_id of every order whose account attributes in force at its order_ts (segment,
    country, whether a version is known) differ between two versions of silver accounts.

    `changed_accounts` (account_id): the accounts whose versions may differ (the change feed's).
    Only their orders are looked up, in both versions, in one pass (both lookups broadcast, no
    shuffle of the orders) and compared: a new version valid from today splits the open range,
    yet leaves every older order as it was."""
    keys = F.broadcast(changed_accounts.select("account_id"))
    looked_up = orders.select("order_id", "account_id", "order_ts").join(keys, "account_id", "left_semi")
    attributes = ("segment", "country", "_acc_id")
    for tag, accounts in (("_old", old_accounts), ("_new", new_accounts)):
        versions = T.account_versions(accounts.join(keys, "account_id", "left_semi"), before_first_version)
        looked_up = looked_up.join(F.broadcast(versions), T.in_force(), "left").select(
            *looked_up.columns, *[F.col(c).alias(f"{tag}{c}") for c in attributes]
        )
    same = [F.col(f"_old{c}").eqNullSafe(F.col(f"_new{c}")) for c in attributes]
    return looked_up.where(~(same[0] & same[1] & same[2])).select("order_id")


def affected_orders(
    orders: DataFrame,
    changed_orders: DataFrame,
    fx_changed: tuple[DataFrame, DataFrame] | None = None,
    accounts_changed: DataFrame | None = None,
) -> DataFrame:
    """order_id of every order whose fct_orders row can differ: changed in silver, priced (on the
    new calendar, `transforms.fx_lookup`) with a changed FX rate, or with other account
    attributes in force (`account_changes`). Distinct ids. None: that input did not change (no
    scan of the orders for it). `fx_changed`: (`fx_changes`, the new fx_calendar).

    FX rates are never deleted (silver keeps the latest per rate_date and currency), so an order
    whose rate (or rate date) differs between the versions finds, now, a rate inserted or updated
    since: a rate it found before and still finds is the same one."""
    ids = changed_orders.select("order_id")
    if fx_changed is not None:
        ids = ids.unionByName(_priced_with(orders, *fx_changed))
    if accounts_changed is not None:
        ids = ids.unionByName(accounts_changed)
    return ids.distinct()


def _priced_with(orders: DataFrame, fx_changed: DataFrame, fx_cal: DataFrame) -> DataFrame:
    changed = F.broadcast(fx_changed.select(F.col("fx_date").alias("fx_rate_date"), "currency"))
    priced = T.fx_lookup(orders.select("order_id", "order_date", "currency"), fx_cal, "order_date")
    return priced.join(changed, ["fx_rate_date", "currency"], "left_semi").select("order_id")


def merge_work(
    mart: DataFrame, batch: DataFrame, keys: tuple[str, ...], dates: str | None = None
) -> DataFrame:
    """One row: what a MERGE of `batch` by `keys` into `mart` does to the mart. `held`: its rows,
    `matched`: those the batch replaces, `rewritten`: the rows of every file holding one of those
    (Delta rewrites a file whole to replace one of its rows; no table here has deletion vectors,
    which would mark the row deleted instead); with `dates` (a date column), `dates`: its distinct
    values among the replaced rows (`distinct_dates`). A row's file is the read's
    `_metadata.file_path`, a column of Spark's file scans: both engines read a table as a Parquet
    scan of its files, but a table of no file (delta-rs reads it as an empty frame made in
    memory) has none, and a frame without it counts as one file."""
    hits = batch.select(*keys).withColumn("_hit", F.lit(True))
    file = F.col("_metadata.file_path")
    try:
        mart.select(file)  # analysed at once: a frame not read from files has no `_metadata`
    except AnalysisException:
        file = F.lit(None).cast("string")
    marked = mart.select(*keys, file.alias("_file"), *([dates] if dates else []))
    marked = marked.join(hits, list(keys), "left")
    per_file = [F.count(F.lit(1)).alias("held"), F.count("_hit").alias("matched")]
    if dates:
        per_file.append(distinct_dates(dates, where=F.col("_hit")).alias("dates"))
    files = marked.groupBy("_file").agg(*per_file)
    totals = [
        F.coalesce(F.sum("held"), F.lit(0)).alias("held"),
        F.coalesce(F.sum("matched"), F.lit(0)).alias("matched"),
        F.coalesce(F.sum(F.when(F.col("matched") > 0, F.col("held"))), F.lit(0)).alias("rewritten"),
    ]
    if dates:
        totals.append(F.array_distinct(F.flatten(F.collect_list("dates"))).alias("dates"))
    return files.agg(*totals)


def distinct_dates(column: str, where: Column | None = None) -> Column:
    """Aggregate: the distinct values of `column` (of the rows `where` holds), each in a struct:
    collect_set leaves nulls out, and a null date is one a per-date mart must hear of."""
    value = F.struct(column)
    return F.collect_set(value if where is None else F.when(where, value))


def changed_dates(column: str, *frames: DataFrame) -> DataFrame:
    """The distinct values of the date `column` across `frames` (the rows before and after a
    change): the dates a per-date mart recomputes."""
    dates = frames[0].select(column)
    for frame in frames[1:]:
        dates = dates.unionByName(frame.select(column))
    return dates.distinct()
