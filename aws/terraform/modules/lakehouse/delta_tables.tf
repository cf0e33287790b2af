# Generated from config/ by `python -m pipeline.deploy.terraform_tables --write`: do not edit.
# The Delta tables of the lake by prefix; gold's are also registered in Glue.
locals {
  delta_tables = {
    bronze     = ["crm_accounts", "crm_contacts", "crm_opportunities", "fx_rates", "kafka_events", "redshift_behavior", "snowflake_orders"]
    silver     = ["accounts", "behavior_events", "contacts", "fx_rates", "opportunities", "orders", "product_events"]
    quarantine = ["accounts", "behavior_events", "contacts", "fx_rates", "opportunities", "orders", "product_events"]
    gold       = ["customer_360", "engagement_daily", "fct_orders", "pipeline_summary", "revenue_daily"]
    _ops       = ["dq_results", "erasures", "ingested_files", "rejected_files"]
  }
}
