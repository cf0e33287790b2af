output "names" {
  value = module.lakehouse.names
}

output "kms_key_arn" {
  value = module.lakehouse.kms_key_arn
}

output "alerts_topic_arn" {
  value = module.lakehouse.alerts_topic_arn
}

output "emr_serverless_application_id" {
  value = module.lakehouse.emr_serverless_application_id
}

output "emr_cluster_id" {
  value = module.lakehouse.emr_cluster_id
}

output "job_run_monitoring" {
  description = "Monitoring configuration every StartJobRun should carry (S3 + CloudWatch Logs, KMS)."
  value       = module.lakehouse.job_run_monitoring
}

output "layer_role_arns" {
  value = module.lakehouse.layer_role_arns
}

output "orchestrator_role_arn" {
  value = module.lakehouse.orchestrator_role_arn
}

output "break_glass_role_arn" {
  value = module.lakehouse.break_glass_role_arn
}

output "deploy_role_arn" {
  value = module.lakehouse.deploy_role_arn
}

output "role_policies" {
  value = module.lakehouse.role_policies
}

output "msk_bootstrap_brokers_sasl_iam" {
  value = module.lakehouse.msk_bootstrap_brokers_sasl_iam
}

output "alarm_names" {
  value = module.lakehouse.alarm_names
}

output "alarm_namespaces" {
  value = module.lakehouse.alarm_namespaces
}

output "gold_table_locations" {
  value = module.lakehouse.gold_table_locations
}
