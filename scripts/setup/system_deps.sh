#!/usr/bin/env bash
# System packages the project needs beyond Python: Java 17 (Spark), PostgreSQL server binaries
# and its JDBC driver (the JDBC-mode tests start a throwaway server), Maven (fetches the Delta,
# Kafka-connector and S3A jars and the test Kafka broker from Maven Central), Chromium (a test renders
# the HTML run report headless and checks the screenshot), shellcheck (checks aws/scripts). Installs
# what is missing from Debian when it can (root or sudo); otherwise says exactly what to install.
set -euo pipefail

need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
[ -f /usr/share/java/postgresql.jar ] || need+=(libpostgresql-jdbc-java)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
  echo "missing system packages: ${need[*]} — install them with: apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
