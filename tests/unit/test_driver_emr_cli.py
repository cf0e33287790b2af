"""`lakehouse run --executor emr-serverless|emr-ec2` (the plan, a run driven without Spark) and
the job side (`aws/jobs/run_step.py --step S --run-id R --member`): what each process writes
and which observers it runs; Data Docs built by a driver from the results other processes kept."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
import yaml
from moto import mock_aws

from pipeline import cli, entry, jobs
from pipeline.app import run as app_run
from pipeline.app.run import DriverContext
from pipeline.catalog import load_catalog
from pipeline.deploy.submit import release_version
from pipeline.driver.state import LocalStateStore, RunState, StepOutcome, step_state_location
from pipeline.files import LocalFiles
from pipeline.lease import LakeLease
from pipeline.settings import ConfigError, load_settings
from pipeline.step_result import StepResult

REPO = Path(__file__).resolve().parents[2]
RUN_ID = "20250102T030405Z-abc123"

PIPELINE = """
steps:
  bronze_fx_rates: {job: bronze, dataset: fx_rates}
  bronze_crm_accounts: {job: bronze, dataset: crm_accounts}
  bronze_crm_contacts: {job: bronze, dataset: crm_contacts, depends_on: [bronze_crm_accounts]}
"""


@pytest.fixture
def config_dir(tmp_path):
    """config/dev.yaml with the observers writing files (no Marquez, CloudWatch or SNS)."""
    folder = tmp_path / "config"
    folder.mkdir()
    dev = yaml.safe_load((REPO / "config" / "dev.yaml").read_text())
    dev.update(lineage={"transport": "file"}, metrics={"sink": "file"}, alerts={})
    (folder / "dev.yaml").write_text(yaml.safe_dump(dev))
    shutil.copy(REPO / "config" / "local.yaml", folder / "local.yaml")
    shutil.copy(REPO / "config" / "datasets.yaml", folder / "datasets.yaml")
    (folder / "pipeline.yaml").write_text(PIPELINE)
    return folder


@pytest.fixture
def lake(tmp_path, monkeypatch):
    for name in ("LAKEHOUSE_LAKE_ROOT", "LAKEHOUSE_ENV", "LAKEHOUSE_DQ"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "lake"


@pytest.fixture(autouse=True)
def no_spark(monkeypatch):
    """Nothing here may start Spark: the driver of an EMR run is a small machine or CI."""

    def refuse(*args, **kwargs):
        raise AssertionError("this command must not start Spark")

    from pyspark.sql import SparkSession

    from pipeline.context import RunContext

    monkeypatch.setattr(RunContext, "create", classmethod(refuse))
    monkeypatch.setattr(SparkSession.Builder, "getOrCreate", refuse)


@pytest.fixture
def aws(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------- the driver


@pytest.mark.parametrize(
    ("executor", "role_conf"),
    [("emr-serverless", "emr-serverless.driverEnv"), ("emr-ec2", "yarn.appMasterEnv")],
)
def test_the_plan_prints_every_job_run_and_calls_no_aws_api(
    lake, config_dir, capsys, monkeypatch, executor, role_conf
):
    def no_aws(*args, **kwargs):
        raise AssertionError("--plan must not call AWS")

    monkeypatch.setattr(boto3, "client", no_aws)
    args = ["run", "--executor", executor, "--env", "dev", "--plan", "--run-id", RUN_ID]
    assert cli.main([*args, "--lake", str(lake), "--config-dir", str(config_dir)]) == 0
    out = capsys.readouterr().out
    assert f"executor: {executor}" in out
    release = f"s3://lakehouse-dev-artifacts/releases/{release_version()}"
    for i, step in enumerate(["bronze_fx_rates", "bronze_crm_accounts", "bronze_crm_contacts"], 1):
        assert f"  {i}. {step}: bronze" in out
        assert (
            f"job run lakehouse-dev-{step}-{RUN_ID}, role arn:aws:iam::123456789012:role/lakehouse-dev-ingest"
            in out
        )
        assert (
            f"entry point {release}/jobs/run_step.py --step {step} --run-id {RUN_ID} --env dev --member"
            in out
        )
    assert f"--conf spark.{role_conf}.LAKEHOUSE_ENV=dev" in out
    assert not lake.exists()  # touched nothing


def test_the_plan_of_an_emr_executor_needs_an_aws_section(lake, config_dir, capsys):
    args = [
        "run",
        "--executor",
        "emr-serverless",
        "--plan",
        "--lake",
        str(lake),
        "--config-dir",
        str(config_dir),
    ]
    assert cli.main(args) == 2
    assert "has no aws section" in capsys.readouterr().err


def test_a_run_on_emr_serverless_is_driven_without_spark(lake, config_dir, capsys, aws):
    client = boto3.client("emr-serverless", region_name="us-east-1")
    app = client.create_application(name="lakehouse-dev", releaseLabel="emr-7.12.0", type="SPARK")
    kms = boto3.client("kms", region_name="us-east-1")  # the lake key terraform creates, by its alias
    kms.create_alias(AliasName="alias/lakehouse-dev", TargetKeyId=kms.create_key()["KeyMetadata"]["KeyId"])
    args = ["run", "--executor", "emr-serverless", "--env", "dev", "--run-id", RUN_ID]
    assert cli.main([*args, "--lake", str(lake), "--config-dir", str(config_dir)]) == 0
    out = capsys.readouterr().out
    assert f"run {RUN_ID}: 3 step(s)" in out and "executor emr-serverless (3 at once)" in out
    state = LocalStateStore(lake / "_ops" / "runs").load(RUN_ID)
    assert state.executor == "emr-serverless" and state.status == "succeeded"
    runs = client.list_job_runs(applicationId=app["applicationId"])["jobRuns"]
    assert sorted(s.details["emr"]["job_run_id"] for s in state.steps) == sorted(r["id"] for r in runs)
    # the driver emits the pipeline's lineage only: each job emits its own step's events
    lineage = events(lake / "_ops" / "lineage" / f"{RUN_ID}.jsonl")
    assert [(e["eventType"], e["job"]["name"]) for e in lineage] == [
        ("START", "pipeline"),
        ("COMPLETE", "pipeline"),
    ]
    metrics = events(lake / "_ops" / "metrics" / f"{RUN_ID}.jsonl")
    assert metrics and all(not m.get("dimensions", {}).get("Step") for m in metrics)  # the run's only
    assert (lake / "_ops" / "reports" / f"{RUN_ID}.html").exists() and "report " in out
    # lakehouse status says where each step ran and where its logs are
    status = ["status", RUN_ID, "--env", "dev", "--lake", str(lake), "--config-dir", str(config_dir)]
    assert cli.main(status) == 0
    shown = capsys.readouterr().out
    job = state.step("bronze_fx_rates").details["emr"]["job_run_id"]
    logs = f"s3://lakehouse-dev-logs/emr/applications/{app['applicationId']}/jobs/{job}/"
    assert f"bronze_fx_rates: emr-serverless {job} SUCCESS, logs {logs}" in shown


def test_a_failed_step_reported_by_its_job_is_not_alerted_again_by_the_driver(lake, config_dir):
    from pipeline.observability.alerts import AlertObserver

    settings = load_settings("dev", lake_root=str(lake), config_dir=config_dir)
    observer = AlertObserver(settings)
    observer.send = lambda subject, alert: observer.sent.append(alert)
    failed = RunState(
        RUN_ID, [StepOutcome("a", "failed", details={"reported_by": "member"})], status="failed"
    )
    observer.run_finished(SimpleNamespace(run_id=RUN_ID), failed)
    assert observer.sent == []  # the job sent step_failed
    died = RunState(
        RUN_ID, [StepOutcome("a", "failed", details={"emr": {"job_run_id": "jr-1"}})], status="failed"
    )
    observer.run_finished(SimpleNamespace(run_id=RUN_ID), died)
    assert [a["alert"] for a in observer.sent] == ["run_failed"]  # a job that died alerted nobody


# ---------------------------------------------------------------- the job (--member)


@pytest.fixture
def member_ctx(monkeypatch):
    """RunContext.create without Spark (the fake job needs none), recording the contexts made."""
    from pipeline.context import RunContext

    made = []

    def create(cls, settings, run_id=None):
        catalog = load_catalog(settings.config_path(settings.datasets_file))
        ctx = RunContext(settings, None, None, catalog, run_id)  # no session, no lake engine
        made.append(ctx)
        return ctx

    monkeypatch.setattr(RunContext, "create", classmethod(create))
    return made


def test_a_member_job_writes_only_its_step_state_and_takes_the_run_window(
    lake, config_dir, member_ctx, monkeypatch
):
    seen = []

    def fake_bronze(ctx, dataset):
        seen.append((dataset, ctx.window, ctx.as_of, ctx.full_refresh))
        return StepResult(rows_in=12, rows_out=11, details={"dataset": dataset})

    monkeypatch.setitem(jobs.JOBS, "bronze", fake_bronze)
    runs = LocalStateStore(lake / "_ops" / "runs")
    driver_state = RunState(
        RUN_ID,
        [StepOutcome("bronze_fx_rates", "running"), StepOutcome("bronze_crm_accounts", "running")],
        window={"start": "2025-01-01", "end": "2025-01-31"},
        as_of="2025-02-01",
        full_refresh=True,  # lakehouse run --full-refresh on the driver
    )
    runs.save(driver_state)
    driver_lease = LakeLease(str(lake), LocalFiles())
    driver_lease.acquire(RUN_ID, "lakehouse run --executor emr-serverless")
    before = (lake / "_ops" / "runs" / f"{RUN_ID}.json").read_text()
    argv = ["--step", "bronze_fx_rates", "--run-id", RUN_ID, "--member", "--lake", str(lake)]
    assert entry.main(argv=[*argv, "--config-dir", str(config_dir)]) == 0
    assert LakeLease(str(lake), LocalFiles()).current().generation == 1  # took no second lease
    assert (lake / "_ops" / "runs" / f"{RUN_ID}.json").read_text() == before  # the driver's file
    step_file = Path(step_state_location(str(lake / "_ops" / "runs"), RUN_ID, "bronze_fx_rates"))
    outcome = json.loads(step_file.read_text())
    assert (outcome["step"], outcome["status"], outcome["rows_in"], outcome["rows_out"]) == (
        "bronze_fx_rates",
        "succeeded",
        12,
        11,
    )
    ((dataset, window, as_of, full_refresh),) = seen
    assert dataset == "fx_rates" and str(window.start) == "2025-01-01" and str(as_of) == "2025-02-01"
    assert full_refresh  # the driver's --full-refresh, from its run state
    # step-level observers only: the step's lineage events, no pipeline-level ones, no report
    lineage = events(lake / "_ops" / "lineage" / f"{RUN_ID}.jsonl")
    assert [e["eventType"] for e in lineage] == ["START", "COMPLETE"]
    assert {e["job"]["name"] for e in lineage} != {"pipeline"}
    assert not (lake / "_ops" / "reports").exists()
    assert [run_id for run_id, _ in runs.run_ids()] == [RUN_ID]  # the steps/ folder is not a run


def test_a_member_job_needs_a_step_and_the_driver_run_id(lake, config_dir, member_ctx, capsys):
    with pytest.raises(SystemExit):
        entry.main(argv=["--member", "--lake", str(lake)])  # no --step
    assert "--step" in capsys.readouterr().err
    argv = ["--step", "bronze_fx_rates", "--member", "--lake", str(lake), "--config-dir", str(config_dir)]
    with pytest.raises(ConfigError, match="--member runs one step"):
        entry.main(argv=argv)
    assert member_ctx == []  # refused before Spark


def test_the_per_source_scripts_still_run_their_step_in_their_own_run(monkeypatch):
    calls = []
    monkeypatch.setattr(
        app_run, "run_pipeline", lambda args, only=None, member=False, **kw: calls.append((only, member)) or 0
    )
    assert entry.main("bronze_fx_rates", argv=["--lake", "/tmp/x"]) == 0
    assert entry.main(argv=["--step", "silver_orders", "--run-id", RUN_ID, "--member"]) == 0
    assert calls == [(["bronze_fx_rates"], False), (["silver_orders"], True)]


# ---------------------------------------------------------------- Data Docs across processes


def test_the_driver_builds_data_docs_from_the_results_its_jobs_kept(lake, config_dir, monkeypatch):
    import great_expectations as gx
    import pandas as pd

    from pipeline.dq import docs, gate

    (config_dir / "dq.yaml").write_text("enabled: true\n")
    settings = load_settings("dev", lake_root=str(lake), config_dir=config_dir)
    ctx = DriverContext(settings, RUN_ID)
    # What a job's gate did in its own process: validate, then keep the result (gate.save_validations)
    job_gx = gx.get_context(mode="ephemeral")
    source = job_gx.data_sources.add_pandas("job")
    batch = source.add_dataframe_asset("gold.fct_orders").add_batch_definition_whole_dataframe("whole")
    suite = job_gx.suites.add(
        gx.ExpectationSuite(
            "gold.fct_orders", expectations=[gx.expectations.ExpectColumnValuesToBeUnique(column="order_id")]
        )
    )
    validation = job_gx.validation_definitions.add(gx.ValidationDefinition(name="v", data=batch, suite=suite))
    result = validation.run(batch_parameters={"dataframe": pd.DataFrame({"order_id": ["O-1", "O-1"]})})
    monkeypatch.setattr(gate._Gx, "last", {"gold.fct_orders": [result]})
    gate.save_validations(ctx, "gold_fct_orders", "gold.fct_orders")
    kept = lake / "_ops" / "gx" / RUN_ID / "gold_fct_orders.json"
    assert json.loads(kept.read_text())["suite"] == "gold.fct_orders"
    # ... and the driver, another process (which ran no gate and has no SparkSession), at run end
    monkeypatch.setattr(gate._Gx, "saved", set())
    monkeypatch.setattr(gate._Gx, "context", None)
    monkeypatch.setattr(docs._Docs, "loaded", set())
    monkeypatch.setattr(docs._Docs, "sites", {})
    observer = docs.DataDocsObserver()
    observer.run_finished(ctx, None)
    assert observer.last_index and observer.last_index.endswith("index.html")
    pages = [p.read_text() for p in (lake / "_ops" / "data_docs" / "validations").rglob("*.html")]
    assert len(pages) == 1 and "gold.fct_orders" in pages[0] and "order_id" in pages[0]
    assert gate._Gx.context is None  # the gates' context (with its Spark data source) never made
