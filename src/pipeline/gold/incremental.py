"""Which keys of a gold mart its changed inputs affect: pure DataFrame functions, used by the I/O
edge (`marts.build_gold`) to recompute and replace only those keys.

Each function compares an input before and after (the versions recorded in the mart's last commit
and the current ones) through the very lookup the mart uses, so a key is selected exactly when
its computed row can differ: an order whose FX lookup or account attributes in force changed, a
date holding a changed order, an event date with new events.
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipeline.gold import transforms as T


def symmetric_difference(old: DataFrame, new: DataFrame) -> DataFrame:
    """Rows in exactly one of the two (as multisets; nulls compare equal)."""
    return old.exceptAll(new).unionByName(new.exceptAll(old))


def fx_changes(old_rates: DataFrame, new_rates: DataFrame, start: date, end: date) -> DataFrame:
    """(fx_date, currency) whose as-of rate (or rate date) differs between two fx_rates versions.

    Both calendars span the same days [start, end]: from the first rate of either version to the
    last of either. A calendar extended past its last rate carries that rate forward, which is
    what the lookup's clamp to the calendar's end gives, so a date after `end` looks up `end`.
    """
    cols = ["fx_date", "currency", "rate_to_usd", "rate_date"]
    old = T.fx_calendar(old_rates, start, end).select(cols)
    new = T.fx_calendar(new_rates, start, end).select(cols)
    return symmetric_difference(old, new).select("fx_date", "currency").distinct()


def account_changes(
    orders: DataFrame, old_accounts: DataFrame, new_accounts: DataFrame, before_first_version: str
) -> DataFrame:
    """order_id of every order whose account attributes in force at its order_ts (segment,
    country, whether a version is known) differ between two versions of silver accounts.

    Only the orders of accounts with an added or removed validity range
    (`transforms.account_versions` rows) are looked up, in both versions, and compared: a new
    version valid from today splits the open range, yet leaves every older order as it was."""
    old = T.account_versions(old_accounts, before_first_version)
    new = T.account_versions(new_accounts, before_first_version)
    accounts = F.broadcast(symmetric_difference(old, new).select("_acc_id").distinct())
    mine = orders.join(accounts, F.col("account_id") == F.col("_acc_id"), "left_semi")

    def in_force(versions: DataFrame) -> DataFrame:
        versions = F.broadcast(versions.join(accounts, "_acc_id", "left_semi"))
        return mine.join(versions, T.in_force(), "left").select(
            "order_id", "segment", "country", F.col("_acc_id").isNotNull().alias("known")
        )

    return symmetric_difference(in_force(old), in_force(new)).select("order_id").distinct()


def affected_orders(
    orders: DataFrame,
    changed_orders: DataFrame,
    fx_changed: tuple[DataFrame, date] | None = None,
    accounts_changed: DataFrame | None = None,
) -> DataFrame:
    """order_id of every order whose fct_orders row can differ: changed in silver, priced with a
    changed FX rate (`fx_changes` and the calendars' end: the order_date clamped to it, as
    `transforms._fx_lookup`), or with other account attributes in force (`account_changes`).
    Distinct ids. None: that input did not change (no scan of the orders for it)."""
    ids = changed_orders.select("order_id")
    if fx_changed is not None:
        ids = ids.unionByName(_priced_with(orders, *fx_changed))
    if accounts_changed is not None:
        ids = ids.unionByName(accounts_changed)
    return ids.distinct()


def _priced_with(orders: DataFrame, fx_changed: DataFrame, fx_end: date) -> DataFrame:
    lookup = F.least(F.col("order_date"), F.lit(fx_end))
    fx_keys = fx_changed.select("fx_date", F.col("currency").alias("fx_currency"))
    return orders.join(
        F.broadcast(fx_keys),
        (lookup == F.col("fx_date")) & (F.col("currency") == F.col("fx_currency")),
        "left_semi",
    ).select("order_id")


def changed_dates(column: str, *frames: DataFrame) -> DataFrame:
    """The distinct values of the date `column` across `frames` (the rows before and after a
    change): the dates a per-date mart recomputes."""
    dates = frames[0].select(column)
    for frame in frames[1:]:
        dates = dates.unionByName(frame.select(column))
    return dates.distinct()
