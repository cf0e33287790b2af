"""The whole pipeline with the lake in a bucket: `s3a://<bucket>/lake` on delta-spark, against the
session's local S3 endpoint (s3proxy; tests/s3_endpoint.py), configured as a deployment would be
(lake.root, lake.storage_options; credentials from the AWS environment variables).

One run, a `lakehouse run` process of its own, is killed in bronze (SIGKILL to its process group,
JVM included) and resumed (`lakehouse run --resume`, in the test's process: a new process would
add only its JVM's start to the suite's time); then every table must equal the suite's
uninterrupted run of the same landing data (`pipeline_run`, a local lake), everything the run
leaves must be in the bucket (every table, and under _ops the run state, lineage, metrics, DQ
results, Data Docs and the report), and a rerun must add nothing."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from pipeline import cli
from tests.helpers import REPO, make_ctx
from tests.integration.conftest import manifest
from tests.lake_compare import DAG, assert_same_tables, lake_tables
from tests.s3_endpoint import env

pytestmark = pytest.mark.slow

BUCKET = "lakehouse-s3-lake"
ROOT = f"s3a://{BUCKET}/lake"
RUN_ID = "20261201T000000Z-s3kill"


@pytest.fixture(scope="module")
def s3_lake(s3_endpoint, generated_landing, tmp_path_factory):
    """The bucket holding the generated landing zone, and a config folder for a lake in it."""
    s3_endpoint.create_bucket(BUCKET)
    uploaded = s3_endpoint.upload_tree(generated_landing, BUCKET, "lake/landing")
    assert uploaded > 0
    config = tmp_path_factory.mktemp("s3-config") / "config"
    shutil.copytree(REPO / "config", config)
    local = yaml.safe_load((config / "local.yaml").read_text())
    local["lake"] = {"root": ROOT, "engine": "delta-spark", "storage_options": s3_endpoint.storage_options()}
    # Two steps at once, as the suite's shared run: a step on S3 waits on requests most of its time.
    local["spark"].update(master="local[2]", shuffle_partitions=2, driver_memory="2g", parallel_steps=2)
    (config / "local.yaml").write_text(yaml.safe_dump(local, sort_keys=False))
    return s3_endpoint, config


def lakehouse(config, *args: str) -> subprocess.Popen:
    environment = {
        **os.environ,
        **env(),
        "PYTHONPATH": str(REPO / "src"),
        "LAKEHOUSE_CONFIG_DIR": str(config),
    }
    environment.pop("LAKEHOUSE_LAKE_ROOT", None)
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def finish_here(spark, s3, config, *args: str) -> str:
    """`lakehouse <args>` in this process (`cli.main`), its environment as `lakehouse` gives a
    process of its own; its output. The suite's SparkSession reaches the bucket as the config
    would make a new one reach it (per-bucket S3A settings, `S3Proxy.configure_spark`)."""
    s3.configure_spark(spark, BUCKET)
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        for key, value in {**env(), "LAKEHOUSE_CONFIG_DIR": str(config)}.items():
            mp.setenv(key, value)
        mp.delenv("LAKEHOUSE_LAKE_ROOT", raising=False)
        status = cli.main([*args, "--log-level", "WARNING"])
    assert status == 0, out.getvalue()[-4000:]
    return out.getvalue()


def state(s3, run_id: str) -> dict:
    body = s3.client().get_object(Bucket=BUCKET, Key=f"lake/_ops/runs/{run_id}.json")["Body"]
    return json.loads(body.read())


def state_if_any(s3, run_id: str) -> dict:
    try:
        return state(s3, run_id)
    except Exception:  # noqa: BLE001 - not written yet
        return {}


@pytest.fixture(scope="module")
def resumed(spark, s3_lake):
    """A run killed in bronze, its first step committed and the next under way, then resumed
    (`--resume`): the resumed run does the rest of the DAG in the test's warm process, where the
    killed one's cold JVM would take longer over each step."""
    s3, config = s3_lake
    proc = lakehouse(config, "run", "--run-id", RUN_ID)
    deadline = time.monotonic() + 420
    while proc.poll() is None and time.monotonic() < deadline:
        steps = {s["step"]: s["status"] for s in state_if_any(s3, RUN_ID).get("steps", [])}
        if steps.get("bronze_crm_accounts") == "succeeded" and "running" in steps.values():
            break
        time.sleep(0.2)
    assert proc.poll() is None, (
        "the run ended before it could be killed:\n" + proc.stdout.read().decode()[-4000:]
    )
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = state(s3, RUN_ID)
    unfinished = [s["step"] for s in killed["steps"] if s["status"] != "succeeded"]
    assert {"bronze_snowflake_orders", "silver_orders", "gold_fct_orders"} <= set(unfinished)
    assert "bronze_crm_accounts" not in unfinished
    output = finish_here(spark, s3, config, "run", "--resume", RUN_ID)
    return s3, config, killed, output


@pytest.fixture(scope="module")
def s3_ctx(spark, s3_lake):
    """A context on the bucket in the suite's SparkSession: S3A for this bucket only (per-bucket
    keys), as the config gives the `lakehouse` processes."""
    s3, _ = s3_lake
    s3.configure_spark(spark, BUCKET)
    return make_ctx(spark, ROOT, run_id="s3-check", engine="delta-spark")


def test_a_killed_run_on_s3_resumes_to_the_tables_of_an_uninterrupted_run(resumed, s3_ctx, pipeline_run):
    assert_same_tables(s3_ctx, pipeline_run[0])


def test_a_killed_run_on_s3_resumes_and_leaves_everything_in_the_bucket(resumed, s3_ctx, generated_landing):
    s3, _, _, output = resumed
    final = state(s3, RUN_ID)
    assert final["status"] == "succeeded" and all(s["status"] == "succeeded" for s in final["steps"])
    assert f"report {ROOT}/_ops/reports/{RUN_ID}.html" in output  # the summary prints where it went
    keys = set(s3.objects(BUCKET, "lake/"))
    for layer, name in lake_tables(s3_ctx):
        assert f"lake/{layer}/{name}/_delta_log/00000000000000000000.json" in keys, f"{layer}/{name}"
    ops = "lake/_ops"
    expected = {
        f"{ops}/runs/{RUN_ID}.json",
        f"{ops}/lineage/{RUN_ID}.jsonl",
        f"{ops}/metrics/{RUN_ID}.jsonl",
        f"{ops}/dq_results/_delta_log/00000000000000000000.json",
        f"{ops}/data_docs/index.html",
        f"{ops}/reports/{RUN_ID}.html",
    }
    assert expected <= keys, sorted(expected - keys)
    body = s3.client().get_object(Bucket=BUCKET, Key=f"{ops}/lineage/{RUN_ID}.jsonl")["Body"].read()
    events = [json.loads(line) for line in body.decode().splitlines()]
    completed = {e["job"]["name"] for e in events if e["eventType"] == "COMPLETE"}
    assert completed >= {f"pipeline.{s}" for s in DAG.order()}  # both processes' events, one file
    report = s3.client().get_object(Bucket=BUCKET, Key=f"{ops}/reports/{RUN_ID}.html")
    assert report["ContentType"] == "text/html"
    assert b"../data_docs/index.html" in report["Body"].read()  # the report found the Data Docs

    # Every landing record reached bronze, read back from the bucket.
    counts = {n: s3_ctx.lake.read(s3_ctx.table_path("bronze", n)).count() for n in s3_ctx.catalog.datasets}
    landing = {n: d["records"] for n, d in manifest(generated_landing.parent)["datasets"].items()}
    assert counts == landing
    for layer, name in lake_tables(s3_ctx):
        if layer == "gold":
            assert s3_ctx.lake.read(s3_ctx.table_path(layer, name)).count() > 0, name


def test_a_rerun_on_s3_adds_nothing(spark, resumed, s3_ctx):
    s3, config, _, _ = resumed
    before = s3.objects(BUCKET, "lake/")
    versions = {t: s3_ctx.lake.version(s3_ctx.table_path(*t)) for t in lake_tables(s3_ctx)}
    output = finish_here(spark, s3, config, "run", "--run-id", "20261201T010000Z-s3again")
    after = s3.objects(BUCKET, "lake/")
    assert {t: s3_ctx.lake.version(s3_ctx.table_path(*t)) for t in lake_tables(s3_ctx)} == versions
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    # The rerun held the lake's lease, and its Kafka step the stream table's: one new lease record
    # each (keyed by generation), naming it, released.
    leases = [k for k in changed if k.startswith("lake/_ops/lease/")]
    assert sorted(k.rsplit("/", 1)[0] for k in leases) == [
        "lake/_ops/lease",
        "lake/_ops/lease/stream-kafka_events",
    ]
    for lease in leases:
        record = json.loads(s3.client().get_object(Bucket=BUCKET, Key=lease)["Body"].read())
        assert (record["run_id"], record["released_at"] is not None) == ("20261201T010000Z-s3again", True)
        changed.remove(lease)
    # Otherwise only the new run's own records appear under _ops: no table file, no DQ result, no data file.
    assert all(k.startswith("lake/_ops/") and "s3again" in k for k in changed), (changed, output[-3000:])
    assert {k.split("/")[2] for k in changed} == {"runs", "lineage", "metrics", "reports"}
    rows = {s["step"]: s["rows_out"] for s in state(s3, "20261201T010000Z-s3again")["steps"]}
    assert set(rows.values()) == {0}, rows
