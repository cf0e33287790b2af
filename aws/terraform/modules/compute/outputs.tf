output "serverless_application_arn" {
  value = aws_emrserverless_application.this.arn
}

output "serverless_application_id" {
  value = aws_emrserverless_application.this.id
}

output "serverless_application_name" {
  value = aws_emrserverless_application.this.name
}

output "job_run_monitoring" {
  description = "configurationOverrides.monitoringConfiguration for StartJobRun."
  value = {
    s3MonitoringConfiguration = {
      logUri           = "s3://${var.logs_bucket_name}/emr/"
      encryptionKeyArn = var.kms_key_arn
    }
    cloudWatchLoggingConfiguration = {
      enabled          = true
      logGroupName     = aws_cloudwatch_log_group.emr_serverless.name
      encryptionKeyArn = var.kms_key_arn
    }
  }
}

output "emr_ec2_instance_role_arn" {
  value = one(aws_iam_role.emr_instance[*].arn)
}

output "emr_cluster_id" {
  value = one(aws_emr_cluster.this[*].id)
}

output "log_group_arn" {
  value = aws_cloudwatch_log_group.emr_serverless.arn
}
