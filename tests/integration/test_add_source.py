"""Adding a source is configuration only (docs/adding-a-source.md): an eighth source, support
tickets as CSV (`;`-separated, ISO-8859-1), gets the guide's contract, catalogue entry and two DAG
steps in a copy of config/, and runs bronze -> silver through the real driver with no code change.
Good rows land in silver, bad rows in quarantine with their reasons, and the accounting balances."""

from __future__ import annotations

import io
import re
import shutil
import textwrap

import pytest
import yaml

from pipeline.app import local_executor
from pipeline.driver.dag import load_dag
from pipeline.driver.runner import run_steps
from pipeline.jobs import JOBS
from pipeline.schemas import validate_file
from tests.helpers import REPO, make_ctx

pytestmark = pytest.mark.slow

GUIDE = REPO / "docs" / "adding-a-source.md"


def guide_blocks() -> tuple[dict, str, dict]:
    """The catalogue entry, the contract and the DAG steps exactly as the guide shows them, so
    the guide's example is what this test runs."""
    blocks = re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(), flags=re.S)
    catalogue, contract, steps = blocks[:3]
    return yaml.safe_load(textwrap.dedent(catalogue)), contract, yaml.safe_load(textwrap.dedent(steps))


CATALOGUE_ENTRY, CONTRACT, DAG_STEPS = guide_blocks()
# The guide's source is a European spreadsheet export: the files are written in its dialect.
DIALECT = CATALOGUE_ENTRY["helpdesk_tickets"]["options"]
HEADER = "ticket_id,account_id,priority,reopened,opened_at,updated_at\n"
# (row, the quarantine reasons it must get; None: a valid row)
DAY1 = [
    ("TCK-0001,ACC-000001,High,0,2026-07-01 09:00:00,2026-07-01 09:00:00", None),
    ("tck-0002 ,acc-000002,low,1,2026-07-01 10:00:00,2026-07-01 10:00:00", None),
    ("TCK-0003,ACC-000001,medium,0,2026-07-01 11:00:00,2026-07-01 11:00:00", None),
    (",ACC-000003,low,0,2026-07-01 12:00:00,2026-07-01 12:00:00", {"ticket_id:missing"}),
    ("TCK-0004,ACC-000003,élevée,0,2026-07-01 12:30:00,2026-07-01 12:30:00", {"priority:not_allowed"}),
]
DAY2 = [
    # a later version of TCK-0001 (the silver row) and a re-delivery of its day-1 version
    ("TCK-0001,ACC-000001,low,1,2026-07-01 09:00:00,2026-07-02 08:00:00", None),
    ("TCK-0001,ACC-000001,High,0,2026-07-01 09:00:00,2026-07-01 09:00:00", None),
    ("TCK-0005,ACC-000004,high,-2,2026-07-02 09:00:00,2026-07-02 09:00:00", {"reopened:below_min"}),
    ("TCK-0006,ACC-000004,high,0,yesterday,2026-07-02 09:30:00", {"opened_at:unparseable"}),
    ("TCKT-7,ACC-000004,high,0,2026-07-02 10:00:00,2026-07-02 10:00:00", {"ticket_id:pattern"}),
]


@pytest.fixture
def config_with_tickets(tmp_path):
    """A copy of config/ with the new source added in the three places the guide names."""
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    (config / "contracts" / "tickets.yaml").write_text(CONTRACT)
    datasets = yaml.safe_load((config / "datasets.yaml").read_text())
    datasets["datasets"].update(CATALOGUE_ENTRY)
    (config / "datasets.yaml").write_text(yaml.safe_dump(datasets, sort_keys=False))
    dag = yaml.safe_load((config / "pipeline.yaml").read_text())
    dag["steps"].update(DAG_STEPS)
    (config / "pipeline.yaml").write_text(yaml.safe_dump(dag, sort_keys=False))
    # what an editor with the published schemas says about the three files: nothing
    for changed in ("datasets.yaml", "contracts/tickets.yaml", "pipeline.yaml"):
        assert validate_file(config / changed, config) == []
    return config


def test_an_eighth_source_runs_to_silver_through_configuration_alone(spark, tmp_path, config_with_tickets):
    lake = tmp_path / "lake"
    landing = lake / "landing" / "helpdesk" / "tickets"
    landing.mkdir(parents=True)
    for day, rows in (("20260701", DAY1), ("20260702", DAY2)):
        text = HEADER + "".join(f"{r}\n" for r, _ in rows)
        (landing / f"tickets_{day}.csv").write_bytes(
            text.replace(",", DIALECT["sep"]).encode(DIALECT["encoding"])
        )
    ctx = make_ctx(spark, lake, run_id="add-source", config_dir=config_with_tickets)
    dag = load_dag(config_with_tickets / "pipeline.yaml", set(JOBS))
    out = io.StringIO()

    state = run_steps(ctx, dag, list(DAG_STEPS), out, executor=local_executor())

    assert not state.failed, out.getvalue()
    outcomes = {s.step: s for s in state.steps}
    rows = DAY1 + DAY2
    assert outcomes["bronze_helpdesk_tickets"].rows_out == len(rows)
    silver_step = outcomes["silver_tickets"]
    bad = [reasons for _, reasons in rows if reasons]
    assert silver_step.rows_in == len(rows)
    assert silver_step.details["quarantined"] == len(bad)
    assert silver_step.details["duplicates"] == 2  # TCK-0001's day-1 version, delivered twice

    silver = {
        r["ticket_id"]: r.asDict() for r in ctx.lake.read(ctx.table_path("silver", "tickets")).collect()
    }
    assert sorted(silver) == ["TCK-0001", "TCK-0002", "TCK-0003"]
    assert silver["TCK-0001"]["priority"] == "low" and silver["TCK-0001"]["reopened"] == 1  # latest
    assert silver["TCK-0002"]["account_id"] == "ACC-000002"  # normalised: trimmed, upper case
    assert silver_step.rows_out == len(silver)

    quarantine = ctx.lake.read(ctx.table_path("quarantine", "tickets")).collect()
    assert sorted(sorted(r["_rules_broken"]) for r in quarantine) == sorted(sorted(b) for b in bad)
    assert all(r["_quarantine_reason"] and r["_source_file"] for r in quarantine)
    # split by the dialect's delimiter and decoded by its encoding, as delivered
    assert {r["ticket_id"]: r["priority"] for r in quarantine}["TCK-0004"] == "élevée"
    assert silver_step.rows_in == silver_step.rows_out + len(quarantine) + silver_step.details["duplicates"]
