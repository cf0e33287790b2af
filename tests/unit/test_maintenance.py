"""Table maintenance on a small lake: compaction with before/after figures, Z-order and a
checkpoint where configured, the interval, and the VACUUM guard for a lagging change-feed consumer."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pipeline.deploy import terraform_tables
from pipeline.driver.retry import FATAL_KIND, ClassifiedError
from pipeline.maintenance import OPS_TABLES, MaintenanceConfig, lake_tables, load_maintenance, maintain
from pipeline.settings import ConfigError
from tests.helpers import REPO, make_ctx

HOUR = 3600


def _append_files(ctx, layer, name, schema, rows, metadata=None):
    path = ctx.table_path(layer, name)
    for row in rows:
        ctx.lake.append(path, ctx.spark.createDataFrame([row], schema).coalesce(1), metadata=metadata)
    return path


def _small_lake(spark, tmp_path, engine):
    ctx = make_ctx(spark, tmp_path / "lake", engine=engine)
    bronze = _append_files(
        ctx, "bronze", "snowflake_orders", "order_id string, n int", [(f"o{i}", i) for i in range(4)]
    )
    orders = "order_id string, account_id string, order_date date, amount double"
    rows = [(f"o{i}", f"a{i % 2}", None, float(i)) for i in range(3)]
    silver = _append_files(ctx, "silver", "orders", orders, rows, metadata={"consumed_version": 1})
    return ctx, bronze, silver


# Maintenance's own logic is engine-neutral (the lake contract runs optimize, checkpoint, file
# stats and vacuum on both engines): the compaction test runs on both, the rest on delta-rs.
@pytest.fixture(params=["delta-spark", "delta-rs"])
def small_lake(spark, tmp_path, request):
    return _small_lake(spark, tmp_path, request.param)


@pytest.fixture
def small_rs_lake(spark, tmp_path):
    return _small_lake(spark, tmp_path, "delta-rs")


def test_compacts_zorders_and_checkpoints_every_table_and_reports_files_before_and_after(small_lake):
    ctx, bronze, silver = small_lake
    before = {p: sorted(r[0] for r in ctx.lake.read(p).collect()) for p in (bronze, silver)}
    tables = {
        **maintain(ctx, "bronze", force=True).details["tables"],
        **maintain(ctx, "silver", force=True).details["tables"],
    }
    assert set(tables) == {"bronze/snowflake_orders", "silver/orders"}  # only tables that exist
    assert maintain(ctx, "gold", force=True).details["tables"] == {}
    assert tables["bronze/snowflake_orders"]["files_before"] == 4
    assert tables["bronze/snowflake_orders"]["files_after"] == 1
    assert tables["silver/orders"]["zorder_by"] == ["order_date", "account_id"]
    assert ctx.lake.file_stats(silver).files == tables["silver/orders"]["files_after"] == 1
    assert {p: sorted(r[0] for r in ctx.lake.read(p).collect()) for p in (bronze, silver)} == before
    assert any(c.operation == "OPTIMIZE" for c in ctx.lake.history(silver, 3))
    assert list(Path(bronze, "_delta_log").glob("*.checkpoint.parquet"))
    assert tables["bronze/snowflake_orders"]["vacuumed_files"] == 0  # nothing is older than 7 days yet
    assert tables["bronze/snowflake_orders"]["vacuum_refused"] == []


def test_vacuum_is_refused_naming_a_consumer_whose_unread_versions_fall_out_of_retention(small_rs_lake):
    ctx, bronze, silver = small_rs_lake
    later = time.time() + 200 * HOUR  # silver/orders consumed version 1; versions 2 and 3 wait for it
    with pytest.raises(ClassifiedError) as refused:
        maintain(ctx, "bronze", force=True, now=later)
    assert refused.value.kind == FATAL_KIND
    message = str(refused.value)
    assert "silver/orders has read bronze/snowflake_orders up to version 1" in message
    assert "still needs version 2" in message and "run the silver_orders step first" in message
    # the table was still compacted, and what was done is in the step's details
    tables = refused.value.details["tables"]
    assert tables["bronze/snowflake_orders"]["vacuumed_files"] is None
    assert tables["bronze/snowflake_orders"]["files_after"] == 1
    # once the consumer has caught up, the same VACUUM goes ahead
    ctx.lake.append(silver, ctx.lake.read(silver).limit(1), metadata={"consumed_version": 3})
    assert (
        maintain(ctx, "bronze", force=True, now=later).details["tables"]["bronze/snowflake_orders"][
            "vacuum_refused"
        ]
        == []
    )


def test_the_dag_step_waits_for_the_interval_and_lakehouse_maintain_does_not(small_rs_lake):
    ctx, bronze, _ = small_rs_lake
    now = time.time()
    maintain(ctx, "bronze", force=True, now=now)
    ctx.lake.append(bronze, ctx.lake.read(bronze).limit(1))
    assert "maintained 1.0 h ago" in maintain(ctx, "bronze", now=now + HOUR).details["skipped"]
    assert ctx.lake.file_stats(bronze).files == 2  # untouched
    # layers keep their own clocks; a layer's first DAG run only starts its clock
    assert "first run on this lake" in maintain(ctx, "silver", now=now + HOUR).details["skipped"]
    later = maintain(ctx, "bronze", now=now + 21 * HOUR)
    assert later.details["tables"]["bronze/snowflake_orders"]["files_after"] == 1


def test_every_table_the_pipeline_writes_is_known_to_maintenance(spark, tmp_path):
    ctx = make_ctx(spark, tmp_path / "lake")
    keys = {t.key for t in lake_tables(ctx)}
    docs = {p.stem for p in (REPO / "docs" / "schemas").glob("*.md")}
    expected = {
        f"{layer}/{d.removeprefix(layer + '_')}"
        for d in docs
        for layer in ("bronze", "gold")
        if d.startswith(layer)
    }
    contracts = {p.stem for p in (REPO / "config" / "contracts").glob("*.yaml")}
    expected |= {f"{layer}/{c}" for c in contracts for layer in ("silver", "quarantine")}
    assert len(expected) == 7 + 5 + 2 * len(contracts) and expected <= keys
    assert {"_ops/dq_results", "_ops/ingested_files", "_ops/rejected_files", "_ops/erasures"} <= keys
    # the _ops tables Terraform gives an expiry rule are the ones maintenance keeps
    assert sorted(OPS_TABLES) == sorted(terraform_tables.OPS_TABLES)


def test_configuration_is_checked_and_the_projects_own_file_loads():
    assert load_maintenance(REPO / "config").zorder_by("gold/fct_orders") == ["order_date"]
    with pytest.raises(ConfigError, match="below Delta's 168-hour safety minimum"):
        MaintenanceConfig(vacuum_retention_hours=24)


def test_a_table_a_stream_writes_is_vacuumed_but_not_compacted_while_the_stream_runs(small_rs_lake):
    """A continuous stream holds its table's lease for good: compaction waits for it, but VACUUM
    (which removes only files older than the retention, erased rows among them) does not."""
    from pipeline.lease import hold_streams

    ctx, _, _ = small_rs_lake
    kafka = Path(_append_files(ctx, "bronze", "kafka_events", "value string", [("a",), ("b",)]))
    orphan = kafka / "part-00000-orphan.snappy.parquet"  # a lost commit's file, 8 days old
    orphan.write_bytes(next(kafka.glob("*.parquet")).read_bytes())
    eight_days_ago = time.time() - 192 * HOUR
    os.utime(orphan, (eight_days_ago, eight_days_ago))
    with hold_streams(ctx.settings, "stream-run", ["kafka_events"], lambda _: "lakehouse stream"):
        entry = maintain(ctx, "bronze", force=True).details["tables"]["bronze/kafka_events"]
    assert entry["optimize_skipped"].startswith("a stream writes it")
    assert (entry["files_before"], entry["files_after"], entry["files_compacted"]) == (2, 2, 0)
    assert (entry["vacuumed_files"], entry["vacuum_refused"]) == (1, []) and not orphan.exists()
