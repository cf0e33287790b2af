"""The key range silver's merge reads of the target (silver.job._target_range): the batch's lowest
and highest value of each matched-on column, written as literals both engines parse alike."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from pyspark.sql import Row

from pipeline.contracts.model import load_contract
from pipeline.silver.job import _target_range

REPO = Path(__file__).resolve().parents[2]


def contract(name: str):
    return load_contract(REPO / "config" / "contracts" / f"{name}.yaml", REPO / "config" / "reference")


def test_events_bound_their_key_and_their_dates_widened_by_the_redelivery_window():
    """An event delivered again with a corrected time on another date within redelivery_days
    (7) of the batch's dates is in the range the merge reads, so its id matches."""
    totals = Row(_lo_0="0a-1", _hi_0="ff-9", _lo_1=date(2026, 10, 1), _hi_1=date(2026, 10, 2))
    assert _target_range(contract("behavior_events"), totals) == (
        "t.`event_id` BETWEEN '0a-1' AND 'ff-9' AND "
        "t.`event_date` BETWEEN DATE '2026-09-24' AND DATE '2026-10-09'"
    )
    edges = Row(_lo_0="a", _hi_0="b", _lo_1=date(1, 1, 3), _hi_1=date(9999, 12, 30))
    assert _target_range(contract("behavior_events"), edges).endswith(
        "BETWEEN DATE '0001-01-01' AND DATE '9999-12-31'"
    )


def test_a_value_the_engines_would_read_differently_leaves_its_column_unbounded():
    # A quote or backslash (Spark's parser unescapes it, DataFusion's does not), a timestamp.
    totals = Row(_lo_0="ab'c", _hi_0="x", _lo_1=date(2026, 10, 1), _hi_1=date(2026, 10, 1))
    assert _target_range(contract("behavior_events"), totals) == (
        "t.`event_date` BETWEEN DATE '2026-09-24' AND DATE '2026-10-08'"
    )
    assert _target_range(contract("orders"), Row(_lo_0="ORD-1", _hi_0="ORD\\2")) is None
    stamp = datetime(2026, 10, 1)
    assert _target_range(contract("orders"), Row(_lo_0=stamp, _hi_0=stamp)) is None


def test_scd2_bounds_its_key_not_valid_from_and_an_empty_batch_nothing():
    assert _target_range(contract("accounts"), Row(_lo_0="ACC-000001", _hi_0="ACC-000009")) == (
        "t.`account_id` BETWEEN 'ACC-000001' AND 'ACC-000009'"
    )
    assert _target_range(contract("accounts"), Row(_lo_0=None, _hi_0=None)) is None
