variable "name_prefix" {
  type = string
}

variable "enable_msk" {
  type = bool
}

variable "kafka_version" {
  type = string
}

variable "broker_instance_type" {
  type = string
}

variable "subnet_ids" {
  description = "One private subnet per broker AZ."
  type        = list(string)
}

variable "security_group_ids" {
  type = list(string)
}

variable "broker_volume_gb" {
  type = number
}

variable "kms_key_arn" {
  type = string
}

variable "log_retention_days" {
  type = number
}

variable "environment" {
  type = string
}

variable "tags" {
  type = map(string)
}
