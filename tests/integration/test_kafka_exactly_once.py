"""The Kafka streaming job: killed mid-stream and restarted, bronze has every record once."""

from __future__ import annotations

import bisect
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.bronze.kafka import caught_up, ingest_kafka, stream_command
from pipeline.driver.retry import TRANSIENT, ClassifiedError, classify
from pipeline.entry import kafka_main
from pipeline.files import LocalFiles
from pipeline.lease import LakeLease, LeaseHeld, stream_scope
from tests.helpers import REPO, make_ctx
from tests.integration.conftest import manifest

pytestmark = pytest.mark.slow


def kafka_config(
    tmp_path: Path, files_per_trigger: int, trigger_interval: str | None = None, engine: str = "auto"
) -> Path:
    """The repo's local config, with small micro-batches so a run spans many commits (and for
    the continuous trigger, optionally a shorter interval), on the given lake engine."""
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)  # contracts and dq.yaml too: the gate reads them
    local = yaml.safe_load((REPO / "config" / "local.yaml").read_text())
    local["sources"]["kafka_events"]["max_files_per_trigger"] = files_per_trigger
    local["sources"]["kafka_events"].pop("max_bytes_per_trigger", None)  # it would win over the count
    if trigger_interval:
        local["sources"]["kafka_events"]["trigger_interval"] = trigger_interval
    local["spark"].update({"master": "local[2]", "driver_memory": "1g"})
    local["lake"]["engine"] = engine
    (config / "local.yaml").write_text(yaml.safe_dump(local))
    return config


def start_stream(lake: Path, config: Path, *args: str) -> subprocess.Popen:
    """The streaming job in its own process (and process group); `args`: more CLI arguments."""
    env = {**os.environ, "LAKEHOUSE_CONFIG_DIR": str(config), "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen(
        [
            sys.executable,
            str(REPO / "aws" / "jobs" / "kafka_streaming_ingest.py"),
            "--lake",
            str(lake),
            "--trigger",
            "available-now",
            *args,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def restart_here(lake: Path, config: Path, *args: str) -> None:
    """The streaming job started again after its crash, in this process (`entry.kafka_main`, what
    kafka_streaming_ingest.py runs): the same code a new process runs, without a new JVM's start."""
    argv = ["--lake", str(lake), "--config-dir", str(config), "--trigger", "available-now", *args]
    assert kafka_main(argv) == 0


def assert_exactly_once(lake_api, table, expected):
    rows = lake_api.read(table)
    assert rows.count() == expected
    assert rows.select("topic", "partition", "offset").distinct().count() == expected


def test_killed_mid_stream_then_restarted_loses_and_duplicates_nothing(
    spark, delta_rs_lake, fresh_lake, tmp_path
):
    # 15 micro-batches: time to kill mid-stream. delta-rs here: the real-broker kill test
    # (test_kafka_broker.py) runs the production engine, delta-spark.
    config = kafka_config(tmp_path, files_per_trigger=6, engine="delta-rs")
    # The restart first re-runs the batch the checkpoint planned but did not commit (its offsets
    # are fixed in the offset log), then takes the rest in one batch: each micro-batch costs
    # seconds of fixed work, and the exactly-once question is the restart's, not its batch size.
    restart_config = kafka_config(tmp_path / "restart", files_per_trigger=10_000, engine="delta-rs")
    table = str(fresh_lake / "bronze" / "kafka_events")
    expected = manifest(fresh_lake)["datasets"]["kafka_events"]["records"]

    proc = start_stream(fresh_lake, config)
    deadline = time.monotonic() + 240
    # Killed once two micro-batches are committed (versions 0 and 1): a checkpoint with commits behind it.
    while (delta_rs_lake.version(table) or 0) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, (
        "the stream finished before it could be killed: " + proc.stdout.read().decode()[-2000:]
    )
    os.killpg(proc.pid, signal.SIGKILL)  # a real crash: no shutdown hooks, JVM included
    proc.wait()
    partial = delta_rs_lake.read(table).count()
    assert 0 < partial < expected

    restart_here(fresh_lake, restart_config)
    assert_exactly_once(delta_rs_lake, table, expected)


def test_a_batch_committed_to_delta_but_not_to_the_checkpoint_is_not_written_twice(spark, fresh_lake):
    """The crash window exactly-once depends on: Delta commit done, checkpoint commit lost."""
    ctx = make_ctx(spark, fresh_lake)
    table = ctx.table_path("bronze", "kafka_events")
    expected = manifest(fresh_lake)["datasets"]["kafka_events"]["records"]
    first = ingest_kafka(ctx, "kafka_events")
    assert first.rows_out == expected

    commits = Path(ctx.checkpoint_path("bronze_kafka_events")) / "commits"
    last = max(commits.glob("[0-9]*"), key=lambda p: int(p.name))
    # As if the process died between the Delta commit and the checkpoint commit.
    last.unlink()
    last.with_name(f".{last.name}.crc").unlink(missing_ok=True)
    version = ctx.lake.version(table)

    replay = ingest_kafka(ctx, "kafka_events")
    assert replay.details["replayed_batches_skipped"] == 1 and replay.rows_out == 0
    assert ctx.lake.version(table) == version
    assert_exactly_once(ctx.lake, table, expected)


def test_a_drained_replay_stream_knows_it_is_caught_up_until_a_new_landing_file(spark, fresh_lake):
    """An idle run does not start a query to find nothing (0.38 -> 0.18 s warm): the file source
    log of the checkpoint says which files the query took, compacted log files included; a new
    file ends it."""
    folder = fresh_lake / "landing" / "kafka" / "product_events"
    files = sorted(folder.iterdir())
    local = make_ctx(spark, fresh_lake).settings.sources
    source = dataclasses.replace(
        local["kafka_events"], max_files_per_trigger=max(1, len(files) // 5), max_bytes_per_trigger=None
    )
    ctx = make_ctx(spark, fresh_lake, sources={**local, "kafka_events": source})
    table = ctx.table_path("bronze", "kafka_events")
    checkpoint = ctx.checkpoint_path("bronze_kafka_events")
    expected = manifest(fresh_lake)["datasets"]["kafka_events"]["records"]
    interval = "spark.sql.streaming.fileSource.log.compactInterval"
    spark.conf.set(interval, "2")  # a compacted source log after two micro-batches, not ten
    try:
        assert not caught_up(spark, source, checkpoint, str(folder))  # no checkpoint yet
        first = ingest_kafka(ctx, "kafka_events")
    finally:
        spark.conf.unset(interval)
    assert first.rows_out == expected and first.details["micro_batches"] >= 5
    assert list(Path(checkpoint, "sources", "0").glob("*.compact"))
    assert caught_up(spark, source, checkpoint, str(folder))
    version = ctx.lake.version(table)
    idle = ingest_kafka(ctx, "kafka_events")
    assert (idle.rows_out, idle.details["micro_batches"], ctx.lake.version(table)) == (0, 0, version)

    # A new replay file: one record after the newest offset of partition 0.
    newest = max(
        (json.loads(line) for f in files for line in f.read_text().splitlines()),
        key=lambda r: (r["partition"] == 0, r["offset"]),
    )
    late = {**newest, "offset": newest["offset"] + 1}
    (folder / f"product_events-p0-{late['offset']:012d}.jsonl").write_text(json.dumps(late) + "\n")
    assert not caught_up(spark, source, checkpoint, str(folder))
    again = ingest_kafka(ctx, "kafka_events")
    assert again.rows_out == 1
    assert_exactly_once(ctx.lake, table, expected + 1)
    assert caught_up(spark, source, checkpoint, str(folder))


def source_log_paths(checkpoint: str) -> set[str]:
    """Every file path the replay query's file source log names."""
    paths = set()
    for log_file in Path(checkpoint, "sources", "0").iterdir():
        if not log_file.name.startswith("."):
            lines = log_file.read_text().splitlines()[1:]
            paths |= {json.loads(line)["path"] for line in lines if line.strip()}
    return paths


def test_a_moved_lake_replays_no_file_again_and_a_new_one_once(spark, fresh_lake, tmp_path):
    """A lake renamed (or copied with its files' times) continues its stream: the checkpoint's
    file source log named the replay files under the old root; the step points it at the new
    one, reads none of them again and reads a new file once."""
    ctx = make_ctx(spark, fresh_lake)
    local = ctx.settings.sources
    files = len(list((fresh_lake / "landing" / "kafka" / "product_events").iterdir()))
    source = dataclasses.replace(
        local["kafka_events"], max_files_per_trigger=max(1, files // 4), max_bytes_per_trigger=None
    )
    interval = "spark.sql.streaming.fileSource.log.compactInterval"
    spark.conf.set(interval, "2")  # compacted log files and the batches after them, both rewritten
    try:
        first = ingest_kafka(
            make_ctx(spark, fresh_lake, sources={**local, "kafka_events": source}), "kafka_events"
        )
    finally:
        spark.conf.unset(interval)
    expected = manifest(fresh_lake)["datasets"]["kafka_events"]["records"]
    assert first.rows_out == expected and first.details["micro_batches"] >= 3

    moved = tmp_path / "elsewhere" / "lake"
    moved.parent.mkdir()
    shutil.move(fresh_lake, moved)  # a rename: the files keep their modification times
    ctx = make_ctx(spark, moved, sources={**local, "kafka_events": source})
    table, checkpoint = ctx.table_path("bronze", "kafka_events"), ctx.checkpoint_path("bronze_kafka_events")
    version = ctx.lake.version(table)
    idle = ingest_kafka(ctx, "kafka_events")
    assert (idle.rows_out, idle.details["micro_batches"], ctx.lake.version(table)) == (0, 0, version)
    assert "redelivered_not_read" not in idle.details
    folder = moved / "landing" / "kafka" / "product_events"
    replay = {f.name for f in folder.iterdir() if f.name.endswith(".jsonl")}
    assert {p.rsplit("/", 1)[-1] for p in source_log_paths(checkpoint)} == replay
    assert all(p.startswith(f"file://{folder}/") for p in source_log_paths(checkpoint))

    record = json.loads(next(iter(sorted(folder.iterdir()))).read_text().splitlines()[0])
    late = {**record, "offset": 10**9}
    (folder / "product_events-p0-late.jsonl").write_text(json.dumps(late) + "\n")
    again = ingest_kafka(ctx, "kafka_events")
    assert again.rows_out == 1
    assert_exactly_once(ctx.lake, table, expected + 1)


def test_a_byte_budget_bounds_each_micro_batch_by_the_replay_bytes_it_reads(spark, fresh_lake):
    """max_bytes_per_trigger: a micro-batch reads whole replay files, at most the budget's bytes of
    them (or one file above it), so its size does not grow with the files; every record once."""
    folder = fresh_lake / "landing" / "kafka" / "product_events"
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    budget = sum(sizes.values()) // 4
    local = make_ctx(spark, fresh_lake).settings.sources
    source = dataclasses.replace(local["kafka_events"], max_bytes_per_trigger=budget)
    ctx = make_ctx(spark, fresh_lake, sources={**local, "kafka_events": source})
    table = ctx.table_path("bronze", "kafka_events")
    expected = manifest(fresh_lake)["datasets"]["kafka_events"]["records"]

    result = ingest_kafka(ctx, "kafka_events")
    assert_exactly_once(ctx.lake, table, expected)

    # Each record's replay file: the file of its partition with the largest first offset not
    # above the record's (the generator names a file after its partition and first offset).
    firsts: dict[int, list[tuple[int, str]]] = {}
    for name in sizes:
        partition, first = re.fullmatch(r"product_events-p(\d+)-(\d+)\.jsonl", name).groups()
        firsts.setdefault(int(partition), []).append((int(first), name))
    files_of: dict[str, set[str]] = {}
    rows = ctx.lake.read(table).where("partition IS NOT NULL").select("_batch_id", "partition", "offset")
    for row in rows.distinct().collect():
        starts = sorted(firsts[row["partition"]])
        file = starts[bisect.bisect_right(starts, (row["offset"], "\uffff")) - 1][1]
        files_of.setdefault(row["_batch_id"], set()).add(file)
    assert result.details["micro_batches"] == len(files_of) >= 4
    assert sum(len(files) for files in files_of.values()) == len(sizes)  # each file in one batch
    for files in files_of.values():
        assert len(files) == 1 or sum(sizes[f] for f in files) <= budget


def test_a_continuous_stream_keeps_its_table_and_a_batch_runs_kafka_step_leaves_it_alone(
    spark, delta_rs_lake, fresh_lake
):
    """A `--trigger continuous` stream holds bronze.kafka_events' own lease, not the lake's: a
    batch run's Kafka step finds it held, writes nothing and says which stream has the table.
    Held by another batch step (or one that died, until its lease expires), the step fails as
    transient, to be retried. A second continuous stream is refused, naming the first. Once the
    table is free the step lands every record once."""
    ctx = make_ctx(spark, fresh_lake, run_id="batch-run")
    table = ctx.table_path("bronze", "kafka_events")
    lease = LakeLease(str(fresh_lake), LocalFiles(), scope=stream_scope("kafka_events"))  # alive: this pid
    lease.acquire("stream-run", stream_command("kafka_events", "continuous"))

    left = ingest_kafka(ctx, "kafka_events", trigger="available-now")
    assert "a continuous stream writes this table: run stream-run" in left.details["skipped"]
    assert (left.rows_in, delta_rs_lake.version(table)) == (0, None)
    with pytest.raises(LeaseHeld, match=r"stream-kafka_events of lake .* is in use: run stream-run"):
        ingest_kafka(ctx, "kafka_events", trigger="continuous")
    lease.release()

    lease.acquire("other-batch", stream_command("kafka_events", "available-now"))
    with pytest.raises(ClassifiedError, match="bronze kafka_events: .* is in use: run other-batch") as busy:
        ingest_kafka(ctx, "kafka_events", trigger="available-now")
    assert classify(busy.value) == TRANSIENT and delta_rs_lake.version(table) is None
    lease.release()

    landed = ingest_kafka(ctx, "kafka_events", trigger="available-now")
    assert_exactly_once(delta_rs_lake, table, manifest(fresh_lake)["datasets"]["kafka_events"]["records"])
    assert landed.rows_in > 0 and "skipped" not in landed.details
    assert lease.current().run_id == "batch-run"  # the step held the table's lease while it wrote


def test_hostile_replay_lines_keep_their_value_and_file_and_a_rewritten_file_is_named(
    spark, tmp_path, monkeypatch
):
    """A replay file's record with Kafka's epoch-millisecond timestamp lands with it; one with a
    timestamp that is neither keeps the record raw with the reason; a line that is no record
    names its replay file; other files in the folder are not records. A replay file rewritten
    after it was read is not read again (the file source remembers paths): the step names it."""
    monkeypatch.setenv("LAKEHOUSE_DQ", "off")  # a batch of hostile lines; bronze is the question
    ctx = make_ctx(spark, tmp_path / "lake")
    folder = Path(ctx.landing_path("kafka_events"))
    folder.mkdir(parents=True)
    value = json.dumps({"event_id": "e", "event_type": "item_viewed", "event_ts": "2026-10-01T07:25:58Z"})

    def record(offset: int, timestamp) -> str:
        return json.dumps(
            {
                "topic": "product_events",
                "partition": 9,
                "offset": offset,
                "timestamp": timestamp,
                "key": "k",
                "value": value,
            }
        )

    replay = folder / "product_events-p9-000000000001.jsonl"
    lines = [
        record(1, "2026-10-01T07:25:59.122Z"),
        record(2, 1790352000000),
        record(3, "yesterday"),
        "this is not json",
    ]
    replay.write_text("\r\n".join(lines) + "\r\n")
    (folder / "README.txt").write_text("replay files for product_events\n")
    table = ctx.table_path("bronze", "kafka_events")

    first = ingest_kafka(ctx, "kafka_events")
    rows = {r["offset"]: r for r in ctx.lake.read(table).collect()}
    assert first.rows_out == len(rows) == 4  # the README is no record
    assert str(rows[2]["kafka_timestamp"]) == "2026-09-25 16:00:00"
    assert rows[2]["_corrupt_record"] is None
    assert rows[3]["kafka_timestamp"] is None
    assert json.loads(rows[3]["_corrupt_record"])["timestamp"] == "yesterday"
    assert rows[3]["_parse_error"] == "Kafka record timestamp is neither ISO 8601 nor epoch milliseconds"
    assert rows[None]["_corrupt_record"] == "this is not json"
    assert rows[None]["_source_file"] == f"file:{replay}"
    assert rows[1]["_source_file"] == "kafka://product_events/9/1"
    assert "redelivered_not_read" not in first.details
    # Drained: the README, never read, does not make each idle run start a query.
    conf = ctx.settings.source("kafka_events", stream=True)
    checkpoint = ctx.checkpoint_path("bronze_kafka_events")
    assert caught_up(spark, conf, checkpoint, str(folder), suffixes=(".jsonl", ".jsonl.gz"))

    # A correction sent under the old name.
    replay.write_text(record(3, "2026-10-01T07:26:00Z") + "\n")
    os.utime(replay, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))  # a newer mtime however fast
    again = ingest_kafka(ctx, "kafka_events")
    assert (again.rows_out, again.details["micro_batches"]) == (0, 0)
    [unread] = again.details["redelivered_not_read"]
    assert unread["path"].endswith(f"/{replay.name}")
    assert "deliver the correction as a new file" in unread["reason"]
