"""aws/terraform/modules/lakehouse/delta_tables.tf is generated from config/
(pipeline.deploy.terraform_tables): adding a source is rerunning the generator, and a stale file
fails here with the command that fixes it."""

from __future__ import annotations

import shutil

import yaml

from pipeline.deploy import terraform_tables
from tests.terraform import hcl


def test_the_committed_file_is_the_generated_one(capsys):
    assert terraform_tables.main(["--check"]) == 0, capsys.readouterr().err


def test_a_new_source_drifts_the_file_until_it_is_regenerated(tmp_path, capsys):
    config = tmp_path / "config"
    shutil.copytree(hcl.REPO / "config", config)
    datasets = yaml.safe_load((config / "datasets.yaml").read_text())
    datasets["datasets"]["helpdesk_tickets"] = {
        **datasets["datasets"]["crm_accounts"],
        "landing": "helpdesk/t",
    }
    (config / "datasets.yaml").write_text(yaml.safe_dump(datasets))
    (config / "contracts" / "tickets.yaml").write_text("name: tickets\n")  # a contract names a silver table
    (tmp_path / "module").mkdir()
    out = tmp_path / "module" / "delta_tables.tf"
    shutil.copy(terraform_tables.OUT, out)
    args = ["--out", str(out), "--config-dir", str(config)]

    assert terraform_tables.main(["--check", *args]) == 1
    assert terraform_tables.REGENERATE in capsys.readouterr().err
    assert terraform_tables.main(["--write", *args]) == 0
    assert terraform_tables.main(["--check", *args]) == 0

    # what Terraform reads from the file: the committed tables plus the new ones
    generated = hcl.Scope(hcl.load_module(out.parent), {}).local("delta_tables")
    committed = hcl.env_scope("dev").child("lakehouse").local("delta_tables")
    assert generated == {
        **committed,
        "bronze": sorted([*committed["bronze"], "helpdesk_tickets"]),
        "silver": sorted([*committed["silver"], "tickets"]),
        "quarantine": sorted([*committed["quarantine"], "tickets"]),
    }
