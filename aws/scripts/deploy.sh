#!/usr/bin/env bash
# Build a release and upload it: `make package` (wheel with config/, EMR venv archive, SHA256SUMS),
# `make jars` (jvm/jars/emr: the Kafka connector, MSK IAM auth, the SDK v1 for the DynamoDB log
# store, Redshift JDBC), then pipeline.deploy.release uploads them with aws/jobs to
# s3://<aws.artifacts_bucket>/releases/<version>/. A release is immutable: deploying the same
# version again uploads nothing; other contents under the same version are refused.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=_common.sh
source "$(dirname "$0")/_common.sh"

USAGE="usage: aws/scripts/deploy.sh dev|prod
  Packages the library and uploads release <version> (pyproject.toml) to the environment's
  artifacts bucket. Credentials: the AWS default chain (the CI deploy role, a profile)."
check_env "${1:-}" "$USAGE"
ENV="$1"

run make -C "$REPO" package jars
run "$REPO/.venv/bin/python" -m pipeline.deploy.release --env "$ENV" --dist "$REPO/dist"
