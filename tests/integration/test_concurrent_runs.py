"""Issue 12, one writer per lake, through the real CLI: two `lakehouse run` started together on
an empty lake. Exactly one runs and the other is refused at once (exit 3, the holder named, no run
state, no table touched), and every table equals the one run of the same steps on a copy of the
landing zone, made in this process. One round: a second on the same landing files would have
nothing new to write, so it could not show a table written twice, and the lease's own races (a
released lease retaken, takers racing round after round) are tests/unit/test_lease.py's."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys

import pytest

from pipeline.app import local_executor
from pipeline.app.process import LAKE_HELD
from pipeline.driver.runner import run_steps
from pipeline.files import LocalFiles
from pipeline.generate import generate
from pipeline.lease import LakeLease
from tests.helpers import REPO, make_ctx
from tests.lake_compare import DAG, comparable, fingerprint, lake_tables

pytestmark = pytest.mark.slow
# bronze, silver and quarantine: the tables two unguarded runs doubled
STEPS = ["bronze_snowflake_orders", "silver_orders"]
ENGINE = "delta-rs"  # the subprocesses' and the reference's


def start_run(lake, run_id: str, logs) -> subprocess.Popen:
    """`python -m pipeline run` of STEPS; its output in `logs/<run_id>.out|.err` (files, not pipes:
    neither process may block on a full pipe while the test waits for the other)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")},
        "PYTHONPATH": str(REPO / "src"),
        "LAKEHOUSE_CONFIG_DIR": str(REPO / "config"),
        "LAKEHOUSE_LAKE_ENGINE": ENGINE,
        "LAKEHOUSE_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "pipeline", "run", "--lake", str(lake), "--run-id", run_id]
    with open(logs / f"{run_id}.out", "w") as out, open(logs / f"{run_id}.err", "w") as err:
        return subprocess.Popen([*command, "--only", ",".join(STEPS)], env=env, stdout=out, stderr=err)


def test_of_two_runs_started_together_one_runs_and_the_other_is_refused(spark, tmp_path):
    landing = tmp_path / "landing"
    generate(landing, scale=0.005, seed=12, defect_rate=0.05, days=10)  # defects: quarantine rows
    lake, reference = tmp_path / "lake", tmp_path / "reference"
    shutil.copytree(landing, lake / "landing")
    shutil.copytree(landing, reference / "landing")

    runs = [f"20261203T000001Z-{side * 3}" for side in "ab"]
    procs = {run_id: start_run(lake, run_id, tmp_path) for run_id in runs}
    codes = {run_id: p.wait(timeout=900) for run_id, p in procs.items()}
    errs = {run_id: (tmp_path / f"{run_id}.err").read_text() for run_id in runs}
    assert sorted(codes.values()) == [0, LAKE_HELD], {r: (codes[r], errs[r][-2000:]) for r in runs}
    winner, loser = sorted(runs, key=codes.get)
    won, refusal = procs[winner], errs[loser]
    assert f"lake {lake} is in use: run {winner} (" in refusal and f"pid {won.pid} on " in refusal
    assert "lakehouse lease --break" in refusal
    assert (lake / "_ops" / "runs" / f"{winner}.json").exists()
    assert not (lake / "_ops" / "runs" / f"{loser}.json").exists()  # refused before any state
    last = LakeLease(str(lake), LocalFiles()).current()
    assert (last.run_id, last.pid, last.released_at is not None) == (winner, won.pid, True)

    ctx = make_ctx(spark, reference, run_id="single", engine=ENGINE)
    state = run_steps(ctx, DAG, STEPS, io.StringIO(), executor=local_executor())
    assert not state.failed
    raced = make_ctx(spark, lake, engine=ENGINE)
    compared = 0
    for layer, name in lake_tables(ctx):
        path, raced_path = ctx.table_path(layer, name), raced.table_path(layer, name)
        assert ctx.lake.exists(path) == raced.lake.exists(raced_path), f"{layer}/{name}"
        if ctx.lake.exists(path):
            single, both = (
                fingerprint(comparable(ctx.lake.read(path))),
                fingerprint(comparable(raced.lake.read(raced_path))),
            )
            assert both == single, f"{layer}/{name}: {both[0]} rows after the race, {single[0]} in one run"
            assert single[0] > 0, f"{layer}/{name} is empty"
            compared += 1
    assert compared == 3  # bronze and silver orders, the orders quarantine
