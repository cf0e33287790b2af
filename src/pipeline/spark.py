"""The one SparkSession factory.

Locally it builds a session sized for a small machine; on EMR (`spark.master: null` in the
config) it takes what spark-submit and the cluster give and adds only what the job needs.
Start-up costs ~9 s, so a local run builds one session and shares it across every step.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from pipeline.settings import ConfigError, Settings

log = logging.getLogger(__name__)

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
    "spark.driver.extraJavaOptions": "-Dderby.system.home=/tmp/derby -Duser.timezone=UTC -XX:+UseG1GC",
    "spark.sql.streaming.forceDeleteTempCheckpointLocation": "true",
}


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
    builder = builder.config("spark.sql.shuffle.partitions", str(conf.shuffle_partitions))
    jars = [j for j in conf.jars if _jar_present(j)]
    if jars:
        builder = builder.config("spark.jars", ",".join(jars))
    for key, value in conf.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _jar_present(jar: str) -> bool:
    """Local jars that are missing are skipped with a warning: only the step needing them fails."""
    if "://" in jar or Path(jar).exists():
        return True
    log.warning("spark.jars: %s not found; steps that need it will fail (see README: make setup)", jar)
    return False


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
