# One environment of the lakehouse. Names follow config/<env>.yaml: lakehouse-<env>-lake,
# lakehouse-<env>-delta-log, lakehouse/<env>/<secret>, Lakehouse/<env> metrics, and so on.
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  name_prefix       = "lakehouse-${var.environment}"
  account_id        = data.aws_caller_identity.current.account_id
  partition         = data.aws_partition.current.partition
  region            = data.aws_region.current.name
  metrics_namespace = "Lakehouse/${var.environment}"
  cloudtrail_name   = "${local.name_prefix}-lake-data-events"
  account_root      = "arn:${local.partition}:iam::${local.account_id}:root"
  tags              = merge(var.tags, { project = "lakehouse", environment = var.environment })
}

module "storage" {
  source                             = "../storage"
  name_prefix                        = local.name_prefix
  account_id                         = local.account_id
  region                             = local.region
  partition                          = local.partition
  cloudtrail_name                    = local.cloudtrail_name
  pii_reader_role_names              = ["${local.name_prefix}-ingest", "${local.name_prefix}-silver", "${local.name_prefix}-break-glass"]
  delta_tables                       = local.delta_tables
  landing_transition_days            = var.landing_transition_days
  landing_transition_storage_class   = var.landing_transition_storage_class
  noncurrent_version_expiration_days = var.noncurrent_version_expiration_days
  delta_tmp_expiration_days          = var.delta_tmp_expiration_days
  abort_incomplete_multipart_days    = var.abort_incomplete_multipart_days
  logs_expiration_days               = var.logs_expiration_days
  tags                               = local.tags
}

module "compute" {
  source                          = "../compute"
  name_prefix                     = local.name_prefix
  environment                     = var.environment
  account_id                      = local.account_id
  region                          = local.region
  partition                       = local.partition
  release_label                   = var.emr_release_label
  kms_key_arn                     = module.storage.kms_key_arn
  artifacts_bucket_arn            = module.storage.bucket_arns["artifacts"]
  logs_bucket_name                = module.storage.bucket_names["logs"]
  log_retention_days              = var.log_retention_days
  serverless_max_capacity         = var.serverless_max_capacity
  serverless_idle_timeout_minutes = var.serverless_idle_timeout_minutes
  serverless_subnet_ids           = var.vpc_subnet_ids
  serverless_security_group_ids   = var.vpc_security_group_ids
  enable_emr_ec2                  = var.enable_emr_ec2
  emr_ec2_subnet_id               = try(var.vpc_subnet_ids[0], null)
  emr_ec2_master_instance_type    = var.emr_ec2_master_instance_type
  emr_ec2_core_instance_type      = var.emr_ec2_core_instance_type
  emr_ec2_core_instance_count     = var.emr_ec2_core_instance_count
  emr_ec2_idle_timeout_seconds    = var.emr_ec2_idle_timeout_seconds
  emr_tls_certificate_s3_uri      = var.emr_tls_certificate_s3_uri
  layer_role_names                = [for k in ["ingest", "silver", "gold"] : "${local.name_prefix}-${k}"]
  permissions_boundary_arn        = var.permissions_boundary_arn
  tags                            = local.tags
}

module "observability" {
  source        = "../observability"
  name_prefix   = local.name_prefix
  environment   = var.environment
  region        = local.region
  account_id    = local.account_id
  kms_key_arn   = module.storage.kms_key_arn
  alert_email   = var.alert_email
  generated_dir = "${path.module}/../../generated"
  tags          = local.tags
}

module "streaming" {
  source               = "../streaming"
  name_prefix          = local.name_prefix
  environment          = var.environment
  enable_msk           = var.enable_msk
  kafka_version        = var.msk_kafka_version
  broker_instance_type = var.msk_broker_instance_type
  broker_volume_gb     = var.msk_broker_volume_gb
  subnet_ids           = var.vpc_subnet_ids
  security_group_ids   = var.vpc_security_group_ids
  kms_key_arn          = module.storage.kms_key_arn
  log_retention_days   = var.log_retention_days
  tags                 = local.tags
}

module "iam" {
  source                         = "../iam"
  name_prefix                    = local.name_prefix
  account_id                     = local.account_id
  region                         = local.region
  partition                      = local.partition
  metrics_namespace              = local.metrics_namespace
  lake_bucket_arn                = module.storage.bucket_arns["lake"]
  artifacts_bucket_arn           = module.storage.bucket_arns["artifacts"]
  logs_bucket_arn                = module.storage.bucket_arns["logs"]
  kms_key_arn                    = module.storage.kms_key_arn
  delta_log_table_arn            = module.storage.delta_log_table_arn
  alerts_topic_arn               = module.observability.alerts_topic_arn
  secrets_prefix                 = "lakehouse/${var.environment}/"
  emr_serverless_application_arn = module.compute.serverless_application_arn
  emr_log_group_arn              = module.compute.log_group_arn
  emr_ec2_instance_role_arn      = module.compute.emr_ec2_instance_role_arn
  environment_tag                = var.environment
  msk_cluster_name               = local.name_prefix
  kafka_topic                    = var.kafka_topic
  kafka_consumer_group_prefix    = "spark-kafka-source-"
  break_glass_principal_arns     = length(var.break_glass_principal_arns) > 0 ? var.break_glass_principal_arns : [local.account_root]
  orchestrator_principal_arns    = length(var.orchestrator_principal_arns) > 0 ? var.orchestrator_principal_arns : [local.account_root]
  github_repository              = var.github_repository
  permissions_boundary_arn       = var.permissions_boundary_arn
  tags                           = local.tags
}

module "governance" {
  source                      = "../governance"
  name_prefix                 = local.name_prefix
  environment                 = var.environment
  kms_key_arn                 = module.storage.kms_key_arn
  lake_bucket_name            = module.storage.bucket_names["lake"]
  lake_bucket_arn             = module.storage.bucket_arns["lake"]
  logs_bucket_name            = module.storage.logs_bucket_name_with_policy
  cloudtrail_name             = local.cloudtrail_name
  gold_marts                  = local.delta_tables["gold"]
  secret_recovery_window_days = var.secret_recovery_window_days
  tags                        = local.tags
}
