"""Lineage of a whole run (the shared `pipeline_run`): every event is valid OpenLineage, every
step has one START and one COMPLETE under the run's parent, and the events alone rebuild the
landing -> bronze -> silver -> gold graph the DAG declares."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from pipeline.driver.dag import load_dag
from pipeline.jobs import JOBS
from pipeline.lineage import parent_run_id
from tests.helpers import OPENLINEAGE_SCHEMA, REPO, openlineage_validator

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def events(pipeline_run):
    ctx, lake, _ = pipeline_run
    path = lake / "_ops" / "lineage" / f"{ctx.run_id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.skipif(
    not OPENLINEAGE_SCHEMA.exists(), reason=f"OpenLineage schema not found at {OPENLINEAGE_SCHEMA}"
)
def test_every_event_of_a_full_run_is_valid_openlineage(events):
    validator = openlineage_validator()
    for event in events:
        errors = [e.message for e in validator.iter_errors(event)]
        assert not errors, f"{event['eventType']} {event['job']['name']}: {errors}"


def test_every_step_has_one_start_and_one_complete_under_the_run(pipeline_run, events):
    ctx, _, outcomes = pipeline_run
    parent = parent_run_id(ctx.run_id)
    by_job = defaultdict(list)
    for event in events:
        by_job[event["job"]["name"]].append(event)
    for step in outcomes:
        kinds = [e["eventType"] for e in by_job[f"pipeline.{step}"]]
        assert kinds == ["START", "COMPLETE"], step
        assert {e["run"]["facets"]["parent"]["run"]["runId"] for e in by_job[f"pipeline.{step}"]} == {parent}
    assert [e["eventType"] for e in by_job["pipeline"]] == ["START", "COMPLETE"]


def test_the_events_rebuild_the_dag_from_landing_to_gold(pipeline_run, events):
    """For every DAG edge (step -> dependant) some output of the step is an input of the
    dependant, and every gold mart's ancestors reach landing through bronze and silver."""
    _, lake, _ = pipeline_run
    dag = load_dag(REPO / "config" / "pipeline.yaml", set(JOBS))
    io = {}
    upstream = defaultdict(set)  # dataset -> the datasets it was computed from
    for event in events:
        if event["eventType"] != "COMPLETE" or event["job"]["name"] == "pipeline":
            continue
        inputs = {i["name"] for i in event["inputs"]}
        outputs = {o["name"] for o in event["outputs"]}
        io[event["job"]["name"].removeprefix("pipeline.")] = (inputs, outputs)
        for out in outputs:
            upstream[out] |= inputs
    for name, step in dag.steps.items():
        for dependency in step.depends_on:
            assert io[dependency][1] & io[name][0], f"lineage lost the edge {dependency} -> {name}"

    def ancestors(dataset: str) -> set[str]:
        seen, todo = set(), [dataset]
        while todo:
            for parent in upstream[todo.pop()] - seen:
                seen.add(parent)
                todo.append(parent)
        return seen

    root = str(lake)
    gold = sorted(  # the marts; maintain_gold rewrites the same tables
        o
        for name, (_, outs) in io.items()
        if dag.steps[name].job == "gold"
        for o in outs
        if o.startswith(f"{root}/gold/")
    )
    assert len(gold) == sum(step.job == "gold" for step in dag.steps.values())
    for mart in gold:
        layers = {a.removeprefix(root + "/").split("/")[0] for a in ancestors(mart)}
        assert {"landing", "bronze", "silver"} <= layers, (mart, layers)
