# What an operator sets per deployment, in terraform.tfvars next to this file (docs/deploy.md):
# github_repository: owner/name whose main branch may deploy (GitHub Actions OIDC);
# alert_email: subscribed to the alerts topic (null: none);
# permissions_boundary_arn: applied to every role this stack creates (null: none);
# orchestrator_principal_arns, break_glass_principal_arns: who may assume those roles (null: the
# account's IAM principals). modules/lakehouse types them; null takes its default.
variable "github_repository" { default = "example-org/lakehouse" }
variable "alert_email" { default = null }
variable "permissions_boundary_arn" { default = null }
variable "orchestrator_principal_arns" { default = null }
variable "break_glass_principal_arns" { default = null }
