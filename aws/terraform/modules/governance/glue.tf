resource "aws_glue_catalog_database" "layer" {
  for_each    = toset(["bronze", "silver", "gold"])
  name        = "lakehouse_${var.environment}_${each.key}"
  description = "${each.key} Delta tables of s3://${var.lake_bucket_name}/${each.key}/"
}

# Athena reads these natively as Delta tables (table_type = DELTA): the schema comes from the
# Delta log, so no columns are declared here and a schema change needs no Terraform change.
resource "aws_glue_catalog_table" "gold" {
  for_each      = toset(var.gold_marts)
  database_name = aws_glue_catalog_database.layer["gold"].name
  name          = each.key
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    table_type = "DELTA"
    EXTERNAL   = "TRUE"
  }
  storage_descriptor {
    location = "s3://${var.lake_bucket_name}/gold/${each.key}"
  }
}
