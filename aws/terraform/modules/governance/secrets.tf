# The secrets the application config names ({secretsmanager: lakehouse/<env>/...}). Only the
# containers live here: values are put out of band (aws secretsmanager put-secret-value), so no
# secret ever sits in code or in Terraform state.
locals {
  secrets = {
    pii-hmac-key    = "Key of the keyed hash silver puts in place of e-mail addresses"
    redshift        = "JSON {\"password\": ...} of the Redshift reader (redshift_behavior JDBC mode)"
    marquez-api-key = "API key of the Marquez (OpenLineage) endpoint"
  }
}

resource "aws_secretsmanager_secret" "this" {
  for_each = local.secrets
  #checkov:skip=CKV2_AWS_57:No automatic rotation: the HMAC key must stay stable (rotating it breaks joins on hashed e-mails) and the Redshift and Marquez credentials are owned and rotated by those systems' teams.
  name                    = "lakehouse/${var.environment}/${each.key}"
  description             = each.value
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_days
  tags                    = var.tags
}
