"""Every AWS name config/<env>.yaml uses exists in that env's Terraform, with the
`lakehouse-${var.environment}`-style interpolation resolved from what the env root gives
modules/lakehouse (its module call's arguments, else the module's defaults)."""

from __future__ import annotations

import pytest
import yaml

from pipeline.observability.dashboards import layer_datasets
from tests.terraform import hcl

CONFIG = hcl.REPO / "config"


def config_names(env: str) -> dict[str, tuple[str, str, str]]:
    """name in config -> (resource type, attribute, expected value)."""
    cfg = yaml.safe_load((CONFIG / f"{env}.yaml").read_text())
    aws = cfg["aws"]
    names = {
        "lake.root": ("aws_s3_bucket", "bucket", cfg["lake"]["root"].removeprefix("s3://")),
        "aws.artifacts_bucket": ("aws_s3_bucket", "bucket", aws["artifacts_bucket"]),
        "aws.logs_bucket": ("aws_s3_bucket", "bucket", aws["logs_bucket"]),
        "delta log store table": (
            "aws_dynamodb_table",
            "name",
            cfg["spark"]["conf"]["spark.io.delta.storage.S3DynamoDBLogStore.ddb.tableName"],
        ),
        "alerts.sns_topic_arn": ("aws_sns_topic", "name", cfg["alerts"]["sns_topic_arn"].rsplit(":", 1)[1]),
        "aws.emr.application_name": ("aws_emrserverless_application", "name", aws["emr"]["application_name"]),
        "aws.emr.cluster_name": ("aws_emr_cluster", "name", aws["emr"]["cluster_name"]),
        "aws.emr.log_group": ("aws_cloudwatch_log_group", "name", aws["emr"]["log_group"]),
        "aws.kms_key_alias": ("aws_kms_alias", "name", aws["kms_key_alias"]),
        "pii.hmac_key": ("aws_secretsmanager_secret", "name", cfg["pii"]["hmac_key"]["secretsmanager"]),
        "lineage.api_key": ("aws_secretsmanager_secret", "name", cfg["lineage"]["api_key"]["secretsmanager"]),
        "redshift password": (
            "aws_secretsmanager_secret",
            "name",
            cfg["sources"]["redshift_behavior"]["jdbc"]["password"]["secretsmanager"],
        ),
    }
    for kind, role in aws["emr"]["roles"].items():
        names[f"aws.emr.roles.{kind}"] = ("aws_iam_role", "name", role)
    return names


@pytest.mark.parametrize("env", hcl.ENVS)
def test_every_name_the_config_uses_is_defined(env):
    scope = hcl.env_scope(env, lenient=True)
    missing = {
        what: expected
        for what, (rtype, attribute, expected) in config_names(env).items()
        if expected not in hcl.resource_values(scope, rtype, attribute)
    }
    assert missing == {}, f"config/{env}.yaml names these, envs/{env} does not define them"


@pytest.mark.parametrize("env", hcl.ENVS)
def test_region_and_metrics_namespace_match_the_config(env):
    cfg = yaml.safe_load((CONFIG / f"{env}.yaml").read_text())
    root = hcl.env_scope(env, lenient=True)
    region = root.provider("aws")["region"]  # the env root's provider block
    assert region == cfg["aws"]["region"]
    assert region == cfg["spark"]["conf"]["spark.io.delta.storage.S3DynamoDBLogStore.ddb.region"]
    lakehouse = root.child("lakehouse")
    assert lakehouse.local("metrics_namespace") == cfg["metrics"]["namespace"]
    # the namespace the roles may put metrics into is that one
    iam = lakehouse.child("iam")
    [statement] = [s for s in iam.local("runtime_services") if "cloudwatch:PutMetricData" in s["Action"]]
    assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": cfg["metrics"]["namespace"]}}


@pytest.mark.parametrize("env", hcl.ENVS)
def test_delta_tables_are_the_pipelines_tables(env):
    """The tables that get a _delta_log/.tmp/ expiry rule and the gold tables registered in
    Glue are exactly the ones the pipeline writes (datasets.yaml, contracts, pipeline.yaml)."""
    tables = hcl.env_scope(env).child("lakehouse").local("delta_tables")
    layers = layer_datasets()
    assert tables == {
        "bronze": layers["bronze"],
        "silver": layers["silver"],
        "quarantine": layers["silver"],  # one quarantine table per silver contract
        "gold": layers["gold"],
        # dq.gate's results, bronze's ledgers of ingested and rejected files, erase's audit
        "_ops": ["dq_results", "erasures", "ingested_files", "rejected_files"],
    }
    glue = hcl.resource_values(hcl.env_scope(env, lenient=True), "aws_glue_catalog_table", "name")
    assert glue == set(layers["gold"])


@pytest.mark.parametrize("env", hcl.ENVS)
def test_the_application_holds_the_parallel_steps_the_config_submits(env):
    """aws.emr: max_parallel_steps job runs at once, each a driver plus up to max_executors
    executors, must fit the EMR Serverless application's maximum capacity, or job runs queue (and
    time out) however the DAG is scheduled."""
    emr = yaml.safe_load((CONFIG / f"{env}.yaml").read_text())["aws"]["emr"]
    capacity = hcl.env_scope(env, lenient=True).child("lakehouse").var("serverless_max_capacity")
    workers = emr["max_parallel_steps"] * (1 + emr["max_executors"])
    vcpu = emr["max_parallel_steps"] * (emr["driver_cores"] + emr["max_executors"] * emr["executor_cores"])
    memory_gb = workers * int(emr["executor_memory"].rstrip("gG")) * 1.1  # + Spark's 10 % overhead
    assert vcpu <= int(capacity["cpu"].split()[0]), (vcpu, capacity)
    assert memory_gb <= int(capacity["memory"].split()[0]), (memory_gb, capacity)
