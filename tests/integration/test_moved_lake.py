"""A lake moved or copied to another place (a renamed folder, a bucket copied for disaster
recovery, `--lake` naming the same data under another mount) knows the landing files it holds:
bronze remembers them by their path below the landing root (storage.LandingKeys), and reads the
absolute URIs older lakes hold by the same rule."""

from __future__ import annotations

import io
import os
import shutil
import time

import pytest

from pipeline.app import local_executor
from pipeline.bronze import ingest
from pipeline.bronze import ledger as ledger_module
from pipeline.catalog import STREAM_READERS, Catalog, DatasetSpec
from pipeline.driver.runner import run_steps
from pipeline.storage import file_key
from tests.helpers import make_ctx
from tests.integration.test_bronze_run import BRONZE_STEPS, DAG, bronze

pytestmark = pytest.mark.slow

# Lakes are moved where EMR runs them: on its engine. Where bronze keeps its ledger and how each
# engine reads it back is the lake contract's (tests/conftest.py, `lake`).
ENGINES = ["delta-spark"]
SPEC = DatasetSpec(
    source_system="crm", landing="crm/x", reader="csv", description="t", file_suffix=".csv", name="crm_x"
)
GARBAGE = b"\x1f\x8b\x08\x00\xde\xad\xbe\xef,\x00\xff\n\x00\x01"  # gzip bytes under a .csv name


def run_file_bronze(ctx):
    """The bronze steps of the file datasets (a stream's replay files are remembered by its
    Spark checkpoint, not by the ledger)."""
    steps = [s for s in BRONZE_STEPS if DAG.steps[s].dataset in file_datasets(ctx)]
    out = io.StringIO()
    state = run_steps(ctx, DAG, steps, out, executor=local_executor())
    assert not state.failed, out.getvalue()
    return state


def file_datasets(ctx):
    return [n for n, spec in ctx.catalog.datasets.items() if spec.reader not in STREAM_READERS]


def small_ctx(spark, lake, engine, run_id):
    ctx = make_ctx(spark, lake, run_id=run_id, engine=engine)
    ctx.catalog = Catalog({"crm_x": SPEC})
    return ctx


def deliver(lake, name, data: str | bytes):
    path = lake / "landing" / "crm" / "x" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def ops(ctx, name):
    return ctx.lake.read(ctx.table_path("_ops", name)).collect()


def quiet(result) -> tuple[int, int, int]:
    """(rows added, new files, files rejected again) of an ingest step."""
    return result.rows_out, result.details["new_files"], result.details["rejected_files"]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_moved_lake_ingests_no_landing_file_again_and_a_new_one_once(spark, fresh_lake, tmp_path, engine):
    ctx = make_ctx(spark, fresh_lake, run_id="first", engine=engine)
    run_file_bronze(ctx)
    tables = file_datasets(ctx)
    counts = {n: bronze(ctx, n).count() for n in tables}
    versions = {n: ctx.lake.version(ctx.table_path("bronze", n)) for n in tables}

    moved = fresh_lake.rename(tmp_path / "moved")
    ctx = make_ctx(spark, moved, run_id="second", engine=engine)
    state = run_file_bronze(ctx)
    assert {s.step: s.rows_out for s in state.steps if s.rows_out} == {}
    assert {n: bronze(ctx, n).count() for n in tables} == counts
    assert {n: ctx.lake.version(ctx.table_path("bronze", n)) for n in tables} == versions

    accounts = sorted((moved / "landing" / "crm" / "accounts").glob("*.csv"))
    late = next(p for p in accounts if p.stat().st_size > 0).with_name("accounts_29991231.csv")
    shutil.copy(next(p for p in accounts if p.stat().st_size > 0), late)
    newest_before = ctx.lake.latest_metadata(ctx.table_path("bronze", "crm_accounts"), "newest_data_at")
    ctx.run_id = "third"
    state = run_file_bronze(ctx)
    new_rows = bronze(ctx, "crm_accounts").filter(f"_source_file like '%/{late.name}'")
    assert new_rows.count() > 0
    assert {s.step: s.rows_out for s in state.steps if s.rows_out} == {
        "bronze_crm_accounts": new_rows.count()
    }
    assert bronze(ctx, "crm_accounts").count() == counts["crm_accounts"] + new_rows.count()
    assert {r["_batch_id"] for r in new_rows.collect()} == {ctx.batch_id("crm_accounts")}
    assert ctx.batch_id("crm_accounts").endswith("-third:crm_accounts")  # a custom run id, time first
    # A late file of old records does not make the table look older than it is.
    late_step = next(s for s in state.steps if s.step == "bronze_crm_accounts")
    assert late_step.details["newest_data_at"] == newest_before is not None
    (newest,) = ctx.lake.history(ctx.table_path("bronze", "crm_accounts"), 1)  # the ledger's source
    keys = newest.metadata[ingest.FILES_KEY]
    assert f"crm/accounts/{late.name}" in keys and not any("://" in k for k in keys)


@pytest.mark.parametrize("engine", ENGINES)
def test_rejected_files_are_not_judged_again_after_a_move(spark, tmp_path, engine):
    lake = tmp_path / "lake"
    deliver(lake, "a.csv", "id,updated_at\n1,2026-07-01T00:00:00Z\n")
    deliver(lake, "bad.csv", GARBAGE)
    first = ingest.ingest_files(small_ctx(spark, lake, engine, "first"), "crm_x")
    assert quiet(first) == (1, 2, 1)

    moved = lake.rename(tmp_path / "moved")
    ctx = small_ctx(spark, moved, engine, "second")
    again = ingest.ingest_files(ctx, "crm_x")
    assert quiet(again) == (0, 0, 0) and again.details["rejected_unchanged"] == 1
    assert [r["path"] for r in ops(ctx, "rejected_files")] == ["crm/x/bad.csv"]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_lake_with_absolute_keys_finds_nothing_new_in_place_and_after_a_move(
    spark, tmp_path, monkeypatch, engine
):
    """The code before relative keys wrote absolute URIs in the ledger, bronze's commit
    metadata and rejected_files: such a lake keeps its files, in place, moved, and with its
    ledger lost (rebuilt from the commits' absolute lists)."""
    lake = tmp_path / "lake"
    deliver(lake, "a.csv", "id,updated_at\n1,2026-07-01T00:00:00Z\n")
    deliver(lake, "empty.csv", "id,updated_at\n")
    deliver(lake, "bad.csv", GARBAGE)
    monkeypatch.setattr(ledger_module, "CATCH_UP_COMMITS", 1)  # the ledger one bronze commit behind
    with monkeypatch.context() as old:
        old.setattr(ingest, "landing_keys", lambda ctx, dataset: file_key)  # absolute keys
        ctx = small_ctx(spark, lake, engine, "old")
        assert quiet(ingest.ingest_files(ctx, "crm_x")) == (1, 3, 1)
        ingest.ingest_files(ctx, "crm_x")  # its ledger catches up
    table = ctx.table_path("bronze", "crm_x")
    (commit,) = [c for c in ctx.lake.history(table) if ingest.FILES_KEY in c.metadata]
    written = [*commit.metadata[ingest.FILES_KEY], *(r["file"] for r in ops(ctx, "ingested_files"))]
    assert all(f.startswith("file:") for f in written + [r["path"] for r in ops(ctx, "rejected_files")])

    def unchanged(ctx, run_id):
        ctx.run_id = run_id
        result = ingest.ingest_files(ctx, "crm_x")
        assert quiet(result) == (0, 0, 0) and result.details["rejected_unchanged"] == 1, result.details
        assert ctx.lake.read(ctx.table_path("bronze", "crm_x")).count() == 1

    unchanged(small_ctx(spark, lake, engine, "in-place"), "in-place")
    moved = lake.rename(tmp_path / "moved")
    ctx = small_ctx(spark, moved, engine, "moved")
    unchanged(ctx, "moved")
    shutil.rmtree(moved / "_ops" / "ingested_files")  # rebuilt from bronze's commits
    unchanged(ctx, "ledger-lost")
    assert {r["file"] for r in ops(ctx, "ingested_files")} == {"crm/x/a.csv", "crm/x/empty.csv"}

    deliver(moved, "b.csv", "id,updated_at\n2,2026-07-02T00:00:00Z\n")
    ctx.run_id = "new-file"
    assert quiet(ingest.ingest_files(ctx, "crm_x")) == (1, 1, 0)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_table_from_before_the_ledger_finds_nothing_new_after_a_move(spark, tmp_path, engine):
    """Its files are known by the rows' `_source_file` and its commits' `empty_files`, both
    absolute URIs of the place it was written at."""
    lake = tmp_path / "lake"
    deliver(lake, "a.csv", "id,updated_at\n1,2026-07-01T00:00:00Z\n")
    deliver(lake, "empty.csv", "id,updated_at\n")
    ctx = small_ctx(spark, lake, engine, "old")
    landing = lake / "landing" / "crm" / "x"
    rows = spark.createDataFrame([("1", f"file:{landing}/a.csv")], "id string, _source_file string")
    metadata = {"batch_id": "old:crm_x", "empty_files": [f"file://{landing}/empty.csv"]}
    ctx.lake.append(ctx.table_path("bronze", "crm_x"), rows, metadata=metadata)

    moved = lake.rename(tmp_path / "moved")
    ctx = small_ctx(spark, moved, engine, "moved")
    assert quiet(ingest.ingest_files(ctx, "crm_x")) == (0, 0, 0)
    assert {r["file"] for r in ops(ctx, "ingested_files")} == {"crm/x/a.csv", "crm/x/empty.csv"}


# Both engines: files only restamped make bronze commit a batch of no rows, an empty append.
@pytest.mark.parametrize("engine", ["delta-spark", "delta-rs"])
def test_a_lake_copied_with_new_modification_times_ingests_only_what_was_rewritten_since(
    spark, tmp_path, monkeypatch, engine
):
    """`cp -r` and an object store's copy give every file a new modification time. Bronze tells
    such a copy from a rewrite by the bytes (the SHA-256 it keeps of each delivery): it records
    the new stamps in a commit of no rows and ingests nothing again, while a file rewritten
    after the copy, at the same size, is a new delivery."""
    lake = tmp_path / "lake"
    deliver(lake, "a.csv", "id,updated_at\n1,2026-07-01T00:00:00Z\n")
    deliver(lake, "empty.csv", "id,updated_at\n")
    deliver(lake, "bad.csv", GARBAGE)
    monkeypatch.setattr(ledger_module, "CATCH_UP_COMMITS", 1)  # the ledger table holds the hashes too
    ctx = small_ctx(spark, lake, engine, "first")
    # A ledger from before hashes were kept: its appends add the column.
    old = ledger_module.SCHEMA.replace(", sha256 string", "")
    ctx.lake.append(ctx.table_path("_ops", "ingested_files"), spark.createDataFrame([], old))
    assert quiet(ingest.ingest_files(ctx, "crm_x")) == (1, 3, 1)
    ingest.ingest_files(ctx, "crm_x")  # its ledger catches up

    copied = tmp_path / "copied"
    shutil.copytree(lake, copied, copy_function=shutil.copyfile)
    for path in (copied / "landing").rglob("*.csv"):  # copied a minute later
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 60 * 10**9))
    monkeypatch.setattr(ledger_module, "_HELD", {})  # a new process: the hashes come from the ledger
    ctx = small_ctx(spark, copied, engine, "copied")
    table = ctx.table_path("bronze", "crm_x")
    result = ingest.ingest_files(ctx, "crm_x")
    assert quiet(result) == (0, 0, 0), result.details
    assert (result.details["restamped_files"], result.details["rejected_unchanged"]) == (2, 1)
    assert ctx.lake.read(table).count() == 1
    (commit,) = ctx.lake.history(table, 1)
    assert commit.metadata[ingest.RESTAMPED_KEY] == 2  # the last of its landing files
    assert sorted(commit.metadata[ingest.FILES_KEY]) == ["crm/x/a.csv", "crm/x/empty.csv"]

    def nothing_new(run_id: str) -> None:
        ctx.run_id = run_id
        again = ingest.ingest_files(ctx, "crm_x")
        assert quiet(again) == (0, 0, 0) and "restamped_files" not in again.details, again.details

    nothing_new("after-copy")  # the new stamps are known: nothing is hashed again
    shutil.rmtree(copied / "_ops" / "ingested_files")
    monkeypatch.setattr(ledger_module, "_HELD", {})
    nothing_new("ledger-lost")  # rebuilt from bronze's commits, the restamping one included
    a_csv = copied / "landing" / "crm" / "x" / "a.csv"
    os.utime(a_csv, ns=(a_csv.stat().st_atime_ns, a_csv.stat().st_mtime_ns + 60 * 10**9))
    ctx.run_id = "touched"  # the restamping commit kept the hash too
    touched = ingest.ingest_files(ctx, "crm_x")
    assert quiet(touched) == (0, 0, 0) and touched.details["restamped_files"] == 1, touched.details

    deliver(copied, "a.csv", "id,updated_at\n2,2026-07-01T00:00:00Z\n")  # same size, other bytes
    ctx.run_id = "rewritten"
    rewritten = ingest.ingest_files(ctx, "crm_x")
    assert quiet(rewritten) == (1, 1, 0) and "restamped_files" not in rewritten.details
    assert [uri.rsplit("/", 1)[-1] for uri in rewritten.details["redelivered"]] == ["a.csv"]
    assert sorted(r["id"] for r in ctx.lake.read(table).collect()) == ["1", "2"]


def test_a_bucket_copied_for_disaster_recovery_ingests_nothing_again(spark, s3_endpoint):
    """An object store's copy (CopyObject, as `aws s3 sync` between buckets does it) gives every
    object a new Last-Modified: bronze on the copy, on EMR's engine, knows the bytes it holds."""
    client = s3_endpoint.client()
    primary, recovery = "lakehouse-primary", "lakehouse-recovery"
    for bucket in (primary, recovery):
        s3_endpoint.create_bucket(bucket)
        s3_endpoint.configure_spark(spark, bucket)
    for name, day in (("a.csv", 1), ("b.csv", 2)):
        body = f"id,updated_at\n{day},2026-07-0{day}T00:00:00Z\n".encode()
        client.put_object(Bucket=primary, Key=f"lake/landing/crm/x/{name}", Body=body)
    ctx = small_ctx(spark, f"s3a://{primary}/lake", "delta-spark", "first")
    assert quiet(ingest.ingest_files(ctx, "crm_x")) == (2, 2, 0)

    time.sleep(1.1)  # Last-Modified is kept to the second: the copies' differ
    objects = client.list_objects_v2(Bucket=primary, Prefix="lake/")["Contents"]
    for key in (o["Key"] for o in objects):
        client.copy_object(Bucket=recovery, Key=key, CopySource={"Bucket": primary, "Key": key})
    landing = "lake/landing/crm/x/a.csv"
    assert (
        client.head_object(Bucket=recovery, Key=landing)["LastModified"]
        > client.head_object(Bucket=primary, Key=landing)["LastModified"]
    )
    ctx = small_ctx(spark, f"s3a://{recovery}/lake", "delta-spark", "recovered")
    result = ingest.ingest_files(ctx, "crm_x")
    assert quiet(result) == (0, 0, 0) and result.details["restamped_files"] == 2, result.details
    assert ctx.lake.read(ctx.table_path("bronze", "crm_x")).count() == 2
