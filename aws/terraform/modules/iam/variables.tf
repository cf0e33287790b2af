variable "name_prefix" {
  type = string
}

variable "account_id" {
  type = string
}

variable "region" {
  type = string
}

variable "partition" {
  type = string
}

variable "metrics_namespace" {
  description = "The only CloudWatch namespace the roles may put metrics into."
  type        = string
}

variable "lake_bucket_arn" {
  type = string
}

variable "artifacts_bucket_arn" {
  type = string
}

variable "logs_bucket_arn" {
  type = string
}

variable "kms_key_arn" {
  type = string
}

variable "delta_log_table_arn" {
  type = string
}

variable "alerts_topic_arn" {
  type = string
}

variable "secrets_prefix" {
  description = "Secrets Manager name prefix the roles may read, e.g. lakehouse/dev/."
  type        = string
}

variable "emr_serverless_application_arn" {
  type = string
}

variable "emr_log_group_arn" {
  description = "CloudWatch log group of the EMR Serverless job runs."
  type        = string
}

variable "emr_ec2_instance_role_arn" {
  description = "Instance role of the EMR-on-EC2 cluster, trusted to assume the layer roles as EMR runtime roles; null without a cluster."
  type        = string
  default     = null
}

variable "environment_tag" {
  description = "Value of the lakehouse-environment tag on the EMR cluster: the orchestrator may only drive clusters carrying it."
  type        = string
}

variable "msk_cluster_name" {
  type = string
}

variable "kafka_topic" {
  type = string
}

variable "kafka_consumer_group_prefix" {
  description = "Spark's Kafka source names its consumer groups spark-kafka-source-<uuid> unless told otherwise."
  type        = string
}

variable "break_glass_principal_arns" {
  description = "Principals (users or SSO roles) allowed to assume the break-glass role, with MFA."
  type        = list(string)
}

variable "orchestrator_principal_arns" {
  description = "Principals that run `lakehouse run --executor emr-serverless|emr-ec2` (a scheduler's role, an operator)."
  type        = list(string)
}

variable "github_repository" {
  description = "owner/name of the repository whose main branch deploys releases."
  type        = string
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary set on every role; null for none."
  type        = string
  default     = null
}

variable "tags" {
  type = map(string)
}
