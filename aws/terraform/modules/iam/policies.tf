# Policy documents as literal HCL objects: what each role may do on which lake prefix reads
# directly from this file (and tests/terraform evaluates it the same way).
locals {
  s3_read  = ["s3:GetObject", "s3:GetObjectVersion"]
  s3_write = ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]

  # Delta lists _delta_log/ of every table it reads or writes: ListBucket, limited by prefix.
  ingest_s3 = [
    {
      Sid       = "ListOwnPrefixes"
      Effect    = "Allow"
      Action    = ["s3:ListBucket"]
      Resource  = [var.lake_bucket_arn]
      Condition = { StringLike = { "s3:prefix" = ["landing/*", "bronze/*", "quarantine/*", "_ops/*", "_checkpoints/*", "silver/*/_delta_log/*"] } }
    },
    {
      Sid      = "ReadLanding"
      Effect   = "Allow"
      Action   = local.s3_read
      Resource = ["${var.lake_bucket_arn}/landing/*"]
    },
    {
      # maintain_bronze (pipeline.maintenance) reads how far each silver consumer has read bronze
      # (consumed_version in silver's commit log) before it VACUUMs: the log only, never silver data.
      Sid      = "ReadSilverCommitLog"
      Effect   = "Allow"
      Action   = local.s3_read
      Resource = ["${var.lake_bucket_arn}/silver/*/_delta_log/*"]
    },
    {
      Sid      = "WriteBronzeAndQuarantine"
      Effect   = "Allow"
      Action   = local.s3_write
      Resource = ["${var.lake_bucket_arn}/bronze/*", "${var.lake_bucket_arn}/quarantine/*"]
    },
    {
      # bronze_kafka_events' Structured Streaming checkpoint (offsets, commits): <lake>/_checkpoints/
      Sid      = "WriteStreamingCheckpoints"
      Effect   = "Allow"
      Action   = local.s3_write
      Resource = ["${var.lake_bucket_arn}/_checkpoints/*"]
    },
  ]

  silver_s3 = [
    {
      Sid       = "ListOwnPrefixes"
      Effect    = "Allow"
      Action    = ["s3:ListBucket"]
      Resource  = [var.lake_bucket_arn]
      Condition = { StringLike = { "s3:prefix" = ["bronze/*", "silver/*", "quarantine/*", "_ops/*"] } }
    },
    {
      Sid      = "ReadBronze"
      Effect   = "Allow"
      Action   = local.s3_read
      Resource = ["${var.lake_bucket_arn}/bronze/*"]
    },
    {
      Sid      = "WriteSilverAndQuarantine"
      Effect   = "Allow"
      Action   = local.s3_write
      Resource = ["${var.lake_bucket_arn}/silver/*", "${var.lake_bucket_arn}/quarantine/*"]
    },
  ]

  gold_s3 = [
    {
      Sid       = "ListOwnPrefixes"
      Effect    = "Allow"
      Action    = ["s3:ListBucket"]
      Resource  = [var.lake_bucket_arn]
      Condition = { StringLike = { "s3:prefix" = ["silver/*", "gold/*", "_ops/*"] } }
    },
    {
      Sid      = "ReadSilver"
      Effect   = "Allow"
      Action   = local.s3_read
      Resource = ["${var.lake_bucket_arn}/silver/*"]
    },
    {
      Sid      = "WriteGold"
      Effect   = "Allow"
      Action   = local.s3_write
      Resource = ["${var.lake_bucket_arn}/gold/*"]
    },
  ]

  # _ops/: run state (_ops/runs/, step state files under _ops/runs/<run>/steps/), lineage,
  # metrics, the dq_results Delta table and the gates' spool (_ops/dq_spool/), GX suites, Data Docs
  # and run reports.
  ops_s3 = [
    {
      Sid      = "ReadWriteOps"
      Effect   = "Allow"
      Action   = local.s3_write
      Resource = ["${var.lake_bucket_arn}/_ops/*"]
    },
    {
      Sid       = "ListArtifactReleases"
      Effect    = "Allow"
      Action    = ["s3:ListBucket"]
      Resource  = [var.artifacts_bucket_arn]
      Condition = { StringLike = { "s3:prefix" = ["releases/*"] } }
    },
    {
      Sid      = "ReadArtifactReleases"
      Effect   = "Allow"
      Action   = local.s3_read
      Resource = ["${var.artifacts_bucket_arn}/releases/*"]
    },
  ]

  # What every process of the pipeline calls besides S3 (pipeline.observability, pipeline.settings).
  runtime_services = [
    {
      Sid      = "KmsForLakeTableTopicSecrets"
      Effect   = "Allow"
      Action   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
      Resource = [var.kms_key_arn]
    },
    {
      Sid       = "MetricsInOwnNamespace"
      Effect    = "Allow"
      Action    = ["cloudwatch:PutMetricData"]
      Resource  = ["*"] # PutMetricData has no resource type: the namespace condition is the scope.
      Condition = { StringEquals = { "cloudwatch:namespace" = var.metrics_namespace } }
    },
    {
      Sid      = "PublishAlerts"
      Effect   = "Allow"
      Action   = ["sns:Publish"]
      Resource = [var.alerts_topic_arn]
    },
    {
      Sid      = "ReadOwnSecrets"
      Effect   = "Allow"
      Action   = ["secretsmanager:GetSecretValue"]
      Resource = ["arn:${var.partition}:secretsmanager:${var.region}:${var.account_id}:secret:${var.secrets_prefix}*"]
    },
  ]

  # Spark drivers and executors: the above plus the Delta log store and the EMR logs.
  job_services = [
    {
      Sid      = "DeltaLogStore"
      Effect   = "Allow"
      Action   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:DescribeTable"]
      Resource = [var.delta_log_table_arn]
    },
    {
      Sid      = "WriteEmrLogs"
      Effect   = "Allow"
      Action   = ["s3:PutObject"]
      Resource = ["${var.logs_bucket_arn}/emr/*"]
    },
    {
      # EMR Serverless's CloudWatch logging (job_run_monitoring) writes as the job's role.
      Sid      = "WriteEmrLogStreams"
      Effect   = "Allow"
      Action   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
      Resource = ["${var.emr_log_group_arn}:*"]
    },
    {
      Sid      = "FindEmrLogGroup"
      Effect   = "Allow"
      Action   = ["logs:DescribeLogGroups"]
      Resource = ["*"] # DescribeLogGroups is not scoped to a log group: AWS accepts only "*".
    },
  ]

  # MSK IAM auth (aws-msk-iam-auth): connect, read the events topic, commit the source's groups.
  kafka_read = [
    {
      Sid      = "MskConnect"
      Effect   = "Allow"
      Action   = ["kafka-cluster:Connect"]
      Resource = ["arn:${var.partition}:kafka:${var.region}:${var.account_id}:cluster/${var.msk_cluster_name}/*"]
    },
    {
      Sid      = "MskReadTopic"
      Effect   = "Allow"
      Action   = ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"]
      Resource = ["arn:${var.partition}:kafka:${var.region}:${var.account_id}:topic/${var.msk_cluster_name}/*/${var.kafka_topic}"]
    },
    {
      Sid      = "MskConsumerGroups"
      Effect   = "Allow"
      Action   = ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"]
      Resource = ["arn:${var.partition}:kafka:${var.region}:${var.account_id}:group/${var.msk_cluster_name}/*/${var.kafka_consumer_group_prefix}*"]
    },
  ]

  layer_statements = {
    ingest = concat(local.ingest_s3, local.ops_s3, local.runtime_services, local.job_services, local.kafka_read)
    silver = concat(local.silver_s3, local.ops_s3, local.runtime_services, local.job_services)
    gold   = concat(local.gold_s3, local.ops_s3, local.runtime_services, local.job_services)
  }

  break_glass_statements = [
    {
      Sid       = "ListRawPrefixes"
      Effect    = "Allow"
      Action    = ["s3:ListBucket"]
      Resource  = [var.lake_bucket_arn]
      Condition = { StringLike = { "s3:prefix" = ["bronze/*", "quarantine/*"] } }
    },
    {
      Sid      = "ReadRawPii"
      Effect   = "Allow"
      Action   = local.s3_read
      Resource = ["${var.lake_bucket_arn}/bronze/*", "${var.lake_bucket_arn}/quarantine/*"]
    },
    {
      Sid      = "DecryptLake"
      Effect   = "Allow"
      Action   = ["kms:Decrypt", "kms:DescribeKey"]
      Resource = [var.kms_key_arn]
    },
  ]

  orchestrator_emr = [
    {
      Sid      = "ServerlessJobRuns"
      Effect   = "Allow"
      Action   = ["emr-serverless:StartJobRun", "emr-serverless:GetApplication"]
      Resource = [var.emr_serverless_application_arn]
    },
    {
      # TagResource: StartJobRun carries the run's tags (pipeline.deploy.submit).
      Sid      = "ServerlessJobRunState"
      Effect   = "Allow"
      Action   = ["emr-serverless:GetJobRun", "emr-serverless:CancelJobRun", "emr-serverless:TagResource"]
      Resource = ["${var.emr_serverless_application_arn}/jobruns/*"]
    },
    {
      Sid      = "ListWithoutResourceType"
      Effect   = "Allow"
      Action   = ["emr-serverless:ListApplications", "elasticmapreduce:ListClusters"]
      Resource = ["*"] # List* actions have no resource type in IAM: AWS accepts only "*".
    },
    {
      Sid       = "ClusterSteps"
      Effect    = "Allow"
      Action    = ["elasticmapreduce:AddJobFlowSteps", "elasticmapreduce:DescribeStep", "elasticmapreduce:ListSteps", "elasticmapreduce:CancelSteps", "elasticmapreduce:DescribeCluster"]
      Resource  = ["arn:${var.partition}:elasticmapreduce:${var.region}:${var.account_id}:cluster/*"]
      Condition = { StringEquals = { "aws:ResourceTag/lakehouse-environment" = var.environment_tag } }
    },
    {
      Sid      = "PassLayerRolesToEmr"
      Effect   = "Allow"
      Action   = ["iam:PassRole"]
      Resource = [for k in ["ingest", "silver", "gold"] : "arn:${var.partition}:iam::${var.account_id}:role/${var.name_prefix}-${k}"]
      Condition = {
        StringEquals = { "iam:PassedToService" = ["emr-serverless.amazonaws.com", "elasticmapreduce.amazonaws.com"] }
      }
    },
    {
      Sid       = "ListOps"
      Effect    = "Allow"
      Action    = ["s3:ListBucket"]
      Resource  = [var.lake_bucket_arn]
      Condition = { StringLike = { "s3:prefix" = ["_ops/*"] } }
    },
  ]

  orchestrator_statements = concat(local.orchestrator_emr, local.ops_s3, local.runtime_services)

  # Uploads a release; reads back only its MANIFEST (pipeline.deploy.release refuses to overwrite
  # a release with other contents). ListBucket makes a missing MANIFEST a 404 instead of a 403.
  deploy_statements = [
    {
      Sid      = "UploadReleases"
      Effect   = "Allow"
      Action   = ["s3:PutObject"]
      Resource = ["${var.artifacts_bucket_arn}/releases/*"]
    },
    {
      Sid      = "ReadReleaseManifests"
      Effect   = "Allow"
      Action   = ["s3:GetObject"]
      Resource = ["${var.artifacts_bucket_arn}/releases/*/MANIFEST"]
    },
    {
      Sid       = "ListReleases"
      Effect    = "Allow"
      Action    = ["s3:ListBucket"]
      Resource  = [var.artifacts_bucket_arn]
      Condition = { StringLike = { "s3:prefix" = ["releases/*"] } }
    },
    {
      Sid      = "EncryptReleases"
      Effect   = "Allow"
      Action   = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"]
      Resource = [var.kms_key_arn]
    },
  ]
}
