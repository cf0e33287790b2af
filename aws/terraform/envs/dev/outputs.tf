# Every output of the stack, under lakehouse (terraform output -json lakehouse), and by name the
# ones docs/deploy.md and CI read (-raw): the deploy role, the MSK brokers, the job-run monitoring
# configuration every StartJobRun should carry.
output "lakehouse" { value = module.lakehouse }
output "deploy_role_arn" { value = module.lakehouse.deploy_role_arn }
output "msk_bootstrap_brokers_sasl_iam" { value = module.lakehouse.msk_bootstrap_brokers_sasl_iam }
output "job_run_monitoring" { value = module.lakehouse.job_run_monitoring }
