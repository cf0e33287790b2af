"""Security properties read from the HCL itself (python-hcl2), on every machine: what each role
may do on which lake prefix, who may read raw PII, encryption settings, lifecycle rules.
tests/terraform/test_terraform.py checks the same on the rendered plan where terraform exists."""

from __future__ import annotations

import re

import pytest

from tests.terraform import hcl

# The IAM module evaluated with the inputs the lakehouse module gives it: references to other
# modules' outputs stay as text, so a statement on the lake reads "<lake arn>/gold/*".
LAKE = '${module.storage.bucket_arns["lake"]}'
ARTIFACTS = '${module.storage.bucket_arns["artifacts"]}'
LAYERS = ("landing", "bronze", "quarantine", "silver", "gold", "_ops")


def iam_scope() -> hcl.Scope:
    return hcl.env_scope("dev", lenient=True).child("lakehouse").child("iam")


def role_statements() -> dict[str, list[dict]]:
    iam = iam_scope()
    roles = dict(iam.local("layer_statements"))
    roles["break-glass"] = iam.local("break_glass_statements")
    roles["orchestrator"] = iam.local("orchestrator_statements")
    roles["deploy"] = iam.local("deploy_statements")
    return roles


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def iam_match(value: str, pattern: str) -> bool:
    """IAM wildcards: * any run of characters, ? one (no character classes, unlike fnmatch)."""
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, value) is not None


def allowed(statements: list[dict], action: str, resource: str) -> bool:
    return any(
        s["Effect"] == "Allow"
        and any(iam_match(action, a) for a in as_list(s["Action"]))
        and any(iam_match(resource, r) for r in as_list(s["Resource"]))
        for s in statements
    )


def prefixes(role: str, action: str, bucket: str = LAKE) -> set[str]:
    """The lake prefixes on whose objects `role` may do `action`."""
    statements = role_statements()[role]
    return {p for p in LAYERS if allowed(statements, action, f"{bucket}/{p}/some/table/part-0.parquet")}


@pytest.mark.parametrize(
    ("role", "reads", "writes"),
    [
        ("ingest", {"landing", "bronze", "quarantine", "_ops"}, {"bronze", "quarantine", "_ops"}),
        ("silver", {"bronze", "silver", "quarantine", "_ops"}, {"silver", "quarantine", "_ops"}),
        ("gold", {"silver", "gold", "_ops"}, {"gold", "_ops"}),
        ("break-glass", {"bronze", "quarantine"}, set()),
        ("orchestrator", {"_ops"}, {"_ops"}),
    ],
)
def test_each_role_reaches_exactly_its_layers(role, reads, writes):
    assert prefixes(role, "s3:GetObject") == reads
    assert prefixes(role, "s3:PutObject") == writes
    assert prefixes(role, "s3:DeleteObject") == writes


def test_ingest_reaches_the_streaming_checkpoint_and_only_silvers_commit_log():
    """bronze_kafka_events keeps its checkpoint under <lake>/_checkpoints/ (RunContext.checkpoint_path);
    maintain_bronze reads silver's commit log (consumed_version), never silver's data."""
    ingest = role_statements()["ingest"]
    checkpoint = f"{LAKE}/_checkpoints/bronze_kafka_events/offsets/12"
    assert allowed(ingest, "s3:PutObject", checkpoint) and allowed(ingest, "s3:GetObject", checkpoint)
    assert allowed(ingest, "s3:GetObject", f"{LAKE}/silver/orders/_delta_log/00000000000000000007.json")
    assert not allowed(ingest, "s3:PutObject", f"{LAKE}/silver/orders/_delta_log/00000000000000000008.json")
    for other in ("silver", "gold", "break-glass"):
        assert not allowed(role_statements()[other], "s3:PutObject", checkpoint), other


def test_only_the_pii_roles_can_read_bronze_and_quarantine():
    readers = {r for r in role_statements() if prefixes(r, "s3:GetObject") & {"bronze", "quarantine"}}
    assert readers == {"ingest", "silver", "break-glass"}
    # and the lake bucket policy denies everyone else, whatever IAM says
    storage = hcl.env_scope("dev", lenient=True).child("lakehouse").child("storage")
    assert storage.var("pii_reader_role_names") == [
        "lakehouse-dev-ingest",
        "lakehouse-dev-silver",
        "lakehouse-dev-break-glass",
    ]
    lake_policy = storage.module.locals["bucket_statements"]["lake"]
    deny = lake_policy[lake_policy.index("OnlyPiiReadersReadRawPrefixes") :]
    assert re.search(r'Effect = "Deny", Principal = "\*", Action = "s3:GetObject"', deny)
    assert "/bronze/*" in deny and "/quarantine/*" in deny
    assert re.search(r'ArnNotLike = \{"aws:PrincipalArn" = \[for r in var.pii_reader_role_names', deny)


def test_deploy_role_only_uploads_releases():
    """CI puts releases/<version>/*; it reads back only MANIFEST (the immutability check of
    pipeline.deploy.release) and nothing of the lake."""
    statements = role_statements()["deploy"]
    assert allowed(statements, "s3:PutObject", f"{ARTIFACTS}/releases/1.2.3/lakehouse.whl")
    assert allowed(statements, "s3:GetObject", f"{ARTIFACTS}/releases/1.2.3/MANIFEST")
    assert not allowed(statements, "s3:PutObject", f"{ARTIFACTS}/other/x")
    assert not allowed(statements, "s3:GetObject", f"{ARTIFACTS}/releases/1.2.3/lakehouse.whl")
    assert not allowed(statements, "s3:DeleteObject", f"{ARTIFACTS}/releases/1.2.3/lakehouse.whl")
    assert prefixes("deploy", "s3:PutObject") == prefixes("deploy", "s3:GetObject") == set()
    actions = {a for s in statements for a in as_list(s["Action"])}
    assert actions == {
        "s3:PutObject",
        "s3:GetObject",
        "s3:ListBucket",
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:GenerateDataKey",
    }


def test_orchestrator_passes_only_the_layer_roles_to_emr():
    [passrole] = [s for s in role_statements()["orchestrator"] if "iam:PassRole" in as_list(s["Action"])]
    assert set(passrole["Condition"]["StringEquals"]["iam:PassedToService"]) == {
        "emr-serverless.amazonaws.com",
        "elasticmapreduce.amazonaws.com",
    }
    assert (
        "ingest" in passrole["Resource"]
        and "silver" in passrole["Resource"]
        and "gold" in passrole["Resource"]
    )
    assert "break-glass" not in passrole["Resource"] and "orchestrator" not in passrole["Resource"]


def test_no_wildcard_action_is_allowed():
    for role, statements in role_statements().items():
        for s in statements:
            for action in as_list(s["Action"]):
                assert "*" not in action, f"{role} {s.get('Sid')}: {action}"


def test_a_star_resource_is_commented():
    """`*` as a resource only where AWS requires it, and the line (or the lines leading to it
    since the enclosing block opened) says why."""
    for tf in hcl.TF_ROOT.rglob("*.tf"):
        lines = tf.read_text().splitlines()
        for i, line in enumerate(lines):
            if not re.search(r'Resource\s*=\s*\[?"\*"\]?', line):
                continue
            start = max(j for j in range(i + 1) if not lines[j].startswith((" ", "\t")) or j == 0)
            context = "\n".join(lines[start:i])
            assert "#" in line or re.search(r'#.*"\*"', context), (
                f'{tf}:{i + 1}: Resource "*" without a comment saying why'
            )


def test_every_role_has_the_permissions_boundary():
    for module_dir in hcl.all_module_dirs():
        module = hcl.load_module(module_dir)
        for (rtype, name), body in module.resources.items():
            if rtype == "aws_iam_role":
                assert body.get("permissions_boundary") == "${var.permissions_boundary_arn}", (
                    f"{rtype}.{name}"
                )


def test_layer_roles_trust_emr_of_this_account_only():
    iam = hcl.load_module(hcl.TF_ROOT / "modules" / "iam")
    trust = iam.locals["layer_trust"]
    serverless = trust[: trust.index("var.emr_ec2_instance_role_arn == null")]
    assert 'Principal = {Service = "emr-serverless.amazonaws.com"}' in serverless
    assert 'StringEquals = {"aws:SourceAccount" = var.account_id}' in serverless
    assert 'ArnLike = {"aws:SourceArn" = var.emr_serverless_application_arn}' in serverless
    # the EC2 instance role is trusted only when the cluster exists
    assert "Principal = {AWS = var.emr_ec2_instance_role_arn}" in trust[len(serverless) :]
    [role] = [b for (t, n), b in iam.resources.items() if (t, n) == ("aws_iam_role", "layer")]
    assert "Statement = local.layer_trust" in role["assume_role_policy"]


def resources_of(rtype: str) -> list[tuple[str, dict]]:
    return [
        (f"{module_dir.name}.{name}", body)
        for module_dir in hcl.all_module_dirs()
        for (t, name), body in hcl.load_module(module_dir).resources.items()
        if t == rtype
    ]


@pytest.mark.parametrize(
    ("rtype", "attribute"),
    [
        ("aws_cloudwatch_log_group", "kms_key_id"),
        ("aws_sns_topic", "kms_master_key_id"),
        ("aws_secretsmanager_secret", "kms_key_id"),
        ("aws_cloudtrail", "kms_key_id"),
        ("aws_cloudwatch_log_group", "retention_in_days"),
    ],
)
def test_encrypted_with_the_kms_key(rtype, attribute):
    found = resources_of(rtype)
    assert found, f"no {rtype}"
    for where, body in found:
        assert body.get(attribute), f"{where}: {attribute} not set"


def test_table_buckets_and_trail_settings():
    [(_, table)] = resources_of("aws_dynamodb_table")
    assert table["server_side_encryption"][0]["enabled"] is True
    assert table["server_side_encryption"][0]["kms_key_arn"] == "${aws_kms_key.this.arn}"
    assert table["point_in_time_recovery"][0]["enabled"] is True
    assert table["ttl"][0]["attribute_name"] == '"expireTime"'
    [(_, key)] = resources_of("aws_kms_key")
    assert key["enable_key_rotation"] is True and "policy" in key
    [(_, sse)] = resources_of("aws_s3_bucket_server_side_encryption_configuration")
    assert "aws:kms" in sse["rule"][0]["apply_server_side_encryption_by_default"][0]["sse_algorithm"]
    [(_, pab)] = resources_of("aws_s3_bucket_public_access_block")
    assert all(
        pab[k] is True
        for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
    )
    [(_, trail)] = resources_of("aws_cloudtrail")
    assert trail["enable_log_file_validation"] is True
    [(_, msk)] = resources_of("aws_msk_cluster")
    assert msk["client_authentication"][0]["sasl"][0]["iam"] is True
    assert msk["encryption_info"][0]["encryption_in_transit"][0]["client_broker"] == '"TLS"'


def test_every_bucket_policy_denies_plain_http():
    storage = hcl.load_module(hcl.TF_ROOT / "modules" / "storage")
    [policy] = [b for (t, _), b in storage.resources.items() if t == "aws_s3_bucket_policy"]
    assert policy["for_each"] == "${local.buckets}"
    assert "Statement = local.bucket_statements[each.key]" in policy["policy"]
    for bucket in hcl.Scope(storage, {"name_prefix": "x"}).local("buckets"):
        assert storage.locals["bucket_statements"][bucket].count(f'local.common_statements["{bucket}"]') == 1
    common = storage.locals["common_statements"]
    assert "for k, arn in local.bucket_arns" in common
    assert re.search(r'Effect = "Deny".*Condition = \{Bool = \{"aws:SecureTransport" = "false"\}\}', common)


def test_no_lifecycle_expiration_covers_layer_data():
    """bronze/, silver/, gold/ and quarantine/ lose files only through Delta VACUUM: an expiring
    rule may cover nothing there but a table's _delta_log/.tmp/ (orphaned temp commits)."""
    storage = hcl.env_scope("dev", lenient=True).child("lakehouse").child("storage")
    [(_, lake)] = [
        (n, b) for n, b in resources_of("aws_s3_bucket_lifecycle_configuration") if n.endswith(".lake")
    ]
    rules = [r for r in lake["rule"]]
    for dynamic in lake.get("dynamic", []):
        [(label, body)] = [(k, v) for k, v in dynamic.items() if k != hcl.BLOCK]
        assert hcl.unquote(label) == "rule"
        assert body["for_each"] == "${local.delta_tmp_prefixes}"
        rules += [
            {**content, "filter": [{"prefix": f'"{p}"'}]}
            for content in body["content"]
            for p in tmp_prefixes(storage)
        ]
    expiring = [r for r in rules if r.get("expiration")]
    assert expiring, "the _delta_log/.tmp/ rules are missing"
    for rule in expiring:
        prefix = hcl.unquote(rule["filter"][0].get("prefix", '""'))
        assert prefix, f"rule {rule['id']} expires the whole bucket"
        if prefix.startswith(("bronze/", "silver/", "gold/", "quarantine/")):
            assert re.fullmatch(r"[a-z_]+/[a-z0-9_]+/_delta_log/\.tmp/", prefix), prefix


def tmp_prefixes(storage: hcl.Scope) -> list[str]:
    """delta_tmp_prefixes as Terraform computes it: <layer>/<table>/_delta_log/.tmp/."""
    expression = storage.module.locals["delta_tmp_prefixes"]
    assert '"${layer}/${t}/_delta_log/.tmp/"' in expression
    tables = hcl.env_scope("dev").child("lakehouse").local("delta_tables")
    return [f"{layer}/{t}/_delta_log/.tmp/" for layer, names in tables.items() for t in names]


def test_the_orchestrator_may_make_every_aws_call_the_emr_executors_make():
    """Each API call in pipeline/driver/emr.py (boto3 method -> IAM action of the executor's
    service) is granted to the orchestrator role, which runs `lakehouse run --executor emr-*`."""
    source = (hcl.REPO / "src" / "pipeline" / "driver" / "emr.py").read_text()
    iam_prefix = {"emr-serverless": "emr-serverless", "emr": "elasticmapreduce"}
    calls = set()
    for block in source.split("\nclass ")[1:]:
        service = re.search(r'^\s+service = "([a-z-]+)"', block, re.M)
        if service:
            for method in set(re.findall(r"self\.client\.([a-z_]+)\(", block)):
                action = "".join(word.title() for word in method.split("_"))
                calls.add(f"{iam_prefix[service.group(1)]}:{action}")
    calls |= {"kms:DescribeKey", "iam:PassRole"}  # the lake key's alias; the layer roles
    assert {"emr-serverless:StartJobRun", "elasticmapreduce:AddJobFlowSteps"} <= calls
    granted = [
        a for s in role_statements()["orchestrator"] if s["Effect"] == "Allow" for a in as_list(s["Action"])
    ]
    missing = sorted(c for c in calls if not any(iam_match(c, a) for a in granted))
    assert missing == [], f"the orchestrator role lacks {missing}"
