resource "aws_sns_topic" "alerts" {
  name              = "${var.name_prefix}-alerts"
  kms_master_key_id = var.kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic_policy" "alerts" {
  arn = aws_sns_topic.alerts.arn
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "CloudWatchAlarmsOfThisAccount"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = "sns:Publish"
        Resource  = aws_sns_topic.alerts.arn
        Condition = { StringEquals = { "aws:SourceAccount" = var.account_id } }
      },
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "sns:Publish"
        Resource  = aws_sns_topic.alerts.arn
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ]
  })
}

resource "aws_sns_topic_subscription" "email" {
  count     = var.alert_email == null ? 0 : 1
  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = var.alert_email
}

# Dashboard and alarms are generated from config/metrics.yaml; deploying them as they are (one
# alarm resource per generated alarm) is what keeps the metric catalogue the single source.
# The file is read as is (keys must be known at plan time); the "${sns_topic_arn}" placeholder
# of the actions is replaced per alarm.
locals {
  alarms       = { for a in jsondecode(file("${var.generated_dir}/alarms_${var.environment}.json")) : a.AlarmName => a }
  topic_marker = "$${sns_topic_arn}"
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name_prefix
  dashboard_body = templatefile("${var.generated_dir}/dashboard_${var.environment}.json", { aws_region = var.region })
}

resource "aws_cloudwatch_metric_alarm" "this" {
  for_each            = local.alarms
  alarm_name          = each.key
  alarm_description   = each.value.AlarmDescription
  actions_enabled     = each.value.ActionsEnabled
  alarm_actions       = [for a in each.value.AlarmActions : replace(a, local.topic_marker, aws_sns_topic.alerts.arn)]
  ok_actions          = [for a in each.value.OKActions : replace(a, local.topic_marker, aws_sns_topic.alerts.arn)]
  comparison_operator = each.value.ComparisonOperator
  evaluation_periods  = each.value.EvaluationPeriods
  metric_name         = each.value.MetricName
  namespace           = each.value.Namespace
  period              = each.value.Period
  statistic           = each.value.Statistic
  threshold           = each.value.Threshold
  treat_missing_data  = each.value.TreatMissingData
  dimensions          = { for d in each.value.Dimensions : d.Name => d.Value }
  tags                = merge(var.tags, { for t in each.value.Tags : t.Key => t.Value })
}
