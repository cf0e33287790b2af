"""Batch ids sort by time whatever the run id says: silver orders a key's re-deliveries by
`_batch_id` when the contract's sequence is the delivery time (fx_rates), so a later delivery
must sort later, under generated and custom run ids alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pipeline.run_id import RUN_ID_RE, batch_id, new_run_id

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def test_a_generated_run_id_is_its_own_time_prefix():
    run_id = new_run_id()
    assert RUN_ID_RE.match(run_id)
    started = datetime.now(UTC)  # the context is made after Spark starts
    assert batch_id(run_id, "fx_rates", started) == f"{run_id}:fx_rates"  # the layout of existing lakes


def test_an_id_in_the_generated_form_but_not_of_this_start_gets_the_start_in_front():
    """A custom id written in the generated form with an old time, or a run resumed the next day
    (a run in between wrote later batches): its batches must still sort after theirs."""
    old = "20200101T000000Z-abc123"
    assert batch_id(old, "fx_rates", T0) == f"20261203T090000Z-{old}:fx_rates"
    resumed = "20261202T090000Z-0a1b2c"
    in_between = batch_id("20261203T080000Z-ffffff", "fx_rates", T0 - timedelta(minutes=59))
    assert batch_id(resumed, "fx_rates", T0) > in_between
    future = "29991231T000000Z-abcdef"
    assert batch_id(future, "fx_rates", T0).startswith("20261203T090000Z-")


def test_later_deliveries_sort_later_under_any_mix_of_run_ids():
    # (run id, start): custom ids chosen to sort against their time, generated ones in between
    runs = [
        ("zzz-nightly", T0),
        ("20261203T090500Z-0a1b2c", T0 + timedelta(minutes=5)),
        ("aaa-backfill", T0 + timedelta(minutes=10)),
        ("20261203T091500Z-ffffff", T0 + timedelta(minutes=15)),
        ("0-first-by-name", T0 + timedelta(hours=1)),
    ]
    ids = [batch_id(run_id, "fx_rates", started) for run_id, started in runs]
    assert ids == sorted(ids)
    assert ids[0] == "20261203T090000Z-zzz-nightly:fx_rates"


def test_a_start_in_another_time_zone_is_taken_as_utc():
    local = T0.astimezone(ZoneInfo("America/New_York"))
    assert batch_id("custom", "orders", local) == batch_id("custom", "orders", T0)
