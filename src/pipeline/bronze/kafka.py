"""Kafka product events -> bronze, with Structured Streaming.

Two sources, one path (`sources.<dataset>.mode`). In `kafka` mode a topic is read through
Spark's Kafka connector (spark-sql-kafka) with the client settings of `sources.<dataset>.kafka`
(`pipeline.kafka_client`: PLAINTEXT for a plain broker such as the tests' real single-node one, SASL_SSL
and AWS_MSK_IAM for MSK in config/dev.yaml and prod.yaml), at most `max_offsets_per_trigger`
records per micro-batch over all partitions. In `replay` mode landing files holding Kafka records
(topic/partition/offset/timestamp/key/value) are read by the file stream source,
`max_bytes_per_trigger` bytes of files per micro-batch (else `max_files_per_trigger` files). Both
become the same record shape; from there on parsing (one pure function), the DQ gate and the sink
are one code path.

Replay files: only names ending in the dataset's `file_suffix` (or that plus `.gz`) are read,
other files in the folder are left alone (logged). A record's timestamp is epoch milliseconds
(Kafka's own form) or ISO 8601 text; anything else lands with the record in `_corrupt_record`.
A record without a value (a tombstone) lands as corrupt too, its `_corrupt_record` the empty text.
A line that is not a Kafka record lands as it is, its `_source_file` its replay file (a record's
is `kafka://topic/partition/offset`). Replay files are append-only: the file source remembers a
path, so a file rewritten after it was read is not read again; the step names it in its details
(`redelivered_not_read`) and warns, at every run while it is there. The correction goes in a new
file. A lake moved or copied elsewhere continues its stream: the checkpoint's file source log,
which names replay files by absolute URI, is pointed at the new landing root first
(`relocate_replay_log`).

Memory: a micro-batch is held (persisted) while it is judged and written, so its size bounds the
step's memory. A byte budget keeps it the same at every scale (a file count does not: landing
files grow with the data); more data makes more micro-batches, each a fixed cost, so time stays
linear.

Exactly-once: each micro-batch is appended with a Delta Txn of (query id, batch id). A batch
replayed after a crash (committed to Delta, not yet to the checkpoint) is skipped by the lake.

DQ: each micro-batch is judged before it is written (`dq.stream.MicroBatchGate`), counted in the
sink's one aggregate; a critical failure stops the query before the batch (MicroBatchRefused).

Nothing new (`caught_up`): an available-now step first asks its checkpoint and its source
whether there is anything past the last committed micro-batch, and starts no query when there is
not: an idle step measured 0.18 s this way against 0.38 s with a query started to find nothing
(scale 0.02, warm process).

Consumer lag (kafka mode): when the query ends (drained, stopped, or refused by the gate), the
step reports per partition the newest offset on the broker against the offset the query
committed in its checkpoint (`consumer_lag`): details `kafka_consumer_lag` (the metric
KafkaConsumerLag, one datum per partition) and `kafka_offsets` (the run report's table).
"""

from __future__ import annotations

import contextlib
import json
import logging
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

from pyspark import StorageLevel
from pyspark.errors import StreamingQueryException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.bronze.audit import with_audit_columns
from pipeline.bronze.ingest import landing_keys, landing_suffixes
from pipeline.bronze.readers import CORRUPT, ERROR, SOURCE_FILE
from pipeline.context import RunContext, StreamTrigger
from pipeline.dq.stream import MicroBatchGate, MicroBatchRefused
from pipeline.driver.retry import FATAL_KIND, TRANSIENT, ClassifiedError, short_error
from pipeline.freshness import NEWEST_KEY, recorded_newest, table_newest
from pipeline.kafka_client import client_options
from pipeline.lake import Lake, Txn
from pipeline.lease import HeldLease, LeaseHeld, LeaseRecord, lease_for, stream_scope
from pipeline.settings import KafkaSettings, SourceSettings
from pipeline.step_result import StepResult
from pipeline.storage import (
    LandingFile,
    LandingKeys,
    file_key,
    first_line,
    folder_names,
    list_files,
    read_text,
    write_text,
)

log = logging.getLogger(__name__)

# What a replay line holds: Kafka's record shape, with value as UTF-8 text.
REPLAY_SCHEMA = (
    "topic string, partition int, offset long, timestamp string, timestampType int, "
    f"key string, value string, {CORRUPT} string"
)
EVENT_SCHEMA = (
    "event_id string, event_type string, account_id string, user_id string, product_id string, "
    "event_ts string, properties map<string,string>"
)
EVENT_FIELDS = ("event_id", "event_type", "account_id", "user_id", "product_id", "event_ts", "properties")


# Spark's timestamp range (years 1 to 9999) in epoch milliseconds: past it timestamp_millis
# overflows, which ANSI mode raises.
_MILLIS_RANGE = (-62_135_596_800_000, 253_402_300_799_999)
BAD_TIMESTAMP = "Kafka record timestamp is neither ISO 8601 nor epoch milliseconds"


def replay_timestamp(text: Column) -> Column:
    """A replay record's timestamp as written: epoch milliseconds (Kafka's own form, an integer)
    or ISO 8601 text; null for anything else."""
    millis = F.when(text.rlike(r"^-?[0-9]{1,18}$"), text.cast("long"))  # 18 digits: never overflows
    return F.when(
        text.rlike(r"^-?[0-9]+$"),
        F.when(millis.between(*_MILLIS_RANGE), F.timestamp_millis(millis)),
    ).otherwise(F.try_to_timestamp(text))


def replay_glob(suffixes: tuple[str, ...]) -> str:
    """The file source's `pathGlobFilter` for names ending in one of `suffixes`."""
    return "*{" + ",".join(suffixes) + "}" if len(suffixes) > 1 else f"*{suffixes[0]}"


def replay_source(
    spark: SparkSession, location: str, conf: SourceSettings, suffixes: tuple[str, ...]
) -> DataFrame:
    """Replay files (names ending in one of `suffixes`) -> Kafka record shape. A line that is
    not a Kafka record keeps its raw text and its replay file; so does a record whose timestamp
    is neither epoch milliseconds nor ISO 8601 (its fields as read, as JSON)."""
    # Spark's file source takes one of the two limits, never both.
    limit = (
        ("maxBytesPerTrigger", conf.max_bytes_per_trigger)
        if conf.max_bytes_per_trigger
        else ("maxFilesPerTrigger", conf.max_files_per_trigger)
    )
    reader = spark.readStream.schema(REPLAY_SCHEMA).option(*limit)
    if any(suffixes):
        reader = reader.option("pathGlobFilter", replay_glob(suffixes))
    lines = reader.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT).json(location)
    # A number's text (JSON's reader keeps it as written in a string column) or a string.
    timestamp = replay_timestamp(F.col("timestamp"))
    bad_timestamp = F.col("timestamp").isNotNull() & timestamp.isNull()
    fields = [c for c in lines.columns if c != CORRUPT]
    return lines.select(
        "topic",
        "partition",
        "offset",
        timestamp.alias("timestamp"),
        "key",
        F.coalesce("value", CORRUPT).alias("value"),
        F.coalesce(F.col(CORRUPT), F.when(bad_timestamp, F.to_json(F.struct(*fields)))).alias(CORRUPT),
        F.when(F.col(CORRUPT).isNotNull(), F.lit("malformed Kafka replay record"))
        .when(bad_timestamp, F.lit(BAD_TIMESTAMP))
        .alias(ERROR),
        F.col("_metadata.file_path").alias(SOURCE_FILE),
    )


def kafka_source(spark: SparkSession, conf: SourceSettings) -> DataFrame:
    """The topic -> Kafka record shape, with key and value as UTF-8 text."""
    k = conf.kafka
    assert k is not None  # SourceSettings refuses mode kafka without it
    reader = (
        spark.readStream.format("kafka")
        .option("subscribe", k.topic)
        .option("startingOffsets", k.starting_offsets)
        .option("maxOffsetsPerTrigger", conf.max_offsets_per_trigger)
        .option("failOnDataLoss", "true")
    )
    for key, value in client_options(k).items():
        reader = reader.option(f"kafka.{key}", value)
    return reader.load().select(
        "topic",
        "partition",
        "offset",
        "timestamp",
        F.col("key").cast("string").alias("key"),
        F.col("value").cast("string").alias("value"),
        F.lit(None).cast("string").alias(CORRUPT),
        F.lit(None).cast("string").alias(ERROR),
        F.lit(None).cast("string").alias(SOURCE_FILE),
    )


def parse_kafka_records(records: DataFrame) -> DataFrame:
    """Kafka record shape -> bronze columns: Kafka coordinates, the raw value, the event fields
    parsed as text, and the raw value again as `_corrupt_record` when it is not an event.

    The record shape: topic, partition, offset, timestamp, key, value (text), and what a replay
    file tells beyond Kafka (null from the broker): `_corrupt_record`, the raw record when it
    could not be read, `_parse_error`, why, and `_source_file`, its replay file. `_source_file`
    is `kafka://topic/partition/offset`, or the replay file when the record has no coordinates."""
    event = F.from_json("value", EVENT_SCHEMA)
    with_event = records.withColumn("_event", event)
    any_field = reduce(operator.or_, [F.col(f"_event.{f}").isNotNull() for f in EVENT_FIELDS])
    not_an_event = F.col("_event").isNull() | ~any_field
    is_corrupt = F.col(ERROR).isNotNull() | F.col("value").isNull() | not_an_event
    coordinates = F.col("topic").isNotNull() & F.col("partition").isNotNull() & F.col("offset").isNotNull()
    return with_event.select(
        "topic",
        "partition",
        "offset",
        F.col("timestamp").alias("kafka_timestamp"),
        F.to_date("timestamp").alias("kafka_date"),
        "key",
        "value",
        *[F.col(f"_event.{f}").alias(f) for f in EVENT_FIELDS],
        F.when(coordinates, F.format_string("kafka://%s/%d/%d", "topic", "partition", "offset"))
        .otherwise(
            F.coalesce(SOURCE_FILE, F.format_string("kafka://%s/%s/%s", "topic", "partition", "offset"))
        )
        .alias(SOURCE_FILE),
        # A record without a value (a tombstone) is corrupt too, its raw record the empty text:
        # silver quarantines a row as malformed by a non-null _corrupt_record.
        F.when(is_corrupt, F.coalesce(CORRUPT, "value", F.lit(""))).alias(CORRUPT),
        F.when(F.col(ERROR).isNotNull(), F.col(ERROR))
        .when(F.col("value").isNull(), F.lit("Kafka record has no value (a tombstone)"))
        .when(is_corrupt, F.lit("Kafka value is not a JSON event object"))
        .alias(ERROR),
    )


@dataclass
class BronzeBatchWriter:
    """The foreachBatch sink: parse, audit, count (and gate), append with a Txn."""

    lake: Lake
    table: str
    checkpoint: str
    source_system: str
    partition_by: list[str]
    gate: MicroBatchGate | None = None
    rows: int = 0
    corrupt: int = 0
    batches: int = 0
    skipped: int = 0
    newest: str | None = None  # the table's newest Kafka timestamp, ISO 8601 (freshness)
    refused: MicroBatchRefused | None = None  # the gate's verdict that stopped the query
    _app_id: str | None = field(default=None, repr=False)

    def app_id(self, spark: SparkSession) -> str:
        # The query id lives in the checkpoint: a new checkpoint gets new batch ids *and* a new
        # app id, so a reset checkpoint can never be mistaken for already-committed batches.
        if self._app_id is None:
            metadata = first_line(spark, f"{self.checkpoint}/metadata")
            self._app_id = f"bronze.kafka:{json.loads(metadata or '{}').get('id', self.checkpoint)}"
        return self._app_id

    def __call__(self, records: DataFrame, batch_id: int) -> None:
        app_id = self.app_id(records.sparkSession)
        txn = Txn(app_id, batch_id)
        if self.lake.already_committed(self.table, txn):
            self.skipped += 1
            log.info("%s: micro-batch %d already committed, skipped", self.table, batch_id)
            return
        batch = with_audit_columns(parse_kafka_records(records), self.source_system, f"{app_id}:{batch_id}")
        held = batch.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            counted = [
                F.count(F.lit(1)).alias("rows"),
                F.count(CORRUPT).alias("corrupt"),
                F.max("kafka_timestamp").alias("newest"),
            ]
            if self.gate is None:
                counts = held.agg(*counted).first()
            else:  # with the contract's rule counts, in one aggregate
                counts = self.gate.measure(held, counted, (CORRUPT, "kafka_timestamp"))
                try:
                    self.gate.judge(batch_id, counts)  # raises before anything is written
                except MicroBatchRefused as refused:
                    self.refused = refused
                    raise
            newest_at = table_newest(self.lake, self.table, counts["newest"])
            result = self.lake.append(
                self.table,
                held,
                partition_by=self.partition_by,
                txn=txn,
                metadata={"batch_id": batch_id, NEWEST_KEY: newest_at},
            )
        finally:
            held.unpersist()
        if result.skipped:
            self.skipped += 1
            return
        self.rows += counts["rows"]
        self.corrupt += counts["corrupt"]
        self.batches += 1
        self.newest = newest_at


LAG_KEY, OFFSETS_KEY = "kafka_consumer_lag", "kafka_offsets"
BYTES_DESERIALIZER = "org.apache.kafka.common.serialization.ByteArrayDeserializer"


def _batch_ids(spark: SparkSession, folder: str) -> list[int]:
    """The micro-batch ids of a checkpoint's `offsets` or `commits` folder, ascending."""
    return sorted(int(n) for n in folder_names(spark, folder) if n.isdigit())


def committed_offsets(spark: SparkSession, checkpoint: str, topic: str) -> dict[int, int] | None:
    """The offsets the query committed: per partition of `topic`, the next offset it will read,
    from the checkpoint (`offsets/<n>` of the newest `commits/<n>`). None before any commit."""
    batches = _batch_ids(spark, f"{checkpoint}/commits")
    if not batches:
        return None
    lines = read_text(spark, f"{checkpoint}/offsets/{batches[-1]}").splitlines()
    # v1, the batch metadata, then one line per source: {"<topic>": {"<partition>": offset}}
    position = json.loads(lines[-1]).get(topic, {})
    return {int(p): int(o) for p, o in position.items()}


def _source_log(spark: SparkSession, checkpoint: str) -> tuple[str, list[str]]:
    """The replay query's file source log: its folder and the names of its files (`<n>` per
    micro-batch, `<n>.compact` every entry up to batch n), oldest first."""
    folder = f"{checkpoint}/sources/0"
    logs = [n for n in folder_names(spark, folder) if n.removesuffix(".compact").isdigit()]
    return folder, sorted(logs, key=lambda n: (int(n.removesuffix(".compact")), n.endswith(".compact")))


def replayed_files(spark: SparkSession, checkpoint: str) -> dict[str, int]:
    """Every file the replay query has taken into a micro-batch (`file_key`) with its modification
    time then (epoch ms), from its file source log: the newest `<n>.compact` (all entries up to
    batch n) and the batches after it."""
    entries = _source_log(spark, checkpoint)[1]
    compacted = [int(e.removesuffix(".compact")) for e in entries if e.endswith(".compact")]
    since = max(compacted, default=-1)
    logs = [f"{since}.compact"] if compacted else []
    logs += sorted((e for e in entries if e.isdigit() and int(e) > since), key=int)
    seen = {}
    for name in logs:
        for line in read_text(spark, f"{checkpoint}/sources/0/{name}").splitlines()[1:]:  # after "v1"
            if line.strip():
                entry = json.loads(line)
                seen[file_key(entry["path"])] = int(entry["timestamp"])
    return seen


def relocate_replay_log(spark: SparkSession, checkpoint: str, keys: LandingKeys) -> int:
    """Point the replay query's file source log at this landing root; how many entries moved.

    The file source remembers the files it read by absolute URI. In a lake moved or copied to
    another place (a renamed folder, a bucket copied for disaster recovery) its log names them
    under the old root: the query would take every file at the new place for a new one, and
    fails first on its own log (`Wrong basePath`). Each entry naming a file under another root
    is rewritten to the same file under this one (`LandingKeys`: the part from the dataset's
    folder on); an entry whose path does not hold the dataset's folder stays as it is. The step
    asks before a query runs, never when `caught_up` found nothing to read (a moved lake's log
    always makes it find something), so a lake in place that is caught up pays nothing. The
    modification times the log recorded stay: a copy that changed them is reported as rewritten
    files, read by no query again."""
    folder, logs = _source_log(spark, checkpoint)
    moved = 0
    for name in logs:
        text, count = _relocated(read_text(spark, f"{folder}/{name}"), keys)
        if count:
            write_text(spark, f"{folder}/{name}", text)
            moved += count
    if moved:
        log.warning(
            "%s: %d replay file entries of the stream's checkpoint named files under another landing "
            "root (the lake was moved or copied); now under %s",
            checkpoint,
            moved,
            keys.root,
        )
    return moved


def _relocated(text: str, keys: LandingKeys) -> tuple[str, int]:
    """A file source log file's text with its entries under another landing root moved under
    `keys.root`, and how many moved."""
    lines = text.split("\n")
    count = 0
    for i, line in enumerate(lines[1:], start=1):  # after "v1"
        if not line.strip():
            continue
        entry = json.loads(line)
        uri = file_key(entry["path"])
        key = keys(uri)
        if uri.startswith(keys.root + "/") or key == uri:  # in place, or not a file of this folder
            continue
        entry["path"] = f"{keys.root}/{key}"
        lines[i] = json.dumps(entry, separators=(",", ":"))
        count += 1
    return "\n".join(lines), count


def replay_files(spark: SparkSession, location: str, suffixes: tuple[str, ...]) -> list[LandingFile]:
    """The replay files under `location`: names ending in one of `suffixes`, what the query
    reads; other files there are left alone (logged)."""
    listed = list_files(spark, location)
    files = [f for f in listed if f.path.endswith(suffixes)]
    if len(files) < len(listed):
        others = [f.path.rsplit("/", 1)[-1] for f in listed if f not in files]
        log.info(
            "%s: %d file(s) not read as replay files (names not ending in %s): %s",
            location,
            len(others),
            " or ".join(suffixes),
            ", ".join(others[:5]) + (" ..." if len(others) > 5 else ""),
        )
    return files


def rewritten_replay_files(landing: list[LandingFile], replayed: dict[str, int]) -> list[LandingFile]:
    """Replay files the query took whose modification time has changed since: the file source
    remembers a path, so it never reads them again."""
    return [f for f in landing if replayed.get(file_key(f.uri), f.modified_ms) != f.modified_ms]


def caught_up(
    spark: SparkSession,
    conf: SourceSettings,
    checkpoint: str,
    location: str,
    asked: dict[str, Any] | None = None,
    suffixes: tuple[str, ...] = ("",),
) -> bool:
    """Whether an available-now query would find nothing to read: its newest planned micro-batch
    is committed and the source holds nothing past it (kafka: no partition's latest offset beyond
    the committed one; replay: no landing file the query has not taken). Asking costs a listing
    and a few small reads, half of what starting the query to find out costs. Any doubt (no checkpoint
    yet, a batch planned but not committed, the broker not answering) says no: the query runs.
    Kafka: what it learnt goes into `asked` ("committed", "offsets"), for the lag of a step that
    then has nothing to run (`consumer_lag`), so the broker is asked once. Replay: the files
    (those ending in one of `suffixes`) and what the query took ("landing", "replayed"), for
    `rewritten_replay_files`."""
    try:
        committed = _batch_ids(spark, f"{checkpoint}/commits")
        if not committed or _batch_ids(spark, f"{checkpoint}/offsets")[-1:] != committed[-1:]:
            return False
        if conf.mode == "kafka":
            assert conf.kafka is not None  # SourceSettings refuses mode kafka without it
            position = committed_offsets(spark, checkpoint, conf.kafka.topic) or {}
            latest = broker_offsets(spark, conf.kafka)
            if asked is not None:
                asked.update(committed=position, offsets=latest)
        else:
            landing = replay_files(spark, location, suffixes)
            seen = replayed_files(spark, checkpoint) if landing else {}
            if asked is not None:
                asked.update(landing=landing, replayed=seen)
            return all(file_key(f.uri) in seen for f in landing)
    except Exception as exc:  # noqa: BLE001 - the query itself says what is wrong
        log.info("%s: whether the stream has anything new not known (%s); the query runs", checkpoint, exc)
        return False
    _refuse_offsets_beyond_the_topic(conf.kafka, checkpoint, position, latest)
    return all(position.get(p, earliest) >= end for p, (earliest, end) in latest.items())


def _refuse_offsets_beyond_the_topic(
    k: KafkaSettings, checkpoint: str, position: dict[int, int], latest: dict[int, tuple[int, int]]
) -> None:
    """A fatal error when the checkpoint has read past what the topic holds, or a partition the
    topic lacks: the topic was recreated, or the checkpoint is another cluster's. The query would
    wait until the new offsets pass the old ones, then skip every record below them, silently."""
    beyond = {
        p: (offset, latest[p][1] if p in latest else None)
        for p, offset in sorted(position.items())
        if p not in latest or offset > latest[p][1]
    }
    if beyond:
        where = ", ".join(
            f"partition {p} read to offset {offset}, "
            + (f"the topic's latest is {end}" if end is not None else "no such partition")
            for p, (offset, end) in beyond.items()
        )
        raise ClassifiedError(
            f"bronze kafka_events: the checkpoint {checkpoint} is ahead of topic {k.topic} on "
            f"{k.bootstrap_servers} ({where}): the topic was recreated or the checkpoint belongs to "
            "another cluster, and the stream would skip records. Check the topic and the bootstrap "
            "servers; to read the topic as it is from its earliest offsets, remove the checkpoint folder",
            FATAL_KIND,
        )


def broker_offsets(spark: SparkSession, k: KafkaSettings, timeout_s: int = 30) -> dict[int, tuple[int, int]]:
    """(earliest, latest) offset per partition of the topic, asked of the broker with the Kafka
    client in the driver's JVM (the connector's kafka-clients) and the job's client settings."""
    jvm = spark.sparkContext._jvm  # type: ignore[union-attr]
    props = jvm.java.util.Properties()
    options = {
        **client_options(k),
        "key.deserializer": BYTES_DESERIALIZER,
        "value.deserializer": BYTES_DESERIALIZER,
        "client.id": "lakehouse-consumer-lag",
    }
    for key, value in options.items():
        props.setProperty(key, value)
    consumer = jvm.org.apache.kafka.clients.consumer.KafkaConsumer(props)
    try:
        timeout = jvm.java.time.Duration.ofSeconds(timeout_s)
        partitions = jvm.java.util.ArrayList()
        for info in consumer.partitionsFor(k.topic, timeout) or []:
            partitions.add(jvm.org.apache.kafka.common.TopicPartition(k.topic, info.partition()))
        earliest = consumer.beginningOffsets(partitions, timeout)
        latest = consumer.endOffsets(partitions, timeout)
        return {tp.partition(): (int(earliest.get(tp)), int(latest.get(tp))) for tp in partitions}
    finally:
        consumer.close()


def consumer_lag(
    spark: SparkSession, k: KafkaSettings, checkpoint: str, asked: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Step details: per partition, the broker's latest offset against the committed one.

    `kafka_consumer_lag` {partition: records behind} feeds the metric KafkaConsumerLag;
    `kafka_offsets` {topic, partitions: {partition: {latest, committed, lag}}} the run report.
    A partition the query has not committed yet counts from the broker's earliest offset. The
    lag is measured, not needed: when the broker cannot be asked, the step reports none (and
    says why in the log) rather than failing. `asked`: both as `caught_up` just learnt them
    (no query ran since), else they are read and asked for now."""
    try:
        if asked:
            committed, offsets = asked["committed"], asked["offsets"]
        else:
            committed = committed_offsets(spark, checkpoint, k.topic) or {}
            offsets = broker_offsets(spark, k)
    except Exception as exc:  # noqa: BLE001 - monitoring must not fail a step that ingested
        log.warning("kafka_events: consumer lag of topic %s not measured: %s", k.topic, short_error(exc))
        return {}
    partitions = {}
    for partition, (earliest, latest) in sorted(offsets.items()):
        position = committed.get(partition, earliest)
        partitions[str(partition)] = {
            "latest": latest,
            "committed": position,
            "lag": max(0, latest - position),
        }
    return {
        LAG_KEY: {p: v["lag"] for p, v in partitions.items()},
        OFFSETS_KEY: {"topic": k.topic, "partitions": partitions},
    }


def ingest_kafka(ctx: RunContext, dataset: str, trigger: StreamTrigger = "available-now") -> StepResult:
    """Run the stream into bronze: available-now drains what is there and ends; continuous runs
    micro-batches every `trigger_interval` until stopped. In kafka mode the step also reports
    the consumer lag per partition when the query ends, refused micro-batch included.

    Whatever writes the table holds its stream lease (pipeline.lease.stream_scope) meanwhile:
    this step, unless this process holds it already (a continuous stream takes it before Spark
    starts, `pipeline.app`). An available-now step finding it held by a continuous stream leaves
    the table to that stream and says so; held by another batch step (or one that died, until
    its lease expires), it fails as transient, to be retried."""
    lease = lease_for(ctx.settings, scope=stream_scope(dataset))
    current = lease.current()
    if (
        current is not None
        and lease.expired_because(current) is None
        and lease.is_this_process(current, ctx.run_id)
    ):
        return _stream_into_bronze(ctx, dataset, trigger)
    lost: list[Exception] = []

    def stop(exc: Exception) -> None:  # another took the table over: stop writing to it
        lost.append(exc)
        for query in ctx.spark.streams.active:
            query.stop()

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(HeldLease(lease, ctx.run_id, stream_command(dataset, trigger), on_lost=stop))
        except LeaseHeld as exc:
            if trigger == "available-now" and exc.holder.command == stream_command(dataset, "continuous"):
                return _left_to_stream(ctx, dataset, exc.holder)
            if trigger == "available-now":
                raise ClassifiedError(f"bronze {dataset}: {exc}", TRANSIENT) from exc
            raise
        result = _stream_into_bronze(ctx, dataset, trigger)
    if lost:
        raise lost[0]
    return result


def stream_command(dataset: str, trigger: StreamTrigger) -> str:
    """What a writer of a stream table is, as its lease records it: a continuous stream is told
    from a batch step by it."""
    return f"bronze_{dataset} ({trigger})"


def _left_to_stream(ctx: RunContext, dataset: str, holder: LeaseRecord) -> StepResult:
    table = ctx.table_path("bronze", dataset)
    log.info("bronze %s: left to the stream that holds it: %s", dataset, holder.describe())
    return StepResult(
        details={
            "skipped": f"a continuous stream writes this table: {holder.describe()}",
            "table": table,
            NEWEST_KEY: recorded_newest(ctx.lake, table),
        }
    )


def _stream_into_bronze(ctx: RunContext, dataset: str, trigger: StreamTrigger) -> StepResult:
    spec = ctx.catalog[dataset]
    conf = ctx.settings.source(dataset, stream=True)
    checkpoint = ctx.checkpoint_path(f"bronze_{dataset}")
    table = ctx.table_path("bronze", dataset)
    gate = MicroBatchGate.for_stream(ctx, f"bronze_{dataset}", dataset, trigger)
    sink = BronzeBatchWriter(ctx.lake, table, checkpoint, spec.source_system, spec.partition_by, gate)

    asked: dict[str, Any] = {}  # kafka: offsets caught_up learnt, the lag's while no query runs

    def lag() -> dict[str, Any]:
        if conf.kafka and conf.mode == "kafka":
            return consumer_lag(ctx.spark, conf.kafka, checkpoint, asked)
        return {}

    location = ctx.landing_path(dataset)
    suffixes = landing_suffixes(spec) if spec.file_suffix else ("",)
    # A continuous kafka stream asks too, once: caught_up refuses a checkpoint ahead of the topic.
    asks = trigger == "available-now" or conf.mode == "kafka"
    idle = asks and caught_up(ctx.spark, conf, checkpoint, location, asked, suffixes)
    idle = idle and trigger == "available-now"
    if (
        not idle
        and conf.mode != "kafka"
        and relocate_replay_log(ctx.spark, checkpoint, landing_keys(ctx, dataset))
    ):
        asked.clear()  # what the log said before it moved
        idle = trigger == "available-now" and caught_up(
            ctx.spark, conf, checkpoint, location, asked, suffixes
        )
    unread = {} if conf.mode == "kafka" else _unread_rewrites(ctx, dataset, checkpoint, suffixes, asked)
    if idle:
        log.info("bronze %s: nothing new since the micro-batch the checkpoint committed last", dataset)
    else:
        asked.clear()  # the query moves the committed offsets, and the broker's may move
        if conf.mode == "kafka":
            source = kafka_source(ctx.spark, conf)
        else:
            source = replay_source(ctx.spark, location, conf, suffixes)
        writer = (
            source.writeStream.queryName(f"bronze_{dataset}")
            .foreachBatch(sink)
            .option("checkpointLocation", checkpoint)
        )
        if trigger == "available-now":
            writer = writer.trigger(availableNow=True)
        else:
            writer = writer.trigger(processingTime=conf.trigger_interval)
        _run_query(dataset, writer, sink, lag)
    return StepResult(
        rows_in=sink.rows,
        rows_out=sink.rows,
        details={
            "micro_batches": sink.batches,
            "replayed_batches_skipped": sink.skipped,
            "corrupt_records": sink.corrupt,
            "table": table,
            "checkpoint": checkpoint,
            NEWEST_KEY: sink.newest or recorded_newest(ctx.lake, table),
            **(gate.details() if gate else {}),
            **lag(),
            **unread,
        },
    )


# The file source log keeps a file's modification time, not its size.
REWRITTEN_REASON = (
    "rewritten since the stream read it (its modification time changed), not read again: "
    "replay files are append-only; deliver the correction as a new file"
)


def _unread_rewrites(
    ctx: RunContext, dataset: str, checkpoint: str, suffixes: tuple[str, ...], asked: dict[str, Any]
) -> dict[str, Any]:
    """Step details naming the replay files rewritten since the query read them (a correction
    sent under the old name), which the file source will not read again (`redelivered_not_read`),
    and a warning, at every run while the file is there. File sources ingest such a file again
    (`redelivered`); the stream's file source remembers paths, and its Delta Txns key on
    micro-batches, not files."""
    try:
        if "landing" in asked:  # caught_up listed them just now
            landing, replayed = asked["landing"], asked["replayed"]
        else:
            landing = replay_files(ctx.spark, ctx.landing_path(dataset), suffixes)
            replayed = replayed_files(ctx.spark, checkpoint) if landing else {}
    except Exception as exc:  # noqa: BLE001 - a report on the landing folder must not fail the ingest
        log.warning("bronze %s: rewritten replay files not looked for: %s", dataset, short_error(exc))
        return {}
    rewritten = rewritten_replay_files(landing, replayed)
    if not rewritten:
        return {}
    log.warning(
        "bronze %s: %d replay file(s) %s: %s",
        dataset,
        len(rewritten),
        REWRITTEN_REASON,
        ", ".join(f.uri for f in rewritten[:5]) + (" ..." if len(rewritten) > 5 else ""),
    )
    return {"redelivered_not_read": [{"path": f.uri, "reason": REWRITTEN_REASON} for f in rewritten]}


def _run_query(dataset: str, writer: Any, sink: BronzeBatchWriter, lag: Callable[[], dict[str, Any]]) -> None:
    """Start the query and wait for its end: a DQ refusal raises as the gate's verdict (with
    the consumer lag), any other failure as the dataset's."""
    query = writer.start()
    try:
        query.awaitTermination()  # available-now ends by itself; continuous runs until stopped
    except StreamingQueryException as exc:
        if sink.refused is not None:
            refused = sink.refused
            refused.details = {**refused.details, **lag()}
            raise refused from None  # the DQ verdict, not Spark's wrapper of it: fatal
        raise RuntimeError(f"{dataset}: streaming query failed: {exc}") from exc
    if query.exception():
        raise RuntimeError(f"{dataset}: streaming query failed: {query.exception()}")
