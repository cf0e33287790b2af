"""Comparing two whole lakes table by table, for tests that end where another run ended: engine
equivalence, a lake continued by the other engine, a killed run resumed on S3.

Run-metadata columns (ingestion time, batch ids) differ between any two runs and are left out;
`_source_file` is compared from its `landing/` part, so lakes at different roots (a folder, a
bucket) compare equal. Rows are compared as multisets by a one-pass fingerprint; only a
difference is looked at row by row. A table's fingerprint is kept per engine and snapshot (table
id and version: equal keys mean equal contents), so the suite's reference lake (`pipeline_run`),
which several tests compare against, is read once.
"""

from __future__ import annotations

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import MapType

from pipeline.driver.dag import load_dag
from pipeline.jobs import JOBS
from pipeline.maintenance import lake_tables as maintained_tables
from tests.helpers import REPO

DAG = load_dag(REPO / "config" / "pipeline.yaml", set(JOBS))
RUN_METADATA = ("_ingestion_ts", "_batch_id", "_quarantine_batch_id")


def lake_tables(ctx) -> list[tuple[str, str]]:
    """(layer, name) of every table a whole run writes: bronze, silver, quarantine, gold (the
    tables maintenance knows; `_ops` holds run records, not data)."""
    return sorted((t.layer, t.name) for t in maintained_tables(ctx) if t.layer != "_ops")


def comparable(df: DataFrame) -> DataFrame:
    """Run metadata dropped, source files from `landing/` on, maps as sorted entry arrays (set
    operations and hashes cannot take maps), columns by name: a column that schema evolution
    added comes last in a lake that met it in a later run, and among the others in a lake that
    met it in the first (consumers select columns by name)."""
    df = df.drop(*RUN_METADATA)
    df = df.select(*(F.col("`" + c.replace("`", "``") + "`") for c in sorted(df.columns)))
    if "_source_file" in df.columns:
        df = df.withColumn("_source_file", F.regexp_replace("_source_file", r"^.*?/landing/", "landing/"))
    for field in df.schema.fields:
        if isinstance(field.dataType, MapType):
            df = df.withColumn(field.name, F.array_sort(F.map_entries(field.name)))
    return df


def fingerprint(df: DataFrame) -> tuple:
    """(rows, two independent sums of row hashes): equal for equal multisets of rows, in one pass
    over the table (decimal sums: ANSI mode refuses a bigint overflow)."""
    h = F.xxhash64(*df.columns)
    row = df.agg(
        F.count(F.lit(1)),
        F.sum(h.cast("decimal(38,0)")),
        F.sum(F.xxhash64(h, F.lit("second")).cast("decimal(38,0)")),
    ).first()
    return tuple(row)


_PRINTS: dict[tuple, tuple] = {}


def table_print(lake, path: str, snapshot: tuple[str, int]) -> tuple:
    """(schema, fingerprint) of the comparable table at `path` as `lake` reads it at `snapshot`
    (its snapshot_key), computed once per engine, path and snapshot."""
    key = (lake.name, path, snapshot)
    if key not in _PRINTS:
        df = comparable(lake.read(path))
        _PRINTS[key] = (df.schema, fingerprint(df))
    return _PRINTS[key]


def _fields(schema, other) -> list[str]:
    """The fields of `schema` that `other` has not by name, type and nullability."""
    theirs = {(f.name, f.dataType, f.nullable) for f in other.fields}
    return [
        f"{f.simpleString()}{'' if f.nullable else ' not null'}"
        for f in schema.fields
        if (f.name, f.dataType, f.nullable) not in theirs
    ]


def assert_same_tables(ctx_a, ctx_b) -> None:
    """Every table of a whole run: present in both lakes (a quarantine table may be absent from
    both: nothing was quarantined), same schema, same rows."""
    for layer, name in lake_tables(ctx_a):
        path_a, path_b = ctx_a.table_path(layer, name), ctx_b.table_path(layer, name)
        snapshots = ctx_a.lake.snapshot_key(path_a), ctx_b.lake.snapshot_key(path_b)
        present = snapshots[0] is not None, snapshots[1] is not None
        assert present[0] == present[1], f"{layer}/{name}: present in {path_a}, {path_b}: {present}"
        if not present[0] and layer == "quarantine":
            continue
        (schema_a, print_a), (schema_b, print_b) = (
            table_print(ctx_a.lake, path_a, snapshots[0]),
            table_print(ctx_b.lake, path_b, snapshots[1]),
        )
        assert schema_a == schema_b, (
            f"{layer}/{name}: schemas differ; only in {path_a}: {_fields(schema_a, schema_b)}; "
            f"only in {path_b}: {_fields(schema_b, schema_a)}"
        )
        if print_a != print_b:
            a, b = comparable(ctx_a.lake.read(path_a)), comparable(ctx_b.lake.read(path_b))
            only_a, only_b = a.exceptAll(b).limit(5).collect(), b.exceptAll(a).limit(5).collect()
            pytest.fail(
                f"{layer}/{name}: {print_a[0]} rows in {path_a}, {print_b[0]} in {path_b}; "
                f"only in the first: {only_a}; only in the second: {only_b}"
            )
        assert print_a[0] > 0 or layer == "quarantine", f"{layer}/{name} is empty"
