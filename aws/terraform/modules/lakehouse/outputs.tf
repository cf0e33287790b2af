output "names" {
  description = "What config/<env>.yaml refers to."
  value = {
    lake_bucket                = module.storage.bucket_names["lake"]
    artifacts_bucket           = module.storage.bucket_names["artifacts"]
    logs_bucket                = module.storage.bucket_names["logs"]
    delta_log_table            = module.storage.delta_log_table_name
    alerts_topic               = module.observability.alerts_topic_name
    metrics_namespace          = local.metrics_namespace
    emr_serverless_application = module.compute.serverless_application_name
    layer_roles                = module.iam.layer_role_names
    secrets                    = module.governance.secret_names
    glue_databases             = module.governance.glue_database_names
  }
}

output "kms_key_arn" {
  value = module.storage.kms_key_arn
}

output "alerts_topic_arn" {
  value = module.observability.alerts_topic_arn
}

output "emr_serverless_application_id" {
  value = module.compute.serverless_application_id
}

output "emr_cluster_id" {
  value = module.compute.emr_cluster_id
}

output "job_run_monitoring" {
  value = module.compute.job_run_monitoring
}

output "layer_role_arns" {
  value = module.iam.layer_role_arns
}

output "orchestrator_role_arn" {
  value = module.iam.orchestrator_role_arn
}

output "break_glass_role_arn" {
  value = module.iam.break_glass_role_arn
}

output "deploy_role_arn" {
  value = module.iam.deploy_role_arn
}

output "role_policies" {
  value = module.iam.role_policies
}

output "msk_bootstrap_brokers_sasl_iam" {
  value = module.streaming.bootstrap_brokers_sasl_iam
}

output "alarm_names" {
  value = module.observability.alarm_names
}

output "alarm_namespaces" {
  value = module.observability.alarm_namespaces
}

output "gold_table_locations" {
  value = module.governance.gold_table_locations
}
