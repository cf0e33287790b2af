"""Issue 4's acceptance run, through the real CLI: a landing batch in which most order records
break their contract fails the silver gate, skips gold, records the failure in dq_results,
emits a FAIL lineage event and an alert, and exits non-zero."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipeline.generate import generate
from tests.helpers import REPO, make_ctx

pytestmark = pytest.mark.slow
RUN_ID = "20261123T000000Z-critical"


def test_critical_defect_fails_the_gate_and_the_run_says_so_everywhere(spark, tmp_path):
    lake = tmp_path / "lake"
    generate(lake / "landing", scale=0.01, seed=3, defect_rate=0.5)  # ~60 % of orders quarantined
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "LAKEHOUSE_CONFIG_DIR": str(REPO / "config"),
        "LAKEHOUSE_LOG_LEVEL": "WARNING",
    }
    steps = "bronze_snowflake_orders,silver_orders,gold_fct_orders,gold_revenue_daily"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--lake", str(lake), "--run-id", RUN_ID, "--only", steps],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]

    state = json.loads((lake / "_ops" / "runs" / f"{RUN_ID}.json").read_text())
    status = {s["step"]: s["status"] for s in state["steps"]}
    assert status == {"bronze_snowflake_orders": "succeeded", "silver_orders": "failed",
                      "gold_fct_orders": "skipped", "gold_revenue_daily": "skipped"}  # fmt: skip
    silver = next(s for s in state["steps"] if s["step"] == "silver_orders")
    assert "batch:quarantine_ratio" in silver["error"]
    assert any(r["rule"] == "batch:quarantine_ratio" and not r["passed"] for r in silver["details"]["dq"])

    ctx = make_ctx(spark, lake)
    results = ctx.lake.read(ctx.table_path("_ops", "dq_results")).filter(f"run_id = '{RUN_ID}'")
    failed = results.filter("not passed and severity = 'critical'").select("dataset", "rule").collect()
    assert ("orders", "batch:quarantine_ratio") in {(r["dataset"], r["rule"]) for r in failed}

    events = [json.loads(x) for x in (lake / "_ops" / "lineage" / f"{RUN_ID}.jsonl").read_text().splitlines()]
    fail = [e for e in events if e["eventType"] == "FAIL" and e["job"]["name"] == "pipeline.silver_orders"]
    assert fail and "quarantine_ratio" in json.dumps(fail[0]["run"]["facets"]["errorMessage"])
    assert not any(e["job"]["name"].startswith("pipeline.gold_") for e in events)  # skipped: never started

    alerts = [
        json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{") and "ALERT" in line
    ]
    assert any("silver_orders" in a["message"] for a in alerts), proc.stderr[-3000:]
    assert (lake / "_ops" / "reports" / f"{RUN_ID}.html").exists()
