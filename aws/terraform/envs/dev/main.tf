# The dev stack: what sets it apart from the other environment stands here, once; everything
# else is a default of modules/lakehouse (override it here, in the call, where dev must differ).
module "lakehouse" {
  source = "../../modules/lakehouse"

  environment                 = "dev"
  logs_expiration_days        = 90
  secret_recovery_window_days = 7
  # config/dev.yaml aws.emr: max_parallel_steps job runs of 1 + max_executors workers must fit
  serverless_max_capacity = { cpu = "100 vCPU", memory = "700 GB", disk = "2000 GB" }

  # per deployment (variables.tf, terraform.tfvars)
  github_repository           = var.github_repository
  alert_email                 = var.alert_email
  permissions_boundary_arn    = var.permissions_boundary_arn
  orchestrator_principal_arns = var.orchestrator_principal_arns
  break_glass_principal_arns  = var.break_glass_principal_arns
}
