# EMR on EC2 (`lakehouse run --executor emr-ec2`), off by default. count keeps the resources in
# every plan and validate, built only when enabled.
locals {
  emr_ec2_count = var.enable_emr_ec2 ? 1 : 0
  tls_cert_arn  = var.emr_tls_certificate_s3_uri == null ? null : "arn:${var.partition}:s3:::${trimprefix(var.emr_tls_certificate_s3_uri, "s3://")}"
}

resource "aws_iam_role" "emr_service" {
  count       = local.emr_ec2_count
  name        = "${var.name_prefix}-emr-service"
  description = "EMR service role of the ${var.name_prefix} cluster"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "elasticmapreduce.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = var.account_id } }
    }]
  })
  permissions_boundary = var.permissions_boundary_arn
  tags                 = var.tags
}

# The v2 managed policy only acts on resources tagged for-use-with-amazon-emr-managed-policies.
resource "aws_iam_role_policy_attachment" "emr_service" {
  count      = local.emr_ec2_count
  role       = aws_iam_role.emr_service[0].name
  policy_arn = "arn:${var.partition}:iam::aws:policy/service-role/AmazonEMRServicePolicy_v2"
}

# The nodes' own role: fetch the release and TLS certificate, push logs, encrypt local disks,
# and assume the layer roles (EMR runtime roles) that the steps actually run as. No lake access.
resource "aws_iam_role" "emr_instance" {
  count       = local.emr_ec2_count
  name        = "${var.name_prefix}-emr-instance"
  description = "Instance role of the ${var.name_prefix} EMR cluster nodes"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  permissions_boundary = var.permissions_boundary_arn
  tags                 = var.tags
}

resource "aws_iam_role_policy" "emr_instance" {
  count = local.emr_ec2_count
  name  = "emr-node"
  role  = aws_iam_role.emr_instance[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ReadReleasesAndTlsCertificate"
        Effect   = "Allow"
        Action   = ["s3:GetObject"]
        Resource = compact(["${var.artifacts_bucket_arn}/releases/*", local.tls_cert_arn])
      },
      {
        Sid      = "PushClusterLogs"
        Effect   = "Allow"
        Action   = ["s3:PutObject"]
        Resource = ["arn:${var.partition}:s3:::${var.logs_bucket_name}/emr/*"]
      },
      {
        Sid      = "LocalDiskAndS3Encryption"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
        Resource = [var.kms_key_arn]
      },
      {
        Sid      = "AssumeRuntimeRoles"
        Effect   = "Allow"
        Action   = ["sts:AssumeRole", "sts:SetSourceIdentity"]
        Resource = [for r in var.layer_role_names : "arn:${var.partition}:iam::${var.account_id}:role/${r}"]
      },
    ]
  })
}

resource "aws_iam_instance_profile" "emr_instance" {
  count = local.emr_ec2_count
  name  = "${var.name_prefix}-emr-instance"
  role  = aws_iam_role.emr_instance[0].name
  tags  = var.tags
}

resource "aws_emr_security_configuration" "this" {
  count = local.emr_ec2_count
  name  = var.name_prefix
  configuration = jsonencode({
    EncryptionConfiguration = {
      EnableAtRestEncryption    = true
      EnableInTransitEncryption = true
      AtRestEncryptionConfiguration = {
        S3EncryptionConfiguration = { EncryptionMode = "SSE-KMS", AwsKmsKey = var.kms_key_arn }
        LocalDiskEncryptionConfiguration = {
          EncryptionKeyProviderType = "AwsKms"
          AwsKmsKey                 = var.kms_key_arn
          EnableEbsEncryption       = true
        }
      }
      # EMR takes in-transit TLS material only as a zip of PEM files in S3.
      InTransitEncryptionConfiguration = {
        TLSCertificateConfiguration = { CertificateProviderType = "PEM", S3Object = var.emr_tls_certificate_s3_uri }
      }
    }
    # Runtime roles: each step runs as the layer role passed with it, not as the instance role.
    AuthorizationConfiguration = {
      IAMConfiguration = {
        EnableApplicationScopedIAMRole        = true
        ApplicationScopedIAMRoleConfiguration = { PropagateSourceIdentity = true }
      }
    }
    # aws_emr_cluster has no launch template or metadata options: IMDSv2 is set here.
    InstanceMetadataServiceConfiguration = {
      MinimumInstanceMetadataServiceVersion = 2
      HttpPutResponseHopLimit               = 1
    }
  })

  lifecycle {
    precondition {
      condition     = var.emr_tls_certificate_s3_uri != null
      error_message = "enable_emr_ec2 needs emr_tls_certificate_s3_uri (a zip of PEM files in S3) for in-transit encryption."
    }
  }
}

resource "aws_emr_cluster" "this" {
  count = local.emr_ec2_count
  #checkov:skip=CKV2_AWS_7:EMR-managed security groups are used; the cluster sits in a private subnet (var.emr_ec2_subnet_id) with no inbound rule from outside the VPC.
  name                              = var.name_prefix
  release_label                     = var.release_label
  applications                      = ["Spark"]
  service_role                      = aws_iam_role.emr_service[0].arn
  security_configuration            = aws_emr_security_configuration.this[0].name
  log_uri                           = "s3://${var.logs_bucket_name}/emr/cluster/"
  log_encryption_kms_key_id         = var.kms_key_arn
  keep_job_flow_alive_when_no_steps = true
  step_concurrency_level            = 10
  visible_to_all_users              = true

  ec2_attributes {
    subnet_id        = var.emr_ec2_subnet_id
    instance_profile = aws_iam_instance_profile.emr_instance[0].arn
  }

  master_instance_group {
    instance_type = var.emr_ec2_master_instance_type
  }

  core_instance_group {
    instance_type  = var.emr_ec2_core_instance_type
    instance_count = var.emr_ec2_core_instance_count
    ebs_config {
      size                 = 128
      type                 = "gp3"
      volumes_per_instance = 1
    }
  }

  auto_termination_policy {
    idle_timeout = var.emr_ec2_idle_timeout_seconds
  }

  tags = merge(var.tags, {
    "for-use-with-amazon-emr-managed-policies" = "true"
    "lakehouse-environment"                    = var.environment
  })
}
