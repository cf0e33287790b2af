# Security properties of the dev stack, on a mocked AWS provider (no account, no credentials).
# The account facts are fixed so ARNs in the policies read as they would in AWS.
mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_region" {
    defaults = { name = "us-east-1" }
  }
  # The provider validates ARN arguments, so mocked ARNs must look like ARNs.
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000" }
  }
  mock_resource "aws_sns_topic" {
    defaults = { arn = "arn:aws:sns:us-east-1:123456789012:lakehouse-dev-alerts" }
  }
  mock_resource "aws_emrserverless_application" {
    defaults = { arn = "arn:aws:emr-serverless:us-east-1:123456789012:/applications/00example" }
  }
  mock_resource "aws_iam_openid_connect_provider" {
    defaults = { arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/mock" }
  }
  mock_resource "aws_dynamodb_table" {
    defaults = { arn = "arn:aws:dynamodb:us-east-1:123456789012:table/lakehouse-dev-delta-log" }
  }
}

variables {
  lake = "arn:aws:s3:::lakehouse-dev-lake"
}

run "storage_is_encrypted_private_and_tls_only" {
  command = apply

  module {
    source = "../../modules/storage"
  }

  variables {
    name_prefix                        = "lakehouse-dev"
    account_id                         = "123456789012"
    region                             = "us-east-1"
    partition                          = "aws"
    cloudtrail_name                    = "lakehouse-dev-lake-data-events"
    pii_reader_role_names              = ["lakehouse-dev-ingest", "lakehouse-dev-silver", "lakehouse-dev-break-glass"]
    delta_tables                       = { bronze = ["crm_accounts"], silver = ["accounts"], quarantine = ["accounts"], gold = ["fct_orders"] }
    landing_transition_days            = 30
    landing_transition_storage_class   = "GLACIER_IR"
    noncurrent_version_expiration_days = 7
    delta_tmp_expiration_days          = 7
    abort_incomplete_multipart_days    = 3
    logs_expiration_days               = 90
    tags                               = {}
  }

  assert {
    condition     = aws_kms_key.this.enable_key_rotation
    error_message = "the KMS key must rotate"
  }
  assert {
    condition = alltrue([for k in ["lake", "artifacts"] : flatten([
      for r in aws_s3_bucket_server_side_encryption_configuration.this[k].rule : [for d in r.apply_server_side_encryption_by_default : d.sse_algorithm]
    ]) == ["aws:kms"]])
    error_message = "lake and artifacts buckets must default to SSE-KMS"
  }
  assert {
    condition = flatten([
      for r in aws_s3_bucket_server_side_encryption_configuration.this["logs"].rule : [for d in r.apply_server_side_encryption_by_default : d.sse_algorithm]
    ]) == ["AES256"]
    error_message = "the logs bucket (S3 access log target) must default to SSE-S3"
  }
  assert {
    condition = alltrue([for b in aws_s3_bucket_public_access_block.this :
    b.block_public_acls && b.block_public_policy && b.ignore_public_acls && b.restrict_public_buckets])
    error_message = "every bucket must block public access"
  }
  assert {
    condition     = alltrue([for o in aws_s3_bucket_ownership_controls.this : o.rule[0].object_ownership == "BucketOwnerEnforced"])
    error_message = "ACLs must be disabled (BucketOwnerEnforced)"
  }
  assert {
    condition     = alltrue([for v in aws_s3_bucket_versioning.this : v.versioning_configuration[0].status == "Enabled"])
    error_message = "every bucket must be versioned"
  }
  assert {
    condition = alltrue([for p in aws_s3_bucket_policy.this : anytrue([for s in jsondecode(p.policy).Statement :
    s.Effect == "Deny" && try(s.Condition.Bool["aws:SecureTransport"], "") == "false"])])
    error_message = "every bucket policy must deny non-TLS requests"
  }
  assert {
    condition = anytrue([for s in jsondecode(aws_s3_bucket_policy.this["lake"].policy).Statement :
      s.Effect == "Deny" && s.Action == "s3:GetObject" && contains(try(tolist(s.Resource), []), "${var.lake}/bronze/*") &&
      contains(try(s.Condition.ArnNotLike["aws:PrincipalArn"], []), "arn:aws:iam::123456789012:role/lakehouse-dev-silver") &&
    !contains(try(s.Condition.ArnNotLike["aws:PrincipalArn"], []), "arn:aws:iam::123456789012:role/lakehouse-dev-gold")])
    error_message = "the lake policy must deny bronze/ reads to every role but the PII readers"
  }
  assert {
    condition = alltrue(flatten([for lc in [aws_s3_bucket_lifecycle_configuration.lake] : [for r in lc.rule :
      length(r.expiration) == 0 || alltrue([for f in r.filter : f.prefix != null && f.prefix != "" && (
        !anytrue([for p in ["bronze/", "silver/", "gold/", "quarantine/"] : startswith(f.prefix, p)]) ||
        endswith(f.prefix, "/_delta_log/.tmp/")
    )])]]))
    error_message = "no expiration rule may cover bronze/, silver/, gold/ or quarantine/ data (only their _delta_log/.tmp/)"
  }
  assert {
    condition = (
      [for e in aws_dynamodb_table.delta_log.server_side_encryption : e.enabled && e.kms_key_arn == aws_kms_key.this.arn] == [true] &&
      [for p in aws_dynamodb_table.delta_log.point_in_time_recovery : p.enabled] == [true]
    )
    error_message = "the Delta log table must be KMS-encrypted with point-in-time recovery"
  }
}

run "whole_dev_stack" {
  command = apply

  assert {
    condition     = output.lakehouse.names.lake_bucket == "lakehouse-dev-lake" && output.lakehouse.names.delta_log_table == "lakehouse-dev-delta-log"
    error_message = "names must match config/dev.yaml"
  }
  assert {
    condition     = one(output.lakehouse.alarm_namespaces) == "Lakehouse/dev" && length(output.lakehouse.alarm_names) == length(jsondecode(file("../../generated/alarms_dev.json")))
    error_message = "one alarm per generated alarm, all in Lakehouse/dev"
  }
  # Layer boundaries, read from the rendered policies: which role may PutObject/GetObject where.
  assert {
    condition = !anytrue([for s in jsondecode(output.lakehouse.role_policies["ingest"]).Statement :
    contains(s.Action, "s3:PutObject") && anytrue([for r in s.Resource : startswith(r, "${var.lake}/gold/")])])
    error_message = "the ingest role must not write gold/"
  }
  assert {
    condition = !anytrue([for s in jsondecode(output.lakehouse.role_policies["gold"]).Statement :
    contains(s.Action, "s3:GetObject") && anytrue([for r in s.Resource : startswith(r, "${var.lake}/bronze/") || startswith(r, "${var.lake}/quarantine/")])])
    error_message = "the gold role must not read bronze/ or quarantine/"
  }
  assert {
    condition = anytrue([for s in jsondecode(output.lakehouse.role_policies["ingest"]).Statement :
    contains(s.Action, "s3:PutObject") && contains(s.Resource, "${var.lake}/bronze/*")])
    error_message = "the ingest role must write bronze/ (the boundary checks above would pass vacuously otherwise)"
  }
  assert {
    condition = alltrue([for name, p in output.lakehouse.role_policies : alltrue([for s in jsondecode(p).Statement :
    !contains(flatten([s.Action]), "*") && !anytrue([for a in flatten([s.Action]) : endswith(a, ":*")])])])
    error_message = "no role policy may grant a wildcard action"
  }
}

run "optional_emr_on_ec2_and_msk" {
  command = apply

  # what envs/dev/main.tf would set in its module call to build them
  module {
    source = "../../modules/lakehouse"
  }

  variables {
    environment                 = "dev"
    logs_expiration_days        = 90
    secret_recovery_window_days = 7
    serverless_max_capacity     = { cpu = "100 vCPU", memory = "700 GB", disk = "2000 GB" }
    github_repository           = "example-org/lakehouse"
    enable_emr_ec2              = true
    emr_tls_certificate_s3_uri  = "s3://lakehouse-dev-artifacts/tls/emr-certs.zip"
    enable_msk                  = true
    vpc_subnet_ids              = ["subnet-0a", "subnet-0b"]
    vpc_security_group_ids      = ["sg-0a"]
    alert_email                 = "oncall@example.com"
  }

  assert {
    condition     = output.emr_cluster_id != null && output.msk_bootstrap_brokers_sasl_iam != null
    error_message = "enable_emr_ec2 / enable_msk must build the cluster and the MSK cluster"
  }
  assert {
    condition = anytrue([for s in jsondecode(output.role_policies["ingest"]).Statement :
    contains(s.Action, "kafka-cluster:ReadData") && contains(s.Resource, "arn:aws:kafka:us-east-1:123456789012:topic/lakehouse-dev/*/product_events")])
    error_message = "the ingest role must read the product_events topic of lakehouse-dev"
  }
}

run "emr_cluster_security_configuration" {
  command = apply

  module {
    source = "../../modules/compute"
  }

  variables {
    name_prefix                     = "lakehouse-dev"
    environment                     = "dev"
    account_id                      = "123456789012"
    region                          = "us-east-1"
    partition                       = "aws"
    release_label                   = "emr-spark-8.0.0"
    kms_key_arn                     = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    artifacts_bucket_arn            = "arn:aws:s3:::lakehouse-dev-artifacts"
    logs_bucket_name                = "lakehouse-dev-logs"
    log_retention_days              = 365
    serverless_max_capacity         = { cpu = "100 vCPU", memory = "700 GB", disk = "2000 GB" }
    serverless_idle_timeout_minutes = 15
    serverless_subnet_ids           = []
    serverless_security_group_ids   = []
    enable_emr_ec2                  = true
    emr_ec2_subnet_id               = "subnet-0a"
    emr_ec2_master_instance_type    = "m6g.xlarge"
    emr_ec2_core_instance_type      = "r6g.2xlarge"
    emr_ec2_core_instance_count     = 2
    emr_ec2_idle_timeout_seconds    = 3600
    emr_tls_certificate_s3_uri      = "s3://lakehouse-dev-artifacts/tls/emr-certs.zip"
    layer_role_names                = ["lakehouse-dev-ingest", "lakehouse-dev-silver", "lakehouse-dev-gold"]
    tags                            = {}
  }

  assert {
    condition     = jsondecode(aws_emr_security_configuration.this[0].configuration).InstanceMetadataServiceConfiguration.MinimumInstanceMetadataServiceVersion == 2
    error_message = "cluster nodes must require IMDSv2"
  }
  assert {
    condition = (
      jsondecode(aws_emr_security_configuration.this[0].configuration).EncryptionConfiguration.EnableInTransitEncryption &&
      jsondecode(aws_emr_security_configuration.this[0].configuration).EncryptionConfiguration.AtRestEncryptionConfiguration.S3EncryptionConfiguration.EncryptionMode == "SSE-KMS" &&
      jsondecode(aws_emr_security_configuration.this[0].configuration).EncryptionConfiguration.AtRestEncryptionConfiguration.LocalDiskEncryptionConfiguration.EncryptionKeyProviderType == "AwsKms"
    )
    error_message = "the cluster must encrypt S3 (SSE-KMS), local disks (KMS) and traffic (TLS)"
  }
  assert {
    condition     = aws_cloudwatch_log_group.emr_serverless.kms_key_id != null && aws_emrserverless_application.this.auto_stop_configuration[0].enabled
    error_message = "EMR Serverless logs must be KMS-encrypted and the application must stop when idle"
  }
}

run "emr_cluster_needs_a_tls_certificate" {
  command = plan

  module {
    source = "../../modules/compute"
  }

  variables {
    name_prefix                     = "lakehouse-dev"
    environment                     = "dev"
    account_id                      = "123456789012"
    region                          = "us-east-1"
    partition                       = "aws"
    release_label                   = "emr-spark-8.0.0"
    kms_key_arn                     = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    artifacts_bucket_arn            = "arn:aws:s3:::lakehouse-dev-artifacts"
    logs_bucket_name                = "lakehouse-dev-logs"
    log_retention_days              = 365
    serverless_max_capacity         = { cpu = "100 vCPU", memory = "700 GB", disk = "2000 GB" }
    serverless_idle_timeout_minutes = 15
    serverless_subnet_ids           = []
    serverless_security_group_ids   = []
    enable_emr_ec2                  = true
    emr_ec2_subnet_id               = "subnet-0a"
    emr_ec2_master_instance_type    = "m6g.xlarge"
    emr_ec2_core_instance_type      = "r6g.2xlarge"
    emr_ec2_core_instance_count     = 2
    emr_ec2_idle_timeout_seconds    = 3600
    emr_tls_certificate_s3_uri      = null
    layer_role_names                = ["lakehouse-dev-ingest", "lakehouse-dev-silver", "lakehouse-dev-gold"]
    tags                            = {}
  }

  expect_failures = [aws_emr_security_configuration.this]
}
