"""build_gold through the driver's edge (the DQ gate judges what it stages) on a temporary delta-rs
lake: writes, idempotent skips, rebuilds on new inputs."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import date, datetime
from decimal import Decimal as D

import pytest

from pipeline.app import step_check
from pipeline.dq.gate import DqGateFailed
from pipeline.driver.edge import finish
from pipeline.gold import MARTS, build_gold
from pipeline.gold import transforms as T
from pipeline.gold.marts import _after_merge, _vacuumed_files
from pipeline.lake import Commit, LakeError, MergeSpec
from pipeline.settings import ConfigError
from tests.helpers import REPO, make_ctx

d = date
ts = datetime


def build(ctx, mart: str):
    """One gold step as the driver runs it: the job, then the check, then the publish."""
    return finish(ctx, f"gold_{mart}", build_gold(ctx, mart), step_check())


# Silver-shaped tables (contract columns + SCD2/PII/audit columns), one or two rows each.
# fmt: off
SILVER = {
    "accounts": (
        "account_id string, account_name string, industry string, segment string, country string, "
        "owner_email_hash string, owner_email_domain string, phone_masked string, "
        "annual_revenue decimal(18,2), created_at timestamp, updated_at timestamp, is_deleted boolean, "
        "valid_from timestamp, valid_to timestamp, is_current boolean, _batch_id string, _source_file string",
        [
            ("ACC-000001", "Acme", "Tech", "SMB", "US", "h1", "acme.com", "***1", D("10.00"),
             ts(2024, 1, 1), ts(2024, 1, 1), False, ts(2024, 1, 1), None, True, "b1", "f1"),
        ],
    ),
    "orders": (
        "order_id string, account_id string, order_ts timestamp, order_date date, status string, "
        "currency string, amount decimal(18,2), updated_at timestamp, _batch_id string, _source_file string",
        [
            ("ORD-0000001", "ACC-000001", ts(2024, 1, 6), d(2024, 1, 6), "placed", "EUR", D("10.00"), ts(2024, 1, 6), "b1", "f1"),
            ("ORD-0000002", "ACC-000001", ts(2024, 1, 7), d(2024, 1, 7), "shipped", "USD", D("5.00"), ts(2024, 1, 7), "b1", "f1"),
        ],
    ),
    "fx_rates": (
        "rate_date date, currency string, units_per_usd decimal(24,10), rate_to_usd decimal(24,12), "
        "base string, _batch_id string, _source_file string",
        [(d(2024, 1, 5), "EUR", D("0.5"), D("2"), "USD", "b1", "f1")],
    ),
    "opportunities": (
        "opportunity_id string, account_id string, name string, stage string, amount decimal(18,2), "
        "currency string, probability int, close_date date, created_at timestamp, updated_at timestamp, "
        "is_deleted boolean, _batch_id string, _source_file string",
        [
            ("OPP-000001", "ACC-000001", "Deal", "Proposal", D("100.00"), "EUR", 50, d(2024, 2, 1),
             ts(2024, 1, 1), ts(2024, 1, 1), False, "b1", "f1"),
        ],
    ),
    "contacts": (
        "contact_id string, account_id string, email_hash string, email_domain string, phone_masked string, "
        "title string, created_at timestamp, updated_at timestamp, is_deleted boolean, _batch_id string, "
        "_source_file string",
        [("CON-0000001", "ACC-000001", "h", "acme.com", "***2", "CTO", ts(2024, 1, 1), ts(2024, 1, 1), False, "b1", "f1")],
    ),
    "behavior_events": (
        "event_id string, account_id string, user_id string, session_id string, event_type string, "
        "page_url string, event_ts timestamp, event_date date, loaded_at timestamp, _batch_id string, "
        "_source_file string",
        [("e1", "ACC-000001", "U1", "s1", "click", "/", ts(2024, 1, 8, 9), d(2024, 1, 8), ts(2024, 1, 8), "b1", "f1")],
    ),
    "product_events": (
        "event_id string, event_type string, account_id string, user_id string, product_id string, "
        "event_ts timestamp, event_date date, _batch_id string, _source_file string",
        [("p1", "feature_used", "ACC-000001", "U2", "X", ts(2024, 1, 9, 9), d(2024, 1, 9), "b1", "f1")],
    ),
}
# fmt: on


def silver_lake(spark, tmp_path, names=tuple(SILVER), engine="delta-rs"):
    ctx = make_ctx(spark, tmp_path / "lake", engine=engine)
    for name in names:
        schema, rows = SILVER[name]
        ctx.lake.overwrite(ctx.table_path("silver", name), spark.createDataFrame(rows, schema))
    return ctx


def test_build_then_rerun_skips_then_new_input_rebuilds(spark, tmp_path):
    ctx = silver_lake(spark, tmp_path, ["orders", "accounts", "fx_rates"])
    path = ctx.table_path("gold", "fct_orders")

    first = build(ctx, "fct_orders")
    assert (first.rows_in, first.rows_out) == (2, 2)
    assert ctx.lake.version(path) == 0
    usd = {r["order_id"]: r["amount_usd"] for r in ctx.lake.read(path).collect()}
    assert usd == {"ORD-0000001": D("20.00"), "ORD-0000002": D("5.00")}
    meta = ctx.lake.history(path, limit=1)[0].metadata["gold"]
    assert meta["inputs"] == {"silver/orders": 0, "silver/accounts": 0, "silver/fx_rates": 0}

    again = build(ctx, "fct_orders")
    assert again.details["skipped"] == "inputs unchanged"
    assert ctx.lake.version(path) == 0

    schema, rows = SILVER["orders"]
    # fmt: off
    extra = ("ORD-0000003", "ACC-000001", ts(2024, 1, 8), d(2024, 1, 8), "placed", "USD", D("1.00"), ts(2024, 1, 8), "b2", "f2")
    # fmt: on
    ctx.lake.overwrite(ctx.table_path("silver", "orders"), spark.createDataFrame([*rows, extra], schema))
    rebuilt = build(ctx, "fct_orders")
    assert "skipped" not in rebuilt.details
    assert (rebuilt.rows_in, rebuilt.rows_out) == (3, 3)
    assert ctx.lake.version(path) == 1
    assert ctx.lake.history(path, limit=1)[0].metadata["gold"]["inputs"]["silver/orders"] == 1


def test_every_mart_builds_in_dependency_order(spark, tmp_path):
    ctx = silver_lake(spark, tmp_path)
    assert set(MARTS) == {
        "fct_orders",
        "revenue_daily",
        "pipeline_summary",
        "customer_360",
        "engagement_daily",
    }
    for mart in ["fct_orders", "revenue_daily", "pipeline_summary", "customer_360", "engagement_daily"]:
        result = build(ctx, mart)
        assert "skipped" not in result.details, mart
        assert ctx.lake.version(ctx.table_path("gold", mart)) == 0

    [c360] = ctx.lake.read(ctx.table_path("gold", "customer_360")).collect()
    # as_of defaults to the latest event date in silver (2024-01-09, the product event).
    assert c360["as_of_date"] == d(2024, 1, 9)
    assert (c360["lifetime_revenue_usd"], c360["order_count"]) == (D("25.00"), 2)
    assert (c360["open_pipeline_usd"], c360["active_contacts"]) == (D("200.00"), 1)
    assert (c360["web_events_30d"], c360["product_events_30d"]) == (1, 1)
    [rev1, rev2] = ctx.lake.read(ctx.table_path("gold", "revenue_daily")).orderBy("order_date").collect()
    assert (rev1["revenue_usd"], rev2["revenue_usd"]) == (D("20.00"), D("5.00"))

    # An explicit as_of is part of the fingerprint: a different one rebuilds, the same one skips.
    later = dataclasses.replace(ctx)
    later.as_of = d(2024, 2, 20)
    assert "skipped" not in build(later, "customer_360").details
    assert build(later, "customer_360").details["skipped"] == "inputs unchanged"
    [c360] = ctx.lake.read(ctx.table_path("gold", "customer_360")).collect()
    assert (c360["as_of_date"], c360["web_events_30d"], c360["product_events_30d"]) == (d(2024, 2, 20), 0, 0)
    # fct_orders unchanged since revenue_daily was built: skipped.
    assert build(ctx, "revenue_daily").details["skipped"] == "inputs unchanged"


def with_marts_yaml(ctx, tmp_path, marts_yaml: str):
    """`ctx` reading config/ as the repo has it but for config/marts.yaml."""
    return dataclasses.replace(
        ctx, settings=dataclasses.replace(ctx.settings, config_dir=_config_dir(tmp_path, marts_yaml))
    )


def _config_dir(tmp_path, marts_yaml: str):
    target = tmp_path / "config"
    shutil.copytree(REPO / "config", target)
    (target / "marts.yaml").write_text(marts_yaml)
    return str(target)


def test_before_first_version_option_is_in_the_fingerprint_and_rebuilds(spark, tmp_path):
    ctx = silver_lake(spark, tmp_path, ["orders", "fx_rates"])
    # The account's only version starts between its two orders (2024-01-06 and 2024-01-07).
    schema, [row] = SILVER["accounts"]
    late = list(row)
    late[12] = ts(2024, 1, 6, 12)  # valid_from
    ctx.lake.overwrite(ctx.table_path("silver", "accounts"), spark.createDataFrame([tuple(late)], schema))
    path = ctx.table_path("gold", "fct_orders")

    def attributes():
        rows = ctx.lake.read(path).collect()
        return {r["order_id"]: (r["segment"], r["country"], r["account_known"]) for r in rows}

    build(ctx, "fct_orders")  # the default: no version in force -> unknown
    assert attributes() == {"ORD-0000001": (None, None, True), "ORD-0000002": ("SMB", "US", True)}
    meta = ctx.lake.history(path, limit=1)[0].metadata["gold"]
    assert meta["options"] == {"before_first_version": "unknown"}
    build(ctx, "revenue_daily")
    revenue = {
        (r["country"], r["segment"]) for r in ctx.lake.read(ctx.table_path("gold", "revenue_daily")).collect()
    }
    assert revenue == {("unknown", "unknown"), ("US", "SMB")}

    earliest = with_marts_yaml(ctx, tmp_path, "fct_orders: {before_first_version: earliest}\n")
    rebuilt = build(earliest, "fct_orders")
    assert "skipped" not in rebuilt.details and ctx.lake.version(path) == 1
    assert attributes() == {"ORD-0000001": ("SMB", "US", True), "ORD-0000002": ("SMB", "US", True)}
    assert ctx.lake.history(path, limit=1)[0].metadata["gold"]["options"] == {
        "before_first_version": "earliest"
    }
    assert build(earliest, "fct_orders").details["skipped"] == "inputs unchanged"


def test_marts_config_errors_name_the_file_and_key(spark, tmp_path):
    ctx = silver_lake(spark, tmp_path, ["orders", "accounts", "fx_rates"])
    bad = with_marts_yaml(ctx, tmp_path, "fct_orders: {before_first_version: latest}\n")
    with pytest.raises(
        ConfigError, match=r"marts\.yaml: fct_orders\.before_first_version: expected one of unknown\|earliest"
    ):
        build(bad, "fct_orders")


def test_unknown_mart_names_the_known_ones():
    with pytest.raises(KeyError, match="known: customer_360"):
        build_gold(None, "nope")  # fails before touching the context


def test_full_refresh_rebuilds_and_a_critical_gate_failure_leaves_the_mart_as_it_was(spark, tmp_path):
    ctx = silver_lake(spark, tmp_path, ["orders", "accounts", "fx_rates"])
    path = ctx.table_path("gold", "fct_orders")
    assert build(ctx, "fct_orders").details["full_rebuild"] == "no previous build"
    ctx.full_refresh = True  # lakehouse run --full-refresh: rebuilt although nothing changed
    assert build(ctx, "fct_orders").details["full_rebuild"] == "--full-refresh"
    assert ctx.lake.version(path) == 1
    before = sorted(ctx.lake.read(path).collect())

    # A negative amount makes amount_usd break the critical range rule of config/dq.yaml.
    schema, rows = SILVER["orders"]
    # fmt: off
    bad = ("ORD-0000003", "ACC-000001", ts(2024, 1, 8), d(2024, 1, 8), "placed", "USD", D("-1.00"), ts(2024, 1, 8), "b2", "f2")
    # fmt: on
    ctx.lake.append(ctx.table_path("silver", "orders"), spark.createDataFrame([bad], schema))
    ctx.full_refresh = False
    with pytest.raises(DqGateFailed, match="gold_fct_orders"):
        build(ctx, "fct_orders")  # recomputed (a third of the orders: in full), checked, not written
    assert ctx.lake.version(path) == 1
    assert sorted(ctx.lake.read(path).collect()) == before


def test_an_increment_above_rebuild_above_share_rebuilds_in_full_below_it_merges(spark, tmp_path):
    ctx = silver_lake(spark, tmp_path, ["orders", "accounts", "fx_rates"])
    ctx = with_marts_yaml(ctx, tmp_path, "incremental: {rebuild_below_rows: 0}\n")  # the default share
    build(ctx, "fct_orders")
    schema, [row, _] = SILVER["orders"]
    orders = ctx.table_path("silver", "orders")

    def new_order(number: int) -> None:
        ctx.lake.append(orders, spark.createDataFrame([(f"ORD-000000{number}", *row[1:])], schema))

    new_order(3)  # one order of three: above the default share, 0.25
    rebuilt = build(ctx, "fct_orders")
    assert (rebuilt.details["write"], rebuilt.details["full_rebuild"]) == (
        "full",
        "1 of 3 rows affected, above incremental.rebuild_above_share 0.25 of config/marts.yaml",
    )
    build(ctx, "revenue_daily")  # in full, after fct_orders' full rebuild
    new_order(4)  # one of four, within 0.5 (not in the fingerprint: no rebuild for changing it)
    (tmp_path / "config" / "marts.yaml").write_text(
        "incremental: {rebuild_above_share: 0.5, rebuild_below_rows: 0}\n"
    )
    lenient = ctx
    merged = build(lenient, "fct_orders")
    assert (merged.details["write"], merged.details["keys_recomputed"]) == ("incremental", 1)
    got = ctx.lake.read(ctx.table_path("gold", "fct_orders")).collect()
    assert sorted(r["order_id"] for r in got) == [f"ORD-000000{n}" for n in (1, 2, 3, 4)]
    # The commit records the recomputed order's date; revenue_daily recomputes that date only.
    fct = ctx.table_path("gold", "fct_orders")
    assert ctx.lake.history(fct, 1)[0].metadata["changed_order_dates"] == [row[3].isoformat()]
    revenue = build(lenient, "revenue_daily")
    assert (revenue.details["write"], revenue.details["keys_recomputed"]) == ("incremental", 1)
    expected = T.revenue_daily(ctx.lake.read(fct)).collect()
    assert sorted(ctx.lake.read(ctx.table_path("gold", "revenue_daily")).collect()) == sorted(expected)
    (tmp_path / "config" / "marts.yaml").write_text("incremental: {rebuild_above_share: 1.5}\n")
    with pytest.raises(
        ConfigError, match=r"marts\.yaml: incremental: .*expected a share in \[0, 1\], got 1.5"
    ):
        build(lenient, "fct_orders")


@pytest.mark.parametrize("engine", ["delta-rs", "delta-spark"])
def test_fct_orders_weighs_the_rows_its_merge_rewrites_not_the_orders_it_recomputes(spark, tmp_path, engine):
    """A MERGE rewrites every file holding a row it replaces: the share `rebuild_above_share`
    weighs is of the rows written (those files' rows and the new orders), so one changed order
    in a file of many rebuilds the mart, while one in a file of its own does not."""
    ctx = silver_lake(spark, tmp_path, ["orders", "accounts", "fx_rates"], engine=engine)
    ctx = with_marts_yaml(ctx, tmp_path, "incremental: {rebuild_above_share: 1, rebuild_below_rows: 0}\n")
    build(ctx, "fct_orders")
    ctx.lake.optimize(ctx.table_path("gold", "fct_orders"))  # orders 1 and 2, in one file
    schema, [row, _] = SILVER["orders"]
    orders, fct = ctx.table_path("silver", "orders"), ctx.table_path("gold", "fct_orders")

    def put(order_id: str, amount: str) -> dict:
        changed = spark.createDataFrame([(order_id, *row[1:6], D(amount), *row[7:])], schema)
        ctx.lake.merge(orders, changed, MergeSpec(keys=("order_id",)))
        return build(ctx, "fct_orders").details

    assert ctx.lake.file_stats(fct).files == 1
    assert put("ORD-0000003", "1.00")["write"] == "incremental"  # inserted, in a new file
    assert ctx.lake.file_stats(fct).files == 2
    (tmp_path / "config" / "marts.yaml").write_text(
        "incremental: {rebuild_above_share: 0.5, rebuild_below_rows: 0}\n"
    )
    merged = put("ORD-0000003", "2.00")  # its file holds it alone: 1 of 3 rows written
    assert (merged["write"], merged["keys_recomputed"], merged["rows_merged"]) == ("incremental", 1, 1)
    rebuilt = put("ORD-0000001", "3.00")  # its file holds orders 1 and 2: 2 of 3
    assert (rebuilt["write"], rebuilt["full_rebuild"]) == (
        "full",
        "2 of 3 rows to write (0 new, 2 in the files holding the 1 replaced), above "
        "incremental.rebuild_above_share 0.5 of config/marts.yaml",
    )
    full = T.fct_orders(
        ctx.lake.read(orders),
        ctx.lake.read(ctx.table_path("silver", "accounts")),
        T.fx_calendar(ctx.lake.read(ctx.table_path("silver", "fx_rates"))),
    )
    got = ctx.lake.read(fct)
    assert sorted(got.collect()) == sorted(full.select(*got.columns).collect())
    assert sorted((r["order_id"], r["amount"]) for r in got.collect()) == [
        ("ORD-0000001", D("3.00")),
        ("ORD-0000002", D("5.00")),
        ("ORD-0000003", D("2.00")),
    ]


def test_a_mart_of_fewer_rows_than_rebuild_below_rows_is_rebuilt_in_full_and_0_updates_it(spark, tmp_path):
    """Below `incremental.rebuild_below_rows` main-input rows a rebuild costs less than finding
    what changed: built in full, the reason named; the mart is the same either way."""
    ctx = silver_lake(spark, tmp_path, ["orders", "accounts", "fx_rates"])
    ctx = with_marts_yaml(ctx, tmp_path, "incremental: {rebuild_above_share: 1, rebuild_below_rows: 4}\n")
    build(ctx, "fct_orders")
    schema, [row, _] = SILVER["orders"]
    orders, fct = ctx.table_path("silver", "orders"), ctx.table_path("gold", "fct_orders")
    ctx.lake.append(orders, spark.createDataFrame([("ORD-0000003", *row[1:])], schema))
    rebuilt = build(ctx, "fct_orders")
    assert (rebuilt.details["write"], rebuilt.details["full_rebuild"]) == (
        "full",
        "3 input rows, below incremental.rebuild_below_rows 4 of config/marts.yaml "
        "(a rebuild costs less than finding the changed rows)",
    )
    ctx.lake.append(orders, spark.createDataFrame([("ORD-0000004", *row[1:])], schema))
    merged = build(ctx, "fct_orders")  # 4 rows: not below 4
    assert (merged.details["write"], merged.details["keys_recomputed"]) == ("incremental", 1)
    full = T.fct_orders(
        ctx.lake.read(orders),
        ctx.lake.read(ctx.table_path("silver", "accounts")),
        T.fx_calendar(ctx.lake.read(ctx.table_path("silver", "fx_rates"))),
    )
    assert sorted(ctx.lake.read(fct).collect()) == sorted(full.select(*ctx.lake.read(fct).columns).collect())
    (tmp_path / "config" / "marts.yaml").write_text("incremental: {rebuild_below_rows: -1}\n")
    with pytest.raises(
        ConfigError, match=r"marts\.yaml: incremental: .*rebuild_below_rows: expected a whole number"
    ):
        build(ctx, "fct_orders")


def test_an_incremental_fct_orders_merges_its_rows_and_the_gate_counts_on_the_table_after(spark, tmp_path):
    """fct_orders' increment is merged by order_id: the check judges the recomputed rows, with
    the row count and the `counts` conditions (config/dq.yaml: account_version_missing, warn)
    of the table as the merge leaves it, which the batch alone cannot tell."""
    ctx = silver_lake(spark, tmp_path, ["orders", "accounts", "fx_rates"])
    ctx = with_marts_yaml(ctx, tmp_path, "incremental: {rebuild_above_share: 1, rebuild_below_rows: 0}\n")
    build(ctx, "fct_orders")
    schema, [row, _] = SILVER["orders"]
    orders, fct = ctx.table_path("silver", "orders"), ctx.table_path("gold", "fct_orders")

    def add(order_id: str, placed: datetime):
        ctx.lake.append(
            orders, spark.createDataFrame([(order_id, row[1], placed, placed.date(), *row[4:])], schema)
        )
        return build(ctx, "fct_orders").details

    # Placed before the account's first version (2024-01-01): known account, no segment in force.
    early = add("ORD-0000003", ts(2023, 12, 1))
    # A regular order: its one row matches no condition, the table still holds one that does.
    regular = add("ORD-0000004", ts(2024, 1, 8))
    for details, rows in ((early, 3), (regular, 4)):
        assert (details["write"], details["keys_recomputed"], details["rows_merged"]) == ("incremental", 1, 1)
        dq = {r["rule"]: r for r in details["dq"]}
        assert (dq["batch:row_count"]["observed"], dq["table:row_count"]["observed"]) == ("1", str(rows))
        counted = dq["count:account_version_missing"]
        assert (counted["passed"], counted["observed"]) == (False, f"1 of {rows} rows")
    assert ctx.lake.history(fct, 1)[0].operation == "MERGE"
    full = T.fct_orders(
        ctx.lake.read(orders),
        ctx.lake.read(ctx.table_path("silver", "accounts")),
        T.fx_calendar(ctx.lake.read(ctx.table_path("silver", "fx_rates"))),
    )
    assert sorted(ctx.lake.read(fct).collect()) == sorted(full.select(*ctx.lake.read(fct).columns).collect())


def test_an_order_dated_year_1_is_recomputed_on_its_date_like_any_other(spark, tmp_path):
    """Silver keeps dates of years 1-9999. revenue_daily recomputes the changed dates by value:
    year 1 once failed every run (pyspark writes date(1, 1, 1) as "1-01-01", which Java refuses)."""
    ctx = silver_lake(spark, tmp_path, ["orders", "accounts", "fx_rates"])
    ctx = with_marts_yaml(ctx, tmp_path, "incremental: {rebuild_above_share: 1, rebuild_below_rows: 0}\n")
    build(ctx, "fct_orders")
    build(ctx, "revenue_daily")
    schema, [row, _] = SILVER["orders"]
    ancient = ts(1, 1, 1, 12)
    ctx.lake.append(
        ctx.table_path("silver", "orders"),
        spark.createDataFrame([("ORD-0000003", row[1], ancient, ancient.date(), *row[4:])], schema),
    )
    assert build(ctx, "fct_orders").details["write"] == "incremental"
    revenue = build(ctx, "revenue_daily")
    assert (revenue.details["write"], revenue.details["keys_recomputed"]) == ("incremental", 1)
    expected = T.revenue_daily(ctx.lake.read(ctx.table_path("gold", "fct_orders"))).collect()
    got = ctx.lake.read(ctx.table_path("gold", "revenue_daily")).collect()
    assert sorted(got) == sorted(expected) and d(1, 1, 1) in {r["order_date"] for r in got}


def table_read(spark, folder, schema: str, *files: list[tuple]):
    """A mart as a table read gives it (`_after_merge` reads each row's file): one Parquet file
    per list of rows."""
    for i, rows in enumerate(files):
        spark.createDataFrame(rows, schema).coalesce(1).write.parquet(str(folder / f"part{i}"))
    return spark.read.schema(schema).parquet(*[str(folder / f"part{i}") for i in range(len(files))])


def test_a_merged_increment_with_a_key_twice_is_not_merged(spark, tmp_path):
    """A key twice among the recomputed rows: no merge (the build rebuilds in full, which names
    the overlapping versions in silver); keys once: the table after replaces and inserts."""
    schema = "order_id string, n int"
    current = table_read(spark, tmp_path, schema, [("A", 1), ("B", 2)])
    twice = spark.createDataFrame([("B", 3), ("B", 4), ("C", 5)], schema)
    assert _after_merge(current, twice, ("order_id",)) == (
        None,
        "1 repeated or null keys among the recomputed rows",
    )
    after, why = _after_merge(current, spark.createDataFrame([("B", 3), ("C", 5)], schema), ("order_id",))
    assert why is None and (after.rows, after.merged, after.dates) == (3, 2, None)
    # C is new; B's file (A and B) is rewritten to replace it.
    assert (after.inserted, after.rewritten, after.written) == (1, 2, 3)
    assert sorted(after.frame.collect()) == [("A", 1), ("B", 3), ("C", 5)]


def test_a_merged_increment_reports_the_dates_of_the_rows_it_replaces_and_writes(spark, tmp_path):
    """The dates a per-date mart downstream recomputes: those of the replaced rows (an order that
    moved off a date) and of the rows written, a null date among them; not those of untouched
    rows. And the rows it writes: the new ones, and every row of a file holding a replaced one."""
    schema = "order_id string, order_date date"
    current = table_read(spark, tmp_path, schema, [("A", d(2024, 1, 1)), ("B", d(2024, 1, 2))], [("C", None)])
    batch = spark.createDataFrame([("B", d(2024, 1, 5)), ("D", None), ("E", d(2024, 1, 2))], schema)
    after, why = _after_merge(current, batch, ("order_id",), "order_date")
    assert why is None and (after.rows, after.merged) == (5, 3)
    assert after.dates == [None, "2024-01-02", "2024-01-05"]
    assert (after.inserted, after.rewritten) == (2, 2)  # D and E new; B's file holds A and B
    assert after.rows == after.frame.count()


def test_an_incremental_build_is_not_published_over_a_commit_made_after_it_was_staged(spark, tmp_path):
    """The publish overwrites the mart with the rows of the version the build kept: a commit that
    lands in between (another writer) would be undone, so the publish refuses, naming both."""
    ctx = silver_lake(spark, tmp_path, ["orders", "accounts", "fx_rates"])
    build(ctx, "fct_orders")
    schema, [row, _] = SILVER["orders"]
    ctx.lake.append(
        ctx.table_path("silver", "orders"), spark.createDataFrame([("ORD-0000003", *row[1:])], schema)
    )
    always = with_marts_yaml(ctx, tmp_path, "incremental: {rebuild_above_share: 1, rebuild_below_rows: 0}\n")
    staged = build_gold(always, "fct_orders")
    fct = ctx.table_path("gold", "fct_orders")
    ctx.lake.append(fct, ctx.lake.read(fct).where("order_id = 'ORD-0000002'"))  # another writer
    try:
        with pytest.raises(LakeError, match=r"moved from version 0 to 1 while this incremental build"):
            staged.publish()
    finally:
        staged.release()
    assert ctx.lake.version(fct) == 1  # nothing written over the other writer's commit


def test_a_rerun_takes_as_of_recorded_for_the_same_event_versions(spark, tmp_path, monkeypatch):
    ctx = silver_lake(spark, tmp_path)
    build(ctx, "fct_orders")
    path = ctx.table_path("gold", "customer_360")
    build(ctx, "customer_360")
    # Each event table's latest event_date at the version read, from the lake's log.
    assert ctx.lake.history(path, limit=1)[0].metadata["latest_event_date"] == {
        "silver/behavior_events": [0, "2024-01-08"],
        "silver/product_events": [0, "2024-01-09"],
    }

    def no_lookup(*args):
        raise AssertionError(f"column_max{args}: the recorded date should have been used")

    monkeypatch.setattr(ctx.lake, "column_max", no_lookup)
    assert build(ctx, "customer_360").details["skipped"] == "inputs unchanged"
    # A new event version is looked up (that table only), and moves as_of.
    monkeypatch.undo()
    schema, [row] = SILVER["behavior_events"]
    later = (*row[:6], ts(2024, 1, 20, 9), d(2024, 1, 20), *row[8:])
    ctx.lake.append(ctx.table_path("silver", "behavior_events"), spark.createDataFrame([later], schema))
    assert build(ctx, "customer_360").details["as_of"] == "2024-01-20"
    assert ctx.lake.history(path, limit=1)[0].metadata["latest_event_date"]["silver/behavior_events"] == [
        1,
        "2024-01-20",
    ]


def test_a_vacuum_rebuilds_a_mart_only_when_its_rule_reads_what_the_vacuum_removed(spark, tmp_path):
    """fct_orders reads its inputs' change feeds and old versions: a VACUUM of silver orders since
    its last build rebuilds it in full. revenue_daily reads fct_orders' changed dates from the
    commits' metadata (which a VACUUM leaves) and fct_orders as it is now: it stays incremental
    and equals revenue_daily over the whole mart."""
    ctx = silver_lake(spark, tmp_path, ["orders", "accounts", "fx_rates"])
    always = with_marts_yaml(ctx, tmp_path, "incremental: {rebuild_above_share: 1, rebuild_below_rows: 0}\n")
    build(always, "fct_orders")
    build(always, "revenue_daily")
    schema, [row, _] = SILVER["orders"]
    orders, fct = ctx.table_path("silver", "orders"), ctx.table_path("gold", "fct_orders")
    moved = (*row[:2], ts(2024, 1, 9), d(2024, 1, 9), *row[4:])  # ORD-0000001 moves to another date
    ctx.lake.merge(orders, spark.createDataFrame([moved], schema), MergeSpec(keys=("order_id",)))
    assert build(always, "fct_orders").details["write"] == "incremental"

    assert ctx.lake.vacuum(fct, 0, enforce_retention=False)  # the previous version's files
    assert {c.operation for c in ctx.lake.history(fct, 2)} == {"VACUUM START", "VACUUM END"}
    revenue = build(always, "revenue_daily")
    # Both dates of the moved order: the one it left and the one it joined.
    assert (revenue.details["write"], revenue.details["keys_recomputed"]) == ("incremental", 2)
    expected = T.revenue_daily(ctx.lake.read(fct)).collect()
    assert sorted(ctx.lake.read(ctx.table_path("gold", "revenue_daily")).collect()) == sorted(expected)

    ctx.lake.append(orders, spark.createDataFrame([("ORD-0000003", *row[1:])], schema))
    assert ctx.lake.vacuum(orders, 0, enforce_retention=False)
    rebuilt = build(always, "fct_orders")
    assert rebuilt.details["full_rebuild"] == "silver/orders vacuumed since version 1"


def test_rows_deleted_from_an_input_rebuild_the_mart(spark, tmp_path):
    """The incremental rules read rows their inputs gained; an erasure's DELETE removes rows, so
    the next build is a full one, and the mart loses what the deleted rows counted."""
    ctx = silver_lake(spark, tmp_path, ["orders", "accounts", "fx_rates"])
    always = with_marts_yaml(ctx, tmp_path, "incremental: {rebuild_above_share: 1, rebuild_below_rows: 0}\n")
    build(always, "fct_orders")
    orders = ctx.table_path("silver", "orders")
    deleted = ctx.lake.delete(orders, "order_id = 'ORD-0000001'", metadata={"operation": "erasure"}).version
    rebuilt = build(always, "fct_orders")
    assert rebuilt.details["full_rebuild"] == f"silver/orders: rows deleted at version {deleted}"
    fct = ctx.lake.read(ctx.table_path("gold", "fct_orders"))
    assert sorted(r["order_id"] for r in fct.collect()) == sorted(
        r["order_id"] for r in ctx.lake.read(orders).collect()
    )


def test_a_mart_empty_by_its_definition_is_written_empty_with_a_warning(spark, tmp_path):
    """Every opportunity closed: pipeline_summary (open pipeline) holds no row. That is news, not
    a failure: the mart is written empty (not left showing the old open pipeline) and the empty
    row count is a warning."""
    ctx = silver_lake(spark, tmp_path, ["opportunities", "accounts", "fx_rates"])
    build(ctx, "pipeline_summary")
    assert ctx.lake.read(ctx.table_path("gold", "pipeline_summary")).count() == 1
    schema, [row] = SILVER["opportunities"]
    won = (*row[:3], "Closed Won", *row[4:9], ts(2024, 1, 20), *row[10:])
    ctx.lake.overwrite(ctx.table_path("silver", "opportunities"), spark.createDataFrame([won], schema))
    result = build(ctx, "pipeline_summary")
    assert ctx.lake.read(ctx.table_path("gold", "pipeline_summary")).count() == 0
    [count] = [r for r in result.details["dq"] if r["rule"] == "table:row_count_bounds"]
    assert (count["severity"], count["passed"]) == ("warn", False)


@pytest.mark.parametrize(
    ("operations", "rebuilds"),
    [
        ([("VACUUM START", {}), ("VACUUM END", {"numDeletedFiles": 0})], False),  # a daily maintenance
        ([("VACUUM START", {}), ("VACUUM END", {"numDeletedFiles": 3})], True),
        ([("VACUUM START", {})], True),  # cut short: it may have deleted some
        ([("VACUUM END", {})], True),  # no figure: assume it deleted
        ([("WRITE", {}), ("OPTIMIZE", {})], False),
    ],
)
def test_only_a_vacuum_that_deleted_files_rebuilds_a_mart(operations, rebuilds):
    """delta-spark logs every VACUUM (the maintain steps' too): one that deleted no file leaves
    the versions and change feed the rules read (the lake contract holds numDeletedFiles)."""
    commits = [Commit(v, 0, op, {}, metrics) for v, (op, metrics) in enumerate(operations, start=1)]
    assert _vacuumed_files(commits) is rebuilds
