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

variable "environment" {
  type = string
}

variable "release_label" {
  description = "EMR release of the application and the cluster (the jobs are built for emr-spark-8.0.0: Spark 4.0.2, Delta 4.0.0, Python 3.11)."
  type        = string
}

variable "kms_key_arn" {
  type = string
}

variable "artifacts_bucket_arn" {
  type = string
}

variable "logs_bucket_name" {
  type = string
}

variable "log_retention_days" {
  type = number
}

variable "serverless_max_capacity" {
  description = "Upper bound on what all job runs of the application use together."
  type = object({
    cpu    = string
    memory = string
    disk   = string
  })
}

variable "serverless_idle_timeout_minutes" {
  type = number
}

variable "serverless_subnet_ids" {
  description = "Private subnets for job runs that reach VPC sources (MSK, Redshift); empty: no VPC access."
  type        = list(string)
}

variable "serverless_security_group_ids" {
  type = list(string)
}

variable "enable_emr_ec2" {
  type = bool
}

variable "emr_ec2_subnet_id" {
  type = string
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
  description = "s3:// URI of the zip of PEM files (privateKey.pem, certificateChain.pem, trustedCertificates.pem) EMR uses for in-transit TLS; needed with enable_emr_ec2."
  type        = string
  default     = null
}

variable "layer_role_names" {
  description = "The EMR runtime roles the cluster's instance role may assume (by name: the roles trust this instance role, so ARNs would be a cycle)."
  type        = list(string)
}

variable "permissions_boundary_arn" {
  type    = string
  default = null
}

variable "tags" {
  type = map(string)
}
