"""Kafka product events -> bronze, with Structured Streaming.

On EMR the source is Kafka/MSK; locally it is replay files holding Kafka records
(topic/partition/offset/timestamp/key/value), read by the file stream source. Both become the
same record shape, so parsing downstream is one pure function.

Exactly-once: each micro-batch is appended with a Delta Txn of (query id, batch id). A batch
replayed after a crash (committed to Delta, not yet to the checkpoint) is skipped by the lake.

DQ: each micro-batch is judged before it is written (`dq.stream.MicroBatchGate`), counted in the
sink's one aggregate; a critical failure stops the query before the batch (MicroBatchRefused).
"""

from __future__ import annotations

import json
import logging
import operator
from dataclasses import dataclass, field
from functools import reduce

from pyspark import StorageLevel
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipeline.bronze.audit import with_audit_columns
from pipeline.bronze.readers import CORRUPT, ERROR, SOURCE_FILE
from pipeline.context import RunContext, StreamTrigger
from pipeline.dq.stream import MicroBatchGate, MicroBatchRefused
from pipeline.freshness import NEWEST_KEY, recorded_newest, table_newest
from pipeline.lake import Lake, Txn
from pipeline.settings import ConfigError, KafkaEventsSettings
from pipeline.step_result import StepResult
from pipeline.storage import first_line

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


def replay_source(spark: SparkSession, location: str, conf: KafkaEventsSettings) -> DataFrame:
    """Replay files -> Kafka record shape. A line that is not a Kafka record keeps its raw text."""
    lines = (
        spark.readStream.schema(REPLAY_SCHEMA)
        .option("maxFilesPerTrigger", conf.max_files_per_trigger)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT)
        .json(location)
    )
    return lines.select(
        "topic",
        "partition",
        "offset",
        F.try_to_timestamp("timestamp").alias("timestamp"),
        "key",
        F.coalesce("value", CORRUPT).alias("value"),
        F.when(F.col(CORRUPT).isNotNull(), F.lit("malformed Kafka replay record")).alias(ERROR),
    )


def kafka_source(spark: SparkSession, conf: KafkaEventsSettings) -> DataFrame:
    if conf.kafka is None:
        raise ConfigError("sources.kafka_events.kafka: required when sources.kafka_events.mode is kafka")
    k = conf.kafka
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", k.bootstrap_servers)
        .option("subscribe", k.topic)
        .option("startingOffsets", k.starting_offsets)
        .option("maxOffsetsPerTrigger", conf.max_offsets_per_trigger)
        .option("failOnDataLoss", "true")
        .option("kafka.security.protocol", k.security_protocol)
    )
    if k.sasl_mechanism == "AWS_MSK_IAM":  # MSK IAM auth: the EMR role, no stored secret
        reader = (
            reader.option("kafka.sasl.mechanism", "AWS_MSK_IAM")
            .option("kafka.sasl.jaas.config", "software.amazon.msk.auth.iam.IAMLoginModule required;")
            .option(
                "kafka.sasl.client.callback.handler.class",
                "software.amazon.msk.auth.iam.IAMClientCallbackHandler",
            )
        )
    return reader.load().select(
        "topic",
        "partition",
        "offset",
        "timestamp",
        F.col("key").cast("string").alias("key"),
        F.col("value").cast("string").alias("value"),
        F.lit(None).cast("string").alias(ERROR),
    )


def parse_kafka_records(records: DataFrame) -> DataFrame:
    """Kafka record shape -> bronze columns: Kafka coordinates, the raw value, the event fields
    parsed as text, and the raw value again as `_corrupt_record` when it is not an event."""
    event = F.from_json("value", EVENT_SCHEMA)
    with_event = records.withColumn("_event", event)
    any_field = reduce(operator.or_, [F.col(f"_event.{f}").isNotNull() for f in EVENT_FIELDS])
    not_an_event = F.col("_event").isNull() | ~any_field
    is_corrupt = F.col(ERROR).isNotNull() | F.col("value").isNull() | not_an_event
    return with_event.select(
        "topic",
        "partition",
        "offset",
        F.col("timestamp").alias("kafka_timestamp"),
        F.to_date("timestamp").alias("kafka_date"),
        "key",
        "value",
        *[F.col(f"_event.{f}").alias(f) for f in EVENT_FIELDS],
        F.format_string("kafka://%s/%d/%d", "topic", "partition", "offset").alias(SOURCE_FILE),
        F.when(is_corrupt, F.col("value")).alias(CORRUPT),
        F.when(F.col(ERROR).isNotNull(), F.col(ERROR))
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
        batch = batch.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            measured = self.gate.conformed(batch) if self.gate else batch
            counts = measured.agg(
                F.count(F.lit(1)).alias("rows"),
                F.count(CORRUPT).alias("corrupt"),
                F.max("kafka_timestamp").alias("newest"),
                *(self.gate.aggregates() if self.gate else []),
            ).first()
            if self.gate:
                try:
                    self.gate.judge(batch_id, counts)  # raises before anything is written
                except MicroBatchRefused as refused:
                    self.refused = refused
                    raise
            newest_at = table_newest(self.lake, self.table, counts["newest"])
            result = self.lake.append(
                self.table,
                batch,
                partition_by=self.partition_by,
                txn=txn,
                metadata={"batch_id": batch_id, NEWEST_KEY: newest_at},
            )
        finally:
            batch.unpersist()
        if result.skipped:
            self.skipped += 1
            return
        self.rows += counts["rows"]
        self.corrupt += counts["corrupt"]
        self.batches += 1
        self.newest = newest_at


def ingest_kafka(ctx: RunContext, dataset: str, trigger: StreamTrigger = "available-now") -> StepResult:
    spec = ctx.catalog[dataset]
    conf = ctx.settings.sources.kafka_events
    if conf.mode == "kafka":
        source = kafka_source(ctx.spark, conf)
    else:
        source = replay_source(ctx.spark, ctx.landing_path(dataset), conf)
    checkpoint = ctx.checkpoint_path(f"bronze_{dataset}")
    table = ctx.table_path("bronze", dataset)
    gate = MicroBatchGate.for_stream(ctx, f"bronze_{dataset}", dataset)
    sink = BronzeBatchWriter(ctx.lake, table, checkpoint, spec.source_system, spec.partition_by, gate)
    writer = (
        source.writeStream.queryName(f"bronze_{dataset}")
        .foreachBatch(sink)
        .option("checkpointLocation", checkpoint)
    )
    if trigger == "available-now":
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=conf.trigger_interval)
    query = writer.start()
    try:
        query.awaitTermination()  # available-now ends by itself; continuous runs until stopped
    except StreamingQueryException as exc:
        if sink.refused is not None:
            raise sink.refused from None  # the DQ verdict, not Spark's wrapper of it: fatal
        raise RuntimeError(f"{dataset}: streaming query failed: {exc}") from exc
    if query.exception():
        raise RuntimeError(f"{dataset}: streaming query failed: {query.exception()}")
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
        },
    )
