#!/usr/bin/env bash
# Table maintenance on EMR: the DAG's maintain_bronze, maintain_silver and maintain_gold steps, each
# in its layer's role: OPTIMIZE towards the target file size (Z-ORDER where config/maintenance.yaml
# lists columns), a checkpoint, VACUUM with the configured retention. VACUUM of a bronze table is
# refused, naming the consumer, while a silver step still has to read files it would remove. A
# layer maintained less than min_interval_hours ago is left alone (the step says so).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=_common.sh
source "$(dirname "$0")/_common.sh"

USAGE="usage: aws/scripts/maintain.sh dev|prod [lakehouse run options...]
  EXECUTOR=emr-serverless (default) or emr-ec2; --plan prints the job runs and submits nothing."
check_env "${1:-}" "$USAGE"
ENV="$1"
shift
exec "$REPO/aws/scripts/submit.sh" "$ENV" --only maintain_bronze,maintain_silver,maintain_gold "$@"
