output "layer_role_arns" {
  value = { for k, r in aws_iam_role.layer : k => r.arn }
}

output "layer_role_names" {
  value = { for k, r in aws_iam_role.layer : k => r.name }
}

output "break_glass_role_arn" {
  value = aws_iam_role.break_glass.arn
}

output "orchestrator_role_arn" {
  value = aws_iam_role.orchestrator.arn
}

output "deploy_role_arn" {
  value = aws_iam_role.deploy.arn
}

output "role_policies" {
  description = "Policy document (JSON) of every role, by role name suffix."
  value = merge(
    { for k, p in aws_iam_role_policy.layer : k => p.policy },
    {
      break-glass  = aws_iam_role_policy.break_glass.policy
      orchestrator = aws_iam_role_policy.orchestrator.policy
      deploy       = aws_iam_role_policy.deploy.policy
    },
  )
}
