"""Every resource, data source and module call of aws/terraform against the AWS provider schema
(5.100.0) and the called modules' variables. Runs everywhere: it is the whole static check where
terraform is absent, and a second opinion where it is present."""

from __future__ import annotations

import pytest

from tests.terraform import hcl


@pytest.mark.parametrize("module_dir", hcl.all_module_dirs(), ids=lambda p: str(p.relative_to(hcl.TF_ROOT)))
def test_module_matches_provider_schema(module_dir):
    module = hcl.load_module(module_dir)
    assert module.files(), f"{module_dir} has no .tf file"
    assert hcl.schema_errors(module) == []


def test_schema_check_reports_what_terraform_validate_would(tmp_path):
    (tmp_path / "main.tf").write_text(
        """
resource "aws_s3_bucket_typo" "a" {}

resource "aws_dynamodb_table" "t" {
  name         = "t"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "k"
  arn          = "computed-only"
  colour       = "blue"
  ttl {
    attribute_name = "e"
    enabled        = true
  }
  ttl {
    attribute_name = "f"
  }
  server_side_encryption {
    enabled = true
    unknown = 1
  }
  attribute = "not a block"
}

resource "aws_emrserverless_application" "app" {
  name          = "x"
  release_label = "emr-spark-8.0.0"
  dynamic "monitoring_configuration" {
    for_each = [1]
    content {}
  }
}

module "child" {
  source = "./child"
  nope   = 1
}
"""
    )
    (tmp_path / "child").mkdir()
    (tmp_path / "child" / "variables.tf").write_text('variable "needed" {\n  type = string\n}\n')
    errors = "\n".join(hcl.schema_errors(hcl.load_module(tmp_path)))
    for expected in (
        "aws_s3_bucket_typo.a: no such resource type",
        "'arn' is computed only",
        "attribute 'colour' is unknown",
        "block 'ttl' allows at most 1",
        "server_side_encryption: attribute 'unknown' is unknown",
        "'attribute' is a block",
        "aws_emrserverless_application.app: required attribute 'type' is missing",
        "dynamic block 'monitoring_configuration' is not a block",
        "'nope' is not a variable of child",
        "variable 'needed' of child is not set",
    ):
        assert expected in errors
