variable "environment" {
  description = "dev or prod: every name is lakehouse-<environment>-..., as config/<environment>.yaml expects."
  type        = string
}

variable "landing_transition_days" {
  type = number
}

variable "landing_transition_storage_class" {
  type = string
}

variable "noncurrent_version_expiration_days" {
  type = number
}

variable "delta_tmp_expiration_days" {
  type = number
}

variable "abort_incomplete_multipart_days" {
  type = number
}

variable "logs_expiration_days" {
  type = number
}

variable "log_retention_days" {
  type = number
}

variable "delta_tables" {
  description = "Delta tables of the lake by prefix; gold's are also registered in Glue."
  type        = map(list(string))
}

variable "emr_release_label" {
  type = string
}

variable "serverless_max_capacity" {
  type = object({
    cpu    = string
    memory = string
    disk   = string
  })
}

variable "serverless_idle_timeout_minutes" {
  type = number
}

variable "vpc_subnet_ids" {
  description = "Private subnets for EMR Serverless job runs, the EMR cluster (first one) and MSK brokers."
  type        = list(string)
}

variable "vpc_security_group_ids" {
  type = list(string)
}

variable "enable_emr_ec2" {
  type = bool
}

variable "emr_ec2_master_instance_type" {
  type = string
}

variable "emr_ec2_core_instance_type" {
  type = string
}

variable "emr_ec2_core_instance_count" {
  type = number
}

variable "emr_ec2_idle_timeout_seconds" {
  type = number
}

variable "emr_tls_certificate_s3_uri" {
  type    = string
  default = null
}

variable "enable_msk" {
  type = bool
}

variable "msk_kafka_version" {
  type = string
}

variable "msk_broker_instance_type" {
  type = string
}

variable "msk_broker_volume_gb" {
  type = number
}

variable "kafka_topic" {
  type = string
}

variable "alert_email" {
  type    = string
  default = null
}

variable "github_repository" {
  type = string
}

variable "break_glass_principal_arns" {
  description = "Who may assume the break-glass role (with MFA); empty: the account's IAM principals."
  type        = list(string)
}

variable "orchestrator_principal_arns" {
  description = "Who may assume the orchestrator role; empty: the account's IAM principals."
  type        = list(string)
}

variable "permissions_boundary_arn" {
  type    = string
  default = null
}

variable "secret_recovery_window_days" {
  type = number
}

variable "tags" {
  type = map(string)
}
