"""A commit that lost to another writer is told apart from any other failure, on both engines'
own messages: bronze then lists again instead of failing the step."""

from __future__ import annotations

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from pipeline.bronze.ledger import lost_commit_race


def test_delta_rs_losing_to_a_schema_change_is_a_lost_race(tmp_path):
    write_deltalake(str(tmp_path), pa.table({"a": [1]}))
    stale = DeltaTable(str(tmp_path))  # what a second writer saw before the first one committed
    write_deltalake(str(tmp_path), pa.table({"a": [2], "b": ["x"]}), mode="append", schema_mode="merge")
    with pytest.raises(Exception) as lost:
        write_deltalake(stale, pa.table({"a": [3]}), mode="append")
    assert lost_commit_race(lost.value)


@pytest.mark.parametrize(
    "message",
    [
        "io.delta.exceptions.MetadataChangedException: The metadata of the Delta table has been changed",
        "io.delta.exceptions.ConcurrentAppendException: Files were added to the root of the table",
    ],
)
def test_delta_sparks_conflicts_are_lost_races(message):
    assert lost_commit_race(RuntimeError(message))


def test_other_commit_failures_are_not(tmp_path):
    assert not lost_commit_race(RuntimeError("Failed to commit transaction: permission denied"))
    assert not lost_commit_race(OSError("No space left on device"))
