variable "name_prefix" {
  description = "lakehouse-<env>: every name in this module starts with it."
  type        = string
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

variable "cloudtrail_name" {
  description = "Name of the trail that writes to the logs bucket (its ARN goes into the key policy and the logs bucket policy)."
  type        = string
}

variable "pii_reader_role_names" {
  description = "The only roles that may read bronze/ and quarantine/ (raw PII): the bucket policy denies everyone else."
  type        = list(string)
}

variable "landing_transition_days" {
  description = "Days after which landing/ objects move to a colder storage class (bronze holds every record by then)."
  type        = number
}

variable "landing_transition_storage_class" {
  type = string
}

variable "noncurrent_version_expiration_days" {
  description = "Days a noncurrent (overwritten or deleted) object version is kept."
  type        = number
}

variable "delta_tmp_expiration_days" {
  description = "Days after which leftovers under any _delta_log/.tmp/ are deleted."
  type        = number
}

variable "abort_incomplete_multipart_days" {
  type = number
}

variable "logs_expiration_days" {
  description = "Days the logs bucket keeps EMR logs, S3 access logs and CloudTrail files."
  type        = number
}

variable "tags" {
  type = map(string)
}

variable "delta_tables" {
  description = "Delta tables of the lake by prefix (bronze, silver, quarantine, gold, _ops): each gets a _delta_log/.tmp/ expiry rule."
  type        = map(list(string))
}
