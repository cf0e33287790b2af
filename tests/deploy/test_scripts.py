"""aws/scripts and the CI workflow: shell that parses and passes shellcheck, usage that tells the
truth, commands that exist, and a workflow that validates against GitHub's schema."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((REPO / "aws" / "scripts").glob("*.sh"))
ENTRY_SCRIPTS = [s for s in SCRIPTS if not s.name.startswith("_")]
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"


def _run(cmd: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, capture_output=True, text=True, cwd=REPO, env={**os.environ, **env}, timeout=120
    )


def test_every_script_parses_and_is_shellcheck_clean():
    assert {s.name for s in ENTRY_SCRIPTS} >= {"bootstrap.sh", "deploy.sh", "submit.sh", "maintain.sh"}
    for script in SCRIPTS:
        assert _run(["bash", "-n", str(script)]).returncode == 0, script
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is installed by `make setup` (scripts/setup/system_deps.sh)"
    result = _run([shellcheck, "-x", *map(str, SCRIPTS)])
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", ENTRY_SCRIPTS, ids=lambda s: s.name)
def test_usage_on_help_and_on_a_missing_environment(script):
    helped = _run([str(script), "--help"])
    assert helped.returncode == 0 and helped.stdout.startswith(f"usage: aws/scripts/{script.name} dev|prod")
    refused = _run([str(script), "staging"])
    assert refused.returncode == 2 and "usage:" in refused.stderr


def test_bootstrap_creates_a_guarded_state_bucket_and_inits_the_envs_backend_with_it():
    out = _run([str(REPO / "aws/scripts/bootstrap.sh"), "prod"], DRY_RUN="1")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    bucket = "lakehouse-tfstate-123456789012-prod"
    assert any(line.startswith(f"+ aws s3api create-bucket --bucket {bucket}") for line in lines)
    for guard in (
        "put-bucket-versioning",
        "put-bucket-encryption",
        "put-public-access-block",
        "put-bucket-policy",
    ):
        assert any(guard in line for line in lines), guard
    init = next(line for line in lines if " init " in line)
    assert f"-backend-config=bucket={bucket}" in init and "-backend-config=use_lockfile=true" in init
    assert "aws/terraform/envs/prod" in init
    assert any('backend "s3"' in tf.read_text() for tf in (REPO / "aws/terraform/envs/prod").glob("*.tf"))
    assert [line.split()[3] for line in lines if line.startswith("+ terraform")] == ["init", "plan", "apply"]


def test_deploy_packages_then_uploads_with_the_release_module():
    out = _run([str(REPO / "aws/scripts/deploy.sh"), "dev"], DRY_RUN="1")
    assert out.returncode == 0, out.stderr
    make, upload = out.stdout.splitlines()
    assert make == f"+ make -C {REPO} package jars"
    assert upload.endswith("-m pipeline.deploy.release --env dev --dist " + str(REPO / "dist"))
    targets = (REPO / "Makefile").read_text()
    assert "\npackage:" in targets and "\njars:" in targets
    helped = _run([sys.executable, "-m", "pipeline.deploy.release", "--help"])
    assert helped.returncode == 0 and "--env" in helped.stdout


def test_ci_workflow_is_valid_and_runs_the_readmes_test_command_and_a_gated_deploy():
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = _run([str(checker), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)])
    assert result.returncode == 0, result.stdout + result.stderr
    flow = yaml.safe_load(WORKFLOW.read_text())
    test_runs = [s.get("run", "") for s in flow["jobs"]["test"]["steps"]]
    readme = (REPO / "README.md").read_text()
    assert "make test" in readme and "make test" in test_runs
    assert "make lint" in test_runs and ".venv/bin/lakehouse docs --check" in test_runs
    deploy = flow["jobs"]["deploy"]
    assert deploy["needs"] == "test" and "refs/heads/main" in deploy["if"]
    assert deploy["permissions"]["id-token"] == "write"
    assert "aws/scripts/deploy.sh dev" in [s.get("run") for s in deploy["steps"]]
    assert flow["permissions"] == {"contents": "read"}
