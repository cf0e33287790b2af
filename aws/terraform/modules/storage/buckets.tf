# Three buckets: the lake (landing/, bronze/, quarantine/, silver/, gold/, _ops/), the release
# artifacts (releases/<version>/) and the logs (EMR logs, S3 access logs, CloudTrail).
locals {
  buckets = {
    lake      = "${var.name_prefix}-lake"
    artifacts = "${var.name_prefix}-artifacts"
    logs      = "${var.name_prefix}-logs"
  }
  # Every table's temp-commit folder of Delta's S3DynamoDBLogStore (a lifecycle filter cannot
  # match a folder in the middle of a key, hence one rule per table).
  delta_tmp_prefixes = sort(flatten([
    for layer, tables in var.delta_tables : [for t in tables : "${layer}/${t}/_delta_log/.tmp/"]
  ]))
}

resource "aws_s3_bucket" "this" {
  for_each = local.buckets
  #checkov:skip=CKV_AWS_144:Cross-region replication is a DR decision left to the account owner; the lake is rebuildable from landing/ and bronze.
  #checkov:skip=CKV2_AWS_62:Nothing consumes S3 event notifications; the pipeline driver schedules every step.
  #checkov:skip=CKV_AWS_145:The logs bucket is the S3 server access log target, which only accepts SSE-S3; lake and artifacts use the KMS key (aws_s3_bucket_server_side_encryption_configuration).
  #checkov:skip=CKV_AWS_18:The logs bucket is itself the access-log target (logging it into itself would loop); lake and artifacts log to it.
  bucket = each.value
  tags   = var.tags
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each                = local.buckets
  bucket                  = aws_s3_bucket.this[each.key].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.this[each.key].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# Versioning is the safety net against a bad delete or overwrite, not the history: Delta's own
# log (time travel until VACUUM) is the history. Noncurrent versions therefore expire after a
# few days (lifecycle below), otherwise every file VACUUM removes would stay billed forever.
resource "aws_s3_bucket_versioning" "this" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.this[each.key].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.this[each.key].id
  rule {
    # S3 server access logging delivers to SSE-S3 target buckets only.
    apply_server_side_encryption_by_default {
      sse_algorithm     = each.key == "logs" ? "AES256" : "aws:kms"
      kms_master_key_id = each.key == "logs" ? null : aws_kms_key.this.arn
    }
    bucket_key_enabled = each.key != "logs"
  }
}

resource "aws_s3_bucket_logging" "this" {
  for_each      = { for k, b in aws_s3_bucket.this : k => b if k != "logs" }
  bucket        = each.value.id
  target_bucket = aws_s3_bucket.this["logs"].id
  target_prefix = "s3-access/${each.value.id}/"
}

resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  bucket = aws_s3_bucket.this["lake"].id

  # landing/ is read once into bronze (which keeps every record); the originals go cold.
  rule {
    id     = "landing-to-colder-storage"
    status = "Enabled"
    filter {
      prefix = "landing/"
    }
    transition {
      days          = var.landing_transition_days
      storage_class = var.landing_transition_storage_class
    }
  }

  # Orphaned temp commits of the DynamoDB log store; nothing else under the tables expires.
  # bronze/, silver/, gold/ and quarantine/ get no expiration rule: Delta VACUUM is the only
  # thing that deletes their files.
  dynamic "rule" {
    for_each = local.delta_tmp_prefixes
    content {
      id     = "delta-tmp-${replace(trimsuffix(rule.value, "/_delta_log/.tmp/"), "/", "-")}"
      status = "Enabled"
      filter {
        prefix = rule.value
      }
      expiration {
        days = var.delta_tmp_expiration_days
      }
    }
  }

  rule {
    id     = "noncurrent-versions-and-incomplete-uploads"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_days
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  bucket = aws_s3_bucket.this["artifacts"].id
  rule {
    id     = "noncurrent-versions-and-incomplete-uploads"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_days
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.this["logs"].id
  rule {
    id     = "expire-logs"
    status = "Enabled"
    filter {}
    expiration {
      days = var.logs_expiration_days
    }
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_days
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.this[each.key].id
  policy   = jsonencode({ Version = "2012-10-17", Statement = local.bucket_statements[each.key] })
  # A policy before the public access block would be judged public-by-default by S3.
  depends_on = [aws_s3_bucket_public_access_block.this]
}

locals {
  bucket_arns = { for k, name in local.buckets : k => "arn:${var.partition}:s3:::${name}" }

  common_statements = {
    for k, arn in local.bucket_arns : k => [
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [arn, "${arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
      {
        # Objects are encrypted by the bucket default; a request that asks for anything else
        # (no encryption header is fine, the default applies) is refused.
        Sid       = "DenyUnencryptedOrForeignEncryptionPut"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:PutObject"
        Resource  = "${arn}/*"
        Condition = {
          StringNotEqualsIfExists = {
            "s3:x-amz-server-side-encryption" = k == "logs" ? ["AES256", "aws:kms"] : ["aws:kms"]
          }
        }
      },
    ]
  }

  bucket_statements = {
    lake = concat(local.common_statements["lake"], [
      {
        # Raw PII lives in bronze/ and quarantine/: whatever IAM grants, only these roles read it.
        Sid       = "OnlyPiiReadersReadRawPrefixes"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:GetObject"
        Resource  = ["${local.bucket_arns["lake"]}/bronze/*", "${local.bucket_arns["lake"]}/quarantine/*"]
        Condition = {
          ArnNotLike = {
            "aws:PrincipalArn" = [for r in var.pii_reader_role_names : "arn:${var.partition}:iam::${var.account_id}:role/${r}"]
          }
        }
      },
    ])
    artifacts = local.common_statements["artifacts"]
    logs = concat(local.common_statements["logs"], [
      {
        Sid       = "S3ServerAccessLogs"
        Effect    = "Allow"
        Principal = { Service = "logging.s3.amazonaws.com" }
        Action    = "s3:PutObject"
        Resource  = "${local.bucket_arns["logs"]}/s3-access/*"
        Condition = { StringEquals = { "aws:SourceAccount" = var.account_id } }
      },
      {
        Sid       = "CloudTrailAclCheck"
        Effect    = "Allow"
        Principal = { Service = "cloudtrail.amazonaws.com" }
        Action    = "s3:GetBucketAcl"
        Resource  = local.bucket_arns["logs"]
        Condition = { StringEquals = { "aws:SourceArn" = local.trail_arn } }
      },
      {
        Sid       = "CloudTrailWrite"
        Effect    = "Allow"
        Principal = { Service = "cloudtrail.amazonaws.com" }
        Action    = "s3:PutObject"
        Resource  = "${local.bucket_arns["logs"]}/cloudtrail/AWSLogs/${var.account_id}/*"
        Condition = { StringEquals = { "aws:SourceArn" = local.trail_arn } }
      },
    ])
  }
}
