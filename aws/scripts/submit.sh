#!/usr/bin/env bash
# Run the pipeline on EMR: the driver (this machine) submits each DAG step as an EMR job run in the
# step's layer role, polls it, merges its step state and builds the run report. Any `lakehouse run`
# option passes through: --only STEP (one step), --from/--until, --resume RUN_ID,
# --start-date/--end-date (backfill), --plan (print the job runs, submit nothing).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=_common.sh
source "$(dirname "$0")/_common.sh"

USAGE="usage: aws/scripts/submit.sh dev|prod [lakehouse run options...]
  EXECUTOR=emr-serverless (default) or emr-ec2. Examples:
    aws/scripts/submit.sh dev --plan
    aws/scripts/submit.sh dev --only silver_orders
    aws/scripts/submit.sh prod --resume 20261203T101500Z-1a2b3c"
check_env "${1:-}" "$USAGE"
ENV="$1"
shift
case "${EXECUTOR:=emr-serverless}" in
  emr-serverless | emr-ec2) ;;
  *) echo "submit: EXECUTOR must be emr-serverless or emr-ec2, got $EXECUTOR" >&2; exit 2 ;;
esac
exec "$REPO/.venv/bin/lakehouse" run --env "$ENV" --executor "$EXECUTOR" "$@"
