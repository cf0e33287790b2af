locals {
  # EMR Serverless assumes a layer role for a job run of this account's application only;
  # EMR on EC2 (runtime roles) assumes it from the cluster's instance role.
  layer_trust = concat(
    [
      {
        Effect    = "Allow"
        Principal = { Service = "emr-serverless.amazonaws.com" }
        Action    = "sts:AssumeRole"
        Condition = {
          StringEquals = { "aws:SourceAccount" = var.account_id }
          ArnLike      = { "aws:SourceArn" = var.emr_serverless_application_arn }
        }
      },
    ],
    var.emr_ec2_instance_role_arn == null ? [] : [
      {
        Effect    = "Allow"
        Principal = { AWS = var.emr_ec2_instance_role_arn }
        Action    = ["sts:AssumeRole", "sts:SetSourceIdentity"]
      },
    ],
  )
}

resource "aws_iam_role" "layer" {
  for_each             = local.layer_statements
  name                 = "${var.name_prefix}-${each.key}"
  description          = "EMR execution role of the ${each.key} jobs"
  assume_role_policy   = jsonencode({ Version = "2012-10-17", Statement = local.layer_trust })
  permissions_boundary = var.permissions_boundary_arn
  max_session_duration = 43200 # a backfill step can run for hours
  tags                 = var.tags
}

resource "aws_iam_role_policy" "layer" {
  for_each = local.layer_statements
  name     = "lake-access"
  role     = aws_iam_role.layer[each.key].id
  policy   = jsonencode({ Version = "2012-10-17", Statement = each.value })
}

resource "aws_iam_role" "break_glass" {
  name        = "${var.name_prefix}-break-glass"
  description = "Emergency read of raw PII (bronze/, quarantine/); MFA within the last hour required"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { AWS = var.break_glass_principal_arns }
      Action    = "sts:AssumeRole"
      Condition = {
        Bool            = { "aws:MultiFactorAuthPresent" = "true" }
        NumericLessThan = { "aws:MultiFactorAuthAge" = "3600" }
      }
    }]
  })
  permissions_boundary = var.permissions_boundary_arn
  max_session_duration = 3600
  tags                 = var.tags
}

resource "aws_iam_role_policy" "break_glass" {
  name   = "raw-pii-read"
  role   = aws_iam_role.break_glass.id
  policy = jsonencode({ Version = "2012-10-17", Statement = local.break_glass_statements })
}

resource "aws_iam_role" "orchestrator" {
  name        = "${var.name_prefix}-orchestrator"
  description = "Runs `lakehouse run --executor emr-serverless|emr-ec2`: submits job runs and steps"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { AWS = var.orchestrator_principal_arns }
      Action    = "sts:AssumeRole"
    }]
  })
  permissions_boundary = var.permissions_boundary_arn
  tags                 = var.tags
}

resource "aws_iam_role_policy" "orchestrator" {
  name   = "orchestrate"
  role   = aws_iam_role.orchestrator.id
  policy = jsonencode({ Version = "2012-10-17", Statement = local.orchestrator_statements })
}

# CI deploys releases with GitHub's OIDC token: no stored AWS keys. An account holds one
# provider per URL; import it if another stack already created it.
resource "aws_iam_openid_connect_provider" "github" {
  url            = "https://token.actions.githubusercontent.com"
  client_id_list = ["sts.amazonaws.com"]
  tags           = var.tags
}

resource "aws_iam_role" "deploy" {
  name        = "${var.name_prefix}-deploy"
  description = "GitHub Actions on ${var.github_repository} main: uploads releases/ to the artifacts bucket"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Federated = aws_iam_openid_connect_provider.github.arn }
      Action    = "sts:AssumeRoleWithWebIdentity"
      Condition = {
        StringEquals = {
          "token.actions.githubusercontent.com:aud" = "sts.amazonaws.com"
          "token.actions.githubusercontent.com:sub" = "repo:${var.github_repository}:ref:refs/heads/main"
        }
      }
    }]
  })
  permissions_boundary = var.permissions_boundary_arn
  max_session_duration = 3600
  tags                 = var.tags
}

resource "aws_iam_role_policy" "deploy" {
  name   = "upload-releases"
  role   = aws_iam_role.deploy.id
  policy = jsonencode({ Version = "2012-10-17", Statement = local.deploy_statements })
}
