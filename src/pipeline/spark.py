"""The one SparkSession factory.

Locally it builds a session sized for a small machine; on EMR (`spark.master: null` in the
config) it takes what spark-submit and the cluster give and adds only what the job needs.
Start-up costs ~9 s, so a local run builds one session and shares it across every step.

`spark.jars` entries are jar files or folders of jars (relative paths are taken from the project
root): locally `jvm/jars/spark`, which `make setup` fills from Maven Central with Delta, the Kafka
connector and S3A. When Delta's jar is among them, the session gets Delta's SQL extension and
catalog, so the lake layer's `auto` engine picks delta-spark.

A lake on an S3-compatible store other than AWS S3 (the settings' `lake.storage_options` name its
endpoint) gets S3A's endpoint, region, path-style access and TLS from the same options
(`s3a_conf`), so Spark, delta-rs and the boto3 clients of `<lake>/_ops` reach one store from one
setting; `spark.conf` keys win over them. Credentials come from S3A's default chain (environment,
instance role), never from configuration. On any S3 store, S3A skips its probes before a write
(`S3A_WRITE_PROBES_OFF`).
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import date
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from pipeline.settings import PROJECT_ROOT, ConfigError, Settings

log = logging.getLogger(__name__)

# Options of every Spark JVM the product starts (the local one, and EMR's drivers and executors:
# pipeline.deploy.submit). HotSpot leaves a method of more than 8,000 bytes of bytecode
# interpreted unless told otherwise, and Spark's whole-stage code for a wide projection is such a
# method (Spark's own limit, spark.sql.codegen.hugeMethodLimit, is 65,535): a contract's rules
# over every column of a dataset ran interpreted. Conformance of 1.88M orders into a noop sink,
# warm, best of 3: 10.0 s as HotSpot leaves it, 4.2 s with the method compiled, 6.3 s with Spark
# falling back to per-operator code above 8,000 bytes (docs/performance.md).
JIT_OPTIONS = "-XX:-DontCompileHugeMethods"

LOCAL_DEFAULTS = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.ansi.enabled": "true",
    "spark.sql.adaptive.enabled": "true",
    # Spark's default of 128 MB split size makes tiny tasks on landing-sized files anyway.
    "spark.sql.files.maxPartitionBytes": "64m",
    # Memory bound of the local JVM: the heap (driver_memory), direct buffers (Java's default is
    # the heap's size again; Spark's local use of them stays in the tens of MB) and ~0.5 GB of
    # metaspace, code and GC structures. G1 returns unused heap after a minute without a GC
    # (a continuous stream between triggers, a long-lived session). G1 regions of 8 MB, not the
    # 2 MB G1 picks for a 3g heap: an object of half a region or more gets whole regions of its
    # own that no compaction moves, and Spark allocates many (buffers of 1-4 MB, sort pages of
    # 32-64 MB). With 2 MB regions the scale-10 cold run's sort failed to get pages with 1,236
    # such regions (2.4 GB) taken and a heap dump of 1.5 GB: no run of free regions long enough.
    # With 8 MB: 145 at most, no failed page (docs/performance.md, "The heap's large objects").
    "spark.driver.extraJavaOptions": (
        "-Dderby.system.home=/tmp/derby -Duser.timezone=UTC -XX:+UseG1GC -XX:G1HeapRegionSize=8m "
        f"-XX:MaxDirectMemorySize=1g -XX:G1PeriodicGCInterval=60000 {JIT_OPTIONS}"
    ),
    "spark.sql.streaming.forceDeleteTempCheckpointLocation": "true",
    # Delta's VACUUM lists a table's files in this many tasks (Spark's default, 10,000, costs
    # about 40 s per VACUUM on 2 local cores, for a table of three files).
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "16",
    # delta-spark rebuilds a table's state (every read of a new version, VACUUM, checkpoints,
    # CDF) in 50 partitions by default: 50 tasks per step for tables of a few files. Measured on
    # 2 cores, a small table's append + filtered count: 4 partitions 0.47 s + 1.07 s, 2 partitions
    # 0.39 s + 0.80 s (1: 0.43 s + 0.87 s).
    "spark.databricks.delta.snapshotPartitions": "2",
    # Compiled query code kept for reuse across the steps and runs of one session (a static conf:
    # read when the session starts). Spark's default keeps 100 classes; a run's steps and an
    # increment after a full run compile the same plans again. The gold job's tests in one
    # session: 1,591 compiles with 100 kept, 393 with 2,000; 4 % less CPU (two runs each side).
    "spark.sql.codegen.cache.maxEntries": "2000",
}

# Every session, local or on EMR (config's spark.conf wins over these).
JOB_DEFAULTS = {
    # Spark's cache (persist) encodes each column batch (dictionary, run-length, ...) by default.
    # The batches the steps cache hold mostly distinct values: encoding them kept 0-14 % of the
    # memory (silver_orders' conformed batch at scale 10: 126 MB against 135 MB) and cost a
    # third of building the cache (persist + count 15.0-15.6 s against 10.6-11.2 s; scale 1,
    # every silver dataset: 1.1-2x faster uncompressed). docs/performance.md.
    "spark.sql.inMemoryColumnarStorage.compressed": "false",
}

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


def build_spark(settings: Settings) -> SparkSession:
    conf = settings.spark
    builder = SparkSession.builder.appName(conf.app_name)
    if conf.master:
        # Executors must run the driver's interpreter (the project virtualenv), not whatever is on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # local runs stay on loopback
        builder = builder.master(conf.master).config("spark.driver.memory", conf.driver_memory)
        for key, value in LOCAL_DEFAULTS.items():
            builder = builder.config(key, value)
    for key, value in JOB_DEFAULTS.items():
        builder = builder.config(key, value)
    builder = builder.config("spark.sql.shuffle.partitions", str(conf.shuffle_partitions))
    jars = resolve_jars(conf.jars)
    if jars:
        builder = builder.config("spark.jars", ",".join(jars))
    session_conf = {**s3a_conf(settings.lake.storage_options), **conf.conf}
    if any(Path(j).name.startswith("delta-spark_") for j in jars):
        session_conf.update(delta_session_conf(session_conf))
    for key, value in session_conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


# S3A's probes before a write, skipped (Hadoop 3.4.1+, hadoop-aws performance.md "Performance
# Flags"). `create`: no HEAD + LIST per new file for an existing file or a directory at its path;
# the lake writes only new names (Spark's data files, Delta's commits: its S3 log store checks a
# commit's name itself before writing) and replaces only the files it means to (run state).
# `mkdir`: no walk up the parents of a new folder (a Delta table's `_delta_log/_staged_commits`)
# looking for a file among them. A full `lakehouse run` at the suite's size on s3proxy: 11,200 ->
# 10,300 requests (LIST 2,696 -> 2,220, HEAD 5,469 -> 5,094), tables and artefacts the same.
S3A_WRITE_PROBES_OFF = {"fs.s3a.performance.flags": "create,mkdir"}


def s3a_conf(storage_options: dict[str, str]) -> dict[str, str]:
    """`spark.hadoop.fs.s3a.*` for a lake on S3A: the write probes it skips (any S3 store), and
    the endpoint the lake's storage options name (delta-rs's option names) when they name one
    (without AWS_ENDPOINT_URL: AWS S3, S3A's endpoint defaults, or EMRFS for s3:// on EMR)."""
    options = {k.upper(): v for k, v in storage_options.items()}
    conf = dict(S3A_WRITE_PROBES_OFF)
    endpoint = options.get("AWS_ENDPOINT_URL")
    if endpoint:
        virtual = options.get("AWS_S3_ADDRESSING_STYLE", "").lower() == "virtual"
        conf |= {
            "fs.s3a.endpoint": endpoint,
            "fs.s3a.path.style.access": str(not virtual).lower(),
            "fs.s3a.connection.ssl.enabled": str(endpoint.lower().startswith("https://")).lower(),
        }
        if options.get("AWS_REGION"):
            conf["fs.s3a.endpoint.region"] = options["AWS_REGION"]
    return {f"spark.hadoop.{k}": v for k, v in conf.items()}


def resolve_jars(entries: list[str]) -> list[str]:
    """Jar files and the jars inside folders, in order. A missing jar file is skipped with a
    warning (only the step needing it fails); a missing folder is skipped quietly: the lake
    layer says what its absence means (no Delta jars: the delta-rs engine)."""
    jars: list[str] = []
    for entry in entries:
        if "://" in entry:
            jars.append(entry)
            continue
        path = Path(entry) if Path(entry).is_absolute() else PROJECT_ROOT / entry
        if path.is_dir():
            jars.extend(str(j) for j in sorted(path.glob("*.jar")))
        elif path.exists():
            jars.append(str(path))
        elif path.suffix == ".jar":
            log.warning(
                "spark.jars: %s not found; steps that need it will fail (see README: make setup)", entry
            )
    return jars


def delta_session_conf(conf: dict[str, str]) -> dict[str, str]:
    """Delta's SQL extension (added to any already configured) and its catalog (unless one is set)."""
    extensions = [e for e in conf.get("spark.sql.extensions", "").split(",") if e]
    if DELTA_EXTENSION not in extensions:
        extensions.append(DELTA_EXTENSION)
    catalog = conf.get("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
    return {"spark.sql.extensions": ",".join(extensions), "spark.sql.catalog.spark_catalog": catalog}


def require_jdbc_driver(spark: SparkSession, driver_class: str, dataset: str) -> None:
    """Fail with the fix, not a ClassNotFoundException deep in a JDBC read."""
    try:
        jvm_class_exists(spark, driver_class)
    except LookupError as exc:
        raise ConfigError(
            f"{dataset}: JDBC driver {driver_class} is not on the Spark classpath; add its jar to "
            "spark.jars in the config (locally: apt-get install libpostgresql-jdbc-java, "
            "jar at /usr/share/java/postgresql.jar)"
        ) from exc


def jvm_class_exists(spark: SparkSession, class_name: str) -> None:
    """Raise LookupError unless the class loads through Spark's class loader (which sees spark.jars)."""
    try:
        spark.sparkContext._jvm.org.apache.spark.util.Utils.classForName(class_name, False, False)  # type: ignore[union-attr]
    except Exception as exc:  # py4j wraps ClassNotFoundException
        raise LookupError(class_name) from exc


def date_value(day: date) -> Column:
    """A Python date as a Spark date literal, through its ISO form. pyspark converts a date with
    strftime("%Y-%m-%d"), which writes year 1 as "1-01-01" (no zero padding below year 1000),
    refused by java.sql.Date.valueOf: an order dated year 1 would fail every run reading it."""
    return F.lit(day.isoformat()).cast("date")


def driver_rows(spark: SparkSession, rows: list[tuple], schema: str | StructType) -> DataFrame:
    """A few rows the driver holds (a ledger entry, DQ results) as a DataFrame Spark builds from
    Arrow in the JVM, columns by position. From a list of tuples, the action that writes it runs
    a Python worker job instead: measured 0.48 -> 0.27 s for a three-row Delta append."""
    import pandas as pd  # what pyspark's Arrow conversion imports anyway; not at the CLI's start

    if not rows:
        return spark.createDataFrame([], schema)
    return spark.createDataFrame(pd.DataFrame(rows), schema)
