"""terraform fmt, validate and test (mock AWS provider) where terraform and the provider mirror
exist. Where they do not, each test says so (a warning) and checks the same concern in Python
on the parsed HCL instead, so these tests never pass without checking something."""

from __future__ import annotations

import re
import warnings

import pytest

from tests.terraform import hcl, test_policies

SECURITY_TESTS = hcl.TF_ROOT / "envs" / "dev" / "tests" / "security.tftest.hcl"


def _absent(what: str) -> None:
    warnings.warn(f"terraform absent: {what} checked in Python on the parsed HCL instead", stacklevel=2)


def test_fmt(terraform):
    if terraform is None:
        _absent("terraform fmt")
        for tf in hcl.TF_ROOT.rglob("*.tf"):
            text = tf.read_text()
            assert "\t" not in text and text.endswith("\n") and not text.endswith("\n\n"), tf
            assert not [n for n, line in enumerate(text.splitlines(), 1) if line != line.rstrip()], tf
        return
    done = terraform.run("fmt", "-check", "-recursive", "-diff", "-no-color")
    assert done.returncode == 0, f"run `terraform fmt -recursive aws/terraform`:\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize("env", hcl.ENVS)
def test_validate(terraform, env):
    if terraform is None:
        _absent(f"terraform validate ({env})")
        for scope in hcl.walk_scopes(hcl.env_scope(env, lenient=True)):
            assert hcl.schema_errors(scope.module) == []
        return
    done = terraform.run("validate", "-no-color", cwd=terraform.root / "envs" / env)
    assert done.returncode == 0, done.stdout + done.stderr


def test_security_properties(terraform):
    """envs/dev/tests/security.tftest.hcl: encryption, public access, TLS-only policies, the
    layer boundaries and lifecycle, on the rendered configuration."""
    if terraform is None:
        _absent("terraform test")
        for role, reads, writes in (
            ("ingest", "bronze", "bronze"),
            ("gold", "silver", "gold"),
        ):
            assert reads in test_policies.prefixes(role, "s3:GetObject")
            assert writes in test_policies.prefixes(role, "s3:PutObject")
        assert "gold" not in test_policies.prefixes("ingest", "s3:PutObject")
        assert not {"bronze", "quarantine"} & test_policies.prefixes("gold", "s3:GetObject")
        return
    runs = len(re.findall(r'^run "', SECURITY_TESTS.read_text(), re.M))
    done = terraform.run("test", "-no-color", cwd=terraform.root / "envs" / "dev", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{runs} passed, 0 failed" in done.stdout, done.stdout
