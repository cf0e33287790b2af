# Sourced by the aws/scripts: the repository root, the environment argument, required tools, and
# DRY_RUN=1 (print each command that would change something instead of running it).
# shellcheck shell=bash

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export REPO

# usage TEXT: print it and exit 0 for -h/--help, 2 for a missing or unknown environment.
check_env() {
  local env="${1:-}" usage="$2"
  case "$env" in
    -h | --help) echo "$usage"; exit 0 ;;
    dev | prod) ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
}

require() {
  command -v "$1" >/dev/null 2>&1 || { echo "$(basename "$0"): $1 is required: $2" >&2; exit 1; }
}

run() {
  if [ -n "${DRY_RUN:-}" ]; then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

# The value of a key of config/<env>.yaml (dotted path), read by the library's own settings loader.
config_value() {
  "$REPO/.venv/bin/python" - "$1" "$2" <<'PY'
import sys
from pipeline.settings import load_settings
value = load_settings(sys.argv[1])
for part in sys.argv[2].split("."):
    value = getattr(value, part)
print(value)
PY
}
