"""Redshift behaviour in JDBC mode, against a real PostgreSQL server the test starts itself."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import psycopg
import pytest

from pipeline.bronze.jdbc import WATERMARK_KEY, extract_window
from pipeline.jobs import bronze
from pipeline.settings import ConfigError, JdbcSettings, SecretRef, SourceSettings
from tests.helpers import make_ctx
from tests.pg import pg_bin, postgres_server

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        pg_bin() is None, reason="PostgreSQL server binaries absent (apt-get install postgresql)"
    ),
]

PASSWORD = "test-only-password"
DDL = """
CREATE TABLE behavior_events (
    event_id text, account_id text, user_id text, session_id text, event_type text,
    page_url text, event_ts timestamptz, loaded_at timestamptz NOT NULL)
"""
INSERT = """
INSERT INTO behavior_events
SELECT 'evt-' || g, 'ACC-' || (g %% 50), 'U-' || (g %% 300), 'S-' || (g %% 900), 'page_view',
       '/p/' || g, timestamptz '2026-07-01 00:00:00+00' + (g || ' minutes')::interval,
       %s::timestamptz + (g || ' seconds')::interval
FROM generate_series(%s::int, %s::int) AS g
"""


@pytest.fixture(scope="module")
def pg():
    with postgres_server(PASSWORD) as (host, port, user):
        conninfo = f"host={host} port={port} user={user} password={PASSWORD} dbname=postgres"
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(DDL)
        yield {"conninfo": conninfo, "url": f"jdbc:postgresql://{host}:{port}/postgres", "user": user}


@pytest.fixture
def jdbc_ctx(spark, tmp_path, pg, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_TEST_PG_PASSWORD", PASSWORD)
    with psycopg.connect(pg["conninfo"], autocommit=True) as conn:
        conn.execute("TRUNCATE behavior_events")
    conf = JdbcSettings(
        url=pg["url"],
        table="public.behavior_events",
        user=pg["user"],
        password=SecretRef(env="LAKEHOUSE_TEST_PG_PASSWORD"),
        watermark_column="loaded_at",
        num_partitions=3,
    )
    ctx = make_ctx(spark, tmp_path / "lake")
    sources = {**ctx.settings.sources, "redshift_behavior": SourceSettings(mode="jdbc", jdbc=conf)}
    ctx.settings = dataclasses.replace(ctx.settings, sources=sources)
    return ctx, conf


def load(pg, first, last, loaded_at):
    with psycopg.connect(pg["conninfo"], autocommit=True) as conn:
        conn.execute(INSERT, (loaded_at, first, last))


def newest_event_ts(pg, loaded_until):
    """max(event_ts) of the rows loaded up to `loaded_until`, computed by PostgreSQL itself."""
    with psycopg.connect(pg["conninfo"]) as conn:
        sql = "SELECT max(event_ts) FROM behavior_events WHERE loaded_at <= %s::timestamptz"
        return conn.execute(sql, (loaded_until,)).fetchone()[0]


def source_ids(pg):
    with psycopg.connect(pg["conninfo"]) as conn:
        return {r[0] for r in conn.execute("SELECT event_id FROM behavior_events")}


def test_incremental_extraction_by_watermark_loses_and_repeats_nothing(jdbc_ctx, pg):
    ctx, conf = jdbc_ctx
    table = ctx.table_path("bronze", "redshift_behavior")
    load(pg, 1, 1000, "2026-07-02 00:00:00+00")

    first = bronze(ctx, "redshift_behavior")
    assert first.rows_out == 1000
    # Freshness: the newest event time (the catalogue's event_time), not the watermark column.
    newest = datetime.fromisoformat(first.details["newest_data_at"])
    assert newest == newest_event_ts(pg, "2026-07-02 23:59:59+00")
    assert ctx.lake.latest_metadata(table, WATERMARK_KEY) == "2026-07-02T00:16:40"  # max loaded_at

    # Late-arriving rows (old event time, new load time) come with the next window.
    load(pg, 1001, 1500, "2026-07-03 00:00:00+00")
    second = bronze(ctx, "redshift_behavior")
    assert second.rows_out == 500
    newest = datetime.fromisoformat(second.details["newest_data_at"])
    assert newest == newest_event_ts(pg, "2026-07-03 23:59:59+00")

    version = ctx.lake.version(table)
    assert bronze(ctx, "redshift_behavior").rows_out == 0
    assert ctx.lake.version(table) == version  # nothing new, no commit

    bronze_rows = ctx.lake.read(table)
    ids = [r["event_id"] for r in bronze_rows.select("event_id").collect()]
    assert len(ids) == len(set(ids)) == 1500 and set(ids) == source_ids(pg)
    row = bronze_rows.filter("event_id = 'evt-7'").first()
    assert row["_source_system"] == "redshift" and PASSWORD not in row["_source_file"]
    assert str(row["event_date"]) == "2026-07-01" and row["_batch_id"] == ctx.batch_id("redshift_behavior")


def test_window_is_read_as_parallel_range_queries(jdbc_ctx, pg, spark):
    ctx, conf = jdbc_ctx
    load(pg, 1, 300, "2026-07-02 00:00:00+00")
    df = extract_window(spark, conf, None, datetime(2026, 7, 2, 0, 5), datetime(2026, 7, 2, 0, 0, 1))
    assert df.rdd.getNumPartitions() == 3
    assert df.count() == 300


def test_missing_password_fails_with_the_variable_to_set(jdbc_ctx, pg, monkeypatch):
    ctx, _ = jdbc_ctx
    monkeypatch.delenv("LAKEHOUSE_TEST_PG_PASSWORD")
    with pytest.raises(ConfigError, match="LAKEHOUSE_TEST_PG_PASSWORD"):
        bronze(ctx, "redshift_behavior")
