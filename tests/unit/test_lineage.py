"""The lineage observer: events per step, facets, naming, and validity against the OpenLineage
core schema (shared/specs/openlineage/OpenLineage.json beside the repo; tests.helpers)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline.catalog import load_catalog
from pipeline.contracts.model import load_contracts
from pipeline.driver.dag import Step
from pipeline.driver.state import FAILED, SKIPPED, SUCCEEDED, RunState, StepOutcome
from pipeline.lineage import LineageError, LineageObserver, parent_run_id
from pipeline.lineage.datasets import jdbc_dataset, kafka_dataset, location_dataset
from pipeline.settings import LineageSettings, SecretRef, load_settings
from tests.helpers import OPENLINEAGE_SCHEMA, openlineage_validator

REPO = Path(__file__).resolve().parents[2]
SCHEMA_PATH = OPENLINEAGE_SCHEMA
CONFIG = REPO / "config"


def make_ctx(lake: Path, run_id: str = "20260101T000000Z-abc123", **overrides):
    settings = load_settings("local", lake_root=str(lake), config_dir=CONFIG)
    if overrides:
        import dataclasses

        settings = dataclasses.replace(settings, **overrides)
    catalog = load_catalog(settings.config_path(settings.datasets_file))
    contracts = load_contracts(
        settings.config_path(settings.contracts_dir), settings.config_path("reference")
    )
    return SimpleNamespace(
        settings=settings,
        run_id=run_id,
        catalog=catalog,
        contracts=contracts,
        table_path=lambda layer, name: settings.lake.path(layer, name),
        landing_path=lambda dataset: settings.lake.path("landing", catalog[dataset].landing),
    )


def step(name: str, job: str, dataset: str, depends_on=()) -> Step:
    return Step(job=job, dataset=dataset, depends_on=list(depends_on), name=name)


def finished(outcome: StepOutcome, status: str, rows_in=0, rows_out=0, details=None, error=None):
    outcome.status, outcome.rows_in, outcome.rows_out = status, rows_in, rows_out
    outcome.details, outcome.error = details or {}, error
    outcome.ended_at = "2026-01-01T00:01:00.000Z"
    return outcome


STEPS = [
    (step("bronze_crm_contacts", "bronze", "crm_contacts"), SUCCEEDED, 10, 10, {}),
    (step("silver_contacts", "silver", "contacts"), SUCCEEDED, 10, 8, {"quarantined": 1, "duplicates": 1}),
    (step("bronze_snowflake_orders", "bronze", "snowflake_orders"), SUCCEEDED, 5, 5, {"bytes": 1234}),
    (
        step("silver_orders", "silver", "orders"),
        SUCCEEDED,
        5,
        5,
        {
            "quarantined": 0,
            "dq": [
                {"rule": "order_id:unique", "passed": True, "observed": 0, "severity": "critical"},
                {"rule": "amount:above_min", "passed": False, "observed": 2, "severity": "warn"},
            ],
        },
    ),
    (step("gold_fct_orders", "gold", "fct_orders"), SUCCEEDED, 5, 5, {}),
    (step("gold_revenue_daily", "gold", "revenue_daily"), SUCCEEDED, 5, 3, {}),
    (step("bronze_fx_rates", "bronze", "fx_rates"), FAILED, 0, 0, {}),
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    lake = tmp_path_factory.mktemp("lake")
    ctx = make_ctx(lake)
    observer = LineageObserver(ctx.settings)
    outcomes = []
    for st, status, rows_in, rows_out, details in STEPS:
        outcome = StepOutcome(st.name, status="running", started_at="2026-01-01T00:00:00.000Z")
        observer.step_started(ctx, st, outcome)
        error = "ValueError: bad fx file" if status == FAILED else None
        outcomes.append(finished(outcome, status, rows_in, rows_out, details, error))
        observer.step_finished(ctx, st, outcome)
    skipped = StepOutcome("silver_fx_rates", status=SKIPPED, error="upstream not succeeded: bronze_fx_rates")
    observer.step_finished(ctx, step("silver_fx_rates", "silver", "fx_rates", ["bronze_fx_rates"]), skipped)
    observer.run_finished(ctx, RunState(ctx.run_id, [*outcomes, skipped], status=FAILED))
    path = lake / "_ops" / "lineage" / f"{ctx.run_id}.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines()]
    return SimpleNamespace(ctx=ctx, lake=lake, events=events)


def step_events(events, name):
    return [e for e in events if e["job"]["name"] == f"pipeline.{name}"]


def output(event, layer, table, lake):
    wanted = str(Path(lake) / layer / table)
    return next(o for o in event["outputs"] if o["name"] == wanted)


@pytest.mark.skipif(
    not SCHEMA_PATH.exists(),
    reason=f"OpenLineage core schema not found at {SCHEMA_PATH} (the project's shared/ folder beside the repo)",
)
def test_every_event_is_valid_against_the_openlineage_core_schema(run):
    validator = openlineage_validator()
    assert run.events
    for event in run.events:
        errors = sorted(validator.iter_errors(event), key=str)
        assert not errors, f"{event['eventType']} {event['job']['name']}: {[e.message for e in errors]}"
        uuid.UUID(event["run"]["runId"])


def test_one_start_and_one_end_per_step_with_the_parent_facet(run):
    parent = parent_run_id(run.ctx.run_id)
    for st, status, *_ in STEPS:
        events = step_events(run.events, st.name)
        assert [e["eventType"] for e in events] == ["START", "COMPLETE" if status == SUCCEEDED else "FAIL"]
        assert events[0]["run"]["runId"] == events[1]["run"]["runId"] != parent
        for event in events:
            facet = event["run"]["facets"]["parent"]
            assert facet["run"]["runId"] == parent
            assert (facet["job"]["namespace"], facet["job"]["name"]) == ("lakehouse", "pipeline")
            assert event["job"]["facets"]["jobType"]["processingType"] == "BATCH"
            assert event["job"]["facets"]["jobType"]["integration"] == "SPARK"
    assert step_events(run.events, "silver_fx_rates") == []  # skipped: never started, no event
    pipeline = [e for e in run.events if e["job"]["name"] == "pipeline"]
    assert [e["eventType"] for e in pipeline] == ["START", "FAIL"]
    assert {e["run"]["runId"] for e in pipeline} == {parent}


def test_fail_carries_the_error_message(run):
    fail = step_events(run.events, "bronze_fx_rates")[1]
    assert fail["run"]["facets"]["errorMessage"]["message"] == "ValueError: bad fx file"
    assert fail["run"]["facets"]["errorMessage"]["programmingLanguage"] == "PYTHON"
    assert all("errorMessage" not in e["run"]["facets"] for e in step_events(run.events, "silver_contacts"))


def test_datasets_are_absolute_paths_in_namespace_file(run):
    for event in run.events:
        for dataset in [*event.get("inputs", []), *event.get("outputs", [])]:
            assert dataset["namespace"] == "file"
            assert Path(dataset["name"]).is_absolute()
            assert dataset["name"].startswith(str(run.lake))
    start = step_events(run.events, "bronze_crm_contacts")[0]
    assert [i["name"] for i in start["inputs"]] == [str(run.lake / "landing" / "crm" / "contacts")]


def test_silver_schema_is_protected_and_column_lineage_masks_pii(run):
    complete = step_events(run.events, "silver_contacts")[1]
    silver = output(complete, "silver", "contacts", run.lake)
    names = [f["name"] for f in silver["facets"]["schema"]["fields"]]
    assert "email_hash" in names and "email_domain" in names and "phone_masked" in names
    assert "email" not in names and "phone" not in names
    fields = silver["facets"]["columnLineage"]["fields"]
    (source,) = fields["email_hash"]["inputFields"]
    assert (source["namespace"], source["name"], source["field"]) == (
        "file",
        str(run.lake / "bronze" / "crm_contacts"),
        "email",
    )
    assert source["transformations"][0]["masking"] is True
    assert fields["email_hash"]["transformationType"] == "MASKED"
    assert fields["contact_id"]["inputFields"][0]["field"] == "contact_id"
    # the MERGE: keys, sequence and soft delete are dataset-level indirect inputs
    whole = {
        (d["field"], d["transformations"][0]["subtype"]) for d in silver["facets"]["columnLineage"]["dataset"]
    }
    assert {("contact_id", "JOIN"), ("updated_at", "CONDITIONAL"), ("is_deleted", "CONDITIONAL")} <= whole
    quarantine = output(complete, "quarantine", "contacts", run.lake)
    assert quarantine["outputFacets"]["outputStatistics"]["rowCount"] == 1
    assert silver["outputFacets"]["outputStatistics"]["rowCount"] == 8
    assert complete["inputs"][0]["inputFacets"]["dataQualityMetrics"]["rowCount"] == 10


def test_statistics_and_dq_assertions(run):
    bronze = step_events(run.events, "bronze_snowflake_orders")[1]
    stats = bronze["outputs"][0]["outputFacets"]["outputStatistics"]
    assert stats == {**stats, "rowCount": 5, "size": 1234}
    assert "outputStatistics" not in step_events(run.events, "bronze_snowflake_orders")[0]["outputs"][0].get(
        "outputFacets", {}
    )
    silver = output(step_events(run.events, "silver_orders")[1], "silver", "orders", run.lake)
    assertions = {a["assertion"]: a for a in silver["facets"]["dataQualityAssertions"]["assertions"]}
    assert assertions["order_id:unique"]["success"] is True
    assert assertions["amount:above_min"] == {
        **assertions["amount:above_min"],
        "success": False,
        "column": "amount",
        "severity": "warn",
        "actual": "2",
    }


def test_gold_column_lineage_and_schema(run):
    complete = step_events(run.events, "gold_fct_orders")[1]
    gold = output(complete, "gold", "fct_orders", run.lake)
    fields = gold["facets"]["columnLineage"]["fields"]
    assert {(f["name"].rsplit("/", 2)[-1], f["field"]) for f in fields["amount_usd"]["inputFields"]} == {
        ("orders", "amount"),
        ("fx_rates", "rate_to_usd"),
    }
    assert "amount_usd" in [f["name"] for f in gold["facets"]["schema"]["fields"]]


def test_events_reconstruct_the_graph(run):
    edges: set[tuple[str, str]] = set()
    for event in run.events:
        if event["eventType"] != "COMPLETE":
            continue
        for i in event["inputs"]:
            for o in event["outputs"]:
                edges.add((i["name"], o["name"]))
    lake = str(run.lake)
    chain = [
        f"{lake}/landing/snowflake/orders",
        f"{lake}/bronze/snowflake_orders",
        f"{lake}/silver/orders",
        f"{lake}/gold/fct_orders",
        f"{lake}/gold/revenue_daily",
    ]
    for upstream, downstream in zip(chain, chain[1:], strict=False):
        assert (upstream, downstream) in edges
    assert (f"{lake}/bronze/crm_contacts", f"{lake}/quarantine/contacts") in edges


def test_resumed_runs_keep_the_parent_and_get_a_new_step_run(tmp_path):
    ctx = make_ctx(tmp_path)
    sent = []
    observer = LineageObserver(ctx.settings, transport=SimpleNamespace(emit=lambda e, r: sent.append(e)))
    st = step("bronze_crm_contacts", "bronze", "crm_contacts")
    outcome = StepOutcome(st.name)
    observer.step_started(ctx, st, outcome)
    observer.step_finished(ctx, st, finished(outcome, FAILED, error="boom"))
    outcome.reset_for_rerun()
    resumed = LineageObserver(ctx.settings, transport=SimpleNamespace(emit=lambda e, r: sent.append(e)))
    resumed.step_started(ctx, st, outcome)
    runs = [e.run.runId for e in sent if e.job.name == "pipeline.bronze_crm_contacts"]
    parents = {e.run.runId for e in sent if e.job.name == "pipeline"}
    assert runs[0] == runs[1] != runs[2]
    assert parents == {parent_run_id(ctx.run_id)}


def test_emission_errors_are_logged_unless_fail_on_error(tmp_path, caplog):
    def broken(event, run_id):
        raise OSError("collector down")

    ctx = make_ctx(tmp_path)
    st = step("bronze_crm_contacts", "bronze", "crm_contacts")
    LineageObserver(ctx.settings, transport=SimpleNamespace(emit=broken)).step_started(
        ctx, st, StepOutcome(st.name)
    )
    assert "collector down" in caplog.text
    strict = make_ctx(tmp_path, lineage=LineageSettings(fail_on_error=True))
    with pytest.raises(LineageError, match="collector down"):
        LineageObserver(strict.settings, transport=SimpleNamespace(emit=broken)).step_started(
            strict, st, StepOutcome(st.name)
        )


def test_transport_none_emits_nothing_and_file_needs_a_local_or_s3_lake(tmp_path):
    ctx = make_ctx(tmp_path, lineage=LineageSettings(transport="none"))
    observer = LineageObserver(ctx.settings)
    st = step("bronze_crm_contacts", "bronze", "crm_contacts")
    observer.step_started(ctx, st, StepOutcome(st.name))
    assert not (tmp_path / "_ops").exists()
    import dataclasses

    from pipeline.files import S3Files

    s3 = dataclasses.replace(ctx.settings, lake=dataclasses.replace(ctx.settings.lake, root="s3://b/lake"))
    on_s3 = LineageObserver(dataclasses.replace(s3, lineage=LineageSettings(transport="file"))).transport
    assert isinstance(on_s3.files, S3Files) and on_s3.path("r1") == "s3://b/lake/_ops/lineage/r1.jsonl"
    hdfs = dataclasses.replace(
        ctx.settings, lake=dataclasses.replace(ctx.settings.lake, root="hdfs://nn/lake")
    )
    with pytest.raises(ValueError, match="local or s3:// lake root"):
        LineageObserver(dataclasses.replace(hdfs, lineage=LineageSettings(transport="file")))
    http = dataclasses.replace(
        s3, lineage=LineageSettings(transport="http", url="http://localhost:5000", api_key=SecretRef(env="X"))
    )
    assert LineageObserver(http).transport is not None  # the key is resolved at the first event


def test_naming_of_s3_jdbc_and_kafka_sources():
    assert location_dataset("s3://lakehouse-prod-lake/bronze/crm_accounts") == (
        "s3://lakehouse-prod-lake",
        "bronze/crm_accounts",
    )
    assert location_dataset("/tmp/lake/silver/x") == ("file", "/tmp/lake/silver/x")
    assert location_dataset("file:///tmp/lake/silver/x") == ("file", "/tmp/lake/silver/x")
    assert jdbc_dataset("jdbc:postgresql://localhost:5432/analytics", "public.behavior_events") == (
        "postgres://localhost:5432",
        "analytics.public.behavior_events",
    )
    assert jdbc_dataset("jdbc:redshift://host.internal:5439/analytics", "public.e") == (
        "redshift://host.internal:5439",
        "analytics.public.e",
    )
    assert kafka_dataset("b-1:9098,b-2:9098", "product_events") == ("kafka://b-1:9098", "product_events")


def test_prod_sources_are_named_as_configured(tmp_path):
    from pipeline.lineage.datasets import step_datasets

    ctx = make_ctx(tmp_path)
    prod = load_settings("prod", config_dir=CONFIG)
    ctx.settings = prod
    ctx.table_path = lambda layer, name: prod.lake.path(layer, name)
    jdbc = step_datasets(ctx, step("b", "bronze", "redshift_behavior"))
    assert jdbc.inputs[0].key == (
        "redshift://analytics-prod.example.internal:5439",
        "analytics.public.behavior_events",
    )
    assert jdbc.outputs[0].key == ("s3://lakehouse-prod-lake", "bronze/redshift_behavior")
    sent = []
    observer = LineageObserver(prod, transport=SimpleNamespace(emit=lambda e, r: sent.append(e)))
    observer.step_started(ctx, step("bronze_kafka_events", "bronze", "kafka_events"), StepOutcome("k"))
    assert sent[-1].job.facets["jobType"].processingType == "STREAMING"
    kafka = step_datasets(ctx, step("k", "bronze", "kafka_events"))
    assert kafka.inputs[0].key[1] == "product_events"
    assert kafka.inputs[0].key[0].startswith("kafka://b-1.lakehouse-prod")
