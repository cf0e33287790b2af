output "bootstrap_brokers_sasl_iam" {
  value = one(aws_msk_cluster.this[*].bootstrap_brokers_sasl_iam)
}
