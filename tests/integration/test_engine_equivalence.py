"""Both Delta engines, end to end, in one lake that changes engine twice: delta-rs runs the whole
DAG on the oldest three fifths of every dataset's landing files, delta-spark continues it with the
next fifth (tables delta-rs created), and delta-rs again with the newest fifth (tables delta-spark
wrote last); delta-rs takes the long run, being the faster engine on data this small. Each run
must find the positions the other engine left (bronze file ledger, silver consumed versions, gold
input versions, stream checkpoints) and process only what is new, so the lake ends as the
suite's delta-rs run over the whole landing zone in one go (`pipeline_run`) ends.

That the whole DAG gives identical tables on either engine from an empty lake is the S3 test's
comparison (tests/integration/test_s3_lake.py: delta-spark in a bucket against the same
reference). Tables are compared as tests/lake_compare.py does (run-metadata columns aside).
"""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest

from pipeline.app import local_executor
from pipeline.driver.runner import run_steps
from tests.helpers import make_ctx
from tests.lake_compare import DAG, assert_same_tables, lake_tables

pytestmark = pytest.mark.slow

# (engine, share of every dataset's landing files that has arrived by its run)
RUNS = (("delta-rs", 0.6), ("delta-spark", 0.8), ("delta-rs", 1.0))


def run_dag(spark, lake: Path, engine: str, run_id: str) -> None:
    ctx = make_ctx(spark, lake, run_id=run_id, engine=engine)
    out = io.StringIO()
    # Steps side by side as a local run takes them (spark.parallel_steps, config/local.yaml).
    state = run_steps(ctx, DAG, DAG.order(), out, executor=local_executor(ctx.settings.spark.parallel_steps))
    assert not state.failed, out.getvalue()


# A stream's replay files are named by partition and first offset (`<topic>-p<partition>-<offset>`):
# their order is the partition's, so each partition's files arrive in order of their own.
STREAM_PARTITION = re.compile(r"-p(\d+)-\d+\.[a-z]+$")


def arrivals(catalog, landing: Path) -> list[tuple[str, float, Path]]:
    """(dataset, share, file) of every landing file: a file's position among its dataset's
    files (a stream's: its partition's) sorted by path, where dates, partition folders and
    offsets sort, as a share of them; the files up to a share are the oldest."""
    shares = []
    for name, spec in catalog.datasets.items():
        groups: dict[str, list[Path]] = {}
        for path in sorted((landing / spec.landing).rglob("*")):
            if path.is_file() and not path.name.startswith(("_", ".")):
                partition = STREAM_PARTITION.search(path.name)
                groups.setdefault(partition.group(1) if partition else "", []).append(path)
        for files in groups.values():
            shares += [(name, (i + 1) / len(files), p) for i, p in enumerate(files)]
    return shares


def tables_in(ctx) -> set[tuple[str, str]]:
    return {t for t in lake_tables(ctx) if ctx.lake.exists(ctx.table_path(*t))}


def test_a_lake_continued_by_the_other_engine_and_back_equals_one_run_over_it_all(
    spark, tmp_path, generated_landing, pipeline_run
):
    """DQ gates are off: they judge tables, they do not change them (tests/unit/test_dq.py and
    the gate runs test them), and they would add a third to these runs' cost."""
    lake = tmp_path / "lake"
    landing = lake / "landing"
    catalog = make_ctx(spark, lake).catalog
    shares = arrivals(catalog, generated_landing)
    arrived = 0.0
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAKEHOUSE_DQ", "off")
        for i, (engine, share) in enumerate(RUNS):
            new = [(d, p) for d, s, p in shares if arrived < s <= share]
            # Every dataset delivers in every run: one with nothing yet would fail its silver step.
            assert {d for d, _ in new} == set(catalog.datasets), (
                f"run {i} ({engine}): a dataset has no new file"
            )
            for _, path in new:
                target = landing / path.relative_to(generated_landing)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
            run_dag(spark, lake, engine, f"run{i}-{engine}")
            arrived = share
            if i == 0:
                created = tables_in(make_ctx(spark, lake))
    # The first run, delta-rs, created every table: the second engine continues them all.
    assert tables_in(make_ctx(spark, lake)) == created
    _, reference, _ = pipeline_run
    assert_same_tables(make_ctx(spark, lake), make_ctx(spark, reference))
