"""Shared fixtures: one SparkSession per test worker (start-up costs ~9 s), built with the jars
`make setup` fetched (Delta, the Kafka connector, S3A), as local runs and EMR have them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["TZ"] = "UTC"

from pipeline.settings import Settings, SparkSettings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
JDBC_JAR = "/usr/share/java/postgresql.jar"
SPARK_JARS = REPO / "jvm" / "jars" / "spark"


def pytest_collection_modifyitems(items):
    """The heaviest modules first (tests/module_seconds.py), so that both workers finish together."""
    from tests.module_seconds import load

    seconds = load()
    items.sort(key=lambda item: -seconds.get(item.nodeid.split("::")[0], 0))


@pytest.fixture(scope="session")
def spark():
    """The product's local session, but for its collector: the parallel one, which spends less
    CPU than G1 on the suite's many small queries (G1 and its 8 MB regions bound a big run's
    memory, which the suite's small data does not need). With the heaviest modules first, the
    suite took 18 min 11 s against 19 min 48 s the same day (one run each, not measured apart).
    The JIT keeps its tiers: C1 only cut a fresh JVM's CPU over one module by a third to a half,
    but made the whole suite slower (docs/performance.md, "Compiled code")."""
    from pipeline.spark import LOCAL_DEFAULTS, build_spark

    java_options = LOCAL_DEFAULTS["spark.driver.extraJavaOptions"]
    for g1 in ("-XX:+UseG1GC", "-XX:G1HeapRegionSize=8m", "-XX:G1PeriodicGCInterval=60000"):
        assert g1 in java_options, f"tests/conftest.py: {g1} is no longer in pipeline.spark's options"
        java_options = java_options.replace(g1, "")
    settings = Settings(
        spark=SparkSettings(
            master="local[2]",
            shuffle_partitions=2,
            driver_memory="3g",
            jars=[JDBC_JAR, str(SPARK_JARS)],
            conf={"spark.driver.extraJavaOptions": " ".join([*java_options.split(), "-XX:+UseParallelGC"])},
        )
    )
    session = build_spark(settings)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def delta_rs_lake(spark):
    from pipeline.lake import open_lake

    return open_lake("delta-rs", spark)


@pytest.fixture(scope="session")
def delta_spark_lake(spark):
    """The production engine. Its absence fails the tests that need it: `make test` fetches the
    jars, and a skipped delta-spark half would hide exactly what EMR runs."""
    from pipeline.lake import engine_unavailable, open_lake

    reason = engine_unavailable("delta-spark", spark)
    if reason:
        pytest.fail(f"delta-spark cannot run: {reason} (run `make setup`)")
    return open_lake("delta-spark", spark)


@pytest.fixture(params=["delta-rs", "delta-spark"])
def lake(request):
    """Each engine in turn. Which engines a test runs on: the lake contract (tests/contract) takes
    every call of the lake interface on both, and the engine equivalence continues one engine's
    whole-DAG run with the other's. A flow above the lake interface runs on both engines where
    they differ in what it exercises (racing commits, merge metrics, file layout, maintenance,
    type widening, an empty append); otherwise once: on delta-spark, what EMR runs, or on delta-rs,
    the cheaper, where the flow's lake calls are the contract's alike on both."""
    return request.getfixturevalue(f"{request.param.replace('-', '_')}_lake")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """One S3-compatible endpoint (s3proxy, its own JVM on 127.0.0.1) for the whole session, for
    the lake at s3a://. One that cannot start fails the tests that need it, with its log."""
    from tests.s3_endpoint import S3Proxy

    proxy = S3Proxy(tmp_path_factory.mktemp("s3proxy")).start()
    yield proxy
    proxy.stop()
