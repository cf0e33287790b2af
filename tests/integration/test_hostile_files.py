"""Hostile landing files through the bronze steps as `lakehouse run` runs them (the project's
observers watching): each bad file is rejected, named and recorded, its neighbours land, the next
run leaves it alone, a re-delivered file is retried; two writers racing on one table add each
landing file once."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import shutil
import threading
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipeline.app import local_executor
from pipeline.app.observers import observers_for
from pipeline.bronze.ingest import ingest_files, rejected_files
from pipeline.bronze.rejected import Rejection
from pipeline.driver.dag import load_dag
from pipeline.driver.retry import explain
from pipeline.driver.runner import run_steps
from pipeline.generate import generate
from pipeline.generate.defects import add_hostile_files
from pipeline.jobs import JOBS
from pipeline.storage import LandingFile, LandingKeys
from tests.helpers import REPO, make_ctx

pytestmark = pytest.mark.slow

DAG = load_dag(REPO / "config" / "pipeline.yaml", set(JOBS))
DATASETS = {  # dataset -> the hostile file bronze must reject there (None: lands, flagged)
    "snowflake_orders": "truncated_parquet",
    "crm_contacts": "garbage_csv",
    "fx_rates": "broken_gzip_json",
    "crm_accounts": None,
}
STEPS = [f"bronze_{d}" for d in DATASETS]


@pytest.fixture(scope="module")
def small_landing(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile") / "landing"
    generate(root, scale=0.005, seed=11, defect_rate=0.02, days=7)
    return root


def run(ctx, run_id, steps=STEPS):
    ctx.run_id = run_id
    out = io.StringIO()
    # Steps side by side as `lakehouse run` takes them (spark.parallel_steps): bronze steps each
    # recording their rejections into one new table.
    executor = local_executor(ctx.settings.spark.parallel_steps)
    state = run_steps(ctx, DAG, steps, out, observers=observers_for(ctx.settings, DAG), executor=executor)
    assert not state.failed, out.getvalue()
    return {s.step.removeprefix("bronze_"): s for s in state.steps}


def records(landing, dataset) -> int:
    """Records of a dataset's landing files counted without Spark (hostile files excluded)."""
    manifest = json.loads((landing / "_manifest.json").read_text())
    return manifest["datasets"][dataset]["records"]


def test_bad_files_are_rejected_named_and_left_alone_until_they_change(spark, tmp_path, small_landing):
    lake = tmp_path / "lake"
    shutil.copytree(small_landing, lake / "landing")
    hostile = add_hostile_files(lake / "landing")
    ctx = make_ctx(spark, lake)

    first = run(ctx, "first")
    for dataset, kind in DATASETS.items():
        details = first[dataset].details
        assert details["rejected_files"] == (kind is not None), dataset
        if kind:
            ((entry),) = details["rejected"]
            assert entry["path"].endswith(hostile[kind].name), dataset
    # The good files landed: every generated record, plus the invalid-UTF-8 export's rows.
    utf8_file = hostile["invalid_utf8_csv"]
    utf8_rows = len([line for line in utf8_file.read_bytes().split(b"\n")[1:] if line.strip()])
    for dataset in DATASETS:
        expected = records(small_landing, dataset) + (utf8_rows if dataset == "crm_accounts" else 0)
        assert ctx.lake.read(ctx.table_path("bronze", dataset)).count() == expected, dataset
        assert first[dataset].rows_out == expected, dataset

    rejected = {r["dataset"]: r for r in ctx.lake.read(ctx.table_path("_ops", "rejected_files")).collect()}
    assert set(rejected) == {d for d, kind in DATASETS.items() if kind}
    for dataset, row in rejected.items():
        path = hostile[DATASETS[dataset]]
        assert row["path"].endswith(path.name) and row["size"] == path.stat().st_size
        assert row["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert row["run_id"] == "first" and row["batch_id"].endswith(f"-first:{dataset}")
        assert "Py4J" not in row["reason"] and "An error occurred while calling" not in row["reason"]
    assert "not a complete Parquet file" in rejected["snowflake_orders"]["reason"]
    assert "not a CSV header" in rejected["crm_contacts"]["reason"]
    assert "EOFException" in rejected["fx_rates"]["reason"]  # the gzip stream's root cause

    # Invalid UTF-8: the row is kept, flagged, and its raw bytes are recoverable.
    (flagged,) = (
        ctx.lake.read(ctx.table_path("bronze", "crm_accounts"))
        .filter("_parse_error like 'invalid UTF-8%'")
        .collect()
    )
    assert flagged["_source_file"].endswith(utf8_file.name)
    assert base64.b64decode(flagged["_corrupt_record"]) == utf8_file.read_bytes().split(b"\n")[1]

    # The metric and the run report see the rejections.
    datums = [
        json.loads(line) for line in (lake / "_ops" / "metrics" / "first.jsonl").read_text().splitlines()
    ]
    got = {d["dimensions"]["Dataset"]: d["value"] for d in datums if d["metric"] == "RejectedFiles"}
    assert got == {d: float(kind is not None) for d, kind in DATASETS.items()}

    versions = {d: ctx.lake.version(ctx.table_path("bronze", d)) for d in DATASETS}
    second = run(ctx, "second")
    for dataset, kind in DATASETS.items():
        assert second[dataset].rows_out == 0 and second[dataset].details["rejected_files"] == 0
        assert second[dataset].details.get("rejected_unchanged", 0) == (kind is not None), dataset
    assert {d: ctx.lake.version(ctx.table_path("bronze", d)) for d in DATASETS} == versions
    assert ctx.lake.read(ctx.table_path("_ops", "rejected_files")).count() == len(rejected)

    # The unload is delivered again, whole: the next run retries and ingests it.
    whole = sorted(
        p for p in hostile["truncated_parquet"].parent.glob("*.parquet") if p != hostile["truncated_parquet"]
    )
    shutil.copy(whole[0], hostile["truncated_parquet"])
    third = run(ctx, "third")
    assert third["snowflake_orders"].rows_out == pq.ParquetFile(whole[0]).metadata.num_rows
    assert third["snowflake_orders"].details["rejected_files"] == 0
    assert sum(s.rows_out for s in third.values()) == third["snowflake_orders"].rows_out


def race(writers, dataset):
    """Every writer ingests `dataset` at once (one thread each, released together)."""
    go = threading.Barrier(len(writers))
    results, errors = [], []

    def ingest(ctx):
        go.wait()
        try:
            results.append(ingest_files(ctx, dataset))
        except Exception as exc:  # noqa: BLE001 - the caller asserts there is none
            errors.append(exc)

    threads = [threading.Thread(target=ingest, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


@pytest.mark.parametrize("engine", ["delta-rs", "delta-spark"])
def test_two_writers_racing_on_one_table_add_each_file_once(spark, tmp_path, small_landing, engine):
    """Two writers past the run lease (two contexts, one lake) ingest the same new files at the
    same moment, in two rounds: each landing file is in bronze once."""
    lake = tmp_path / "lake"
    shutil.copytree(small_landing, lake / "landing")
    dataset, folder = "crm_opportunities", lake / "landing" / "crm" / "opportunities"
    late = sorted(p for p in folder.glob("*.csv") if p.stat().st_size)
    held = {p: p.read_bytes() for p in late[-2:]}
    for p in held:
        p.unlink()  # the second round's deliveries
    writers = [make_ctx(spark, lake, run_id=f"writer-{w}", engine=engine) for w in "ab"]
    for round_ in range(2):
        if round_:
            for p, data in held.items():
                p.write_bytes(data)
        results, errors = race(writers, dataset)
        assert not errors, [explain(e).chain for e in errors]
        assert sorted(r.rows_out > 0 for r in results) == [False, True], [r.details for r in results]
    table = writers[0].lake.read(writers[0].table_path("bronze", dataset))
    per_file = {
        r["_source_file"]: r["n"]
        for r in table.groupBy("_source_file")
        .agg({"*": "count"})
        .withColumnRenamed("count(1)", "n")
        .collect()
    }
    landed = {p.name for p in folder.glob("*.csv") if p.stat().st_size and p.read_text().count("\n") > 1}
    assert {f.rsplit("/", 1)[1] for f in per_file} == landed
    assert table.count() == records(small_landing, dataset)
    commits = [
        c
        for c in writers[0].lake.history(writers[0].table_path("bronze", dataset))
        if "landing_files" in c.metadata
    ]
    assert len(commits) == 2  # one file commit per round, from one writer


@pytest.mark.parametrize("engine", ["delta-spark", "delta-rs"])
def test_steps_side_by_side_both_record_their_first_rejections(spark, tmp_path, engine, monkeypatch):
    """Two bronze steps at once (spark.parallel_steps) each record a rejected file in a lake that
    has no rejected_files table yet, their appends starting at the same moment: both rows land
    (not one step failing on the table's creation, which Delta gives one writer)."""
    ctx = make_ctx(spark, tmp_path / "lake", engine=engine)
    table = rejected_files(ctx)
    together = threading.Barrier(2, timeout=2)
    append = ctx.lake.append

    def append_together(*args, **kwargs):
        with contextlib.suppress(threading.BrokenBarrierError):  # the other waits for this one
            together.wait()
        return append(*args, **kwargs)

    monkeypatch.setattr(ctx.lake, "append", append_together)
    errors: list[BaseException] = []

    def record(dataset: str) -> None:
        landed = LandingFile(f"file:/landing/{dataset}/bad.csv", f"/landing/{dataset}/bad.csv", 9, 0)
        keys = LandingKeys("file:/landing", dataset)
        try:
            table.record(
                dataset, [Rejection(landed, "garbage")], "side-by-side", dataset, keys, {landed.uri: "0" * 64}
            )
        except Exception as exc:  # the assertion below names it
            errors.append(exc)

    steps = [threading.Thread(target=record, args=(d,)) for d in ("crm_contacts", "fx_rates")]
    for t in steps:
        t.start()
    for t in steps:
        t.join()
    assert not errors, [explain(e).chain for e in errors]
    rows = ctx.lake.read(table.path).select("dataset", "path").collect()
    assert sorted(tuple(r) for r in rows) == [
        ("crm_contacts", "crm_contacts/bad.csv"),
        ("fx_rates", "fx_rates/bad.csv"),
    ]


# One engine: each refuses a retyped column itself (the lake contract); bronze's check before the
# write is the same on both. delta-rs: the cheaper one, and the one refusing a second spelling.
@pytest.mark.parametrize("engine", ["delta-rs"])
def test_a_file_whose_column_changed_type_is_rejected_naming_the_column(
    spark, small_landing, tmp_path, engine
):
    """An export whose types changed (an amount as text, a timestamp as epoch seconds) cannot
    join bronze: delta-spark would fail every run on it, delta-rs would cast it (epoch seconds
    read as microseconds: orders placed in 1970). The file is rejected naming the column and
    both types; a good file beside it lands; and bronze holds no value of the bad files."""
    lake = tmp_path / "lake"
    shutil.copytree(small_landing, lake / "landing")
    ctx = make_ctx(spark, lake, engine=engine)
    orders = lake / "landing" / "snowflake" / "orders"
    assert ingest_files(ctx, "snowflake_orders").rows_out > 0
    good = pq.read_table(sorted(orders.glob("*/*.parquet"))[0])
    day = orders / "date=2026-12-01"
    day.mkdir()

    def renumbered(table, prefix):
        ids = pa.array([f"ORD-{prefix}{i:05d}" for i in range(table.num_rows)])
        return table.set_column(table.schema.get_field_index("order_id"), "order_id", ids)

    amounts = pa.array(["abc"] * good.num_rows)
    text = renumbered(good, "8").set_column(good.schema.get_field_index("amount"), "amount", amounts)
    pq.write_table(text, day / "amount_as_text.parquet")
    first = ingest_files(ctx, "snowflake_orders")  # alone in its batch: read, then refused
    assert (first.rows_out, first.details["rejected_files"]) == (0, 1)
    (reason,) = [r["reason"] for r in first.details["rejected"]]
    assert "`amount` is string here, decimal(18,2) in bronze" in reason and "re-deliver" in reason

    seconds = pc.cast(pc.divide(pc.cast(good["order_ts"], pa.int64()), 1_000_000), pa.int64())
    epoch = renumbered(good, "9").set_column(good.schema.get_field_index("order_ts"), "order_ts", seconds)
    pq.write_table(epoch, day / "order_ts_as_epoch_seconds.parquet")
    pq.write_table(renumbered(good, "7"), day / "good.parquet")
    second = ingest_files(ctx, "snowflake_orders")  # with a good file: the batch read fails first
    assert (second.rows_out, second.details["rejected_files"]) == (good.num_rows, 1)
    (rejected,) = second.details["rejected"]
    assert rejected["path"].endswith("order_ts_as_epoch_seconds.parquet")
    assert "`order_ts` is bigint here, timestamp in bronze" in rejected["reason"]
    bronze = ctx.lake.read(ctx.table_path("bronze", "snowflake_orders"))
    assert bronze.where("order_id LIKE 'ORD-8%' OR order_id LIKE 'ORD-9%'").count() == 0
    assert bronze.where("order_id LIKE 'ORD-7%'").count() == good.num_rows
    assert bronze.where("year(order_ts) < 2000").count() == 0

    # An unreadable file (nanosecond timestamps, pandas' default) arriving with one that differs
    # from bronze and a good one whose columns are named in upper case: the first two are set
    # aside one after the other, the third lands under bronze's spelling (delta-rs refuses a
    # second spelling of a column; it failed every run on it).
    day = orders / "date=2026-12-02"
    day.mkdir()
    nanos = renumbered(good, "6")
    for column in ("order_ts", "updated_at"):
        at = nanos.schema.get_field_index(column)
        nanos = nanos.set_column(at, column, pc.cast(nanos[column], pa.timestamp("ns", tz="UTC")))
    pq.write_table(nanos, day / "nanos.parquet", coerce_timestamps=None, allow_truncated_timestamps=False)
    floats = pa.array([1.5] * good.num_rows)
    pq.write_table(
        renumbered(good, "5").set_column(good.schema.get_field_index("amount"), "amount", floats),
        day / "float_amount.parquet",
    )
    upper = renumbered(good, "4")
    pq.write_table(upper.rename_columns([c.upper() for c in upper.column_names]), day / "upper_case.parquet")
    third = ingest_files(ctx, "snowflake_orders")
    reasons = {r["path"].rsplit("/", 1)[-1]: r["reason"] for r in third.details["rejected"]}
    assert sorted(reasons) == ["float_amount.parquet", "nanos.parquet"]
    assert "nanosecond timestamps" in reasons["nanos.parquet"]
    assert "`amount` is double here, decimal(18,2) in bronze" in reasons["float_amount.parquet"]
    assert third.rows_out == good.num_rows
    bronze = ctx.lake.read(ctx.table_path("bronze", "snowflake_orders"))
    assert bronze.where("order_id LIKE 'ORD-4%' AND amount IS NOT NULL").count() == good.num_rows
    assert "order_id" in bronze.columns and "ORDER_ID" not in bronze.columns


# A re-delivery is bronze's ledger and silver's ordering, the same on either engine.
@pytest.mark.parametrize("engine", ["delta-rs"])
def test_a_corrected_file_redelivered_under_its_name_reaches_silver(spark, small_landing, tmp_path, engine):
    """A vendor re-sends an unload under the same name with one amount corrected (and nothing
    else changed, its updated_at included): bronze ingests it again as a new delivery, named in
    the step's details, and silver takes the corrected amount (the later delivery wins a tie)."""
    lake = tmp_path / "lake"
    shutil.copytree(small_landing, lake / "landing")
    ctx = make_ctx(spark, lake, engine=engine)
    steps = ["bronze_snowflake_orders", "silver_orders"]
    run(ctx, "first", steps)
    target = sorted((lake / "landing" / "snowflake" / "orders").glob("*/*.parquet"))[0]
    silver = ctx.table_path("silver", "orders")
    (row,) = ctx.lake.read(silver).where(f"_source_file LIKE '%/{target.name}'").limit(1).collect()
    table = pq.read_table(target)
    at = table["order_id"].to_pylist().index(row["order_id"])
    amounts = table["amount"].to_pylist()
    corrected = amounts[at] + 1000
    amounts[at] = corrected
    amount = table.schema.get_field_index("amount")
    pq.write_table(
        table.set_column(amount, "amount", pa.array(amounts, table.schema.field(amount).type)), target
    )

    second = run(ctx, "second", steps)
    bronze = second["snowflake_orders"].details
    assert [p.rsplit("/", 1)[-1] for p in bronze["redelivered"]] == [target.name]
    assert second["snowflake_orders"].rows_in == table.num_rows
    (now,) = ctx.lake.read(silver).where(f"order_id = '{row['order_id']}'").collect()
    assert now["amount"] == corrected and now["amount"] != row["amount"]
    assert run(ctx, "third", steps)["snowflake_orders"].details["new_files"] == 0


@pytest.mark.parametrize("engine", ["delta-spark", "delta-rs"])
def test_an_unload_typed_wider_reaches_silver_and_a_value_too_big_is_quarantined(
    spark, small_landing, tmp_path, engine
):
    """Snowflake unloads NUMBER(38,2) whatever the values: a file typed decimal(38,2) lands in
    bronze's decimal(18,2) value by value, and the one amount with more than 16 integer digits
    is not nulled or rounded: silver quarantines that order as malformed with the column and the
    value named and the record kept as JSON; its neighbours reach silver with their amounts."""
    lake = tmp_path / "lake"
    shutil.copytree(small_landing, lake / "landing")
    ctx = make_ctx(spark, lake, engine=engine)
    steps = ["bronze_snowflake_orders", "silver_orders"]
    run(ctx, "first", steps)
    orders = lake / "landing" / "snowflake" / "orders"
    good = pq.read_table(sorted(orders.glob("*/*.parquet"))[0])
    at = good.schema.get_field_index("order_id")
    wide = good.set_column(at, "order_id", pa.array([f"ORD-9{i:06d}" for i in range(good.num_rows)]))
    amounts = wide["amount"].to_pylist()
    big = 10 * max(a for a in amounts if a is not None) + Decimal("1e17")
    amounts[0] = big
    amount = wide.schema.get_field_index("amount")
    wide = wide.set_column(amount, "amount", pa.array(amounts, pa.decimal128(38, 2)))
    (orders / "date=2026-12-03").mkdir()
    pq.write_table(wide, orders / "date=2026-12-03" / "number_38_2.parquet")

    second = run(ctx, "second", steps)
    assert second["snowflake_orders"].details["rejected_files"] == 0
    assert second["snowflake_orders"].rows_out == good.num_rows
    ids = wide["order_id"].to_pylist()
    silver = ctx.lake.read(ctx.table_path("silver", "orders")).where("order_id LIKE 'ORD-9%'")
    landed = {r["order_id"]: r["amount"] for r in silver.collect()}
    quarantine = ctx.lake.read(ctx.table_path("quarantine", "orders")).where("order_id LIKE 'ORD-9%'")
    held = {r["order_id"]: r for r in quarantine.collect()}
    assert sorted([*landed, *held]) == ids and len(landed) > 0.9 * len(ids)  # each order once
    assert landed == {i: amounts[ids.index(i)] for i in landed}  # at the file's values
    assert held["ORD-9000000"]["_quarantine_reason"] == "record:malformed"
    assert f"`amount` value {big} does not fit decimal(18,2)" in held["ORD-9000000"]["_parse_error"]
    assert str(big) in held["ORD-9000000"]["_corrupt_record"]
