"""Both Delta engines, end to end: the whole DAG on one landing zone gives identical bronze,
silver, quarantine and gold tables on delta-spark and on delta-rs, and a lake one engine wrote is
continued by the other (an incremental run after the first) with the same result as the suite's
delta-rs run over the whole landing zone in one go (`pipeline_run`).

Tables are compared as tests/lake_compare.py does (run-metadata columns aside).
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from pipeline.app import local_executor
from pipeline.driver.runner import run_steps
from tests.helpers import make_ctx
from tests.lake_compare import DAG, assert_same_tables

pytestmark = pytest.mark.slow

ENGINES = ("delta-spark", "delta-rs")
HELD_BACK_SHARE = 0.2  # the newest fifth of every dataset's landing files arrives in the second run


def run_dag(spark, lake: Path, engine: str, run_id: str) -> None:
    ctx = make_ctx(spark, lake, run_id=run_id, engine=engine)
    out = io.StringIO()
    # Steps side by side as a local run takes them (spark.parallel_steps, config/local.yaml).
    state = run_steps(ctx, DAG, DAG.order(), out, executor=local_executor(ctx.settings.spark.parallel_steps))
    assert not state.failed, out.getvalue()


def hold_back_newest(landing: Path, held: Path) -> int:
    """Move the newest share of each dataset folder's files (by name: dates and offsets sort) to
    `held`, keeping their relative paths; returns how many moved."""
    moved = 0
    folders = {p.parent for p in landing.rglob("*") if p.is_file() and not p.name.startswith(("_", "."))}
    datasets = {f for f in folders if not any(f != g and f.is_relative_to(g) for g in folders)}
    for folder in sorted(datasets):
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(("_", ".")))
        for path in files[len(files) - int(len(files) * HELD_BACK_SHARE) :]:
            target = held / path.relative_to(landing)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)
            moved += 1
    return moved


@pytest.fixture(scope="module")
def first_runs(spark, tmp_path_factory, generated_landing):
    """The whole DAG once per engine on one landing zone: the generated one less the newest
    fifth of every dataset's files, which is kept back for the second runs. DQ gates are off:
    they judge tables, they do not change them (tests/unit/test_dq.py and the gate runs test them),
    and they would double these runs' cost."""
    root = tmp_path_factory.mktemp("engines")
    landing = root / "landing"
    shutil.copytree(generated_landing, landing)
    held = root / "held"
    assert hold_back_newest(landing, held) > 0
    lakes = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAKEHOUSE_DQ", "off")
        for engine in ENGINES:
            lakes[engine] = root / engine
            shutil.copytree(landing, lakes[engine] / "landing")
            run_dag(spark, lakes[engine], engine, f"first-{engine}")
    return lakes, held


def test_the_whole_dag_gives_identical_tables_on_both_engines(spark, first_runs):
    lakes, _ = first_runs
    assert_same_tables(make_ctx(spark, lakes["delta-spark"]), make_ctx(spark, lakes["delta-rs"]))


@pytest.mark.parametrize("first", ENGINES)
def test_a_lake_one_engine_wrote_is_continued_by_the_other(spark, first_runs, pipeline_run, first):
    """The other engine finds the first one's positions (bronze file ledger, silver consumed
    versions, gold input versions, stream checkpoints) and processes only what is new: the lake
    ends as the suite's delta-rs run over the whole landing zone in one go does."""
    lakes, held = first_runs
    _, reference, _ = pipeline_run
    second = next(e for e in ENGINES if e != first)
    lake = lakes[first]
    shutil.copytree(held, lake / "landing", dirs_exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAKEHOUSE_DQ", "off")
        run_dag(spark, lake, second, f"then-{second}")
    assert_same_tables(make_ctx(spark, lake), make_ctx(spark, reference))
