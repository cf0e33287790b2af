"""`lakehouse maintain` on the lake a whole run wrote: every table compacted and checkpointed,
nothing in any table changed, and silver's change-feed reads after it find nothing new."""

from __future__ import annotations

import json
import shutil

from pipeline import cli
from pipeline.driver.state import LocalStateStore
from pipeline.settings import load_settings
from tests.helpers import make_ctx
from tests.lake_compare import assert_same_tables


def test_maintain_compacts_every_table_without_changing_one_row(
    spark, pipeline_run, tmp_path, capsys, monkeypatch
):
    run_ctx, run_lake, _ = pipeline_run
    monkeypatch.setenv("LAKEHOUSE_LAKE_ENGINE", "delta-rs")  # the quicker engine on small tables
    lake = tmp_path / "lake"
    shutil.copytree(run_lake, lake)
    # A run writes dq_results in one commit: made three files here (the same rows), as many runs
    # leave it, for the compaction to join.
    ops = make_ctx(spark, lake, engine="delta-spark")
    results = ops.table_path("_ops", "dq_results")
    ops.lake.overwrite(results, ops.lake.read(results).repartition(3))
    assert ops.lake.file_stats(results).files == 3
    assert cli.main(["maintain", "--lake", str(lake), "--run-id", "maint-1"]) == 0
    out = capsys.readouterr().out
    assert "maintain_bronze: succeeded" in out and "maintain_gold: succeeded" in out
    state = LocalStateStore(lake / "_ops" / "runs").load("maint-1")
    # the three independent steps side by side, as many as the local config takes at once
    at_once = load_settings("local", lake_root=str(lake)).spark.parallel_steps
    assert f"engine delta-rs, {at_once} step(s) at once" in out
    starts = sorted(s.started_at for s in state.steps)
    assert starts[min(at_once, len(starts)) - 1] < min(s.ended_at for s in state.steps), state.steps
    tables = {k: v for s in state.steps for k, v in s.details["tables"].items()}
    # every table the run wrote was maintained, the _ops results table too
    assert {"bronze/snowflake_orders", "silver/orders", "quarantine/orders", "gold/fct_orders"} <= set(tables)
    assert "_ops/dq_results" in tables
    # the ledger is written once bronze is CATCH_UP_COMMITS commits ahead of it: not by one run
    assert not (lake / "_ops" / "ingested_files").exists() and "_ops/ingested_files" not in tables
    # unpartitioned tables of several files become fewer; a date-partitioned table written one
    # file per date has nothing to compact
    partitioned = {f"bronze/{n}" for n, d in run_ctx.catalog.datasets.items() if d.partition_by}
    partitioned |= {
        f"{layer}/{n}"
        for n, c in run_ctx.contracts.items()
        if c.partition_by
        for layer in ("silver", "quarantine")
    }
    many = {k: t for k, t in tables.items() if t["files_before"] > 1 and k not in partitioned}
    assert "_ops/dq_results" in many, tables
    assert all(t["files_after"] < t["files_before"] for t in many.values()), many
    assert all(t["files_after"] <= t["files_before"] for t in tables.values())
    assert tables["silver/orders"]["zorder_by"] == ["order_date", "account_id"]
    assert all(list((lake / k / "_delta_log").glob("*.checkpoint.parquet")) for k in tables)
    recorded = json.loads((lake / "_ops" / "maintenance" / "bronze.json").read_text())
    bronze_step = next(s for s in state.steps if s.step == "maintain_bronze")
    assert set(recorded["tables"]) == set(bronze_step.details["tables"])
    assert {k for k in tables if k.startswith("bronze/")} <= set(recorded["tables"])
    # the same rows everywhere, read through the other engine than the one that compacted
    maintained = make_ctx(spark, lake, engine="delta-spark")
    assert_same_tables(run_ctx, maintained)
    # silver's next incremental read sees the compaction commits and no new rows
    assert (
        cli.main(["run", "--lake", str(lake), "--run-id", "after", "--only", "silver_orders,silver_accounts"])
        == 0
    )
    after = LocalStateStore(lake / "_ops" / "runs").load("after")
    assert [s.rows_in for s in after.steps] == [0, 0]
    assert_same_tables(run_ctx, maintained)
