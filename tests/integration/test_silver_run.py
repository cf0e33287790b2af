"""Whole bronze -> silver runs on generated data: accounting against the generator's manifest,
quarantine reasons per injected defect, PII absence, idempotent reruns, incremental runs."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from datetime import datetime

import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import MapType, StringType

from pipeline.app import local_executor
from pipeline.driver.dag import load_dag
from pipeline.driver.runner import run_steps
from pipeline.jobs import JOBS
from pipeline.lake import LakeError
from pipeline.settings import JdbcSettings, KafkaSettings, SecretRef, SourceSettings
from pipeline.silver import job as silver_job
from tests.helpers import REPO, make_ctx, session_conf
from tests.integration.conftest import manifest
from tests.lake_compare import comparable as run_free
from tests.lake_compare import table_print

pytestmark = pytest.mark.slow

DAG = load_dag(REPO / "config" / "pipeline.yaml", set(JOBS))
STEPS = [s for s in DAG.order() if s.startswith(("bronze_", "silver_"))]
SILVER_SOURCE = {
    "accounts": "crm_accounts", "contacts": "crm_contacts", "opportunities": "crm_opportunities",
    "orders": "snowflake_orders", "behavior_events": "redshift_behavior", "product_events": "kafka_events",
    "fx_rates": "fx_rates",
}  # fmt: skip

# Which quarantine reasons each injected defect must produce (one defect per record).
DEFECT_REASONS = {
    "accounts": {"malformed_line": ["record:malformed"], "null_key": ["account_id:missing"],
                 "bad_number": ["annual_revenue:unparseable"], "bad_date": ["created_at:unparseable", "updated_at:unparseable"]},
    "contacts": {"malformed_line": ["record:malformed"], "null_key": ["contact_id:missing"],
                 "bad_date": ["created_at:unparseable", "updated_at:unparseable"]},
    "opportunities": {"malformed_line": ["record:malformed"], "null_key": ["opportunity_id:missing"],
                      "unknown_currency": ["currency:not_in_currencies"],
                      "bad_number": ["amount:unparseable", "probability:unparseable"],
                      "bad_date": ["created_at:unparseable", "updated_at:unparseable", "close_date:unparseable"]},
    "orders": {"null_key": ["order_id:missing"], "unknown_currency": ["currency:not_in_currencies"],
               "negative_amount": ["amount:below_min"]},
    "behavior_events": {"null_key": ["event_id:missing"]},
    "product_events": {"malformed_value": ["record:malformed"], "null_key": ["event_id:missing"]},
    "fx_rates": {"corrupt_file": ["record:malformed"], "unknown_currency": ["currency:not_in_currencies"],
                 "bad_number": ["units_per_usd:unparseable", "units_per_usd:missing"]},
}  # fmt: skip
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
PHONE = re.compile(r"\+\d{1,3}[-\s]\d{2,4}[-\s]\d{3,}")  # the shapes phones arrive in (+1-415-555-0134)


def run(ctx, steps=STEPS):
    out = io.StringIO()
    state = run_steps(ctx, DAG, steps, out, executor=local_executor())
    assert not state.failed, out.getvalue()
    return {s.step: s for s in state.steps}


@pytest.fixture
def silver_lake(pipeline_run):
    ctx, lake, outcomes = pipeline_run
    yield ctx, lake, outcomes
    ctx.run_id = "first"


def comparable(df):
    """Map columns (Kafka event properties) as sorted entry arrays: set operations refuse maps."""
    maps = [f.name for f in df.schema.fields if isinstance(f.dataType, MapType)]
    return df.withColumns({c: F.array_sort(F.map_entries(c)) for c in maps})


def duplicates_in_bronze(ctx, name: str) -> int:
    """Counted from the tables, not from the step: bronze rows that did not go to quarantine
    (a multiset difference on the raw bronze columns quarantine keeps), less one row per key
    (per key and version for SCD2 history), is what deduplication must have dropped."""
    contract = ctx.contracts[name]
    bronze = comparable(ctx.lake.read(ctx.table_path("bronze", SILVER_SOURCE[name])))
    quarantine = comparable(ctx.lake.read(ctx.table_path("quarantine", name))).select(*bronze.columns)
    valid = bronze.exceptAll(quarantine)
    identity = [*contract.keys, contract.sequence_by] if contract.history == "scd2" else list(contract.keys)
    return valid.count() - valid.select(*identity).distinct().count()


@pytest.mark.parametrize("name", sorted(SILVER_SOURCE))
def test_bronze_in_equals_silver_out_plus_quarantined_plus_duplicates(silver_lake, name):
    ctx, lake, outcomes = silver_lake
    step = outcomes[f"silver_{name}"]
    d = step.details
    assert step.rows_in == manifest(lake)["datasets"][SILVER_SOURCE[name]]["records"]
    assert d["duplicates"] == duplicates_in_bronze(ctx, name)
    assert step.rows_in == step.rows_out + d["quarantined"] + d["duplicates"]
    assert ctx.lake.read(ctx.table_path("quarantine", name)).count() == d["quarantined"]
    silver_rows = ctx.lake.read(ctx.table_path("silver", name)).count()
    if name == "accounts":
        assert 0 < silver_rows <= step.rows_out  # versions that change nothing tracked collapse
    elif name in ("contacts", "opportunities"):
        assert 0 < silver_rows <= step.rows_out  # soft-deleted rows leave the current state
        assert ctx.lake.read(ctx.table_path("silver", name)).filter("is_deleted").count() == 0
    else:
        assert silver_rows == step.rows_out


@pytest.mark.parametrize("name", sorted(SILVER_SOURCE))
def test_each_injected_defect_is_quarantined_with_its_reason(silver_lake, name):
    ctx, lake, outcomes = silver_lake
    defects = manifest(lake)["datasets"][SILVER_SOURCE[name]]["defects"]
    reasons = {
        r["_quarantine_reason"]: r["count"]
        for r in ctx.lake.read(ctx.table_path("quarantine", name))
        .groupBy("_quarantine_reason")
        .count()
        .collect()
    }
    for defect, expected_reasons in DEFECT_REASONS[name].items():
        assert sum(reasons.get(r, 0) for r in expected_reasons) == defects[defect], (defect, reasons)
    assert sum(reasons.values()) == sum(defects[d] for d in DEFECT_REASONS[name])


def test_exact_event_duplicates_are_dropped(silver_lake):
    ctx, lake, outcomes = silver_lake
    m = manifest(lake)["datasets"]
    assert (
        outcomes["silver_behavior_events"].details["duplicates"]
        == m["redshift_behavior"]["defects"]["duplicate"]
    )
    assert (
        outcomes["silver_product_events"].details["duplicates"] == m["kafka_events"]["defects"]["duplicate"]
    )
    for name in ("behavior_events", "product_events", "orders", "contacts"):
        df = ctx.lake.read(ctx.table_path("silver", name))
        key = ctx.contracts[name].keys
        assert df.count() == df.select(*key).distinct().count(), name


def test_no_raw_email_or_phone_in_any_silver_column(silver_lake):
    ctx, _, _ = silver_lake
    for name in SILVER_SOURCE:
        df = ctx.lake.read(ctx.table_path("silver", name))
        text = [
            F.col(f"`{f.name}`") if isinstance(f.dataType, StringType) else F.to_json(F.col(f"`{f.name}`"))
            for f in df.schema.fields
            if f.dataType.simpleString() not in ("timestamp", "date", "boolean", "int", "bigint")
            and not f.dataType.simpleString().startswith("decimal")
        ]
        for row in df.select(F.concat_ws(" | ", *text).alias("t")).collect():
            assert not EMAIL.search(row["t"] or ""), (name, row["t"])
            assert not PHONE.search(row["t"] or ""), (name, row["t"])


def test_pii_columns_become_hash_domain_and_mask(silver_lake):
    ctx, _, _ = silver_lake
    contacts = ctx.lake.read(ctx.table_path("silver", "contacts"))
    assert {"email_hash", "email_domain", "phone_masked"} <= set(contacts.columns)
    assert not {"email", "phone"} & set(contacts.columns)
    row = contacts.filter("email_hash is not null and phone_masked is not null").first()
    assert re.fullmatch(r"[0-9a-f]{64}", row["email_hash"]) and "@" not in row["email_domain"]
    assert re.fullmatch(r"[^0-9]*[0-9]{2}", row["phone_masked"])


def test_accounts_keep_scd2_history(silver_lake):
    ctx, _, _ = silver_lake
    accounts = ctx.lake.read(ctx.table_path("silver", "accounts")).cache()
    open_versions = accounts.filter("valid_to is null").groupBy("account_id").count()
    assert open_versions.filter("count > 1").count() == 0  # one open version per account
    assert accounts.filter("is_current").groupBy("account_id").count().filter("count > 1").count() == 0
    changed = accounts.groupBy("account_id").count().filter("count > 1").count()
    assert changed > 0  # the generator changes segment/country/owner of ~25% of accounts
    gaps = accounts.alias("a").join(
        accounts.alias("b"),
        (F.col("a.account_id") == F.col("b.account_id")) & (F.col("a.valid_to") == F.col("b.valid_from")),
    )
    assert gaps.count() == accounts.filter("valid_to is not null").count()  # versions chain without gaps


def test_rerun_with_no_new_landing_data_changes_nothing(silver_lake):
    ctx, _, first = silver_lake
    tables = [ctx.table_path(layer, n) for n in SILVER_SOURCE for layer in ("silver", "quarantine")]
    tables += [ctx.table_path("bronze", d) for d in ctx.catalog.datasets]
    tables += [ctx.table_path("gold", s.dataset) for s in DAG.steps.values() if s.job == "gold"]
    before = {t: ctx.lake.version(t) for t in tables}
    ctx.run_id = "second"
    outcomes = run(ctx, DAG.order())
    assert all(o.rows_in == 0 for name, o in outcomes.items() if name.startswith("silver_"))
    assert {t: ctx.lake.version(t) for t in before} == before  # no commit anywhere
    # Freshness with nothing new: each table is as old as the first run said, not unknown.
    for name, outcome in outcomes.items():
        if name.startswith(("bronze_", "silver_", "gold_")):
            assert first[name].details["newest_data_at"] is not None, name
            assert outcome.details["newest_data_at"] == first[name].details["newest_data_at"], name


def test_a_gold_mart_is_as_fresh_as_its_stalest_main_input(silver_lake):
    _, _, first = silver_lake

    def newest(step):
        return datetime.fromisoformat(first[step].details["newest_data_at"])

    assert newest("gold_fct_orders") == newest("silver_orders")
    assert newest("gold_revenue_daily") == newest("gold_fct_orders")
    assert newest("gold_customer_360") == newest("silver_accounts")
    assert newest("gold_engagement_daily") == min(
        newest("silver_behavior_events"), newest("silver_product_events")
    )


def test_partitioned_batches_give_the_tables_one_partition_batches_give(
    spark, fresh_lake, silver_lake, monkeypatch
):
    """Every batch of the suite's data is below SMALL_BATCH_ROWS, so the shared run took silver's
    one-partition path; a full run at scale takes the partitioned one. Both give the same silver
    and quarantine tables, for a contract of each history kind (SCD2, current, events: the
    paths differ by kind, not by dataset)."""
    reference, _, _ = silver_lake
    monkeypatch.setattr(silver_job, "SMALL_BATCH_ROWS", 0)
    ctx = make_ctx(spark, fresh_lake, run_id="first")
    names = ["accounts", "orders", "behavior_events"]
    assert {ctx.contracts[n].history for n in names} == {"scd2", "current", "events"}
    run(ctx, [step for n in names for step in (f"bronze_{SILVER_SOURCE[n]}", f"silver_{n}")])
    for name in names:
        for layer in ("silver", "quarantine"):
            paths = reference.table_path(layer, name), ctx.table_path(layer, name)
            prints = [
                table_print(c.lake, p, c.lake.snapshot_key(p))
                for c, p in zip((reference, ctx), paths, strict=True)
            ]
            if prints[0] != prints[1]:
                a, b = (run_free(c.lake.read(p)) for c, p in zip((reference, ctx), paths, strict=True))
                pytest.fail(
                    f"{layer}/{name}: only one-partition: {a.exceptAll(b).limit(3).collect()}; "
                    f"only partitioned: {b.exceptAll(a).limit(3).collect()}"
                )


@pytest.mark.parametrize("engine", ["delta-spark", "delta-rs"])
def test_a_large_batch_of_a_partitioned_contract_lands_one_file_per_date(
    spark, fresh_lake, monkeypatch, engine
):
    """A batch past SMALL_BATCH_ROWS is deduplicated over every task, each holding rows of every
    date; its append still leaves one file per event_date, as one task's batch does (delta-spark
    writes a file per task and partition value it is handed, so silver repartitions the batch
    there; delta-rs writes each value whole: Lake.groups_partition_values)."""
    monkeypatch.setattr(silver_job, "SMALL_BATCH_ROWS", 0)
    ctx = make_ctx(spark, fresh_lake, run_id="first", engine=engine)
    # Else adaptive execution coalesces the suite's small data into one task.
    with session_conf(spark, "spark.sql.adaptive.coalescePartitions.enabled", "false"):
        run(ctx, ["bronze_redshift_behavior", "silver_behavior_events"])
    table = fresh_lake / "silver" / "behavior_events"
    dates = {d.name: len(list(d.glob("*.parquet"))) for d in table.glob("event_date=*")}
    assert len(dates) > 30 and set(dates.values()) == {1}, dates
    assert ctx.lake.file_stats(str(table)).files == len(dates)


def test_incremental_run_consumes_only_new_bronze_rows(spark, fresh_lake):
    ctx = make_ctx(spark, fresh_lake, run_id="first")
    steps = ["bronze_crm_contacts", "silver_contacts"]
    run(ctx, steps)
    folder = fresh_lake / "landing" / "crm" / "contacts"
    source = max((p for p in folder.glob("*.csv") if p.stat().st_size > 200), key=lambda p: p.name)
    # The same contacts, updated two months later (and still before they reach bronze).
    text = source.read_text().replace("2026-09-", "2026-11-").replace("2026-08-", "2026-10-")
    (folder / "contacts_20261201.csv").write_text(text)
    ctx.run_id = "second"
    outcomes = run(ctx, steps)
    new_bronze = outcomes["bronze_crm_contacts"].rows_out
    assert new_bronze > 0 and outcomes["silver_contacts"].rows_in == new_bronze
    path = ctx.table_path("silver", "contacts")
    silver = ctx.lake.read(path)
    assert silver.filter("updated_at >= '2026-10-01'").count() > 0
    assert ctx.lake.history(path, 1)[0].operation == "MERGE"  # the batch updates stored contacts
    # New contacts only (the same file under other ids): no stored row matches, so the publish
    # appends them (Lake.merge's `matched`): the stored rows stay as they were, and each new one
    # is its stored namesake's latest version under the new id.
    version = ctx.lake.version(path)
    (folder / "contacts_20261202.csv").write_text(text.replace("CON-0", "CON-9"))
    ctx.run_id = "third"
    assert run(ctx, steps)["silver_contacts"].rows_out > 0
    assert ctx.lake.history(path, 1)[0].operation == "WRITE"
    stored = {r["contact_id"]: r.asDict() for r in ctx.lake.read(path, version).collect()}
    rows = ctx.lake.read(path).collect()
    now = {r["contact_id"]: r.asDict() for r in rows}
    assert len(now) == len(rows)  # no key twice
    added = {k: v for k, v in now.items() if k.startswith("CON-9")}
    assert {k: v for k, v in now.items() if k not in added} == stored
    # Every contact whose stored version came from the updated delivery has its twin, no other:
    # the delivery's deleted contacts were deleted, and their twins are not inserted.
    updated = {k for k, v in stored.items() if v["_source_file"].endswith("contacts_20261201.csv")}
    assert updated and set(added) == {k.replace("CON-0", "CON-9") for k in updated}
    for key, row in added.items():
        namesake = stored[key.replace("CON-9", "CON-0")]
        assert row["_source_file"].endswith("contacts_20261202.csv")
        delivery = {"contact_id": key, "_batch_id": row["_batch_id"], "_source_file": row["_source_file"]}
        assert namesake | delivery == row


def test_an_scd2_delivery_of_new_accounts_only_is_appended_as_a_first_build_of_it(
    spark, fresh_lake, tmp_path
):
    """SCD2 history, keys silver does not hold yet: the publish appends (no stored row matches),
    the stored versions stay as they were, and the new keys' versions are exactly what a lake
    that never saw the other deliveries builds from the same file."""
    steps = ["bronze_crm_accounts", "silver_accounts"]
    ctx = make_ctx(spark, fresh_lake, run_id="first")
    run(ctx, steps)
    path = ctx.table_path("silver", "accounts")
    version = ctx.lake.version(path)
    folder = fresh_lake / "landing" / "crm" / "accounts"
    # The accounts of the newest daily export with a few records, under ids silver has never
    # seen, updated on a later day (newer than every version silver consumed: the ordinary path,
    # not the late one); its malformed lines stay as they were.
    source = max((p for p in folder.glob("*.csv") if p.read_text().count("\n") > 5), key=lambda p: p.name)
    header, *records = list(csv.reader(io.StringIO(source.read_text().replace("ACC-0", "ACC-9"))))
    updated = header.index("updated_at")
    for r in records:
        if len(r) == len(header) and "T" in r[updated]:
            r[updated] = "2026-11-15T" + r[updated].split("T", 1)[1]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *records])
    text = out.getvalue()
    delivery = "accounts_20261202.csv"
    (folder / delivery).write_text(text)
    ctx.run_id = "second"
    outcome = run(ctx, steps)["silver_accounts"]
    assert outcome.rows_out > 0
    assert ctx.lake.history(path, 1)[0].operation == "WRITE"

    stored = Counter(tuple(r) for r in ctx.lake.read(path, version).collect())
    now = ctx.lake.read(path)
    assert Counter(tuple(r) for r in now.where("account_id NOT LIKE 'ACC-9%'").collect()) == stored
    added = now.where("account_id LIKE 'ACC-9%'")
    assert added.count() == outcome.rows_out
    assert added.where("valid_to IS NULL").groupBy("account_id").count().where("count > 1").count() == 0

    alone = tmp_path / "alone"
    (alone / "landing" / "crm" / "accounts").mkdir(parents=True)
    (alone / "landing" / "crm" / "accounts" / delivery).write_text(text)
    first_build = make_ctx(spark, alone, run_id="alone")
    run(first_build, steps)
    built = first_build.lake.read(first_build.table_path("silver", "accounts"))

    def rows(df):  # where each lake keeps the file and which batch read it differ, nothing else
        assert {r[0].rsplit("/", 1)[-1] for r in df.select("_source_file").distinct().collect()} == {delivery}
        return Counter(tuple(r) for r in df.drop("_source_file", "_batch_id").collect())

    assert rows(added) == rows(built)
    assert set(added.columns) == set(built.columns)


def test_a_crash_between_the_quarantine_and_silver_writes_counts_nothing_twice(
    spark, fresh_lake, monkeypatch
):
    ctx = make_ctx(spark, fresh_lake, run_id="crash")
    run(ctx, ["bronze_snowflake_orders"])

    def crash(*args, **kwargs):
        raise RuntimeError("process died after the quarantine commit")

    monkeypatch.setattr(ctx.lake, "merge", crash)  # the silver publish, after the quarantine append
    with pytest.raises(RuntimeError):
        local_executor().run(DAG.steps["silver_orders"], ctx)
    quarantine = ctx.table_path("quarantine", "orders")
    first = ctx.lake.read(quarantine).count()
    assert first > 0 and not ctx.lake.exists(ctx.table_path("silver", "orders"))

    monkeypatch.undo()
    result = local_executor().run(DAG.steps["silver_orders"], ctx)
    assert ctx.lake.read(quarantine).count() == first == result.details["quarantined"]
    assert result.rows_in == result.rows_out + result.details["quarantined"] + result.details["duplicates"]
    assert ctx.lake.read(ctx.table_path("silver", "orders")).count() == result.rows_out


def test_a_source_that_has_delivered_nothing_yet_fails_its_silver_step_saying_so(spark, tmp_path):
    """A new deployment before a source's first delivery: its bronze step finds no file and makes
    no table; silver's error names where bronze reads the source (its landing folder, JDBC table
    or topic, never the JDBC URL), not only "run bronze first"."""
    (tmp_path / "lake" / "landing" / "snowflake" / "orders").mkdir(parents=True)
    ctx = make_ctx(spark, tmp_path / "lake")
    state = run_steps(ctx, DAG, ["bronze_snowflake_orders"], io.StringIO(), executor=local_executor())
    (bronze,) = state.steps
    assert (bronze.status, bronze.rows_out) == ("succeeded", 0)

    def error(context, name: str) -> str:
        with pytest.raises(LakeError) as raised:
            silver_job.build_silver(context, name)
        return str(raised.value)

    message = error(ctx, "orders")
    assert "bronze_snowflake_orders has not run on this lake, or has ingested nothing yet" in message
    assert f"from its landing files under {ctx.landing_path('snowflake_orders')}" in message, message
    url = "jdbc:postgresql://db:5432/web?password=hunter2"
    sources = {
        "redshift_behavior": SourceSettings(
            mode="jdbc", jdbc=JdbcSettings(url=url, table="web.events", user="u", password=SecretRef(env="X"))
        ),
        "kafka_events": SourceSettings(
            mode="kafka", kafka=KafkaSettings(bootstrap_servers="b:9092", topic="t1")
        ),
    }
    elsewhere = make_ctx(spark, tmp_path / "lake", sources=sources)
    jdbc = error(elsewhere, "behavior_events")
    assert "from its JDBC table web.events" in jdbc and "hunter2" not in jdbc, jdbc
    assert "from its Kafka topic t1" in error(elsewhere, "product_events")
