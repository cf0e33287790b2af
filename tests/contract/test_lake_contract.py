"""One behaviour contract for every Delta engine: identical calls give identical tables.

Every test runs against both engines (the `lake` fixture): delta-spark, with the jars `make setup`
fetched, and delta-rs. Neither half skips; a missing jar folder fails the delta-spark half.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from pipeline.context import RunContext
from pipeline.lake import LakeError, MergeSpec, Txn, open_lake
from pipeline.lake.base import METADATA_PAGE
from pipeline.settings import ConfigError
from tests.conftest import REPO
from tests.s3_endpoint import env

SCHEMA = "id int, name string, amount double, day string"


@pytest.fixture
def table(tmp_path):
    return str(tmp_path / "t")


def rows(spark, data, schema=SCHEMA):
    return spark.createDataFrame(data, schema)


def contents(lake, table, version=None, order="id"):
    return lake.read(table, version).orderBy(order)


BASE = [(1, "a", 10.0, "d1"), (2, "b", 20.0, "d1"), (3, "c", 30.0, "d2")]


def test_append_then_read_round_trips_rows_and_partition_columns(spark, lake, table):
    lake.append(table, rows(spark, BASE), partition_by=["day"])
    assert lake.exists(table) and lake.version(table) == 0
    assert_df_equality(
        contents(lake, table).select("id", "name", "amount", "day"), rows(spark, BASE), ignore_nullable=True
    )


def test_missing_table_reports_absent_and_read_names_the_path(spark, lake, table):
    assert not lake.exists(table) and lake.version(table) is None
    with pytest.raises(LakeError, match="no Delta table"):
        lake.read(table)


def test_read_an_earlier_version(spark, lake, table):
    lake.append(table, rows(spark, BASE[:1]))
    lake.append(table, rows(spark, BASE[1:]))
    assert lake.read(table, version=0).count() == 1
    assert lake.read(table).count() == 3


def test_append_accepts_a_new_nullable_column(spark, lake, table):
    lake.append(table, rows(spark, BASE[:1]))
    lake.append(table, rows(spark, [(4, "d", 1.0, "d3", "web")], SCHEMA + ", channel string"))
    got = {r["id"]: r["channel"] for r in lake.read(table).collect()}
    assert got == {1: None, 4: "web"}


@pytest.mark.parametrize(
    ("value", "schema"),
    [
        ("not a number", "id int, name string, amount string, day string"),
        ("12", "id int, name string, amount string, day string"),  # a text a cast would take
        (10.0, "id bigint, name string, amount double, day string"),  # a wider integer
        (10.5, "id int, name string, amount float, day string"),  # a narrower float
    ],
)
def test_append_with_a_conflicting_type_fails_and_changes_nothing(spark, lake, table, value, schema):
    lake.append(table, rows(spark, BASE[:1]))
    batch = rows(spark, [(5, "e", value, "d1")], schema)
    with pytest.raises(LakeError, match=r"append failed"):
        lake.append(table, batch)
    assert lake.version(table) == 0


@pytest.mark.parametrize("operation", ["append", "merge"])
def test_a_batch_that_fails_to_compute_names_the_table(spark, lake, table, operation):
    """An error computing the batch (here ANSI's cast of a bad value) names the table written."""
    lake.append(table, rows(spark, BASE))
    bad = rows(spark, BASE[:1]).withColumn("id", F.expr("CAST('x' AS INT)"))
    with pytest.raises(LakeError, match=rf"^{table}: {operation}.* failed"):
        if operation == "append":
            lake.append(table, bad)
        else:
            lake.merge(table, bad, MergeSpec(keys=("id",)))


def test_overwrite_replaces_the_table(spark, lake, table):
    lake.append(table, rows(spark, BASE))
    lake.overwrite(table, rows(spark, [(9, "z", 9.0, "d9")]))
    assert [r["id"] for r in lake.read(table).collect()] == [9]


def test_a_full_overwrite_keeps_the_tables_partitioning(spark, lake, table):
    lake.append(table, rows(spark, BASE), partition_by=["day"])
    lake.overwrite(table, rows(spark, [(9, "z", 9.0, "d9")]))
    assert [r["id"] for r in lake.read(table).collect()] == [9]
    assert Path(table, "day=d9").is_dir()  # its file in the partition's folder


def test_overwrite_with_predicate_replaces_only_matching_rows(spark, lake, table):
    lake.append(table, rows(spark, BASE), partition_by=["day"])
    lake.overwrite(table, rows(spark, [(7, "g", 70.0, "d1")]), predicate="day = 'd1'")
    assert sorted((r["id"], r["day"]) for r in lake.read(table).collect()) == [(3, "d2"), (7, "d1")]


def test_merge_updates_conditionally_deletes_and_inserts(spark, lake, table):
    lake.append(table, rows(spark, BASE))
    source = rows(
        spark,
        [(1, "A", 5.0, "d1"), (2, "B", 25.0, "d1"), (3, "gone", 0.0, "d2"), (4, "new", 40.0, "d3")],
    )
    spec = MergeSpec(keys=("id",), update_when="s.amount > t.amount", delete_when="s.name = 'gone'")
    lake.merge(table, source, spec)
    got = sorted((r["id"], r["name"], r["amount"]) for r in lake.read(table).collect())
    # 1: source amount lower -> kept; 2: updated; 3: deleted; 4: inserted
    assert got == [(1, "a", 10.0), (2, "B", 25.0), (4, "new", 40.0)]


def test_merge_on_a_compound_key_deletes_superseded_rows_and_inserts_the_rest(spark, lake, table):
    """silver's SCD2 merge (silver.job.SUPERSEDED): keyed on (id, valid_from); a source row whose
    is_current is null deletes its match and is never inserted, the others update or insert."""
    schema = "id int, valid_from int, valid_to int, is_current boolean"
    lake.append(table, rows(spark, [(1, 1, None, True), (2, 1, 5, False), (2, 5, None, True)], schema))
    source = [
        (1, 1, 3, False),  # closed by a new version: updated
        (1, 3, None, True),  # the new version: inserted
        (2, 5, None, None),  # absorbed by a late version: deleted
        (2, 4, None, True),  # the late version: inserted
        (3, 1, None, None),  # superseded and unmatched: not inserted
    ]
    superseded = "s.is_current IS NULL"
    spec = MergeSpec(keys=("id", "valid_from"), delete_when=superseded, insert_when=f"NOT ({superseded})")
    lake.merge(table, rows(spark, source, schema), spec)
    got = sorted((tuple(r) for r in lake.read(table).collect()), key=lambda r: r[:2])
    assert got == [(1, 1, 3, False), (1, 3, None, True), (2, 1, 5, False), (2, 4, None, True)]


def test_merge_into_a_missing_table_creates_it(spark, lake, table):
    lake.merge(table, rows(spark, BASE), MergeSpec(keys=("id",)))
    assert lake.read(table).count() == 3


def test_merge_into_a_missing_table_applies_the_insert_clause(spark, lake, table):
    source = rows(spark, [(1, "keep", 1.0, "d1"), (2, "deleted", 2.0, "d1")])
    lake.merge(
        table,
        source,
        MergeSpec(keys=("id",), delete_when="s.name = 'deleted'", insert_when="s.name <> 'deleted'"),
    )
    assert [r["name"] for r in lake.read(table).collect()] == ["keep"]
    other = str(table) + "_no_insert"
    lake.merge(other, source, MergeSpec(keys=("id",), insert=False))
    assert lake.exists(other) and lake.read(other).count() == 0


def test_a_merge_counted_to_match_nothing_commits_as_an_append_of_what_it_inserts(spark, lake, table):
    """`matched=0` (the caller counted no source row matching a table row): the table a MERGE
    leaves, committed as an append (no scan for matches), with the merge's metadata and Txn."""
    source = rows(spark, [(4, "d", 4.0, "d1"), (5, "skip", 5.0, "d3")])
    spec = MergeSpec(keys=("id",), delete_when="s.name = 'gone'", insert_when="s.name <> 'skip'")
    merged = str(table) + "_merged"
    for path in (table, merged):
        lake.append(path, rows(spark, BASE), partition_by=["day"])
    txn = Txn("contract.unmatched", 7)
    written = lake.merge(
        table, source, spec, partition_by=["day"], metadata={"batch": "b1"}, txn=txn, matched=0
    )
    lake.merge(merged, source, spec, partition_by=["day"])
    assert_df_equality(contents(lake, table), contents(lake, merged), ignore_nullable=True)
    (commit,) = lake.history(table, 1)
    assert (commit.operation, commit.metadata, written.version) == ("WRITE", {"batch": "b1"}, 1)
    again = lake.merge(table, source, spec, partition_by=["day"], txn=txn, matched=0)
    assert again.skipped and lake.version(table) == 1
    # Columns in another order and a new nullable one: taken by name, as the MERGE takes them.
    wider = rows(
        spark, [("web", "d2", 6.0, "f", 6)], "channel string, day string, amount double, name string, id int"
    )
    lake.merge(table, wider, spec, partition_by=["day"], matched=0)
    lake.merge(merged, wider, spec, partition_by=["day"])
    assert_df_equality(
        contents(lake, table), contents(lake, merged), ignore_nullable=True, ignore_column_order=True
    )
    assert contents(lake, table).where("id = 6").first()["channel"] == "web"


def test_merge_without_insert_only_touches_matches(spark, lake, table):
    lake.append(table, rows(spark, BASE))
    lake.merge(
        table, rows(spark, [(2, "B", 1.0, "d1"), (8, "h", 8.0, "d1")]), MergeSpec(keys=("id",), insert=False)
    )
    assert sorted(r["name"] for r in lake.read(table).collect()) == ["B", "a", "c"]


def test_merge_insert_only_and_conditional_insert(spark, lake, table):
    lake.append(table, rows(spark, BASE))
    source = rows(spark, [(1, "A", 1.0, "d1"), (4, "d", 4.0, "d1"), (5, "skip", 5.0, "d1")])
    lake.merge(table, source, MergeSpec(keys=("id",), update=False, insert_when="s.name <> 'skip'"))
    assert sorted((r["id"], r["name"]) for r in lake.read(table).collect()) == [
        (1, "a"),
        (2, "b"),
        (3, "c"),
        (4, "d"),
    ]


def test_read_changes_returns_rows_appended_after_a_version(spark, lake, table):
    lake.append(table, rows(spark, BASE[:1]))
    lake.append(table, rows(spark, BASE[1:]))
    lake.append(table, rows(spark, [(4, "d", 4.0, "d4")]))
    ids = lambda after, until: sorted(r["id"] for r in lake.read_changes(table, after, until).collect())  # noqa: E731
    assert ids(-1, 2) == [1, 2, 3, 4]
    assert ids(-1, 1) == [1, 2, 3]
    assert ids(0, 2) == [2, 3, 4]
    assert ids(0, 1) == [2, 3]
    assert ids(2, 2) == []
    lake.optimize(table)
    assert ids(2, 3) == []  # compaction rewrites files but adds no rows
    assert lake.read_changes(table, 0, 2).columns == lake.read(table).columns


def test_delete_by_predicate(spark, lake, table):
    lake.append(table, rows(spark, BASE))
    lake.delete(table, "amount >= 20")
    assert [r["id"] for r in lake.read(table).collect()] == [1]


def test_a_failed_delete_names_the_table_but_not_its_condition(spark, lake, table):
    """An erasure's condition holds a person's ids and emails: an error printed to the operator
    (and kept in logs) names the table and what failed, never the condition."""
    lake.append(table, rows(spark, BASE))
    with pytest.raises(LakeError) as raised:
        lake.delete(table, "no_such_column = 'jane@x.com'")
    assert table in str(raised.value) and "delete failed: " in str(raised.value)
    kind = str(raised.value).split("delete failed: ")[1]
    assert kind and "jane" not in str(raised.value)  # what kind of error, never its condition
    assert lake.read(table).count() == len(BASE)  # nothing deleted


def test_delete_on_a_missing_table_names_it(spark, lake, table):
    with pytest.raises(LakeError, match="no Delta table"):
        lake.delete(table, "id = 1")


def test_txn_write_lands_at_most_once(spark, lake, table):
    first = lake.append(table, rows(spark, BASE[:1]), txn=Txn("app", 0))
    again = lake.append(table, rows(spark, BASE[:1]), txn=Txn("app", 0))
    older = lake.append(table, rows(spark, BASE[:1]), txn=Txn("app", -1))
    newer = lake.append(table, rows(spark, BASE[1:2]), txn=Txn("app", 1))
    other_app = lake.append(table, rows(spark, BASE[2:]), txn=Txn("other", 0))
    assert not first.skipped and again.skipped and older.skipped
    assert not newer.skipped and not other_app.skipped
    assert lake.read(table).count() == 3
    assert lake.transaction_version(table, "app") == 1
    assert lake.transaction_version(table, "unknown") is None


def test_txn_applies_to_merge_too(spark, lake, table):
    lake.append(table, rows(spark, BASE))
    spec = MergeSpec(keys=("id",))
    lake.merge(table, rows(spark, [(4, "d", 1.0, "d1")]), spec, txn=Txn("m", 5))
    assert lake.merge(table, rows(spark, [(5, "e", 1.0, "d1")]), spec, txn=Txn("m", 5)).skipped
    assert lake.read(table).count() == 4


def test_a_txn_another_writer_committed_after_the_check_lands_at_most_once(spark, lake, table, monkeypatch):
    """Two runs of one step: each checks the Txn before committing, then the other commits first.
    The engine's own commit must still see the Txn and skip; version 0 too (a step's first)."""
    lake.append(table, rows(spark, BASE))
    spec = MergeSpec(keys=("id",))
    lake.merge(table, rows(spark, [(4, "d", 1.0, "d1")]), spec, txn=Txn("m", 0))
    monkeypatch.setattr(type(lake), "already_committed", lambda *a: False)  # checked before it landed
    late = lake.merge(
        table, rows(spark, [(4, "late", 2.0, "d1"), (5, "e", 1.0, "d1")]), spec, txn=Txn("m", 0)
    )
    appended = lake.append(table, rows(spark, [(6, "f", 1.0, "d1")]), txn=Txn("m", 0))
    assert sorted((r["id"], r["name"]) for r in lake.read(table).collect()) == [
        (1, "a"), (2, "b"), (3, "c"), (4, "d"),
    ]  # fmt: skip
    assert late.skipped and appended.skipped
    assert lake.version(table) == 1


def test_commit_metadata_and_history(spark, lake, table):
    lake.append(table, rows(spark, BASE[:1]), metadata={"watermark": "2026-01-01T00:00:00", "n": 1})
    lake.append(table, rows(spark, BASE[1:2]))
    lake.merge(
        table, rows(spark, BASE[2:]), MergeSpec(keys=("id",)), metadata={"watermark": "2026-01-02T00:00:00"}
    )
    history = lake.history(table)
    assert [c.version for c in history] == [2, 1, 0]
    # metrics are numbers whichever engine wrote them: one source row inserted by the merge
    assert history[0].metrics["numTargetRowsInserted"] == 1
    assert history[2].metrics["numOutputRows"] == 1
    assert history[0].operation == "MERGE" and history[2].metadata == {
        "watermark": "2026-01-01T00:00:00",
        "n": 1,
    }
    assert lake.latest_metadata(table, "watermark") == "2026-01-02T00:00:00"
    assert lake.latest_metadata(table, "absent") is None


def test_commit_metadata_of_a_version_range_reads_only_the_commits_after_it(spark, lake, table, monkeypatch):
    """(after, until]: the bronze ledger's catch-up from the file commits it has not recorded."""
    assert lake.commit_metadata(table, -1, 5) == {}  # no table
    for i in range(4):
        lake.append(table, rows(spark, BASE[i % len(BASE) : i % len(BASE) + 1]), metadata={"batch": i})
    lake.optimize(table)  # a commit without metadata: present, empty
    assert lake.commit_metadata(table, 0, 2) == {1: {"batch": 1}, 2: {"batch": 2}}
    assert lake.commit_metadata(table, 2, 9) == {3: {"batch": 3}, 4: {}}
    assert lake.commit_metadata(table, 3, 3) == {} and lake.commit_metadata(table, 4, 9) == {}
    history = {c.version: c.metadata for c in lake.history(table)}
    assert lake.commit_metadata(table, -1, 4) == history
    monkeypatch.setattr(type(lake), "read", lambda *a, **k: pytest.fail("a table scan"))
    assert lake.commit_metadata(table, 2, 4) == {3: {"batch": 3}, 4: {}}


def test_snapshot_key_follows_commits_and_tells_a_table_made_anew(spark, lake, table):
    """(table id, version): the same while nothing commits, the next version after a commit,
    the same from either engine, and a new id for a table created anew at the same path."""
    import shutil

    from pipeline.lake import open_lake

    assert lake.snapshot_key(table) is None
    lake.append(table, rows(spark, BASE[:1]))
    first = lake.snapshot_key(table)
    assert first is not None and first[1] == 0 and lake.snapshot_key(table) == first
    lake.append(table, rows(spark, BASE[1:2]))
    second = lake.snapshot_key(table)
    assert second == (first[0], 1)
    assert {open_lake(e, spark).snapshot_key(table) for e in ("delta-spark", "delta-rs")} == {second}
    shutil.rmtree(table)
    lake.append(table, rows(spark, BASE[:1]))
    lake.append(table, rows(spark, BASE[1:2]))
    again = lake.snapshot_key(table)
    assert again is not None and again[1] == 1 and again[0] != first[0]


def test_latest_metadata_reads_the_newest_commits_only(spark, lake, delta_rs_lake, table, monkeypatch):
    """A position is found in a bounded read of the log's tail, however long the history; one
    further back (commits without it on top, as maintenance leaves them) in a longer read."""
    for v in range(3 * METADATA_PAGE):  # delta-rs writes the history fast; `lake` reads it
        delta_rs_lake.append(table, spark.range(1), metadata={"old": v, **({"new": v} if v % 2 else {})})
    limits = []
    newest = lake._newest_metadata  # each engine's bounded read of the log's tail
    monkeypatch.setattr(
        lake, "_newest_metadata", lambda path, limit: limits.append(limit) or newest(path, limit)
    )
    assert lake.latest_metadata(table, "new") == 3 * METADATA_PAGE - 1
    assert limits == [METADATA_PAGE]
    assert newest(table, METADATA_PAGE) == [c.metadata for c in lake.history(table, METADATA_PAGE)]
    for _ in range(METADATA_PAGE + 1):  # newer commits without "old" nor "new"
        delta_rs_lake.append(table, spark.range(1), metadata={"other": 1})
    limits.clear()
    assert lake.latest_metadata(table, "old") == 3 * METADATA_PAGE - 1
    assert limits == [METADATA_PAGE, METADATA_PAGE**2]
    limits.clear()
    assert lake.latest_metadata(table, "absent") is None
    assert limits == [METADATA_PAGE, METADATA_PAGE**2]  # never written: the whole history, in two reads


def test_a_table_dropped_and_made_anew_is_read_anew(spark, lake, table):
    """What an engine keeps of a table between calls (that it is one, its newest commits'
    metadata) follows the table: dropped, it is absent; made anew, its own commits are read."""
    import shutil

    lake.append(table, rows(spark, BASE[:1]), metadata={"n": 1})
    lake.append(table, rows(spark, BASE[1:2]), metadata={"n": 2})
    assert lake.exists(table) and lake.latest_metadata(table, "n") == 2
    shutil.rmtree(table)
    assert not lake.exists(table) and lake.version(table) is None
    assert lake.latest_metadata(table, "n") is None
    lake.append(table, rows(spark, BASE[:1]), metadata={"n": 3})
    lake.append(table, rows(spark, BASE[1:2]), metadata={"m": 4})
    assert lake.exists(table) and lake.version(table) == 1
    assert lake.latest_metadata(table, "n") == 3  # the new table's version 0, not the old one's 1


def test_transaction_version_is_the_apps_latest_however_far_back(spark, lake, delta_rs_lake, table):
    """An app's Txn in the newest commits, one further back than those (under later commits of
    another app), and one never committed."""
    delta_rs_lake.append(table, rows(spark, BASE[:1]), txn=Txn("early", 3))
    for v in range(METADATA_PAGE + 1):  # delta-rs writes the history fast; `lake` reads it
        delta_rs_lake.append(table, rows(spark, BASE[1:2]), txn=Txn("late", v))
    assert lake.transaction_version(table, "late") == METADATA_PAGE
    assert lake.transaction_version(table, "early") == 3
    assert lake.transaction_version(table, "never") is None
    assert lake.already_committed(table, Txn("early", 3))
    assert not lake.already_committed(table, Txn("early", 4))


def test_delta_rs_refuses_a_write_above_its_byte_limit_naming_the_table(spark, table, tmp_path):
    small = open_lake("delta-rs", spark, max_bytes=2_000)
    small.append(table, rows(spark, BASE), metadata={"n": 1})
    big = spark.range(1_000).selectExpr("cast(id as int) id", "'x' name", "double(1) amount", "'d1' day")
    for write in (lambda: small.append(table, big), lambda: small.merge(table, big, MergeSpec(keys=("id",)))):
        with pytest.raises(
            LakeError,
            match=rf"{table}: (append|merge) through the driver reached .* MiB, above lake.delta_rs_max_bytes .*delta-spark",
        ):
            write()
    assert small.version(table) == 0 and small.read(table).count() == 3  # nothing written


def test_delta_rs_names_the_table_and_the_fix_when_a_write_does_not_fit_the_driver(
    spark, delta_rs_lake, table, monkeypatch
):
    """A write whose collection runs the driver out of memory before delta-rs can measure it (a
    scale-10 silver table on a 3g driver: Spark reports the task result lost, the heap's
    OutOfMemoryError only in its log) fails as a LakeError naming the table and what to do, and
    writes nothing; Spark's other failures name the table, their cause kept."""
    delta_rs_lake.append(table, rows(spark, BASE))
    big = rows(spark, BASE[:1])

    def lost(self):
        raise RuntimeError(
            "An error occurred while calling o24413.getResult.: org.apache.spark.SparkException: Job "
            "aborted due to stage failure: Task 1 in stage 287.0 failed 1 times, most recent failure: "
            "Lost task 1.0 in stage 287.0 (TID 677) (localhost executor driver): TaskResultLost (result "
            "lost from block manager)"
        )

    monkeypatch.setattr(type(big), "toArrow", lost)
    for write in (lambda: delta_rs_lake.append(table, big), lambda: delta_rs_lake.overwrite(table, big)):
        with pytest.raises(
            LakeError,
            match=rf"{table}: (append|overwrite) through the driver did not fit in the driver's memory .*"
            r"lake.delta_rs_max_bytes .*delta-spark.*spark.driver_memory.*spark.parallel_steps",
        ):
            write()
    assert delta_rs_lake.version(table) == 0
    monkeypatch.setattr(type(big), "toArrow", lambda self: 1 / 0)
    with pytest.raises(LakeError, match=rf"^{table}: append failed computing its rows") as other:
        delta_rs_lake.append(table, big)
    assert isinstance(other.value.__cause__, ZeroDivisionError)  # kept: retries classify the chain


def test_delta_rs_refuses_a_change_feed_above_its_byte_limit(spark, delta_rs_lake, table):
    delta_rs_lake.append(table, rows(spark, BASE[:1]))
    delta_rs_lake.append(
        table, spark.range(1_000).selectExpr("cast(id as int) id", "'x' name", "double(1) amount", "'d1' day")
    )
    assert delta_rs_lake.read_changes(table, 0, 1).count() == 1_000  # the default limit holds it
    with pytest.raises(LakeError, match=rf"{table}: change feed of versions 1-1 through the driver reached"):
        open_lake("delta-rs", spark, max_bytes=2_000).read_changes(table, 0, 1)


def test_delta_rs_byte_limit_must_be_positive(spark):
    with pytest.raises(ConfigError, match="lake.delta_rs_max_bytes"):
        open_lake("delta-rs", spark, max_bytes=0)


def test_optimize_compacts_without_changing_contents(spark, lake, table):
    for row in BASE:
        lake.append(table, rows(spark, [row]).coalesce(1))
    before = contents(lake, table).collect()
    summary = lake.optimize(table)
    assert contents(lake, table).collect() == before
    assert lake.history(table, 1)[0].operation == "OPTIMIZE"
    # three one-file commits compacted into one file, reported in the same shape by both engines
    assert summary == {
        "numFilesAdded": 1,
        "numFilesRemoved": 3,
        "partitionsOptimized": 1,
        "totalConsideredFiles": 3,
    }


def test_file_stats_count_the_snapshots_files_and_optimize_honours_a_target_size(
    spark, lake, table, tmp_path
):
    for i in range(6):
        lake.append(table, rows(spark, [(i, "x" * 200, float(i), "d1")]).coalesce(1))
    root = tmp_path / "t"
    on_disk = sorted(root.glob("*.parquet"))
    stats = lake.file_stats(table)
    assert stats.files == 6 == len(on_disk)
    assert stats.bytes == sum(p.stat().st_size for p in on_disk)
    # a target smaller than two files together: nothing can be merged
    lake.optimize(table, target_file_bytes=min(p.stat().st_size for p in on_disk) + 1)
    assert lake.file_stats(table).files == 6
    lake.optimize(table, target_file_bytes=64 * 1024 * 1024)
    assert lake.file_stats(table).files == 1
    assert sorted(r["id"] for r in lake.read(table).collect()) == list(range(6))


def test_groups_partition_values_tells_whether_an_append_needs_a_repartition_for_one_file_a_value(
    spark, lake, table, tmp_path
):
    """Every task of the frame holds every day. An engine that groups partition values writes
    one file a day as it is, into a new table and into an existing one (silver's usual case, a
    merge counted to match nothing); the other one a file per task and day, and one a day only
    once the frame is repartitioned by the partition column (what silver's large appends do)."""
    days = [f"d{i}" for i in range(5)]

    def spread(first_id: int):  # round robin: each of the 4 tasks holds every day
        data = [(i, "x", float(i), days[i % len(days)]) for i in range(first_id, first_id + 200)]
        return rows(spark, data).repartition(4)

    def files_a_day(path: str) -> set[int]:
        return {len(list(d.glob("*.parquet"))) for d in Path(path).glob("day=*")}

    per_write = 1 if lake.groups_partition_values else 4
    lake.append(table, spread(0), partition_by=["day"])
    assert files_a_day(table) == {per_write}
    lake.merge(table, spread(200), MergeSpec(keys=("id",)), partition_by=["day"], matched=0)
    assert files_a_day(table) == {2 * per_write}
    again = str(tmp_path / "again")
    lake.append(again, spread(0).repartition("day"), partition_by=["day"])
    assert files_a_day(again) == {1}
    assert sorted(r["id"] for r in lake.read(table).collect()) == list(range(400))
    assert sorted(r["id"] for r in lake.read(again).collect()) == list(range(200))


def test_checkpoint_writes_one_for_the_current_version_readable_by_both_engines(spark, lake, table, tmp_path):
    for i in range(3):
        lake.append(table, rows(spark, [(i, "a", 1.0, "d1")]))
    lake.checkpoint(table)
    log = tmp_path / "t" / "_delta_log"
    assert (log / "00000000000000000002.checkpoint.parquet").exists()
    assert '"version":2' in (log / "_last_checkpoint").read_text().replace(" ", "")
    for engine in ("delta-spark", "delta-rs"):
        assert open_lake(engine, spark).read(table).count() == 3


def test_vacuum_removes_unreferenced_files_and_keeps_the_current_snapshot(spark, lake, table, tmp_path):
    lake.append(table, rows(spark, BASE))
    lake.overwrite(table, rows(spark, BASE[:1]))
    root = tmp_path / "t"
    data_files = lambda: {str(p.relative_to(root)) for p in root.rglob("*.parquet")}  # noqa: E731
    before = data_files()
    deleted = lake.vacuum(table, retention_hours=0, enforce_retention=False)
    assert deleted and deleted == sorted(before - data_files())
    assert [r["id"] for r in lake.read(table).collect()] == [1]
    # gold reads how many files a VACUUM deleted (none: its inputs' old versions are all there)
    [end] = [c for c in lake.history(table, 2) if c.operation == "VACUUM END"]
    assert end.metrics["numDeletedFiles"] == len(deleted)


def test_timestamps_with_and_without_time_zone_keep_their_types(spark, lake, table):
    """A Parquet unload's TIMESTAMP_NTZ column stays timestamp_ntz in the table's schema and its
    reads: bronze compares the next file's types with the table's (a file seen as another type
    is rejected)."""
    df = spark.sql(
        "SELECT 1 AS id, TIMESTAMP_NTZ'2024-01-02 03:04:05' AS local_ts, TIMESTAMP'2024-01-02 03:04:05' AS ts"
    )
    lake.append(table, df)
    types = {f.name: f.dataType.simpleString() for f in lake.schema(table).fields}
    assert (types["local_ts"], types["ts"]) == ("timestamp_ntz", "timestamp")
    assert lake.read(table).schema["local_ts"].dataType.simpleString() == "timestamp_ntz"
    lake.append(table, df.withColumn("id", F.lit(2)))
    changes = lake.read_changes(table, 0, 1)
    assert changes.schema["local_ts"].dataType.simpleString() == "timestamp_ntz"
    assert [r["local_ts"] for r in changes.collect()] == [datetime(2024, 1, 2, 3, 4, 5)]


def test_vacuum_removes_deleted_rows_change_data_and_orphaned_files(spark, lake, table, tmp_path):
    """After an erasure's DELETE, the deleted rows live in the files the delete replaced and in the
    change feed's `_change_data` files; a writer that lost a commit race leaves an orphaned data
    file. VACUUM past the retention removes all of them on both engines."""
    lake.append(table, rows(spark, BASE))
    lake.delete(table, "id = 2")
    root = tmp_path / "t"
    assert list((root / "_change_data").glob("*.parquet"))  # the deleted row's change data
    current = {str(p.relative_to(root)) for p in root.glob("*.parquet")}
    (root / "part-00000-orphan.snappy.parquet").write_bytes(next(root.glob("*.parquet")).read_bytes())
    lake.vacuum(table, retention_hours=0, enforce_retention=False)
    left = {str(p.relative_to(root)) for p in root.rglob("*.parquet") if "_delta_log" not in p.parts}
    assert not any(f.startswith("_change_data") or "orphan" in f for f in left), left
    assert sorted(r["id"] for r in lake.read(table).collect()) == [1, 3]
    assert left <= current


def test_vacuum_in_a_bucket_is_in_the_table_history(spark, lake, s3_endpoint, request, monkeypatch):
    """Gold decides whether its input's old versions may be gone by the VACUUM commits in the
    input's history; delta-spark writes them by default only on some file systems, not S3."""
    bucket = "lakehouse-vacuum-log"
    if bucket not in {b["Name"] for b in s3_endpoint.client().list_buckets()["Buckets"]}:
        s3_endpoint.create_bucket(bucket)
    s3_endpoint.configure_spark(spark, bucket)
    for key, value in env().items():
        monkeypatch.setenv(key, value)  # delta-rs reads the endpoint's keys from the environment
    engine = (
        lake
        if request.node.callspec.params["lake"] == "delta-spark"
        else open_lake("delta-rs", spark, s3_endpoint.storage_options())
    )
    table = f"s3a://{bucket}/{request.node.callspec.id}/t"
    engine.append(table, rows(spark, BASE))
    engine.overwrite(table, rows(spark, BASE[:1]))
    assert engine.vacuum(table, retention_hours=0, enforce_retention=False)
    assert {"VACUUM START", "VACUUM END"} <= {c.operation for c in engine.history(table)}


def test_dml_leaves_the_session_conf_as_it_found_it(spark, delta_spark_lake, table):
    """delta-spark passes commit metadata to DML through session conf: a value the cluster had
    set before must survive the operation (EMR sets defaults there)."""
    key = "spark.databricks.delta.commitInfo.userMetadata"
    delta_spark_lake.append(table, rows(spark, BASE))
    spark.conf.set(key, "cluster default")
    try:
        delta_spark_lake.delete(table, "id = 1", metadata={"why": "test"})
        delta_spark_lake.merge(table, rows(spark, BASE[:1]), MergeSpec(keys=("id",)), metadata={"n": 2})
        assert spark.conf.get(key) == "cluster default"
        assert [c.metadata for c in delta_spark_lake.history(table, 2)] == [{"n": 2}, {"why": "test"}]
    finally:
        spark.conf.unset(key)
    delta_spark_lake.delete(table, "id = 2", metadata={"why": "again"})
    assert spark.conf.get(key, None) is None


def test_steps_side_by_side_commit_with_their_own_metadata(spark, lake, tmp_path):
    """Steps run at once (spark.parallel_steps) each work in a clone of the run's session
    (`RunContext.for_step`): the commit metadata one step's DML puts in its session conf never
    lands on another step's commit, nor is it lost when the other restores its conf. Both steps
    commit in lockstep (a barrier before each), so a shared session would mix them up."""
    run = RunContext(None, spark, lake, None, "r1")  # settings and catalogue: unused here
    tables = {name: str(tmp_path / name) for name in ("left", "right")}
    for path in tables.values():
        lake.append(path, rows(spark, BASE))
    barrier = threading.Barrier(len(tables), timeout=120)

    def step(name: str) -> None:
        ctx = run.for_step()
        assert ctx.spark is not spark and ctx.lake.spark is ctx.spark
        for i in range(3):
            barrier.wait()
            source = rows(ctx.spark, [(1, f"{name}{i}", float(i), "d1")])
            ctx.lake.merge(tables[name], source, MergeSpec(keys=("id",)), metadata={"step": name, "i": i})

    with ThreadPoolExecutor(len(tables)) as pool:
        list(pool.map(step, tables))
    for name, path in tables.items():
        assert [(c.metadata.get("step"), c.metadata.get("i")) for c in lake.history(path, 3)] == [
            (name, i) for i in range(2, -1, -1)
        ]
    assert spark.conf.get("spark.databricks.delta.commitInfo.userMetadata", None) is None


def test_merge_from_a_source_persisted_on_disk(spark, lake, table):
    """A source the caller persisted (silver's batches) merges as any other; delta-spark reads it
    from the cache for both of MERGE's passes instead of copying it first (Delta's 'materialize
    source' job), and leaves the session's setting as it was."""
    from pyspark import StorageLevel

    key = "spark.databricks.delta.merge.materializeSource"
    lake.append(table, rows(spark, BASE))
    source = rows(spark, [(2, "B", 25.0, "d1"), (3, "gone", 0.0, "d2"), (4, "new", 40.0, "d3")])
    source = source.persist(StorageLevel.MEMORY_AND_DISK)
    spec = MergeSpec(keys=("id",), delete_when="s.name = 'gone'")
    group = f"merge-persisted-{lake.name}"
    spark.sparkContext.setJobGroup(group, group)
    try:
        lake.merge(table, source, spec)
    finally:
        for prop in ("spark.jobGroup.id", "spark.job.description"):
            spark.sparkContext.setLocalProperty(prop, None)  # type: ignore[arg-type]
        source.unpersist()
    assert sorted((r["id"], r["name"]) for r in lake.read(table).collect()) == [
        (1, "a"),
        (2, "B"),
        (4, "new"),
    ]
    store = spark.sparkContext._jsc.sc().statusStore()
    described = [
        store.job(j).description() for j in spark.sparkContext.statusTracker().getJobIdsForGroup(group)
    ]
    assert not [d.get() for d in described if d.isDefined() and "materialize source" in d.get()]
    assert spark.conf.get(key, None) is None


TYPED = (
    "id int, big bigint, amount decimal(18,2), rate decimal(38,10), score double, ok boolean, day date, "
    "at timestamp, props map<string,string>, tags array<string>, name string"
)


@pytest.mark.parametrize("handed_over", ["as rows", "as its plan"])
def test_merge_of_a_persisted_source_keeps_every_column_type(spark, lake, table, monkeypatch, handed_over):
    """delta-spark hands a small persisted source to MERGE as its rows (a local relation of its
    Arrow table) and a large one as its cached plan: both give the table every value and type the
    source held, as delta-rs does (decimals at full precision, timestamps to the microsecond, maps,
    arrays, nulls)."""
    from datetime import datetime
    from decimal import Decimal

    from pyspark import StorageLevel

    from pipeline.lake import delta_spark

    if handed_over == "as its plan":
        monkeypatch.setattr(delta_spark, "LOCAL_SOURCE_ROWS", 0)
    at = datetime(2026, 3, 1, 23, 59, 59, 123456)
    first = [
        (1, 2**40, Decimal("1.00"), Decimal("0.1"), 0.5, True, date(2026, 3, 1), at, {"a": "1"}, ["x"], "a")
    ]
    lake.append(table, rows(spark, first, TYPED))
    changed = [
        (1, -(2**62), Decimal("9999999999999999.99"), Decimal("1234567890123456789012345678.0123456789"),
         -1e300, False, date(1970, 1, 1), datetime(1900, 1, 1, 0, 0, 0, 1), {"k": None, "é": "ü"}, [], "b"),
        (2, None, None, None, None, None, None, None, None, None, None),
    ]  # fmt: skip
    source = rows(spark, changed, TYPED).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        lake.merge(table, source, MergeSpec(keys=("id",)))
    finally:
        source.unpersist()
    assert_df_equality(contents(lake, table), rows(spark, changed, TYPED), ignore_nullable=True)


def test_the_session_has_delta_and_auto_picks_delta_spark(spark):
    assert open_lake("auto", spark).name == "delta-spark"


def test_auto_falls_back_to_delta_rs_on_a_session_without_the_jars(tmp_path):
    """A machine without jvm/jars/spark: a fresh Spark (its own JVM) without them gets delta-rs
    and one line saying how to get the jars."""
    script = textwrap.dedent(
        """
        import logging, sys
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
        from pipeline.lake import open_lake
        from pipeline.settings import Settings, SparkSettings
        from pipeline.spark import build_spark
        spark = build_spark(Settings(spark=SparkSettings(master="local[1]", driver_memory="1g")))
        print(open_lake("auto", spark).name)
        spark.stop()
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=180, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "delta-rs"
    notice = [line for line in done.stderr.splitlines() if "lake.engine auto" in line]
    assert len(notice) == 1 and "make setup" in notice[0]


@pytest.mark.parametrize("first,second", [("delta-rs", "delta-spark"), ("delta-spark", "delta-rs")])
def test_one_engine_continues_a_table_the_other_wrote(spark, table, first, second, request):
    """Positions kept in commit metadata and Txn ids are read back by the other engine, and the
    change feed the first engine's table carries serves the second."""
    a = request.getfixturevalue(f"{first.replace('-', '_')}_lake")
    b = request.getfixturevalue(f"{second.replace('-', '_')}_lake")
    a.append(table, rows(spark, BASE[:2]), metadata={"watermark": "w1"}, txn=Txn("ingest", 3))
    assert b.latest_metadata(table, "watermark") == "w1"
    assert b.transaction_version(table, "ingest") == 3
    assert b.append(table, rows(spark, BASE[:2]), txn=Txn("ingest", 3)).skipped
    b.append(table, rows(spark, BASE[2:]), metadata={"watermark": "w2"}, txn=Txn("ingest", 4))
    b.merge(table, rows(spark, [(1, "A", 11.0, "d1")]), MergeSpec(keys=("id",)))
    assert a.latest_metadata(table, "watermark") == "w2" and a.transaction_version(table, "ingest") == 4
    assert sorted(r["id"] for r in a.read_changes(table, 0, 1).collect()) == [3]
    for engine in (a, b):
        assert sorted((r["id"], r["name"]) for r in engine.read(table).collect()) == [
            (1, "A"),
            (2, "b"),
            (3, "c"),
        ]


@pytest.mark.parametrize("first,second", [("delta-rs", "delta-spark"), ("delta-spark", "delta-rs")])
def test_one_engine_continues_a_date_partitioned_table_the_other_created(
    spark, table, first, second, request
):
    """Silver's events and bronze's landing tables are partitioned by date: the other engine
    appends to and merges into them in the partitioning the first created (a new date, a null
    date, an existing one), and both read every row with its date back."""
    a = request.getfixturevalue(f"{first.replace('-', '_')}_lake")
    b = request.getfixturevalue(f"{second.replace('-', '_')}_lake")
    schema = "id int, name string, event_date date"
    a.append(
        table,
        rows(spark, [(1, "a", date(2024, 1, 1)), (2, "b", date(2024, 1, 2))], schema),
        partition_by=["event_date"],
    )
    b.append(
        table,
        rows(spark, [(3, "c", date(2024, 1, 2)), (4, "d", date(2024, 1, 9)), (5, "e", None)], schema),
        partition_by=["event_date"],
    )
    b.merge(
        table,
        rows(spark, [(2, "B", date(2024, 1, 2)), (6, "f", date(2024, 1, 1))], schema),
        MergeSpec(keys=("id", "event_date")),
        partition_by=["event_date"],
    )
    expected = [
        (1, "a", date(2024, 1, 1)),
        (2, "B", date(2024, 1, 2)),
        (3, "c", date(2024, 1, 2)),
        (4, "d", date(2024, 1, 9)),
        (5, "e", None),
        (6, "f", date(2024, 1, 1)),
    ]
    for engine in (a, b):
        assert (
            sorted(tuple(r) for r in engine.read(table).select("id", "name", "event_date").collect())
            == expected
        )
        assert engine.column_max(table, "event_date") == date(2024, 1, 9)
    assert sorted(r["id"] for r in a.read_changes(table, 0, 1).collect()) == [3, 4, 5]
    # Each engine's files sit in the table's date folders, where the other looks for them.
    folders = {p.parent.name for p in Path(table).rglob("*.parquet")}
    assert folders == {
        "event_date=2024-01-01",
        "event_date=2024-01-02",
        "event_date=2024-01-09",
        "event_date=__HIVE_DEFAULT_PARTITION__",
    }


def test_row_count_is_the_rows_a_read_returns_at_each_version(spark, lake, table):
    """The silver gate's row count after a merge starts from it (delta-rs answers from the log's
    record counts): appends, a partitioned append, updates, deletes, an overwrite, time travel."""
    schema = "id int, name string, event_date date"
    lake.append(
        table, rows(spark, [(1, "a", date(2024, 1, 1)), (2, "b", None)], schema), partition_by=["event_date"]
    )
    lake.append(table, rows(spark, [(3, "c", date(2024, 1, 2))], schema))
    lake.merge(
        table,
        rows(spark, [(1, "A", date(2024, 1, 1)), (2, "gone", None), (4, "d", date(2024, 1, 3))], schema),
        MergeSpec(keys=("id",), delete_when="s.name = 'gone'"),
    )
    lake.delete(table, "id = 3")
    lake.overwrite(table, rows(spark, [(5, "e", date(2024, 1, 5))], schema))
    counts = [lake.read(table, v).count() for v in range(5)]
    assert counts == [2, 3, 3, 2, 1]
    assert [lake.row_count(table, v) for v in range(5)] == counts
    assert lake.row_count(table) == 1
    lake.delete(table, "id IS NOT NULL")  # no data file left
    assert lake.row_count(table) == 0 == lake.read(table).count()


def test_column_max_is_the_max_of_a_partition_or_data_column_at_a_version(spark, lake, table):
    schema = "id int, event_date date"
    first = [(1, date(2024, 1, 1)), (2, None), (3, date(2024, 1, 3))]
    lake.append(table, rows(spark, first, schema), partition_by=["event_date"])
    lake.append(table, rows(spark, [(4, date(2024, 1, 9))], schema))
    lake.delete(table, "id = 4")  # its file leaves the snapshot: its partition value no longer counts
    assert [lake.column_max(table, "event_date", v) for v in (0, 1, None)] == [
        date(2024, 1, 3),
        date(2024, 1, 9),
        date(2024, 1, 3),
    ]
    assert lake.column_max(table, "id") == 3  # a data column: aggregated
    lake.delete(table, "event_date IS NOT NULL")
    assert lake.read(table).count() == 1 and lake.column_max(table, "event_date") is None  # only a null left
