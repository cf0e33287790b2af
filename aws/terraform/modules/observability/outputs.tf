output "alerts_topic_arn" {
  value = aws_sns_topic.alerts.arn
}

output "alerts_topic_name" {
  value = aws_sns_topic.alerts.name
}

output "alarm_names" {
  value = sort(keys(aws_cloudwatch_metric_alarm.this))
}

output "alarm_namespaces" {
  description = "Distinct metric namespaces of the deployed alarms (one: Lakehouse/<env>)."
  value       = distinct([for a in aws_cloudwatch_metric_alarm.this : a.namespace])
}
