"""`lakehouse status`, `lakehouse run --plan/--resume` checks that need no SparkSession, and the
run-state stores (local folder, s3 through boto3/moto, Hadoop FileSystem)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline import cli
from pipeline.driver.state import (
    HadoopStateStore,
    LocalStateStore,
    RunNotFound,
    RunState,
    S3StateStore,
    StepOutcome,
    latest_run_id,
    presumed_dead,
    process_alive,
    state_store_for,
)
from pipeline.settings import ConfigError

REPO = Path(__file__).resolve().parents[2]

PIPELINE = """
retry: {max_attempts: 4, initial_backoff_s: 1, max_backoff_s: 5, jitter: 0.25}
steps:
  bronze_fx_rates: {job: bronze, dataset: fx_rates}
  bronze_crm_accounts: {job: bronze, dataset: crm_accounts}
  bronze_crm_contacts: {job: bronze, dataset: crm_contacts, depends_on: [bronze_crm_accounts]}
"""


@pytest.fixture
def config_dir(tmp_path):
    folder = tmp_path / "config"
    folder.mkdir()
    shutil.copy(REPO / "config" / "local.yaml", folder / "local.yaml")
    (folder / "pipeline.yaml").write_text(PIPELINE)
    return folder


@pytest.fixture
def lake(tmp_path, monkeypatch):
    monkeypatch.delenv("LAKEHOUSE_LAKE_ROOT", raising=False)
    monkeypatch.delenv("LAKEHOUSE_ENV", raising=False)
    return tmp_path / "lake"


def state(run_id: str, statuses: dict[str, str], status: str = "failed") -> RunState:
    steps = []
    for name, st in statuses.items():
        steps.append(
            StepOutcome(
                name,
                st,
                attempts=0 if st == "skipped" else 1 if st != "succeeded" else 2,
                rows_in=1000 if st == "succeeded" else 0,
                rows_out=990 if st == "succeeded" else 0,
                seconds=1.25,
                error={
                    "failed": "ValueError: amount is not a number",
                    "skipped": "upstream not succeeded",
                }.get(st),
            )
        )
    return RunState(run_id, steps, status=status, started_at="2025-01-02T03:04:05.000Z")


def runs(lake: Path) -> LocalStateStore:
    return LocalStateStore(lake / "_ops" / "runs")


@pytest.fixture(autouse=True)
def no_spark(request, monkeypatch):
    """Every test here but the Hadoop store's must manage without a SparkSession."""
    if "spark" in request.fixturenames:
        return

    def refuse(*args, **kwargs):
        raise AssertionError("this command must not start Spark")

    from pyspark.sql import SparkSession

    from pipeline.context import RunContext

    monkeypatch.setattr(RunContext, "create", classmethod(refuse))
    monkeypatch.setattr(SparkSession.Builder, "getOrCreate", refuse)


# ---------------------------------------------------------------- status


def test_status_prints_the_latest_run_without_spark(lake, config_dir, capsys):
    store = runs(lake)
    store.save(state("20250101T000000Z-aaaaaa", {"bronze_fx_rates": "succeeded"}, "succeeded"))
    store.save(
        state(
            "20250102T030405Z-bbbbbb",
            {
                "bronze_fx_rates": "succeeded",
                "bronze_crm_accounts": "failed",
                "bronze_crm_contacts": "skipped",
            },
        )
    )
    code = cli.main(["status", "--lake", str(lake), "--config-dir", str(config_dir)])
    out = capsys.readouterr().out
    assert code == 1  # the run failed
    assert out.startswith("run 20250102T030405Z-bbbbbb: failed (1 failed, 1 skipped, 1 succeeded)")
    assert "attempts" in out and "ValueError: amount is not a number" in out
    row = next(line for line in out.splitlines() if line.startswith("bronze_fx_rates"))
    assert [c.strip() for c in row.split("|")][:6] == [
        "bronze_fx_rates",
        "succeeded",
        "2",
        "1,000",
        "990",
        "1.2",
    ]
    assert f"state {lake}/_ops/runs/20250102T030405Z-bbbbbb.json" in out


def test_status_of_a_named_run_and_as_json(lake, config_dir, capsys):
    store = runs(lake)
    store.save(state("20250101T000000Z-aaaaaa", {"bronze_fx_rates": "succeeded"}, "succeeded"))
    store.save(state("20250102T030405Z-bbbbbb", {"bronze_fx_rates": "failed"}))
    args = ["status", "20250101T000000Z-aaaaaa", "--lake", str(lake), "--config-dir", str(config_dir)]
    assert cli.main(args) == 0
    assert "run 20250101T000000Z-aaaaaa: succeeded" in capsys.readouterr().out
    assert cli.main([*args, "--json"]) == 0
    out = capsys.readouterr().out
    assert RunState.from_json(out).run_id == "20250101T000000Z-aaaaaa"
    # This config folder has no catalogue, which names the stream tables: no leases, and why.
    shown = json.loads(out)
    assert shown["stream_leases"] is None
    assert "datasets.yaml" in shown["stream_leases_not_shown"]


def test_status_of_an_unknown_run_says_where_it_looked(lake, config_dir, capsys):
    assert cli.main(["status", "--lake", str(lake), "--config-dir", str(config_dir)]) == 2
    assert f"no runs recorded under {lake}/_ops/runs" in capsys.readouterr().err
    runs(lake).save(state("r1", {"bronze_fx_rates": "succeeded"}, "succeeded"))
    assert cli.main(["status", "nope", "--lake", str(lake), "--config-dir", str(config_dir)]) == 2
    assert f"error: run nope not found: looked for {lake}/_ops/runs/nope.json" in capsys.readouterr().err


def running_state(run_id: str, host: str, pid: int | None, heartbeat_at: str | None = None) -> RunState:
    run = state(run_id, {"bronze_fx_rates": "succeeded", "bronze_crm_accounts": "running"}, "running")
    run.host, run.pid, run.heartbeat_at = host, pid, heartbeat_at
    return run


def status(lake, config_dir, *extra: str) -> int:
    return cli.main(["status", *extra, "--lake", str(lake), "--config-dir", str(config_dir)])


def test_status_shows_a_run_whose_process_is_gone_as_dead(lake, config_dir, capsys):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    pid = int(finished.stdout)  # that process has ended: a SIGKILLed driver looks the same
    host = socket.gethostname()
    runs(lake).save(running_state("20250102T030405Z-bbbbbb", host, pid))
    assert status(lake, config_dir) == 1
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (
        f"run 20250102T030405Z-bbbbbb: dead (process {pid} on {host} is gone; "
        "resume with lakehouse run --resume 20250102T030405Z-bbbbbb) (1 running, 1 succeeded)"
    )
    assert status(lake, config_dir, "--json") == 1
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "running" and data["dead"] == f"process {pid} on {host} is gone"
    assert RunState.from_dict(data).pid == pid  # still a run state to whoever reads it


def test_status_of_a_live_run_on_this_host_is_running(lake, config_dir, capsys):
    runs(lake).save(running_state("r1", socket.gethostname(), os.getpid()))
    assert status(lake, config_dir) == 0
    out = capsys.readouterr().out
    assert out.startswith("run r1: running (1 running, 1 succeeded)") and "dead" not in out
    assert f"driver pid {os.getpid()} on {socket.gethostname()}" in out


@pytest.mark.parametrize(
    ("silent_min", "code", "verdict"),
    [
        (25, 1, "dead (no heartbeat for 25 min: presumed dead; resume with lakehouse run --resume r1)"),
        (2, 0, "running"),
    ],
)
def test_status_of_a_run_on_another_host_goes_by_its_heartbeat(
    lake, config_dir, capsys, silent_min, code, verdict
):
    beat = datetime.now(UTC) - timedelta(minutes=silent_min, seconds=5)
    runs(lake).save(running_state("r1", "emr-driver-7", 4242, beat.isoformat().replace("+00:00", "Z")))
    assert status(lake, config_dir) == code
    assert capsys.readouterr().out.startswith(f"run r1: {verdict} (1 running, 1 succeeded)")


def test_presumed_dead_by_an_injected_clock():
    now = datetime(2026, 1, 2, 3, 30, tzinfo=UTC)
    elsewhere = running_state("r1", "other", 7, "2026-01-02T03:20:00.000Z")  # silent for 10 min
    assert presumed_dead(elsewhere, host="here", alive=lambda pid: False, now=now) is None
    assert presumed_dead(elsewhere, host="here", alive=lambda pid: False, now=now + timedelta(seconds=1)) == (
        "no heartbeat for 10 min: presumed dead"
    )
    # a driver of before heartbeats on another host: nothing to judge by, so it is not called dead
    assert presumed_dead(running_state("r1", "other", 7), host="here", alive=bool, now=now) is None
    # this host asks the process, whatever the heartbeat says
    here = running_state("r1", "here", 7, "2026-01-02T03:29:59.000Z")
    assert presumed_dead(here, host="here", alive=lambda pid: False, now=now) == "process 7 on here is gone"
    # ended runs are what they say they are
    ended = state("r1", {"bronze_fx_rates": "failed"}, "failed")
    assert presumed_dead(ended, host="here", alive=lambda pid: False, now=now) is None


def test_process_alive_refuses_process_group_ids():
    assert process_alive(os.getpid()) and not process_alive(0) and not process_alive(-1)


# ---------------------------------------------------------------- run --plan / --resume checks


def test_plan_prints_steps_and_retry_policy_and_starts_nothing(lake, config_dir, capsys):
    args = ["run", "--plan", "--lake", str(lake), "--config-dir", str(config_dir)]
    assert cli.main([*args, "--until", "bronze_crm_contacts", "--start-date", "2025-01-01"]) == 0
    out = capsys.readouterr().out
    assert "retry: up to 4 attempts for transient errors; waits 1s, 2s, 4s" in out
    assert "window: landing dates from 2025-01-01" in out
    assert "1. bronze_crm_accounts: bronze crm_accounts\n" in out
    assert "2. bronze_crm_contacts: bronze crm_contacts after bronze_crm_accounts" in out
    assert "bronze_fx_rates" not in out
    assert not lake.exists()


def test_plan_of_a_resume_lists_only_what_did_not_succeed(lake, config_dir, capsys):
    recorded = state(
        "20250102T030405Z-bbbbbb",
        {"bronze_fx_rates": "succeeded", "bronze_crm_accounts": "failed", "bronze_crm_contacts": "skipped"},
    )
    recorded.window = {"start": "2025-01-01", "end": "2025-01-02"}
    runs(lake).save(recorded)
    args = ["run", "--plan", "--lake", str(lake), "--config-dir", str(config_dir)]
    assert cli.main([*args, "--resume", recorded.run_id]) == 0
    out = capsys.readouterr().out
    assert "rerun 2 of 3 step(s)" in out and "window: landing dates 2025-01-01 to 2025-01-02" in out
    assert "1. bronze_crm_accounts: bronze crm_accounts (was failed: ValueError" in out
    assert "bronze_fx_rates" not in out.split("step(s)")[1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--resume", "nope"], "run nope not found: looked for"),
        (["--resume", "r1", "--run-id", "r2"], "--run-id r2 and --resume r1"),
        (["--resume", "r1", "--end-date", "2025-01-01"], "a resumed run keeps the window"),
        (["--from", "bronze_crm_contacts", "--until", "bronze_crm_accounts"], "select no steps"),
        (["--start-date", "yesterday"], "--start-date: expected a date YYYY-MM-DD"),
    ],
)
def test_run_refuses_bad_flags_before_starting_spark(lake, config_dir, capsys, extra, message):
    runs(lake).save(state("r1", {"bronze_fx_rates": "failed"}))
    assert cli.main(["run", "--lake", str(lake), "--config-dir", str(config_dir), *extra]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("run_id", ["../../etc/x", "team/nightly", ".hidden", "", "r:1", "a" * 129, "r 1"])
@pytest.mark.parametrize("command", [["run", "--run-id"], ["run", "--resume"], ["status"]])
def test_a_run_id_that_is_not_a_plain_name_is_refused_before_anything_starts(
    lake, config_dir, capsys, command, run_id
):
    """A run id names folders under <lake>/_ops/runs: '..', '/' or a leading dot would reach
    outside them, ':' would confuse batch ids. argparse refuses it (exit 2) and no state appears."""
    before = sorted(p.relative_to(lake) for p in lake.rglob("*"))
    with pytest.raises(SystemExit) as exited:
        cli.main([*command, run_id, "--lake", str(lake), "--config-dir", str(config_dir)])
    assert exited.value.code == 2
    assert "is not a run id" in capsys.readouterr().err
    assert sorted(p.relative_to(lake) for p in lake.rglob("*")) == before


def test_a_plain_custom_run_id_is_accepted(lake, config_dir, capsys):
    runs(lake).save(state("nightly-2026.12_07", {"bronze_fx_rates": "succeeded"}, "succeeded"))
    args = ["status", "nightly-2026.12_07", "--lake", str(lake), "--config-dir", str(config_dir)]
    assert cli.main(args) == 0
    assert "nightly-2026.12_07" in capsys.readouterr().out


def test_resuming_a_run_with_nothing_left_does_nothing(lake, config_dir, capsys):
    runs(lake).save(state("r1", {"bronze_fx_rates": "succeeded"}, "succeeded"))
    assert cli.main(["run", "--lake", str(lake), "--config-dir", str(config_dir), "--resume", "r1"]) == 0
    assert "run r1: nothing to resume, every step succeeded" in capsys.readouterr().out


def test_a_run_still_going_on_this_host_is_not_resumed(lake, config_dir, capsys):
    live = state("r1", {"bronze_fx_rates": "running"}, "running")
    live.host, live.pid = socket.gethostname(), os.getppid()  # a process that is alive
    runs(lake).save(live)
    assert cli.main(["run", "--lake", str(lake), "--config-dir", str(config_dir), "--resume", "r1"]) == 2
    assert f"run r1 is still running (pid {os.getppid()}" in capsys.readouterr().err


def test_the_aws_job_entry_points_share_the_cli_arguments():
    import argparse

    from pipeline.app.arguments import add_common_arguments, settings_from_args

    parser = argparse.ArgumentParser()
    add_common_arguments(parser)
    args = parser.parse_args(["--lake", "/tmp/x", "--run-id", "r"])
    assert (args.lake, args.run_id, args.env, args.config_dir) == ("/tmp/x", "r", None, None)
    assert settings_from_args(args).lake.root == "/tmp/x"


# ---------------------------------------------------------------- stores


def test_local_store_round_trip_atomic_files_and_latest(tmp_path):
    store = LocalStateStore(tmp_path / "runs")
    assert latest_run_id(store) is None and not store.exists("x")
    first = state("20250102T030405Z-bbbbbb", {"a": "succeeded"}, "succeeded")
    store.save(first)
    store.save(state("20250101T000000Z-aaaaaa", {"a": "failed"}))  # older id, written later
    assert store.load(first.run_id) == first
    assert latest_run_id(store) == "20250102T030405Z-bbbbbb"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "20250101T000000Z-aaaaaa.json",
        "20250102T030405Z-bbbbbb.json",
    ]  # no temporary files left behind
    (tmp_path / "runs" / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"broken.json: unreadable run state"):
        store.load("broken")
    with pytest.raises(RunNotFound, match=r"looked for .*runs/nope.json"):
        store.load("nope")


def test_custom_run_ids_count_by_file_time(tmp_path):
    store = LocalStateStore(tmp_path)
    store.save(state("manual-backfill", {"a": "succeeded"}, "succeeded"))
    old = time.time() - 3600 * 24 * 365 * 30
    os.utime(tmp_path / "manual-backfill.json", (old, old))
    store.save(state("20250101T000000Z-aaaaaa", {"a": "succeeded"}, "succeeded"))
    assert latest_run_id(store) == "20250101T000000Z-aaaaaa"
    os.utime(tmp_path / "manual-backfill.json", None)  # touched now: newer than a 2025 run id
    assert latest_run_id(store) == "manual-backfill"


def test_store_choice_by_lake_root():
    assert isinstance(state_store_for("/lake/_ops/runs"), LocalStateStore)
    assert isinstance(state_store_for("file:///lake/_ops/runs"), LocalStateStore)
    assert state_store_for("file:///lake/_ops/runs").location("r") == "/lake/_ops/runs/r.json"
    assert isinstance(state_store_for("s3://bucket/lake/_ops/runs"), S3StateStore)
    assert isinstance(state_store_for("s3://bucket/_ops/runs", spark=object()), HadoopStateStore)
    with pytest.raises(ConfigError, match="hdfs://nn/lake/_ops/runs"):
        state_store_for("hdfs://nn/lake/_ops/runs")


def test_s3_store_round_trip_and_latest(monkeypatch):
    moto = pytest.importorskip("moto")
    import boto3

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    with moto.mock_aws():
        boto3.client("s3").create_bucket(Bucket="lake")
        store = state_store_for("s3://lake/prod/_ops/runs")
        assert latest_run_id(store) is None and not store.exists("r")
        first = state("20250101T000000Z-aaaaaa", {"a": "failed"})
        store.save(first)
        store.save(state("20250102T030405Z-bbbbbb", {"a": "succeeded"}, "succeeded"))
        assert store.exists(first.run_id) and store.load(first.run_id) == first
        assert latest_run_id(store) == "20250102T030405Z-bbbbbb"
        with pytest.raises(RunNotFound, match="looked for s3://lake/prod/_ops/runs/nope.json"):
            store.load("nope")


def test_hadoop_store_round_trip(spark, tmp_path):
    store = HadoopStateStore(spark, f"file://{tmp_path}/runs")
    assert store.run_ids() == [] and not store.exists("r")
    saved = state("20250102T030405Z-bbbbbb", {"a": "succeeded", "b": "failed"})
    saved.steps[0].details = {"files": ["é.csv"] * 500}  # bigger than one buffer, not ASCII
    store.save(saved)
    store.save(state("20250101T000000Z-aaaaaa", {"a": "succeeded"}, "succeeded"))
    assert store.load(saved.run_id) == saved
    assert latest_run_id(store) == "20250102T030405Z-bbbbbb"  # .crc side files are not runs
    with pytest.raises(RunNotFound, match="looked for file://"):
        store.load("nope")
