"""The DAG file: order, selection and the errors a broken file gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.driver.dag import load_dag
from pipeline.settings import ConfigError

REPO = Path(__file__).resolve().parents[2]


def dag_file(tmp_path, text):
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def test_committed_dag_covers_every_dataset_contract_and_mart():
    from pipeline.catalog import load_catalog
    from pipeline.gold import MARTS
    from pipeline.jobs import JOBS

    dag = load_dag(REPO / "config" / "pipeline.yaml", set(JOBS))
    by_job = lambda job: {s.dataset for s in dag.steps.values() if s.job == job}  # noqa: E731
    assert by_job("bronze") == set(load_catalog(REPO / "config" / "datasets.yaml").datasets)
    assert by_job("silver") == {p.stem for p in (REPO / "config" / "contracts").glob("*.yaml")}
    assert by_job("gold") == set(MARTS)


def test_dependencies_come_first_and_file_order_breaks_ties(tmp_path):
    path = dag_file(
        tmp_path,
        "steps:\n  c: {job: j, dataset: x, depends_on: [b]}\n  a: {job: j, dataset: x}\n  b: {job: j, dataset: x, depends_on: [a]}\n  d: {job: j, dataset: x}\n",
    )
    dag = load_dag(path, {"j"})
    assert dag.order() == ["a", "b", "c", "d"]
    assert dag.select(["c", "a"]) == ["a", "c"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "steps:\n  a: {job: j, dataset: x, depends_on: [b]}\n  b: {job: j, dataset: x, depends_on: [a]}\n",
            "cycle",
        ),
        ("steps:\n  a: {job: nope, dataset: x}\n", "steps.a.job: unknown job 'nope'"),
        ("steps:\n  a: {job: j, dataset: x, depends_on: [zz]}\n", "no such step"),
        ("steps:\n  a: {job: j}\n", "steps.a.dataset: required value missing"),
        ("steps: []\n", "non-empty mapping"),
    ],
)
def test_broken_dag_files_fail_with_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_dag(dag_file(tmp_path, text), {"j"})


def test_selecting_an_unknown_step_lists_the_known_ones(tmp_path):
    dag = load_dag(dag_file(tmp_path, "steps:\n  a: {job: j, dataset: x}\n"), {"j"})
    with pytest.raises(ConfigError, match="unknown step"):
        dag.select(["b"])
