# What differs between environments has no default here: each envs/<env>/main.tf states it.
# Everything else defaults to the one value dev and prod share; an env overrides it in its
# module call (or, for the per-deployment settings, its terraform.tfvars).

variable "environment" {
  description = "dev or prod: every name is lakehouse-<environment>-..., as config/<environment>.yaml expects."
  type        = string
}

variable "logs_expiration_days" {
  description = "Days the logs bucket keeps its objects."
  type        = number
}

variable "serverless_max_capacity" {
  description = "Sum over all concurrent job runs of the application (tests/terraform holds it to config/<env>.yaml aws.emr)."
  type = object({
    cpu    = string
    memory = string
    disk   = string
  })
}

variable "secret_recovery_window_days" {
  type = number
}

variable "github_repository" {
  description = "owner/name whose main branch may upload releases (GitHub Actions OIDC)."
  type        = string
}

variable "landing_transition_days" {
  description = "Days before landing/ files move to colder storage."
  type        = number
  default     = 30
}

variable "landing_transition_storage_class" {
  type    = string
  default = "GLACIER_IR"
}

variable "noncurrent_version_expiration_days" {
  description = "Days an overwritten or deleted object version is kept (the undo window for a bad delete)."
  type        = number
  default     = 7
}

variable "delta_tmp_expiration_days" {
  type    = number
  default = 7
}

variable "abort_incomplete_multipart_days" {
  type    = number
  default = 3
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups (a year: a slow leak shows over months)."
  type        = number
  default     = 365
}

variable "emr_release_label" {
  type    = string
  default = "emr-spark-8.0.0"
}

variable "serverless_idle_timeout_minutes" {
  type    = number
  default = 15
}

variable "vpc_subnet_ids" {
  description = "Private subnets for EMR Serverless job runs, the EMR cluster (first one) and MSK brokers; empty: no VPC access."
  type        = list(string)
  default     = []
}

variable "vpc_security_group_ids" {
  type    = list(string)
  default = []
}

variable "enable_emr_ec2" {
  description = "Also build the EMR-on-EC2 cluster (lakehouse run --executor emr-ec2)."
  type        = bool
  default     = false
}

variable "emr_ec2_master_instance_type" {
  type    = string
  default = "m6i.xlarge" # x86_64: make package builds the Python archive for it, not for Graviton
}

variable "emr_ec2_core_instance_type" {
  type    = string
  default = "r6i.2xlarge" # x86_64, as above
}

variable "emr_ec2_core_instance_count" {
  type    = number
  default = 2
}

variable "emr_ec2_idle_timeout_seconds" {
  type    = number
  default = 3600
}

variable "emr_tls_certificate_s3_uri" {
  description = "s3:// URI of the PEM zip for EMR in-transit encryption (with enable_emr_ec2)."
  type        = string
  default     = null
}

variable "enable_msk" {
  description = "Build the MSK cluster lakehouse-<environment> (IAM auth) for kafka_events."
  type        = bool
  default     = false
}

variable "msk_kafka_version" {
  type    = string
  default = "3.6.0"
}

variable "msk_broker_instance_type" {
  type    = string
  default = "kafka.m7g.large"
}

variable "msk_broker_volume_gb" {
  type    = number
  default = 100
}

variable "kafka_topic" {
  description = "Topic of kafka_events (config/<env>.yaml sources.kafka_events.kafka.topic)."
  type        = string
  default     = "product_events"
}

variable "alert_email" {
  description = "E-mail subscribed to lakehouse-<environment>-alerts; null: none."
  type        = string
  default     = null
}

variable "break_glass_principal_arns" {
  nullable    = false # envs/<env> pass null for "not set"
  description = "Who may assume the break-glass role (with MFA); empty: the account's IAM principals."
  type        = list(string)
  default     = []
}

variable "orchestrator_principal_arns" {
  nullable    = false # envs/<env> pass null for "not set"
  description = "Who may assume the orchestrator role; empty: the account's IAM principals."
  type        = list(string)
  default     = []
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary applied to every role this stack creates; null: none."
  type        = string
  default     = null
}

variable "tags" {
  type    = map(string)
  default = {}
}
