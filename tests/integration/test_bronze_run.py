"""Whole bronze runs on generated data, accounted against the generator's manifest."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.app import local_executor
from pipeline.driver.dag import load_dag
from pipeline.driver.runner import run_steps
from pipeline.jobs import JOBS
from tests.helpers import REPO, make_ctx
from tests.integration.conftest import manifest

pytestmark = pytest.mark.slow

DAG = load_dag(REPO / "config" / "pipeline.yaml", set(JOBS))
CSV_DATASETS = ("crm_accounts", "crm_contacts", "crm_opportunities")


BRONZE_STEPS = [s for s in DAG.order() if s.startswith("bronze_")]


def run_bronze(ctx):
    out = io.StringIO()
    state = run_steps(ctx, DAG, BRONZE_STEPS, out, executor=local_executor())
    assert not state.failed, out.getvalue()
    return state


def bronze(ctx, dataset):
    return ctx.lake.read(ctx.table_path("bronze", dataset))


@pytest.fixture
def bronze_lake(pipeline_run):
    ctx, lake, outcomes = pipeline_run
    yield ctx, lake, outcomes
    ctx.run_id = "first"


def test_every_landing_record_reaches_bronze(bronze_lake):
    ctx, lake, outcomes = bronze_lake
    expected = manifest(lake)["datasets"]
    assert set(expected) == set(ctx.catalog.datasets)
    got = {name: bronze(ctx, name).count() for name in expected}
    assert got == {name: d["records"] for name, d in expected.items()}
    reported = {name: outcomes[f"bronze_{name}"].rows_out for name in expected}
    assert reported == got


def test_every_bronze_row_carries_the_audit_columns(bronze_lake):
    ctx, _, _ = bronze_lake
    for name in ctx.catalog.datasets:
        df = bronze(ctx, name)
        missing = df.filter(
            "_ingestion_ts is null or _source_system is null or _source_file is null or _batch_id is null"
        ).count()
        assert missing == 0, name
        assert df.select("_batch_id").distinct().count() >= 1


@pytest.mark.parametrize("dataset", CSV_DATASETS)
def test_malformed_csv_lines_keep_their_raw_text(bronze_lake, dataset):
    ctx, lake, _ = bronze_lake
    defects = manifest(lake)["datasets"][dataset]["defects"]
    corrupt = bronze(ctx, dataset).filter("_corrupt_record is not null").cache()
    assert corrupt.count() == defects["malformed_line"]
    landing_text = "\n".join(
        p.read_text() for p in (lake / "landing").rglob("*.csv") if dataset.split("_")[1] in p.name
    )
    for row in corrupt.collect():
        assert row["_corrupt_record"] in landing_text
        assert row["_parse_error"].startswith("malformed CSV record")
        assert Path(row["_source_file"].removeprefix("file:")).exists()


def test_corrupt_fx_files_and_kafka_values_keep_their_raw_text(bronze_lake):
    ctx, lake, _ = bronze_lake
    defects = manifest(lake)["datasets"]
    fx_corrupt = bronze(ctx, "fx_rates").filter("_corrupt_record is not null").collect()
    assert len(fx_corrupt) == defects["fx_rates"]["defects"]["corrupt_file"]
    for row in fx_corrupt:
        assert row["_corrupt_record"] == Path(row["_source_file"].removeprefix("file:")).read_text()
    kafka_corrupt = bronze(ctx, "kafka_events").filter("_corrupt_record is not null").collect()
    assert len(kafka_corrupt) == defects["kafka_events"]["defects"]["malformed_value"]
    assert all(r["_corrupt_record"] == r["value"] for r in kafka_corrupt)


def test_schema_drift_adds_a_column_without_shifting_values(bronze_lake):
    ctx, lake, _ = bronze_lake
    for dataset in (*CSV_DATASETS, "snowflake_orders"):
        landing_header = set(_first_header(lake, dataset))
        extra = set(bronze(ctx, dataset).columns) - landing_header - _audit_and_partition(dataset)
        assert len(extra) == 1, (dataset, extra)
        (column,) = extra
        drifted = bronze(ctx, dataset).filter(f"`{column}` is not null")
        assert drifted.count() > 0 and drifted.select("_source_file").distinct().count() == 1


def _landing_newest(lake, spec) -> datetime | None:
    """The newest event time of a dataset's landing files, read without Spark: the catalogue's
    `event_time` column of every record that parses (malformed lines, unreadable documents and
    unparseable values left out), as bronze is meant to report it."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    def parse(text):
        try:
            value = datetime.fromisoformat(text)
        except (TypeError, ValueError):
            return None
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    files = [p for p in (lake / "landing" / spec.landing).rglob(f"*{spec.file_suffix}") if p.stat().st_size]
    found: list[datetime] = []
    for path in files:
        if spec.reader == "csv":
            header, *rows = list(csv.reader(io.StringIO(path.read_text(), newline="")))
            col = header.index(spec.event_time)
            found += [v for r in rows if len(r) == len(header) and (v := parse(r[col])) is not None]
        elif spec.reader == "parquet":
            newest = pc.max(pq.ParquetFile(path).read(columns=[spec.event_time]).column(0)).as_py()
            found += [newest] if newest is not None else []
        elif spec.reader == "fx_json":
            try:
                doc = json.loads(path.read_text())
            except ValueError:
                continue
            if isinstance(doc, dict) and doc.get("rates") and (v := parse(doc.get("date"))):
                found.append(v)
    return max(found, default=None)


@pytest.mark.parametrize("dataset", [*CSV_DATASETS, "snowflake_orders", "redshift_behavior", "fx_rates"])
def test_bronze_reports_the_newest_event_time_of_its_batch(bronze_lake, dataset):
    ctx, lake, outcomes = bronze_lake
    spec = ctx.catalog[dataset]
    expected = _landing_newest(lake, spec)
    assert expected is not None, dataset
    reported = outcomes[f"bronze_{dataset}"].details["newest_data_at"]
    assert datetime.fromisoformat(reported) == expected, dataset


def test_rerun_adds_nothing_and_commits_nothing(bronze_lake):
    ctx, _, _ = bronze_lake
    versions = {n: ctx.lake.version(ctx.table_path("bronze", n)) for n in ctx.catalog.datasets}
    ctx.run_id = "second"
    state = run_bronze(ctx)
    assert all(s.rows_out == 0 for s in state.steps)
    assert {n: ctx.lake.version(ctx.table_path("bronze", n)) for n in ctx.catalog.datasets} == versions


def _first_header(lake, dataset):
    import pyarrow.parquet as pq

    folder = (
        lake
        / "landing"
        / {"snowflake_orders": "snowflake/orders"}.get(dataset, "crm/" + dataset.split("_")[1])
    )
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.stat().st_size > 0)
    if dataset == "snowflake_orders":
        return pq.read_schema(files[0]).names
    return files[0].read_text().splitlines()[0].split(",")


def _audit_and_partition(dataset):
    from pipeline.bronze.audit import AUDIT_COLUMNS

    return set(AUDIT_COLUMNS) | ({"date"} if dataset == "snowflake_orders" else set())


def test_backfill_window_ingests_only_landing_dates_inside_it(spark, fresh_lake):
    from datetime import date

    from pipeline.bronze.ingest import landing_date
    from pipeline.driver.window import DateWindow

    ctx = make_ctx(spark, fresh_lake, run_id="backfill")
    window = DateWindow(date(2026, 9, 10), date(2026, 9, 16))  # inside the generated 33 days
    state = run_steps(
        ctx,
        DAG,
        ["bronze_snowflake_orders", "bronze_fx_rates"],
        io.StringIO(),
        window=window,
        executor=local_executor(),
    )
    assert not state.failed
    for dataset in ("snowflake_orders", "fx_rates"):
        files = {r[0] for r in bronze(ctx, dataset).select("_source_file").distinct().collect()}
        days = {landing_date(f) for f in files}
        assert days and all(date(2026, 9, 10) <= d <= date(2026, 9, 16) for d in days), (dataset, days)
    assert landing_date("file:/l/crm/accounts/accounts_20260701.csv") == date(2026, 7, 1)
    assert landing_date(
        "file:/l/redshift/behavior_events/event_date=2026-07-02/0000_part_00.parquet"
    ) == date(2026, 7, 2)


def _records_in(path: Path) -> int:
    """Data records of a landing file, counted without Spark: CSV lines after the header, Parquet rows."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return max(len(lines) - 1, 0)


def test_empty_files_are_the_landing_files_without_records(pipeline_run):
    """Bronze reports as empty exactly the landing files that hold no record (the injected 0-byte
    export, header-only days), not every file: Spark's `file:/a` and the landing listing's
    `file:///a` name the same file."""
    ctx, lake, outcomes = pipeline_run
    checked = 0
    for name, spec in ctx.catalog.datasets.items():
        if spec.reader not in ("csv", "parquet"):
            continue
        files = [
            p
            for p in (lake / "landing" / spec.landing).rglob(f"*{spec.file_suffix}")
            if not p.name.startswith(("_", "."))
        ]
        without_records = sum(_records_in(p) == 0 for p in files)
        assert outcomes[f"bronze_{name}"].details["empty_files"] == without_records, name
        assert without_records < len(files), name
        checked += without_records
    assert checked >= sum(d["defects"].get("empty_file", 0) for d in manifest(lake)["datasets"].values())
