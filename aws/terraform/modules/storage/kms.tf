# One customer-managed key for the whole environment: buckets, the Delta log table, the alerts
# topic, the secrets, the log groups and the trail. The IAM roles get Encrypt/Decrypt/
# GenerateDataKey through their own policies; the account statement below is what lets IAM
# policies grant it at all.
locals {
  account_root = "arn:${var.partition}:iam::${var.account_id}:root"
  trail_arn    = "arn:${var.partition}:cloudtrail:${var.region}:${var.account_id}:trail/${var.cloudtrail_name}"
  kms_admin_actions = [
    "kms:CancelKeyDeletion", "kms:CreateAlias", "kms:CreateGrant", "kms:DeleteAlias",
    "kms:DescribeKey", "kms:DisableKey", "kms:DisableKeyRotation", "kms:EnableKey",
    "kms:EnableKeyRotation", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListAliases",
    "kms:ListGrants", "kms:ListKeyPolicies", "kms:ListResourceTags", "kms:PutKeyPolicy",
    "kms:RevokeGrant", "kms:ScheduleKeyDeletion", "kms:TagResource", "kms:UntagResource",
    "kms:UpdateAlias", "kms:UpdateKeyDescription",
  ]
  kms_use_actions = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo"]
}

resource "aws_kms_key" "this" {
  description             = "${var.name_prefix}: lake, Delta log table, alerts, secrets, logs"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = 30
  # In a key policy "Resource": "*" means "this key": AWS requires exactly that form.
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministersKeyAndDelegatesUseToIam"
        Effect    = "Allow"
        Principal = { AWS = local.account_root }
        Action    = concat(local.kms_admin_actions, local.kms_use_actions)
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsEncryptsTheEnvironmentsLogGroups"
        Effect    = "Allow"
        Principal = { Service = "logs.${var.region}.amazonaws.com" }
        Action    = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:DescribeKey"]
        Resource  = "*"
        Condition = {
          ArnLike = { "kms:EncryptionContext:aws:logs:arn" = "arn:${var.partition}:logs:${var.region}:${var.account_id}:log-group:/lakehouse/${trimprefix(var.name_prefix, "lakehouse-")}/*" }
        }
      },
      {
        Sid       = "CloudTrailEncryptsItsLogFiles"
        Effect    = "Allow"
        Principal = { Service = "cloudtrail.amazonaws.com" }
        Action    = ["kms:GenerateDataKey", "kms:DescribeKey"]
        Resource  = "*"
        Condition = {
          StringEquals = { "aws:SourceArn" = local.trail_arn }
          StringLike   = { "kms:EncryptionContext:aws:cloudtrail:arn" = "arn:${var.partition}:cloudtrail:*:${var.account_id}:trail/*" }
        }
      },
      {
        # Alarms publish to the KMS-encrypted alerts topic as the CloudWatch service.
        Sid       = "CloudWatchAlarmsPublishToTheEncryptedTopic"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource  = "*"
        Condition = { StringEquals = { "aws:SourceAccount" = var.account_id } }
      },
    ]
  })
  tags = var.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name_prefix}"
  target_key_id = aws_kms_key.this.key_id
}
