"""The Kafka job gates each micro-batch before writing it: a critical batch stops the query, is
not written, is judged again on restart, and is written exactly once when accepted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime

import pytest
from pyspark.sql import functions as F

from pipeline.bronze.kafka import ingest_kafka
from pipeline.dq.gate import DqGateFailed
from pipeline.dq.record import flush, results_path
from pipeline.dq.stream import MicroBatchRefused
from tests.helpers import REPO, make_ctx
from tests.integration.conftest import manifest
from tests.integration.test_kafka_exactly_once import kafka_config

pytestmark = pytest.mark.slow

GOOD, GARBAGE = 40, 60  # 60 % of the poison batch is not a Kafka event: over the 0.5 critical ratio


def poison_file(lake, first_offset: int, good: int = GOOD, garbage: int = GARBAGE) -> None:
    """A replay file (the newest, so the last micro-batch reads it) whose records are `good`
    events and then `garbage` values that are not Kafka events at all."""
    lines = []
    for i in range(good + garbage):
        offset = first_offset + i
        if i < good:
            value = json.dumps(
                {
                    "event_id": f"poison-{i}",
                    "event_type": "feature_used",
                    "account_id": "ACC-000001",
                    "event_ts": "2026-09-30T10:00:00Z",
                }
            )
        else:
            value = "<html>502 Bad Gateway</html>"
        record = {
            "topic": "product_events",
            "partition": 9,
            "offset": offset,
            "timestamp": "2026-09-30T10:00:01Z",
            "timestampType": 0,
            "key": None,
            "value": value,
        }
        lines.append(json.dumps(record))
    path = lake / "landing" / "kafka" / "product_events" / "product_events-p9-poison.jsonl"
    path.write_text("\n".join(lines) + "\n")


def newest_replay_timestamp(lake) -> datetime:
    newest = None
    for path in (lake / "landing" / "kafka" / "product_events").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                stamp = json.loads(line)["timestamp"]
            except (ValueError, KeyError, TypeError):
                continue  # a malformed replay line carries no timestamp
            moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            newest = moment if newest is None else max(newest, moment)
    return newest


def dq_rows(ctx):
    flush(ctx)  # what the run's end does (the step ran outside a run here)
    return (
        ctx.lake.read(results_path(ctx))
        .where(F.col("step") == "bronze_kafka_events")
        .select("rule", "severity", "passed", "observed", "layer")
        .collect()
    )


def test_a_critical_micro_batch_stops_the_query_unwritten_until_accepted(spark, fresh_lake, monkeypatch):
    ctx = make_ctx(spark, fresh_lake)
    table = ctx.table_path("bronze", "kafka_events")
    expected = manifest(fresh_lake)["datasets"]["kafka_events"]["records"]

    # The generated data (2 % defects) passes every micro-batch; the step reports the gate.
    first = ingest_kafka(ctx, "kafka_events")
    assert first.rows_out == expected
    dq = {r["rule"]: r for r in first.details["dq"]}
    assert dq["batch:quarantine_ratio"]["passed"] is True
    # The step's summary of passing rules covers every record of the run, not one batch.
    batches = first.details["micro_batches"]
    assert dq["batch:quarantine_ratio"]["observed"].endswith(f"/{expected}) over {batches} micro-batch(es)")
    assert first.details["dq_micro_batches"] == first.details["micro_batches"] >= 1
    recorded = dq_rows(ctx)
    assert {r["layer"] for r in recorded} == {"bronze"}
    assert sum(r["rule"] == "batch:quarantine_ratio" for r in recorded) == first.details["micro_batches"]
    # The generator's malformed Kafka values show up as the record:malformed rule of a batch.
    assert any(
        r["rule"] == "quarantine:record:malformed" and not r["observed"].startswith("0.0000 ")
        for r in recorded
    )

    # Freshness: the newest Kafka timestamp written, against the replay files read in Python.
    assert datetime.fromisoformat(first.details["newest_data_at"]) == newest_replay_timestamp(fresh_lake)

    version = ctx.lake.version(table)
    poison_file(fresh_lake, first_offset=10_000)
    with pytest.raises(MicroBatchRefused) as refused:
        ingest_kafka(ctx, "kafka_events")
    assert isinstance(refused.value, DqGateFailed) and isinstance(refused.value, ValueError)  # fatal
    message = str(refused.value)
    assert "batch:quarantine_ratio" in message and "was not written" in message
    assert "LAKEHOUSE_DQ=off" in message
    assert ctx.lake.version(table) == version  # nothing of the batch reached bronze
    failed = [r for r in dq_rows(ctx) if not r["passed"]]
    ratio = [r for r in failed if r["rule"] == "batch:quarantine_ratio"]
    assert len(ratio) == 1 and ratio[0]["severity"] == "critical"
    assert ratio[0]["observed"].startswith(f"{GARBAGE / (GOOD + GARBAGE):.4f} ({GARBAGE}/{GOOD + GARBAGE})")
    batch_id = refused.value.batch_id
    summary = {r["rule"]: r for r in refused.value.details["dq"]}  # what the failed step reports
    assert summary["batch:quarantine_ratio"]["passed"] is False
    assert summary["batch:quarantine_ratio"]["observed"].endswith(f"in micro-batch {batch_id}")

    # A restart judges the same batch again (the checkpoint did not move past it).
    with pytest.raises(MicroBatchRefused) as again:
        ingest_kafka(ctx, "kafka_events")
    assert again.value.batch_id == batch_id
    assert ctx.lake.version(table) == version

    # Accepted by the operator (gates off for one run): written once, nothing lost or doubled.
    monkeypatch.setenv("LAKEHOUSE_DQ", "off")
    accepted = ingest_kafka(ctx, "kafka_events")
    assert accepted.rows_out == GOOD + GARBAGE and "dq" not in accepted.details
    rows = ctx.lake.read(table)
    assert rows.count() == expected + GOOD + GARBAGE
    assert rows.select("topic", "partition", "offset").distinct().count() == expected + GOOD + GARBAGE
    assert rows.where(F.col("partition") == 9).where(F.col("_corrupt_record").isNotNull()).count() == GARBAGE


def test_the_continuous_stream_stops_at_a_critical_micro_batch_as_a_failed_step(fresh_lake, tmp_path):
    """`--trigger continuous` runs as the DAG step: the refused batch ends it as a failed,
    non-retried step with run state, a FAIL lineage event and an alert; exit status 1."""
    # The last micro-batch also holds the oldest files' neighbours: enough garbage to break 0.5.
    poison_file(fresh_lake, first_offset=10_000, garbage=5_000)
    config = kafka_config(tmp_path, files_per_trigger=64, trigger_interval="1 second")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "LAKEHOUSE_CONFIG_DIR": str(config)}
    env.pop("LAKEHOUSE_DQ", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "aws" / "jobs" / "kafka_streaming_ingest.py"),
            "--lake",
            str(fresh_lake),
            "--trigger",
            "continuous",
            "--run-id",
            "stream-run",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output = proc.communicate(timeout=300)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the JVM too
        pytest.fail(
            "the continuous stream did not stop at the refused micro-batch: " + proc.communicate()[0][-3000:]
        )
    assert proc.returncode == 1, output[-3000:]
    state = json.loads((fresh_lake / "_ops" / "runs" / "stream-run.json").read_text())
    (step,) = state["steps"]
    assert step["step"] == "bronze_kafka_events" and step["status"] == "failed"
    assert step["attempts"] == 1 and "was not written" in step["error"]  # fatal: not retried
    events = [json.loads(line) for line in (fresh_lake / "_ops" / "lineage" / "stream-run.jsonl").open()]
    assert [e["eventType"] for e in events if e["job"]["name"].endswith("bronze_kafka_events")] == [
        "START",
        "FAIL",
    ]
    assert "bronze_kafka_events failed" in output  # the alert (logged locally)
    bronze = fresh_lake / "bronze" / "kafka_events"
    assert bronze.exists(), "the good micro-batches before the refused one were written"
