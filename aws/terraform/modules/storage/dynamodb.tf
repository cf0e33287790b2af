# Delta's S3DynamoDBLogStore: one item per commit of every table, so several drivers (EMR steps
# running in parallel) can commit to one table without losing a commit. Its key schema is fixed
# by Delta (tablePath, fileName); expireTime lets DynamoDB drop entries of completed commits.
resource "aws_dynamodb_table" "delta_log" {
  name         = "${var.name_prefix}-delta-log"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "tablePath"
  range_key    = "fileName"

  attribute {
    name = "tablePath"
    type = "S"
  }
  attribute {
    name = "fileName"
    type = "S"
  }
  ttl {
    attribute_name = "expireTime"
    enabled        = true
  }
  point_in_time_recovery {
    enabled = true
  }
  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.this.arn
  }
  deletion_protection_enabled = true
  tags                        = var.tags
}
