"""A driver killed mid-run (SIGKILL to the whole process group, JVM included) and resumed ends
with tables identical to an uninterrupted run of the same landing data."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pipeline.driver.dag import load_dag
from pipeline.jobs import JOBS
from tests.helpers import REPO, make_ctx

pytestmark = pytest.mark.slow

DAG = load_dag(REPO / "config" / "pipeline.yaml", set(JOBS))
RUN_ID = "20261123T000000Z-killed"


def lakehouse(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "LAKEHOUSE_CONFIG_DIR": str(REPO / "config")}
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def state(lake) -> dict:
    path = lake / "_ops" / "runs" / f"{RUN_ID}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def business_rows(ctx, layer, name):
    """Table contents without the audit columns that name runs, batches and lake paths."""
    df = ctx.lake.read(ctx.table_path(layer, name))
    columns = sorted(c for c in df.columns if not c.startswith("_"))
    return sorted(tuple(str(v) for v in r) for r in df.select(*columns).collect())


def test_killed_driver_resumes_to_the_same_tables_as_an_uninterrupted_run(
    spark, tmp_path, generated_landing, pipeline_run
):
    ref_ctx = pipeline_run[0]  # the uninterrupted run of the same landing data
    killed = tmp_path / "killed"
    shutil.copytree(generated_landing, killed / "landing")

    proc = lakehouse("run", "--lake", str(killed), "--run-id", RUN_ID)
    deadline = time.monotonic() + 300
    # Kill once bronze is done and silver is under way: a crash between layers and mid-step.
    while proc.poll() is None and time.monotonic() < deadline:
        steps = {s["step"]: s["status"] for s in state(killed).get("steps", [])}
        if steps.get("silver_orders") == "running" or steps.get("silver_behavior_events") == "running":
            break
        time.sleep(0.1)
    assert proc.poll() is None, (
        "the run ended before it could be killed:\n" + proc.stdout.read().decode()[-3000:]
    )
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    unfinished = [s["step"] for s in state(killed)["steps"] if s["status"] != "succeeded"]
    assert "gold_fct_orders" in unfinished

    resumed = lakehouse("run", "--lake", str(killed), "--resume", RUN_ID)
    output = resumed.communicate(timeout=900)[0].decode()
    assert resumed.returncode == 0, output[-4000:]
    final = state(killed)
    assert final["status"] == "succeeded" and all(s["status"] == "succeeded" for s in final["steps"])
    ops = killed / "_ops"
    assert f"report {ops / 'reports' / f'{RUN_ID}.html'}" in output  # the summary prints the report
    events = [json.loads(line) for line in (ops / "lineage" / f"{RUN_ID}.jsonl").read_text().splitlines()]
    assert {e["job"]["name"] for e in events if e["eventType"] == "COMPLETE"} >= {
        f"pipeline.{s}" for s in DAG.order()
    }

    killed_ctx = make_ctx(spark, killed, run_id="check")
    tables = [("bronze", d) for d in ref_ctx.catalog.datasets]
    tables += [("silver", n) for n in ref_ctx.contracts] + [("quarantine", n) for n in ref_ctx.contracts]
    tables += [("gold", s.dataset) for s in DAG.steps.values() if s.job == "gold"]
    for layer, name in tables:
        assert business_rows(killed_ctx, layer, name) == business_rows(ref_ctx, layer, name), (
            f"{layer}/{name}"
        )
