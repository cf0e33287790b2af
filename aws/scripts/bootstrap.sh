#!/usr/bin/env bash
# First deployment of an environment: the Terraform state bucket (versioned, encrypted, TLS-only),
# `terraform init` against it, then plan and apply aws/terraform/envs/<env>. Run once per account
# and environment with administrator credentials; later changes go through `terraform apply` (or
# the CI deploy job). Needs the AWS CLI, terraform >= 1.10 (S3 state locking without DynamoDB)
# and `make setup` (it reads config/<env>.yaml through the library).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=_common.sh
source "$(dirname "$0")/_common.sh"

USAGE="usage: aws/scripts/bootstrap.sh dev|prod
  Creates s3://lakehouse-tfstate-<account>-<env> for the Terraform state, then plans and applies
  aws/terraform/envs/<env>. AUTO_APPROVE=1 applies without asking; DRY_RUN=1 prints the commands."
check_env "${1:-}" "$USAGE"
ENV="$1"
require terraform "https://developer.hashicorp.com/terraform/install"
[ -n "${DRY_RUN:-}" ] || require aws "https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html"

region="$(config_value "$ENV" aws.region)"
if [ -n "${DRY_RUN:-}" ]; then
  account="$(config_value "$ENV" aws.account_id)"
else
  account="$(aws sts get-caller-identity --query Account --output text)"
  expected="$(config_value "$ENV" aws.account_id)"
  if [ "$account" != "$expected" ]; then
    echo "bootstrap: the credentials are for account $account, config/$ENV.yaml says $expected" >&2
    exit 1
  fi
fi
state_bucket="lakehouse-tfstate-$account-$ENV"
tf_dir="$REPO/aws/terraform/envs/$ENV"

if [ -z "${DRY_RUN:-}" ] && aws s3api head-bucket --bucket "$state_bucket" 2>/dev/null; then
  echo "state bucket s3://$state_bucket exists"
else
  if [ "$region" = "us-east-1" ]; then
    run aws s3api create-bucket --bucket "$state_bucket" --region "$region"
  else
    run aws s3api create-bucket --bucket "$state_bucket" --region "$region" \
      --create-bucket-configuration "LocationConstraint=$region"
  fi
  run aws s3api put-bucket-versioning --bucket "$state_bucket" --versioning-configuration Status=Enabled
  run aws s3api put-bucket-encryption --bucket "$state_bucket" --server-side-encryption-configuration \
    '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"aws:kms"},"BucketKeyEnabled":true}]}'
  run aws s3api put-public-access-block --bucket "$state_bucket" --public-access-block-configuration \
    BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
  run aws s3api put-bucket-policy --bucket "$state_bucket" --policy "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Sid\":\"TlsOnly\",\"Effect\":\"Deny\",\"Principal\":\"*\",\"Action\":\"s3:*\",\"Resource\":[\"arn:aws:s3:::$state_bucket\",\"arn:aws:s3:::$state_bucket/*\"],\"Condition\":{\"Bool\":{\"aws:SecureTransport\":\"false\"}}}]}"
fi

run terraform -chdir="$tf_dir" init -input=false \
  -backend-config="bucket=$state_bucket" \
  -backend-config="key=lakehouse/$ENV/terraform.tfstate" \
  -backend-config="region=$region" \
  -backend-config="encrypt=true" \
  -backend-config="use_lockfile=true"
run terraform -chdir="$tf_dir" plan -input=false -out=tfplan
if [ -z "${DRY_RUN:-}" ] && [ -z "${AUTO_APPROVE:-}" ]; then
  read -r -p "apply this plan to $ENV (account $account)? [y/N] " answer
  [ "$answer" = "y" ] || { echo "not applied"; exit 1; }
fi
run terraform -chdir="$tf_dir" apply -input=false tfplan

cat <<NEXT
bootstrap of $ENV done. Set the secrets' values out of band (never in code, config or shell
history), e.g. from files you then delete:
  aws secretsmanager put-secret-value --secret-id lakehouse/$ENV/pii-hmac-key --secret-string "\$(openssl rand -hex 32)"
  aws secretsmanager put-secret-value --secret-id lakehouse/$ENV/redshift --secret-string file://redshift.json
  aws secretsmanager put-secret-value --secret-id lakehouse/$ENV/marquez-api-key --secret-string file://marquez-key.txt
then deploy a release: aws/scripts/deploy.sh $ENV
NEXT
