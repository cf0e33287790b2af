variable "name_prefix" {
  type = string
}

variable "environment" {
  type = string
}

variable "kms_key_arn" {
  type = string
}

variable "lake_bucket_name" {
  type = string
}

variable "lake_bucket_arn" {
  type = string
}

variable "logs_bucket_name" {
  type = string
}

variable "cloudtrail_name" {
  type = string
}

variable "gold_marts" {
  description = "Gold tables registered in Glue for Athena, at s3://<lake>/gold/<mart>."
  type        = list(string)
}

variable "secret_recovery_window_days" {
  type = number
}

variable "tags" {
  type = map(string)
}
