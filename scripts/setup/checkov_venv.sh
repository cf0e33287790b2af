#!/usr/bin/env bash
# checkov in its own virtualenv (.venv-checkov): it pins an old boto3 that would clash with the
# project's .venv. Idempotent: a venv that already has this checkov version is left as it is.
set -euo pipefail
CHECKOV_VERSION=3.3.30
VENV=${CHECKOV_VENV:-.venv-checkov}
if [ -x "$VENV/bin/checkov" ] && [ "$("$VENV/bin/checkov" --version 2>/dev/null)" = "$CHECKOV_VERSION" ]; then
    exit 0
fi
PYTHON=$(command -v python3.11 || command -v python3)
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "checkov==$CHECKOV_VERSION"
