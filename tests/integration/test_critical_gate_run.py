"""Write, audit, publish through the CLI (`lakehouse run`, in this process, on the suite's Spark
session: a new JVM would add its start-up and cold steps, and exit statuses of a real process are
test_concurrent_runs.py's) on generated data: a landing batch whose orders break
their contract fails the silver gate BEFORE anything is written. Silver, quarantine, the consumed
bronze version and gold are exactly as they were; the run records the failure in dq_results,
emits a FAIL lineage event and an alert, and exits non-zero. After the fix (the contract's
reference list was missing a currency) the rerun reads the same bronze rows and publishes them
exactly once."""

from __future__ import annotations

import io
import json
import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from pipeline import cli
from pipeline.app import local_executor
from pipeline.driver.dag import load_dag
from pipeline.driver.runner import run_steps
from pipeline.generate import generate
from pipeline.jobs import JOBS
from pipeline.silver.job import CONSUMED
from tests.helpers import REPO, make_ctx

# Three pipeline runs, one of them through the CLI: more than the default limit under load.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
RUN_ID = "20261123T000000Z-critical"
STEPS = ["silver_orders", "gold_fct_orders"]
NEW_ORDERS = 20


def _cli(lake, run_id: str, capsys) -> tuple[int, str]:
    """`lakehouse run` of STEPS: its exit status and what it wrote to stderr (JSON log lines)."""
    capsys.readouterr()  # only this run's output
    command = ["run", "--lake", str(lake), "--config-dir", str(REPO / "config"), "--run-id", run_id]
    status = cli.main([*command, "--log-level", "WARNING", "--only", ",".join(STEPS)])
    return status, capsys.readouterr().err


def _deliver_orders_in_an_unknown_currency(landing) -> None:
    """A new Snowflake unload day: NEW_ORDERS valid orders, all in currency XYZ, which the
    contract's reference list does not hold (so every row is quarantined: ratio 1.0, critical)."""
    folder = landing / "snowflake" / "orders"
    schema = pq.read_schema(next(folder.rglob("*.parquet")))
    at = datetime(2026, 10, 1, 9, tzinfo=UTC)
    rows = [
        {
            "order_id": f"ORD-{9_000_000 + i}",
            "account_id": "ACC-000008",
            "order_ts": at + timedelta(minutes=i),
            "status": "placed",
            "currency": "XYZ",
            "amount": Decimal("10.00"),
            "updated_at": at + timedelta(minutes=i),
        }
        for i in range(NEW_ORDERS)
    ]
    (folder / "date=2026-10-01").mkdir()
    pq.write_table(
        pa.Table.from_pylist(rows, schema), folder / "date=2026-10-01" / "data_0_0_0.snappy.parquet"
    )


def _snapshot(ctx, path):
    return ctx.lake.version(path), sorted((tuple(r) for r in ctx.lake.read(path).collect()), key=repr)


def test_a_critical_batch_is_refused_before_publish_and_published_once_after_the_fix(spark, tmp_path, capsys):
    lake = tmp_path / "lake"
    generate(lake / "landing", scale=0.01, seed=3, days=30)  # a month: orders to quarantine, few files
    ctx = make_ctx(spark, lake, run_id="setup")
    dag = load_dag(REPO / "config" / "pipeline.yaml", set(JOBS))
    inputs = ["bronze_crm_accounts", "silver_accounts", "bronze_fx_rates", "silver_fx_rates"]
    out = io.StringIO()
    assert not run_steps(
        ctx, dag, [*inputs, "bronze_snowflake_orders", *STEPS], out, executor=local_executor()
    ).failed, out.getvalue()

    silver, quarantine = ctx.table_path("silver", "orders"), ctx.table_path("quarantine", "orders")
    gold = ctx.table_path("gold", "fct_orders")
    before = {t: _snapshot(ctx, t) for t in [silver, quarantine, gold]}
    consumed = ctx.lake.latest_metadata(silver, CONSUMED)

    _deliver_orders_in_an_unknown_currency(lake / "landing")
    assert not run_steps(ctx, dag, ["bronze_snowflake_orders"], out, executor=local_executor()).failed, (
        out.getvalue()
    )
    status, stderr = _cli(lake, RUN_ID, capsys)
    assert status == 1, stderr[-3000:]

    state = json.loads((lake / "_ops" / "runs" / f"{RUN_ID}.json").read_text())
    status = {s["step"]: s["status"] for s in state["steps"]}
    assert status == {"silver_orders": "failed", "gold_fct_orders": "skipped"}
    step = next(s for s in state["steps"] if s["step"] == "silver_orders")
    assert "batch:quarantine_ratio" in step["error"]
    # The message says why: the contract rule every row broke, with its count.
    assert f"rules currency:not_in_currencies ({NEW_ORDERS} rows)" in step["error"]
    ratio = next(r for r in step["details"]["dq"] if r["rule"] == "batch:quarantine_ratio")
    assert not ratio["passed"] and ratio["observed"] == f"1.0000 ({NEW_ORDERS}/{NEW_ORDERS})"

    # Nothing of the refused batch is visible: every table and the consumed position as before.
    assert {t: _snapshot(ctx, t) for t in before} == before
    assert ctx.lake.latest_metadata(silver, CONSUMED) == consumed
    assert ctx.lake.version(ctx.table_path("bronze", "snowflake_orders")) > int(consumed)

    results = ctx.lake.read(ctx.table_path("_ops", "dq_results")).filter(f"run_id = '{RUN_ID}'")
    failed = results.filter("not passed and severity = 'critical'").select("dataset", "rule").collect()
    assert {(r["dataset"], r["rule"]) for r in failed} == {("orders", "batch:quarantine_ratio")}
    events = [json.loads(x) for x in (lake / "_ops" / "lineage" / f"{RUN_ID}.jsonl").read_text().splitlines()]
    fail = [e for e in events if e["eventType"] == "FAIL" and e["job"]["name"] == "pipeline.silver_orders"]
    assert fail and "quarantine_ratio" in json.dumps(fail[0]["run"]["facets"]["errorMessage"])
    assert not any(e["job"]["name"].startswith("pipeline.gold_") for e in events)  # skipped: never started
    alerts = [json.loads(line) for line in stderr.splitlines() if line.startswith("{") and "ALERT" in line]
    assert any("silver_orders" in a["message"] for a in alerts), stderr[-3000:]
    assert (lake / "_ops" / "reports" / f"{RUN_ID}.html").exists()

    # The fix: the currency is real and the reference list lacked it. The same bronze rows are
    # read again (consumed_version did not move) and published in one silver commit.
    fixed = tmp_path / "config"
    shutil.copytree(REPO / "config", fixed)
    currencies = fixed / "reference" / "currencies.yaml"
    currencies.write_text(currencies.read_text().replace("USD, ZAR]", "USD, XYZ, ZAR]"))
    fixed_ctx = make_ctx(spark, lake, run_id=f"{RUN_ID}-fixed", config_dir=fixed)
    assert not run_steps(fixed_ctx, dag, STEPS, out, executor=local_executor()).failed, out.getvalue()

    assert ctx.lake.version(silver) == before[silver][0] + 1
    assert _snapshot(ctx, quarantine) == before[quarantine]  # the batch had nothing to quarantine
    new = ctx.lake.read(silver).where(F.col("order_id").startswith("ORD-9"))
    assert new.count() == new.select("order_id").distinct().count() == NEW_ORDERS
    kept = ctx.lake.read(silver).where(~F.col("order_id").startswith("ORD-9")).collect()
    assert sorted((tuple(r) for r in kept), key=repr) == before[silver][1]  # published rows untouched
    assert ctx.lake.latest_metadata(silver, CONSUMED) == ctx.lake.version(
        ctx.table_path("bronze", "snowflake_orders")
    )
    fct = ctx.lake.read(gold).where(F.col("order_id").startswith("ORD-9"))
    assert fct.count() == fct.select("order_id").distinct().count() == NEW_ORDERS
