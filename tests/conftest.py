"""Shared fixtures: one SparkSession for the whole suite (start-up costs ~9 s)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["TZ"] = "UTC"

from pipeline.settings import Settings, SparkSettings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
JDBC_JAR = "/usr/share/java/postgresql.jar"


@pytest.fixture(scope="session")
def spark():
    from pipeline.spark import build_spark

    settings = Settings(
        spark=SparkSettings(master="local[2]", shuffle_partitions=2, driver_memory="3g", jars=[JDBC_JAR])
    )
    session = build_spark(settings)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def delta_rs_lake(spark):
    from pipeline.lake import open_lake

    return open_lake("delta-rs", spark)
