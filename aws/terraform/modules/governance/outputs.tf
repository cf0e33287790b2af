output "secret_names" {
  value = sort([for s in aws_secretsmanager_secret.this : s.name])
}

output "glue_database_names" {
  value = { for k, d in aws_glue_catalog_database.layer : k => d.name }
}

output "gold_table_locations" {
  value = { for k, t in aws_glue_catalog_table.gold : k => t.storage_descriptor[0].location }
}

output "cloudtrail_arn" {
  value = aws_cloudtrail.lake.arn
}
