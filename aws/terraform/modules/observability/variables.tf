variable "name_prefix" {
  type = string
}

variable "environment" {
  type = string
}

variable "region" {
  type = string
}

variable "account_id" {
  type = string
}

variable "kms_key_arn" {
  type = string
}

variable "alert_email" {
  description = "E-mail address subscribed to the alerts topic; null: no subscription (subscribe out of band)."
  type        = string
  default     = null
}

variable "generated_dir" {
  description = "Directory of dashboard_<env>.json and alarms_<env>.json (python -m pipeline.observability.dashboards --write)."
  type        = string
}

variable "tags" {
  type = map(string)
}
