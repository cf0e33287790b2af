"""Transactional and event sources, fully vectorised: orders, web behaviour, product events, FX.

Each builder returns clean data only; defects are added afterwards by `defects.py`. All actors are
drawn from the CRM accounts and product users so downstream joins line up.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import vocab
from .entities import Accounts, Users
from .timeline import DAY_S, DAY_US, Period, diurnal_seconds
from .vectors import decimals_from_cents, format_ids, take, timestamps_us, uuids

HOUR_US = 3_600 * 1_000_000
KAFKA_PARTITIONS = 3


# generate(skew=True): order volume per account follows Zipf's law with this exponent (at scale 1
# the top 1 % of accounts place about 3/4 of the orders, the top 10 about 60 %), and one hot day
# takes HOT_DAY_SHARE of them.
ZIPF_EXPONENT = 1.3
HOT_DAY_SHARE = 0.25


@dataclass
class DailyTable:
    """Rows sorted by the landing day (file) they belong to; `day` is that day index per row."""

    table: pa.Table
    day: np.ndarray


def _instants_us(
    rng: np.random.Generator, period: Period, n: int, day_weights: np.ndarray | None = None
) -> np.ndarray:
    """Random instants in the period, with weekday/weekend (or `day_weights`) and time-of-day
    seasonality."""
    day = rng.choice(period.days, n, p=period.day_weights() if day_weights is None else day_weights)
    seconds = period.start_s + day * DAY_S + diurnal_seconds(rng, n)
    return seconds * 1_000_000 + rng.integers(0, 1_000_000, n)


def _existing_actors(
    rng: np.random.Generator, actor: np.ndarray, created_s: np.ndarray, at_us: np.ndarray
) -> np.ndarray:
    """Redraw actors whose account did not exist yet at the activity time (from pre-period ones)."""
    too_new = created_s[actor] * 1_000_000 > at_us
    pool = np.flatnonzero(created_s * 1_000_000 <= at_us.min()) if too_new.any() else np.empty(0, int)
    if too_new.any() and len(pool):
        actor = actor.copy()
        actor[too_new] = pool[rng.integers(0, len(pool), int(too_new.sum()))]
    return actor


def _day_sorted(columns: dict[str, pa.Array], day: np.ndarray, within: np.ndarray) -> DailyTable:
    order = np.lexsort((within, day))
    table = pa.table(columns).take(pa.array(order))
    return DailyTable(table, day[order])


# --- Snowflake orders --------------------------------------------------------------------------


def zipf_weights(created_s: np.ndarray, exponent: float = ZIPF_EXPONENT) -> np.ndarray:
    """Weight per account by Zipf's law, the oldest account first (ties in index order): rank r
    gets 1/r**exponent, so a few accounts place most orders."""
    rank = np.empty(len(created_s), dtype=np.int64)
    rank[np.argsort(created_s, kind="stable")] = np.arange(1, len(created_s) + 1)
    w = 1.0 / rank.astype(float) ** exponent
    return w / w.sum()


def build_orders(
    rng: np.random.Generator, n: int, accounts: Accounts, period: Period, skew: bool = False
) -> DailyTable:
    """Orders and the re-deliveries of each order row on every day its status changed. `skew`:
    accounts by zipf_weights and one hot day (Period.hot_day_weights) instead of the segment
    activity and the weekly rhythm; the same draws from `rng`, so only the orders change."""
    day_weights = period.hot_day_weights(HOT_DAY_SHARE) if skew else None
    order_us = np.sort(_instants_us(rng, period, n, day_weights))
    account_weights = zipf_weights(accounts.created_s) if skew else accounts.activity
    account = _existing_actors(
        rng, rng.choice(len(accounts.ids), n, p=account_weights), accounts.created_s, order_us
    )
    currency = rng.choice(len(vocab.TRADE_CODES), n, p=vocab.TRADE_WEIGHTS)
    rate = np.array([vocab.START_RATE[c] for c in vocab.TRADE_CODES])[currency]
    # At least 1.00, so that a negative_amount defect is always visibly negative.
    cents = np.maximum(np.round(rng.lognormal(np.log(180.0), 0.9, n) * rate * 100), 100).astype(np.int64)

    # Status lifecycle: pending -> placed/cancelled, placed -> shipped/cancelled, shipped -> returned.
    pending = rng.random(n) < 0.15
    r1 = rng.random(n)
    to_placed = pending & (r1 < 0.70)
    to_cancel1 = pending & (r1 >= 0.70) & (r1 < 0.85)
    t1 = order_us + np.where(
        to_placed, rng.exponential(2 * HOUR_US, n), rng.exponential(8 * HOUR_US, n)
    ).astype(np.int64)
    placed = ~pending | to_placed
    placed_at = np.where(pending, t1, order_us)
    r2 = rng.random(n)
    to_shipped = placed & (r2 < 0.50)
    to_cancel2 = placed & (r2 >= 0.50) & (r2 < 0.54)
    t2 = placed_at + np.where(
        to_shipped, rng.integers(DAY_US, 4 * DAY_US, n), rng.exponential(DAY_US, n).astype(np.int64)
    )
    to_returned = to_shipped & (rng.random(n) < 0.05)
    t3 = t2 + rng.integers(3 * DAY_US, 20 * DAY_US, n)

    status = {s: i for i, s in enumerate(vocab.ORDER_STATUSES)}
    idx = np.arange(n)
    events = [
        (idx, np.where(pending, status["pending"], status["placed"]), order_us),
        (idx[to_placed], np.full(int(to_placed.sum()), status["placed"]), t1[to_placed]),
        (idx[to_cancel1], np.full(int(to_cancel1.sum()), status["cancelled"]), t1[to_cancel1]),
        (idx[to_shipped], np.full(int(to_shipped.sum()), status["shipped"]), t2[to_shipped]),
        (idx[to_cancel2], np.full(int(to_cancel2.sum()), status["cancelled"]), t2[to_cancel2]),
        (idx[to_returned], np.full(int(to_returned.sum()), status["returned"]), t3[to_returned]),
    ]
    o, st, upd = (np.concatenate(parts) for parts in zip(*events, strict=True))
    keep = upd < period.end_s * 1_000_000
    o, st, upd = o[keep], st[keep], upd[keep]
    day = (upd // 1_000_000 - period.start_s) // DAY_S

    # A daily extract by updated_at sees only an order's latest state of that day.
    order = np.lexsort((upd, day, o))
    o, st, upd, day = o[order], st[order], upd[order], day[order]
    last = np.ones(len(o), dtype=bool)
    last[:-1] = (o[1:] != o[:-1]) | (day[1:] != day[:-1])
    o, st, upd, day = o[last], st[last], upd[last], day[last]

    columns = {
        "order_id": format_ids("ORD-", o + 1, 7),
        "account_id": take(accounts.ids, account[o]),
        "order_ts": timestamps_us(order_us[o]),
        "status": take(vocab.ORDER_STATUSES, st),
        "currency": take(vocab.TRADE_CODES, currency[o]),
        "amount": decimals_from_cents(cents[o]),
        "updated_at": timestamps_us(upd),
    }
    return _day_sorted(columns, day, upd * 10_000_000 + o)


# --- Redshift behaviour events -----------------------------------------------------------------


def build_behavior(
    rng: np.random.Generator, n_events: int, users: Users, accounts: Accounts, period: Period
) -> DailyTable:
    """Web sessions of product users; Redshift loads them hourly (loaded_at is the watermark)."""
    n_sessions = max(1, n_events // 6)
    start_us = _instants_us(rng, period, n_sessions)
    user = rng.integers(0, len(users.account), n_sessions)
    user = _existing_actors(rng, user, accounts.created_s[users.account], start_us)
    size = 1 + rng.poisson(5, n_sessions)
    session = np.repeat(np.arange(n_sessions), size)
    n = len(session)

    # Offsets within a session: cumulative think-time gaps, restarting at every session.
    gaps = rng.exponential(45e6, n).astype(np.int64)
    gaps[np.cumsum(size) - size] = 0
    csum = np.cumsum(gaps)
    event_us = start_us[session] + csum - np.repeat(csum[np.cumsum(size) - size], size)
    event_type = rng.choice(len(vocab.BEHAVIOR_EVENT_TYPES), n, p=vocab.BEHAVIOR_EVENT_WEIGHTS)
    page = rng.integers(0, len(vocab.PAGE_PATHS), n)
    # Some event types only happen on their own page.
    for etype, path in (("search", "/search"), ("signup", "/signup"), ("download", "/downloads")):
        page[event_type == vocab.BEHAVIOR_EVENT_TYPES.index(etype)] = vocab.PAGE_PATHS.index(path)
    # One load per hour picks up the previous hour's events; each batch finishes a few minutes in.
    hour = event_us // HOUR_US
    batch_delay = rng.integers(180_000_000, 1_200_000_000, int(hour.max() - hour.min()) + 1)
    loaded_us = (hour + 1) * HOUR_US + batch_delay[hour - hour.min()]

    keep = event_us < period.end_s * 1_000_000
    event_ids = uuids(rng, n)
    session_ids = uuids(rng, n_sessions)
    u = user[session]
    columns = {
        "event_id": event_ids,
        "account_id": take(accounts.ids, users.account[u]),
        "user_id": users.ids.take(pa.array(u)),
        "session_id": session_ids.take(pa.array(session)),
        "event_type": take(vocab.BEHAVIOR_EVENT_TYPES, event_type),
        "page_url": take([vocab.SITE + p for p in vocab.PAGE_PATHS], page),
        "event_ts": timestamps_us(event_us),
        "loaded_at": timestamps_us(loaded_us),
    }
    mask = pa.array(keep)
    columns = {k: v.filter(mask) for k, v in columns.items()}
    event_us = event_us[keep]
    return _day_sorted(columns, (event_us // 1_000_000 - period.start_s) // DAY_S, event_us)


# --- Kafka product events ----------------------------------------------------------------------


def _property_variants() -> list[list[str]]:
    """Pre-rendered `properties` JSON objects per product event type (all values are strings)."""

    def obj(**kv: str) -> str:
        return "{" + ",".join(f'"{k}":"{v}"' for k, v in kv.items()) + "}"

    return [
        [obj(feature=f, plan=p) for f in vocab.FEATURES for p in vocab.PLANS],
        [obj(source=s) for s in vocab.VIEW_SOURCES],
        [obj(quantity=str(q), source=s) for q in range(1, 6) for s in vocab.VIEW_SOURCES],
        [obj(cart_items=str(c), payment_method=m) for c in range(1, 8) for m in vocab.PAYMENT_METHODS],
        [obj(from_plan=a, to_plan=b) for a in vocab.PLANS for b in vocab.PLANS if a != b],
    ]


def kafka_partition(account_ids: list[str]) -> np.ndarray:
    """Stable key -> partition mapping (a CRC, since Python's hash() is salted per process)."""
    return np.array([zlib.crc32(a.encode()) % KAFKA_PARTITIONS for a in account_ids], dtype=np.int64)


def build_product_events(
    rng: np.random.Generator, n: int, users: Users, accounts: Accounts, period: Period
) -> pa.Table:
    """Product events as Kafka records, sorted by (partition, broker append time)."""
    event_ms = _instants_us(rng, period, n) // 1_000
    user = _existing_actors(
        rng, rng.integers(0, len(users.account), n), accounts.created_s[users.account], event_ms * 1_000
    )
    account = users.account[user]
    event_type = rng.choice(len(vocab.PRODUCT_EVENT_TYPES), n, p=vocab.PRODUCT_EVENT_WEIGHTS)
    variants = _property_variants()
    properties = [
        variants[t][i % len(variants[t])]
        for t, i in zip(event_type, rng.integers(0, 1 << 30, n), strict=True)
    ]
    product = rng.integers(1, vocab.N_PRODUCTS + 1, n)
    # Most producers key by account (so an account's events stay ordered); a few send no key.
    keyed = rng.random(n) >= 0.02
    partition = np.where(keyed, kafka_partition(accounts.ids)[account], rng.integers(0, KAFKA_PARTITIONS, n))
    lag = np.minimum(rng.exponential(800, n).astype(np.int64) + 5, 30_000)

    order = np.lexsort((event_ms, partition))
    partition, event_ms, lag = partition[order], event_ms[order], lag[order]
    kafka_ms = event_ms + lag
    for p in range(KAFKA_PARTITIONS):
        # Broker append time never goes backwards within a partition.
        seg = partition == p
        kafka_ms[seg] = np.maximum.accumulate(kafka_ms[seg])
    # 1 s headroom: re-delivered duplicates may push later append times by up to 0.5 s.
    keep = kafka_ms < period.end_s * 1_000 - 1_000

    account_ids = take(accounts.ids, account[order])
    table = pa.table(
        {
            "partition": pa.array(partition),
            "kafka_ms": pa.array(kafka_ms),
            "key": pc.if_else(pa.array(keyed[order]), account_ids, pa.scalar(None, pa.string())),
            "event_ms": pa.array(event_ms),
            "event_id": uuids(rng, n),
            "event_type": take(vocab.PRODUCT_EVENT_TYPES, event_type[order]),
            "account_id": account_ids,
            "user_id": users.ids.take(pa.array(user[order])),
            "product_id": format_ids("PRD-", product[order], 5),
            "properties": pa.array([properties[i] for i in order], type=pa.string()),
        }
    )
    return table.filter(pa.array(keep))


# --- FX rates ----------------------------------------------------------------------------------


def build_fx_rates(rng: np.random.Generator, period: Period) -> list[tuple[int, dict[str, float]]]:
    """Per business day, units of each currency per USD: a log random walk from realistic levels."""
    business = period.business_days()
    codes = [c for c, _, _ in vocab.FX_CURRENCIES]
    start = np.log([r for _, r, _ in vocab.FX_CURRENCIES])
    vol = np.array([v for _, _, v in vocab.FX_CURRENCIES])
    walk = start + np.cumsum(rng.normal(0, 1, (len(business), len(codes))) * vol, axis=0)
    return [
        (day, {code: float(f"{rate:.6g}") for code, rate in zip(codes, np.exp(row), strict=True)})
        for day, row in zip(business, walk, strict=True)
    ]
