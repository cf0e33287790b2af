"""`sources.kafka_events.mode: kafka` against a real broker (tests/kafka_broker.py): bronze holds
every record of the topic at its partition and offset, a SIGKILLed stream restarts with every
record exactly once, and the step reports the consumer lag per partition (run state, metrics,
run report), a micro-batch refused by the DQ gate included.

One broker per session; the topic `product_events` (the generator's events, 3 partitions) is
shared read-only, each test with its own lake and so its own checkpoint. Expected values come
from the produced records and from a batch read of the topic, never from the job's own output.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F

from pipeline.app import local_executor
from pipeline.bronze import kafka
from pipeline.bronze.kafka import broker_offsets, caught_up, ingest_kafka
from pipeline.driver.dag import load_dag
from pipeline.driver.runner import run_steps
from pipeline.jobs import JOBS
from pipeline.observability.emitters import MetricsObserver
from pipeline.report import ReportObserver
from pipeline.settings import KafkaSettings, SourceSettings
from tests.helpers import REPO, make_ctx
from tests.integration.conftest import manifest
from tests.integration.test_kafka_exactly_once import restart_here, start_stream
from tests.kafka_broker import Record, create_topic, produce, read_topic

pytestmark = pytest.mark.slow

STEP = "bronze_kafka_events"


def kafka_ctx(spark, lake: Path, bootstrap: str, topic: str, max_offsets: int = 200_000):
    ctx = make_ctx(spark, lake)
    kafka = SourceSettings(
        mode="kafka",
        max_offsets_per_trigger=max_offsets,
        kafka=KafkaSettings(bootstrap_servers=bootstrap, topic=topic),
    )
    sources = {**ctx.settings.sources, "kafka_events": kafka}
    return make_ctx(spark, lake, sources=sources)


def kafka_config(tmp_path: Path, bootstrap: str, topic: str, max_offsets: int) -> Path:
    """The repo's config folder with local.yaml in kafka mode on the test broker, small
    micro-batches, and a small local Spark for the job's own process."""
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    local = yaml.safe_load((REPO / "config" / "local.yaml").read_text())
    local["sources"]["kafka_events"].update(
        {
            "mode": "kafka",
            "max_offsets_per_trigger": max_offsets,
            "kafka": {"bootstrap_servers": bootstrap, "topic": topic},
        }
    )
    local["spark"].update({"master": "local[2]", "driver_memory": "1g"})
    (config / "local.yaml").write_text(yaml.safe_dump(local))
    return config


def bronze_records(lake_api, table: str) -> list[tuple]:
    """(partition, offset, key, value, timestamp ms) of every bronze row, duplicates kept."""
    rows = (
        lake_api.read(table)
        .select("partition", "offset", "key", "value", F.unix_millis("kafka_timestamp").alias("ts"))
        .collect()
    )
    return [(r["partition"], r["offset"], r["key"], r["value"], r["ts"]) for r in rows]


def assert_bronze_is_the_topic(lake_api, table: str, topic_records: dict) -> None:
    rows = bronze_records(lake_api, table)
    coordinates = Counter((p, o) for p, o, *_ in rows)
    doubled = [c for c, n in coordinates.items() if n > 1]
    assert not doubled, f"{len(doubled)} records written more than once, e.g. {doubled[:5]}"
    missing = sorted(set(topic_records) - set(coordinates))
    assert not missing, f"{len(missing)} records of the topic missing in bronze, e.g. {missing[:5]}"
    assert {(p, o): (k, v, ts) for p, o, k, v, ts in rows} == topic_records


def produced_by_offset(records: list[Record]) -> dict:
    """(partition, offset) -> (key, value, timestamp ms) of records produced in list order to an
    empty topic: per partition, offsets count up from 0."""
    next_offset: Counter = Counter()
    out = {}
    for r in records:
        out[(r.partition, next_offset[r.partition])] = (r.key, r.value, r.timestamp_ms)
        next_offset[r.partition] += 1
    return out


def test_bronze_holds_every_record_of_the_topic_at_its_partition_and_offset(
    spark, kafka_product_events, generated_landing, tmp_path
):
    bootstrap, topic, produced = kafka_product_events
    topic_records = read_topic(spark, bootstrap, topic)  # an independent batch read of the broker
    # The broker holds what was produced, each record at the replay file's partition and offset
    # (keys, values and timestamps kept), and a key always lands in the same partition.
    assert topic_records == produced_by_offset(produced)
    partitions_of_key: dict[str, set[int]] = {}
    for (partition, _), (key, _, _) in topic_records.items():
        if key is not None:
            partitions_of_key.setdefault(key, set()).add(partition)
    assert partitions_of_key and all(len(p) == 1 for p in partitions_of_key.values())
    assert {p for p, _ in topic_records} == {0, 1, 2}

    ctx = kafka_ctx(spark, tmp_path / "lake", bootstrap, topic, max_offsets=len(topic_records) // 2 + 1)
    table = ctx.table_path("bronze", "kafka_events")
    first = ingest_kafka(ctx, "kafka_events")
    assert first.rows_out == len(topic_records)
    assert first.details["micro_batches"] == 2  # at most just over half the records per micro-batch
    assert_bronze_is_the_topic(ctx.lake, table, topic_records)

    # Parsed as the replay files are: the generator's truncated values are the corrupt records.
    bronze = ctx.lake.read(table)
    malformed = manifest(generated_landing.parent)["datasets"]["kafka_events"]["defects"]["malformed_value"]
    assert first.details["corrupt_records"] == malformed
    assert bronze.where(F.col("_corrupt_record").isNotNull()).count() == malformed
    row = bronze.where((F.col("partition") == 1) & (F.col("offset") == 5)).first()
    assert row["_source_file"] == f"kafka://{topic}/1/5" and row["_source_system"] == "kafka"

    # Caught up: per partition the committed offset is the broker's newest, lag 0.
    ends = {str(p): 1 + max(o for q, o in topic_records if q == p) for p in (0, 1, 2)}
    expected = {p: {"latest": e, "committed": e, "lag": 0} for p, e in ends.items()}
    assert first.details["kafka_offsets"] == {"topic": topic, "partitions": expected}
    assert first.details["kafka_consumer_lag"] == {"0": 0, "1": 0, "2": 0}

    # A rerun with nothing new writes nothing; the lag comes from the checkpoint alone.
    version = ctx.lake.version(table)
    again = ingest_kafka(ctx, "kafka_events")
    assert again.rows_out == 0 and ctx.lake.version(table) == version
    assert again.details["kafka_offsets"]["partitions"] == expected

    # The crash window: the last micro-batch is in Delta, its checkpoint commit lost. Spark reads
    # the same offsets again; the sink finds the batch's transaction id and skips it.
    commits = Path(ctx.checkpoint_path("bronze_kafka_events")) / "commits"
    last = max(commits.glob("[0-9]*"), key=lambda p: int(p.name))
    last.unlink()
    last.with_name(f".{last.name}.crc").unlink(missing_ok=True)
    replay = ingest_kafka(ctx, "kafka_events")
    assert replay.details["replayed_batches_skipped"] == 1 and replay.rows_out == 0
    assert ctx.lake.version(table) == version
    assert_bronze_is_the_topic(ctx.lake, table, topic_records)


def test_killed_mid_stream_then_restarted_every_record_once(
    spark, delta_rs_lake, kafka_product_events, tmp_path
):
    bootstrap, topic, _ = kafka_product_events
    topic_records = read_topic(spark, bootstrap, topic)
    lake = tmp_path / "lake"
    # 6 micro-batches, on delta-spark (auto): the engine EMR runs. The replay-mode kill test
    # (test_kafka_exactly_once.py) runs delta-rs.
    config = kafka_config(tmp_path, bootstrap, topic, max_offsets=len(topic_records) // 6 + 1)
    # The restart re-runs the micro-batch the checkpoint planned but did not commit (its offsets
    # are in the offset log), then takes the rest in one: each micro-batch costs seconds of
    # fixed work, and the exactly-once question is the restart's, not its batch size.
    restart_config = kafka_config(tmp_path / "restart", bootstrap, topic, max_offsets=len(topic_records))
    table = str(lake / "bronze" / "kafka_events")

    proc = start_stream(lake, config, "--run-id", "killed")
    deadline = time.monotonic() + 180
    while delta_rs_lake.version(table) is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, (
        "the stream ended before it could be killed: " + proc.stdout.read().decode()[-3000:]
    )
    os.killpg(proc.pid, signal.SIGKILL)  # a real crash: no shutdown hooks, the JVM included
    proc.wait()
    partial = len(bronze_records(delta_rs_lake, table))
    assert 0 < partial < len(topic_records)

    restart_here(lake, restart_config, "--run-id", "restarted")
    assert_bronze_is_the_topic(delta_rs_lake, table, topic_records)

    # The restarted run, as the DAG step: lag 0 per partition in its state, metrics and report.
    state = json.loads((lake / "_ops" / "runs" / "restarted.json").read_text())
    (step,) = state["steps"]
    assert step["status"] == "succeeded" and step["rows_out"] == len(topic_records) - partial
    assert step["details"]["kafka_consumer_lag"] == {"0": 0, "1": 0, "2": 0}
    assert lag_datums(lake, "restarted") == {"0": 0, "1": 0, "2": 0}
    report = (lake / "_ops" / "reports" / "restarted.html").read_text()
    assert report.count('<tr class="kafka-partition">') == 3


def lag_datums(lake: Path, run_id: str) -> dict[str, float]:
    lines = (lake / "_ops" / "metrics" / f"{run_id}.jsonl").read_text().splitlines()
    datums = [json.loads(line) for line in lines]
    lag = [d for d in datums if d["metric"] == "KafkaConsumerLag"]
    assert all(
        d["unit"] == "Count"
        and d["dimensions"]["Dataset"] == "kafka_events"
        and d["dimensions"]["Layer"] == "bronze"
        for d in lag
    )
    return {d["dimensions"]["Partition"]: d["value"] for d in lag}


GOOD, GARBAGE = 40, 60  # 60 % of the poison micro-batch is not an event: over the 0.5 critical ratio


def poison(partition: int) -> list[Record]:
    good = [
        Record(
            partition,
            "ACC-000001",
            json.dumps(
                {
                    "event_id": f"poison-{i}",
                    "event_type": "feature_used",
                    "account_id": "ACC-000001",
                    "event_ts": "2026-09-30T10:00:00Z",
                }
            ),
            1_790_762_401_000 + i,
        )
        for i in range(GOOD)
    ]
    garbage = [
        Record(partition, None, "<html>502 Bad Gateway</html>", 1_790_762_402_000) for _ in range(GARBAGE)
    ]
    return good + garbage


def test_consumer_lag_per_partition_reaches_metrics_and_report_when_the_gate_stops_the_stream(
    spark, kafka_broker, kafka_product_events, tmp_path
):
    """A refused micro-batch leaves its records on the broker: the failed step reports them as
    lag of their partition (and none elsewhere), through the metrics path into the run report."""
    bootstrap, _, produced = kafka_product_events
    topic = "product_events_lag"
    create_topic(spark, bootstrap, topic, partitions=3)
    head = [r for p in (0, 1, 2) for r in [x for x in produced if x.partition == p][:100]]
    produce(spark, bootstrap, topic, head)

    lake = tmp_path / "lake"
    dag = load_dag(REPO / "config" / "pipeline.yaml", set(JOBS))

    def run(run_id: str):
        ctx = dataclasses.replace(kafka_ctx(spark, lake, bootstrap, topic), run_id=run_id)
        observers = [MetricsObserver(ctx.settings), ReportObserver(ctx.settings, dag)]
        out = io.StringIO()
        state = run_steps(ctx, dag, [STEP], out, observers=observers, executor=local_executor())
        (outcome,) = state.steps
        return ctx, outcome, out.getvalue()

    ctx, first, out = run("caught-up")
    assert first.status == "succeeded", out
    assert first.rows_out == 300 and first.details["kafka_consumer_lag"] == {"0": 0, "1": 0, "2": 0}
    assert lag_datums(lake, "caught-up") == {"0": 0, "1": 0, "2": 0}
    # Nothing new: no query runs, and the offsets that told so are the lag's (one broker call).
    with pytest.MonkeyPatch.context() as mp:
        asked = []
        mp.setattr(kafka, "broker_offsets", lambda *a, **kw: asked.append(1) or broker_offsets(*a, **kw))
        _, idle, out = run("idle")
    assert idle.status == "succeeded" and idle.rows_out == 0, out
    assert idle.details["kafka_consumer_lag"] == {"0": 0, "1": 0, "2": 0} and len(asked) == 1

    # Caught up, known from the checkpoint and the broker without starting a query; until the
    # broker holds records past the committed offsets.
    source, checkpoint = ctx.settings.source("kafka_events", stream=True), ctx.checkpoint_path(STEP)
    assert caught_up(spark, source, checkpoint, ctx.landing_path("kafka_events"))
    produce(spark, bootstrap, topic, poison(partition=1))
    assert not caught_up(spark, source, checkpoint, ctx.landing_path("kafka_events"))
    ctx, refused, out = run("refused")
    assert refused.status == "failed" and refused.attempts == 1, out  # fatal: not retried
    assert "was not written" in refused.error and "batch:quarantine_ratio" in refused.error
    # Independently: per partition, what the broker holds minus what reached bronze.
    on_broker = Counter(p for p, _ in read_topic(spark, bootstrap, topic))
    in_bronze = Counter(p for p, *_ in bronze_records(ctx.lake, ctx.table_path("bronze", "kafka_events")))
    behind = {str(p): on_broker[p] - in_bronze[p] for p in (0, 1, 2)}
    assert behind == {"0": 0, "1": GOOD + GARBAGE, "2": 0}
    assert refused.details["kafka_consumer_lag"] == behind
    partition_1 = refused.details["kafka_offsets"]["partitions"]["1"]
    assert partition_1 == {"latest": 100 + GOOD + GARBAGE, "committed": 100, "lag": GOOD + GARBAGE}
    assert lag_datums(lake, "refused") == behind

    report = (lake / "_ops" / "reports" / "refused.html").read_text()
    section = report[report.index('id="kafka-lag"') :]
    assert f'class="num warn">{GOOD + GARBAGE}<' in section
    assert section.count('<tr class="kafka-partition">') == 3
