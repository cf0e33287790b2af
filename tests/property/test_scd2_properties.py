"""SCD2 history (pipeline.silver.history) and the gold as-of lookup (gold.transforms.fct_orders)
for random delivery sequences of account changes: repeated values, out-of-order arrivals, the
same timestamp delivered twice, soft deletes, spread over several silver runs.

Each run is what silver's job does with a batch: `scd2_incoming` (the batch, with the earlier
deliveries of the keys that have a version not after everything consumed before), then
the job's merge plan (`scd2_changes` against the stored versions of the batch's keys), merged on
(keys, valid_from), and (over drifting runs) the gate's count of the rows it leaves. The expected
table is computed independently in Python: per (key, updated_at) the last delivery wins, then
consecutive versions with equal tracked attributes collapse."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st
from pyspark.sql import functions as F

from pipeline.contracts.model import load_contract
from pipeline.gold.transforms import fct_orders
from pipeline.silver.history import scd2_incoming
from pipeline.silver.job import _merge_plan

REPO = Path(__file__).resolve().parents[2]
ACCOUNTS = load_contract(REPO / "config" / "contracts" / "accounts.yaml", REPO / "config" / "reference")
KEY, SEQ, DELETED = ACCOUNTS.keys[0], ACCOUNTS.sequence_by, ACCOUNTS.soft_delete
# What SCD2 looks at: the tracked attributes and the deletion flag.
CHANGED_ON = (*ACCOUNTS.tracked, DELETED)
T0 = datetime(2026, 3, 1)
KEYS = ("ACC-000001", "ACC-000002")
UNKNOWN_KEY = "ACC-999999"

# Silver accounts' layout, reduced to what history reads, with bronze's tie-breakers.
COLUMNS = (KEY, *ACCOUNTS.tracked, SEQ, DELETED, "_ingestion_ts", "_source_file")
TYPES = {
    SEQ: "timestamp",
    DELETED: "boolean",
    "_ingestion_ts": "timestamp",
    "annual_revenue": "decimal(18,2)",
}
SCHEMA = ", ".join(f"{c} {TYPES.get(c, 'string')}" for c in COLUMNS)
STORED = (*COLUMNS[:-2], "valid_from", "valid_to", "is_current")
TYPES.update(valid_from="timestamp", valid_to="timestamp", is_current="boolean")
STORED_SCHEMA = ", ".join(f"{c} {TYPES.get(c, 'string')}" for c in STORED)
ORDERS = (
    "order_id string, account_id string, order_ts timestamp, order_date date, status string, "
    "currency string, amount decimal(18,2), updated_at timestamp"
)
FX_CAL = "fx_date date, currency string, rate_to_usd decimal(24,12), rate_date date"

# Few values, few hours: the same values come back and timestamps collide often.
attributes = st.fixed_dictionaries(
    {
        "segment": st.sampled_from(["SMB", "Enterprise"]),
        "country": st.sampled_from(["US", "DE"]),
        "annual_revenue": st.sampled_from([None, Decimal("10.00")]),
    }
)
delivery = st.tuples(
    st.sampled_from(KEYS),
    st.integers(min_value=0, max_value=5),  # hours after T0
    attributes,
    st.sampled_from([False, False, False, True]),  # deleted: now and then
)
runs = st.lists(st.lists(delivery, min_size=1, max_size=5), min_size=1, max_size=2)  # a late run is enough
# Three runs: late and in-order keys meet in one batch, and a late version follows a run whose
# keys took the in-order path.
three_runs = st.lists(st.lists(delivery, min_size=1, max_size=5), min_size=3, max_size=3)

# The known edge cases, tried on every build besides the generated examples.
A, B = KEYS
X = {"segment": "SMB", "country": "US", "annual_revenue": None}
Y = {"segment": "Enterprise", "country": "DE", "annual_revenue": Decimal("10.00")}
# A late version between two equal ones (silver folded the later one away), a timestamp
# delivered again with other values (the later delivery wins), a deletion.
LATE_BETWEEN_EQUAL = [
    [(A, 0, X, False), (A, 2, X, False), (B, 1, X, False)],
    [(A, 1, Y, False), (B, 1, Y, False), (B, 3, X, True)],
]
# Out of order, the same timestamp twice, a repeated value, a deletion then a comeback.
SHUFFLED = [(A, 3, X, False), (A, 1, Y, False), (A, 1, X, False), (A, 2, X, True), (A, 4, Y, False), (B, 0, X, False)]  # fmt: skip
# Drifting by three hours a run: a late version equal to its stored successor absorbs it, in
# the same batch as an in-order key; then a late change beside an in-order deletion.
DRIFTING = [
    [(A, 5, Y, False), (B, 0, X, False)],
    [(A, 0, Y, False), (B, 4, Y, False)],
    [(A, 0, X, False), (B, 5, X, True)],
]


def row(key: str, hour: int, attrs: dict, deleted: bool) -> dict:
    """A delivery, in the column order of COLUMNS."""
    fixed = {"account_name": "Acme", "industry": "Retail", "owner_email_hash": "h"}
    values = {KEY: key, **fixed, **attrs, SEQ: T0 + timedelta(hours=hour), DELETED: deleted}
    return {c: values[c] for c in COLUMNS[:-2]}


def silver_run(
    spark, table: dict, batch: list[tuple], run: int, earlier: list[tuple], check_gate: bool = False
) -> tuple[dict, list[tuple]]:
    """One silver run over `batch` (later positions ingested later) merged into `table`,
    {(key, valid_from): version}: what the job's MERGE on (keys, valid_from) leaves. `earlier`:
    the rows ingested by the runs before (bronze at the consumed version), as the job reads them
    (job.scd2_input). Returns the table and the rows ingested so far."""
    ingested = [
        (*row(*d).values(), T0 + timedelta(days=run, seconds=i), f"run-{run}.csv")
        for i, d in enumerate(batch)
    ]
    batch_df = spark.createDataFrame(ingested, SCHEMA)
    # The job's bound: the newest version consumed so far (its recorded newest data time).
    consumed_newest = max((r[COLUMNS.index(SEQ)] for r in earlier), default=None)
    incoming = scd2_incoming(
        batch_df, spark.createDataFrame(earlier, SCHEMA), ACCOUNTS, consumed_newest
    ).drop("_ingestion_ts", "_source_file")
    # The job's merge plan against the whole table: it takes the stored versions of the batch's
    # keys itself (MergePlan.stored).
    target = (
        spark.createDataFrame([tuple(v[c] for c in STORED) for v in table.values()], STORED_SCHEMA)
        if table
        else None
    )
    rows_now = (lambda: len(table)) if table else None  # the table's rows, as the lake's log gives them
    plan = _merge_plan(ACCOUNTS, incoming, target, rows_now=rows_now)
    # Held as build_silver holds them: the gate's count below reads both again.
    cached = [plan.stored.cache()] if plan.stored is not None else []
    cached.append(plan.source.cache())
    merged, matches = dict(table), 0
    for change in plan.source.collect():
        version = change.asDict()
        identity = (version[KEY], version["valid_from"])
        matches += identity in table
        if version["is_current"] is None:  # superseded: the merge deletes it
            del merged[identity]
        else:
            merged[identity] = version
    if check_gate and target is not None:
        # The merge's figures, one query per run (checked where runs supersede stored versions,
        # not in every test): the table's rows as it leaves them, judged by the gate before the
        # commit, and the source rows matching a stored version (none: the publish appends).
        assert plan.figures == (len(merged), matches)
    for frame in reversed(cached):
        frame.unpersist()
    return merged, earlier + ingested


def expected_versions(runs_: list[list[tuple]]) -> dict[str, list[dict]]:
    """Per key, the versions one run over every delivery gives, by brute force in Python."""
    latest: dict[tuple[str, datetime], dict] = {}
    for batch in runs_:
        for d in batch:
            r = row(*d)
            latest[(r[KEY], r[SEQ])] = r  # a later delivery of the same version replaces it
    chains: dict[str, list[dict]] = {}
    for (key, _), r in sorted(latest.items()):
        chain = chains.setdefault(key, [])
        if not chain or [chain[-1][c] for c in CHANGED_ON] != [r[c] for c in CHANGED_ON]:
            chain.append(r)
    return {
        key: [
            {
                **r,
                "valid_from": r[SEQ],
                "valid_to": chain[i + 1][SEQ] if i + 1 < len(chain) else None,
                "is_current": i + 1 == len(chain) and not r[DELETED],
            }
            for i, r in enumerate(chain)
        ]
        for key, chain in chains.items()
    }


def by_key(table: dict) -> dict[str, list[dict]]:
    chains: dict[str, list[dict]] = {}
    for (key, _), version in sorted(table.items()):
        chains.setdefault(key, []).append(version)
    return chains


def run_all(spark, runs_: list[list[tuple]], check_gate: bool = False) -> dict:
    table: dict = {}
    ingested: list[tuple] = []
    for n, batch in enumerate(runs_):
        table, ingested = silver_run(spark, table, batch, n, ingested, check_gate)
    return table


def history(spark, runs_: list[list[tuple]], check_gate: bool = False) -> dict[str, list[dict]]:
    """The versions per key the runs leave, as `expected_versions` gives them."""
    return {
        key: [{c: v[c] for c in STORED} for v in chain]
        for key, chain in by_key(run_all(spark, runs_, check_gate)).items()
    }


def version_in_force(chain: list[dict], at: datetime, before_first: str) -> dict | None:
    """Brute force: the version whose [valid_from, valid_to) holds `at`."""
    for v in chain:
        if v["valid_from"] <= at and (v["valid_to"] is None or at < v["valid_to"]):
            return v
    return chain[0] if before_first == "earliest" and at < chain[0]["valid_from"] else None


def as_of_lookups(spark, chains: dict[str, list[dict]], order_half_hours: list[int]) -> list[tuple]:
    """fct_orders' segment, country and account_known of orders at the given half hours from T0,
    for every key and one unknown to silver, under both before-first-version policies."""
    accounts = spark.createDataFrame(
        [tuple(v[c] for c in STORED) for chain in chains.values() for v in chain], STORED_SCHEMA
    )
    orders = [
        (f"ORD-{i:07d}", key, T0 + timedelta(minutes=30 * h), "placed", "USD", Decimal("1.00"))
        for i, (key, h) in enumerate((k, h) for k in (*KEYS, UNKNOWN_KEY) for h in order_half_hours)
    ]
    orders_df = spark.createDataFrame([(*o[:3], o[2].date(), *o[3:], o[2]) for o in orders], ORDERS)
    fx_cal = spark.createDataFrame([], FX_CAL)
    lookups = [
        fct_orders(orders_df, accounts, fx_cal, before_first_version=policy).select(
            F.lit(policy), "order_id", "account_id", "order_ts", "segment", "country", "account_known"
        )
        for policy in ("unknown", "earliest")
    ]
    return lookups[0].unionAll(lookups[1]).collect()  # one Spark job


@given(runs, st.lists(st.integers(min_value=-2, max_value=12), min_size=1, max_size=6))
@example(LATE_BETWEEN_EQUAL, [-2, 0, 1, 2, 3, 12])  # before, on and between versions, after
def test_scd2_runs_keep_one_current_row_contiguous_versions_and_the_as_of_lookup_finds_the_one_in_force(
    spark, runs_, order_half_hours
):
    """Orders fall on whole hours (version boundaries) and half hours, before, between and after
    the versions; the expected account version is found by brute force over the versions."""
    chains = by_key(run_all(spark, runs_))
    for key, chain in chains.items():
        # the last version, unless it is a deletion
        assert [v for v in chain if v["is_current"]] == ([] if chain[-1][DELETED] else [chain[-1]]), key
        for earlier, later in zip(chain, chain[1:], strict=False):
            assert earlier["valid_from"] < earlier["valid_to"] == later["valid_from"], key  # contiguous
            assert [earlier[c] for c in CHANGED_ON] != [later[c] for c in CHANGED_ON], key  # a real change
        assert chain[-1]["valid_to"] is None, key
    lookups = as_of_lookups(spark, chains, order_half_hours)
    assert len(lookups) == 2 * 3 * len(order_half_hours)  # one row per order and policy
    for policy, order_id, key, at, segment, country, known in lookups:
        version = version_in_force(chains[key], at, policy) if key in chains else None
        expected = (version and version["segment"], version and version["country"], key in chains)
        assert (segment, country, known) == expected, (policy, order_id, key, at)


@given(st.lists(delivery, min_size=1, max_size=10))
@example(SHUFFLED)
def test_one_run_over_shuffled_deliveries_gives_the_brute_force_history(spark, deliveries):
    """Out of order, repeated values, the same timestamp twice (the later delivery wins)."""
    assert history(spark, [deliveries]) == expected_versions([deliveries])


def test_a_late_version_between_two_equal_ones_keeps_the_later_one(spark):
    x, y = {"segment": "SMB", "country": "US", "annual_revenue": None}, {"segment": "Enterprise", "country": "US", "annual_revenue": None}  # fmt: skip
    runs_ = [[(KEYS[0], 0, x, False), (KEYS[0], 2, x, False)], [(KEYS[0], 1, y, False)]]
    assert history(spark, runs_) == expected_versions(runs_)


@given(three_runs)
@example(DRIFTING)
def test_runs_over_drifting_deliveries_give_the_one_run_history(spark, runs_):
    """Each run's hours move on by three: most versions come after everything consumed (no
    earlier deliveries needed), some are late, often both in one batch."""
    drifting = [[(k, hour + 3 * n, a, d) for k, hour, a, d in batch] for n, batch in enumerate(runs_)]
    assert history(spark, drifting, check_gate=True) == expected_versions(drifting)
