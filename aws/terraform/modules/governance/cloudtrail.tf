# Who read or wrote which lake object (raw PII included): S3 data events of the lake bucket.
resource "aws_cloudtrail" "lake" {
  #checkov:skip=CKV_AWS_252:Alerting on trail delivery goes through CloudWatch alarms, not an SNS notification per log file.
  #checkov:skip=CKV2_AWS_10:Trail files are queried with Athena from the logs bucket; no CloudWatch Logs copy.
  name                          = var.cloudtrail_name
  s3_bucket_name                = var.logs_bucket_name
  s3_key_prefix                 = "cloudtrail"
  kms_key_id                    = var.kms_key_arn
  enable_log_file_validation    = true
  include_global_service_events = true
  is_multi_region_trail         = true

  advanced_event_selector {
    name = "Management events"
    field_selector {
      field  = "eventCategory"
      equals = ["Management"]
    }
  }

  advanced_event_selector {
    name = "Lake bucket data events"
    field_selector {
      field  = "eventCategory"
      equals = ["Data"]
    }
    field_selector {
      field  = "resources.type"
      equals = ["AWS::S3::Object"]
    }
    field_selector {
      field       = "resources.ARN"
      starts_with = ["${var.lake_bucket_arn}/"]
    }
  }

  tags = var.tags
}
