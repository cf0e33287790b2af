resource "aws_emrserverless_application" "this" {
  name          = var.name_prefix
  release_label = var.release_label
  type          = "spark"
  architecture  = "X86_64"

  maximum_capacity {
    cpu    = var.serverless_max_capacity.cpu
    memory = var.serverless_max_capacity.memory
    disk   = var.serverless_max_capacity.disk
  }

  auto_start_configuration {
    enabled = true
  }

  auto_stop_configuration {
    enabled              = true
    idle_timeout_minutes = var.serverless_idle_timeout_minutes
  }

  dynamic "network_configuration" {
    for_each = length(var.serverless_subnet_ids) > 0 ? [1] : []
    content {
      subnet_ids         = var.serverless_subnet_ids
      security_group_ids = var.serverless_security_group_ids
    }
  }

  # Provider 5.x has no application-level monitoring_configuration: every StartJobRun carries
  # configurationOverrides.monitoringConfiguration (S3 logs to the logs bucket with the KMS key,
  # CloudWatch Logs to the group below); output job_run_monitoring is that block.
  tags = var.tags
}

resource "aws_cloudwatch_log_group" "emr_serverless" {
  name              = "/lakehouse/${var.environment}/emr-serverless"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}
