"""silver.behavior_events keeps one row per event_id (its contract's grain) when Redshift delivers
an event again with a corrected time on another date: within the contract's redelivery_days of
the batch's dates the id matches the row silver holds (events never change: the first delivery
stays); further apart it is a second row, as the contract documents. Each delivery is a
Parquet unload file of its own run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import make_ctx, run_ok

pytestmark = pytest.mark.slow

STEPS = ["bronze_redshift_behavior", "silver_behavior_events"]
BASE = datetime(2026, 3, 1, 12, tzinfo=UTC)


def land(lake, run: int, events: list[tuple[str, datetime]]) -> None:
    day = events[0][1].date()
    folder = lake / "landing" / "redshift" / "behavior_events" / f"event_date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    n = len(events)
    table = pa.table(
        {
            "event_id": [e for e, _ in events],
            "account_id": ["ACC-000001"] * n,
            "user_id": ["USR-1"] * n,
            "session_id": ["s1"] * n,
            "event_type": ["click"] * n,
            "page_url": ["/"] * n,
            "event_ts": pa.array([ts for _, ts in events], pa.timestamp("us", tz="UTC")),
            "loaded_at": pa.array([BASE + timedelta(days=run * 20)] * n, pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, folder / f"{run:04d}_part_00.parquet")


def test_an_event_delivered_again_on_another_date_stays_one_row_within_the_window(
    spark, tmp_path, monkeypatch
):
    monkeypatch.setenv("LAKEHOUSE_DQ", "off")  # freshness and volume gates judge, they do not change rows
    monkeypatch.setenv("LAKEHOUSE_LAKE_ENGINE", "delta-rs")
    lake = tmp_path / "lake"
    ctx = make_ctx(spark, lake)
    deliveries = [
        [("e1", BASE), ("e2", BASE)],
        [("e1", BASE + timedelta(days=1)), ("e3", BASE + timedelta(days=1))],  # e1 corrected: next day
        [("e2", BASE + timedelta(days=30))],  # e2 again a month later: beyond 7 days
    ]
    for run, events in enumerate(deliveries, start=1):
        land(lake, run, events)
        ctx.run_id = f"run-{run}"
        run_ok(ctx, STEPS)
    rows = ctx.lake.read(ctx.table_path("silver", "behavior_events")).collect()
    held = sorted((r["event_id"], r["event_date"].isoformat()) for r in rows)
    assert held == [("e1", "2026-03-01"), ("e2", "2026-03-01"), ("e2", "2026-03-31"), ("e3", "2026-03-02")]
