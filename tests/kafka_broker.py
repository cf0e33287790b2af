"""A real single-node Kafka broker for the tests, and the helpers that fill and read its topics.

`KafkaBroker` runs Kafka 4.0 in KRaft mode (broker and controller in one process) as its own JVM
from the jars `make setup` fetched into jvm/jars/kafka-broker/ (jvm/kafka-broker/pom.xml), on
loopback ports picked free at start: the storage is formatted (`kafka.tools.StorageTool`), the
server started (`kafka.Kafka server.properties`), and `start()` returns once the broker accepts
connections, or raises with the tail of the broker's log. `stop()` terminates, then kills.

The topic helpers talk to the broker through the Kafka client already in the test SparkSession's
JVM (kafka-clients, beside Spark's Kafka connector), so no Python Kafka package is needed; the
producer sets each record's partition and timestamp, which Spark's Kafka sink cannot.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tests.helpers import tail_of_logs

REPO = Path(__file__).resolve().parents[1]
BROKER_JARS = REPO / "jvm" / "jars" / "kafka-broker"
READY_LINE = "Kafka Server started"
START_TIMEOUT_S = 90
BYTES_SERIALIZER = "org.apache.kafka.common.serialization.ByteArraySerializer"
BYTES_DESERIALIZER = "org.apache.kafka.common.serialization.ByteArrayDeserializer"

LOG4J = """\
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={log}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.apache.kafka.common.config=WARN
"""


class BrokerError(RuntimeError):
    """The test broker could not be set up; the message says why and shows its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class KafkaBroker:
    """One broker+controller on 127.0.0.1, its files under `home` (data, config, log)."""

    home: Path
    heap: str = "512m"
    port: int = 0
    controller_port: int = 0
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / "broker.log"

    def log_tail(self, lines: int = 40) -> str:
        return tail_of_logs(
            [self.log_path, self.home / "stdout.log"], f"(no broker log under {self.home})", lines
        )

    def _java(self, main: str, *args: str, heap: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise BrokerError(
                "no `java` on PATH: the test Kafka broker needs Java 17 (make setup installs it)"
            )
        return [
            java,
            f"-Xmx{heap}",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",  # a test broker: fast start matters more than peak speed
            f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}",
            "-cp",
            f"{BROKER_JARS}/*",
            main,
            *args,
        ]

    def _write_config(self) -> Path:
        self.port, self.controller_port = free_port(), free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        data = self.home / "data"
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": "3",
            "auto.create.topics.enable": "false",
            # One node: internal topics with one replica and one partition.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "2",
            # The generator's events are months old: keep them (no time or size retention), and
            # accept their timestamps.
            "log.retention.ms": "-1",
            "log.retention.bytes": "-1",
            "log.message.timestamp.before.max.ms": str(2**63 - 1),
        }
        path = self.home / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
        (self.home / "log4j.properties").write_text(LOG4J.format(log=self.log_path))
        return path

    def start(self) -> KafkaBroker:
        if not any(BROKER_JARS.glob("kafka_2.13-*.jar")):
            raise BrokerError(
                f"no Kafka broker jars in {BROKER_JARS}: run `make setup` (jvm/kafka-broker/pom.xml)"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # `--cluster-id=<id>`: a URL-safe base64 id starts with "-" one time in 64, which the
        # tool's argument parser would take for an option (seen: "expected one argument").
        fmt = subprocess.run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",
                "-c",
                str(config),
                heap="256m",
            ),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if fmt.returncode != 0:
            raise BrokerError(
                f"formatting the Kafka storage failed (exit {fmt.returncode}):\n"
                f"{(fmt.stdout + fmt.stderr)[-3000:]}\n{self.log_tail()}"
            )
        with open(self.home / "stdout.log", "wb") as out:
            self.process = subprocess.Popen(
                self._java("kafka.Kafka", str(config), heap=self.heap),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as a whole
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(
                    f"the Kafka broker exited with status {self.process.returncode} while starting "
                    f"(ports {self.port}/{self.controller_port}):\n{self.log_tail()}"
                )
            if _accepts(self.port) and READY_LINE in self.log_path.read_text(errors="replace"):
                return self
            time.sleep(0.2)
        self.stop()
        raise BrokerError(
            f"the Kafka broker did not start within {START_TIMEOUT_S}s on {self.bootstrap_servers}:\n"
            f"{self.log_tail()}"
        )

    def stop(self, timeout_s: float = 20) -> None:
        """SIGTERM (a controlled shutdown), then SIGKILL when it does not end in time."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- topics, through the Kafka client in the SparkSession's JVM --------------------------------
def _properties(spark, options: dict[str, str]):
    props = spark.sparkContext._jvm.java.util.Properties()
    for key, value in options.items():
        props.setProperty(key, str(value))
    return props


def create_topic(spark, bootstrap: str, topic: str, partitions: int = 3) -> None:
    jvm = spark.sparkContext._jvm
    admin = jvm.org.apache.kafka.clients.admin.Admin.create(
        _properties(spark, {"bootstrap.servers": bootstrap})
    )
    try:
        optional = jvm.java.util.Optional
        topics = jvm.java.util.ArrayList()
        # Replication: the broker's default (1); partitions as asked.
        topics.add(
            jvm.org.apache.kafka.clients.admin.NewTopic(topic, optional.of(partitions), optional.empty())
        )
        admin.createTopics(topics).all().get()
    finally:
        admin.close()


@dataclass(frozen=True)
class Record:
    partition: int
    key: str | None
    value: str
    timestamp_ms: int


def epoch_ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def replay_records(replay_dir: Path) -> list[Record]:
    """The generator's replay files as records, in (partition, offset) order."""
    rows = []
    for path in sorted(replay_dir.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            rows.append(
                (
                    r["partition"],
                    r["offset"],
                    Record(r["partition"], r["key"], r["value"], epoch_ms(r["timestamp"])),
                )
            )
    rows.sort(key=lambda t: (t[0], t[1]))
    return [record for _, _, record in rows]


def produce(spark, bootstrap: str, topic: str, records: list[Record]) -> dict[int, int]:
    """Send `records` in order, each to its own partition with its own timestamp and key (one
    idempotent producer, acks=all: per partition, offsets follow the list). Returns the number
    of records per partition."""
    jvm = spark.sparkContext._jvm
    options = {
        "bootstrap.servers": bootstrap,
        "key.serializer": BYTES_SERIALIZER,
        "value.serializer": BYTES_SERIALIZER,
        "acks": "all",
        "enable.idempotence": "true",
        "linger.ms": "5",
    }
    producer = jvm.org.apache.kafka.clients.producer.KafkaProducer(_properties(spark, options))
    make = jvm.org.apache.kafka.clients.producer.ProducerRecord
    counts: dict[int, int] = {}
    try:
        for r in records:
            key = None if r.key is None else r.key.encode("utf-8")
            producer.send(make(topic, r.partition, r.timestamp_ms, key, r.value.encode("utf-8")))
            counts[r.partition] = counts.get(r.partition, 0) + 1
        producer.flush()
    finally:
        producer.close()
    return counts


def read_topic(spark, bootstrap: str, topic: str) -> dict[tuple[int, int], tuple[str | None, str, int]]:
    """Everything in the topic, read as a batch (not the job's streaming path):
    (partition, offset) -> (key, value, timestamp in epoch ms)."""
    from pyspark.sql import functions as F

    rows = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .option("endingOffsets", "latest")
        .load()
        .select(
            "partition",
            "offset",
            F.col("key").cast("string").alias("key"),
            F.col("value").cast("string").alias("value"),
            F.unix_millis("timestamp").alias("ts"),
        )
        .collect()
    )
    return {(r["partition"], r["offset"]): (r["key"], r["value"], r["ts"]) for r in rows}


def end_offsets(spark, bootstrap: str, topic: str) -> dict[int, int]:
    """The next offset of each partition, asked of the broker by a plain consumer."""
    jvm = spark.sparkContext._jvm
    options = {
        "bootstrap.servers": bootstrap,
        "key.deserializer": BYTES_DESERIALIZER,
        "value.deserializer": BYTES_DESERIALIZER,
    }
    consumer = jvm.org.apache.kafka.clients.consumer.KafkaConsumer(_properties(spark, options))
    try:
        tps = jvm.java.util.ArrayList()
        for info in consumer.partitionsFor(topic):
            tps.add(jvm.org.apache.kafka.common.TopicPartition(topic, info.partition()))
        ends = consumer.endOffsets(tps)
        return {tp.partition(): int(ends.get(tp)) for tp in tps}
    finally:
        consumer.close()
