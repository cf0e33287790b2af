output "kms_key_arn" {
  value = aws_kms_key.this.arn
}

output "bucket_names" {
  description = "lake, artifacts, logs"
  value       = { for k, b in aws_s3_bucket.this : k => b.bucket }
}

output "bucket_arns" {
  value = local.bucket_arns
}

output "logs_bucket_name_with_policy" {
  description = "The logs bucket's name, known only once its policy (CloudTrail's write grant) is in place."
  value       = aws_s3_bucket_policy.this["logs"].bucket
}

output "delta_log_table_name" {
  value = aws_dynamodb_table.delta_log.name
}

output "delta_log_table_arn" {
  value = aws_dynamodb_table.delta_log.arn
}
