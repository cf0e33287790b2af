"""A generated landing zone shared by the integration tests (generated once per session)."""

from __future__ import annotations

import io
import json
import shutil

import pytest

from pipeline.cli import observers_for
from pipeline.driver.dag import load_dag
from pipeline.driver.runner import run_steps
from pipeline.generate import generate
from pipeline.jobs import JOBS
from tests.helpers import REPO, make_ctx

SCALE, SEED, DEFECT_RATE = 0.02, 7, 0.02


@pytest.fixture(scope="session")
def generated_landing(tmp_path_factory):
    """A pristine landing zone; tests copy it into their own lake before changing anything."""
    root = tmp_path_factory.mktemp("generated") / "landing"
    generate(root, scale=SCALE, seed=SEED, defect_rate=DEFECT_RATE)
    return root


@pytest.fixture(scope="session")
def pipeline_run(spark, tmp_path_factory, generated_landing):
    """The whole DAG run once on the generated landing zone, shared by the integration tests
    that only read its tables and what its observers wrote (ctx, lake folder, outcome per step)."""
    lake = tmp_path_factory.mktemp("pipeline") / "lake"
    shutil.copytree(generated_landing, lake / "landing")
    ctx = make_ctx(spark, lake, run_id="first")
    dag = load_dag(REPO / "config" / "pipeline.yaml", set(JOBS))
    out = io.StringIO()
    # Watched as `lakehouse run` watches it: lineage, metrics, alerts, Data Docs, report.
    state = run_steps(ctx, dag, dag.order(), out, observers=observers_for(ctx.settings, dag))
    assert not state.failed, out.getvalue()
    return ctx, lake, {s.step: s for s in state.steps}


@pytest.fixture
def fresh_lake(tmp_path, generated_landing):
    lake = tmp_path / "lake"
    shutil.copytree(generated_landing, lake / "landing")
    return lake


def manifest(lake) -> dict:
    return json.loads((lake / "landing" / "_manifest.json").read_text())
