# Front door. `make demo` and `make test` each set up everything they need on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
JARS_STAMP := jvm/jars/.fetched-$(shell cat jvm/pom.xml jvm/*/pom.xml | cksum | cut -d' ' -f1)
SCALE ?= 1
LAKE ?= ./lake

.PHONY: setup system-deps jars checkov demo test bench lint package clean

$(STAMP): pyproject.toml
	@command -v python3.11 >/dev/null || command -v python3 >/dev/null || { echo "python3.11 is required"; exit 1; }
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

system-deps:
	@bash scripts/setup/system_deps.sh

# JVM jars from Maven Central (jvm/pom.xml): Delta, the Kafka connector and S3A for Spark
# (jvm/jars/spark, put on spark.jars), and the Kafka broker and S3 endpoint (s3proxy) the tests
# start (jvm/jars/kafka-broker, jvm/jars/s3proxy).
$(JARS_STAMP): jvm/pom.xml jvm/spark/pom.xml jvm/kafka-broker/pom.xml jvm/s3proxy/pom.xml jvm/emr/pom.xml
	rm -rf jvm/jars
	mvn -B -q -s jvm/settings.xml -f jvm/pom.xml dependency:copy-dependencies
	touch $(JARS_STAMP)

jars: system-deps $(JARS_STAMP)

# checkov in its own virtualenv (.venv-checkov): it pins an older boto3 than the project's.
checkov:
	@bash scripts/setup/checkov_venv.sh

setup: system-deps $(STAMP) $(JARS_STAMP) checkov

# Generate the sample landing zone (deterministic, about SCALE million records) and run the pipeline.
demo: setup
	$(VENV)/bin/lakehouse generate --lake $(LAKE) --scale $(SCALE)
	$(VENV)/bin/lakehouse run --lake $(LAKE)

# Property tests derandomized by default (tests/property/conftest.py): a red build reproduces exactly.
test: setup
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} $(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && { echo "no tests collected"; exit 1; }; exit $$rc

# Benchmarks (docs/performance.md): the pipeline at each of SCALES on both lake engines, then the
# single-scale ones at the first of SCALES. Smaller: make bench SCALES="0.05 0.1".
SCALES ?= 1 3 10
bench: setup
	$(PY) bench/bench_sweep.py --scales $(SCALES)
	$(PY) bench/bench_bronze.py --scale $(firstword $(SCALES))
	$(PY) bench/bench_engines.py --scale $(firstword $(SCALES))
	$(PY) bench/bench_skew.py --scale $(firstword $(SCALES))
	$(PY) bench/bench_maintenance.py --scale $(firstword $(SCALES))
	$(PY) bench/bench_log.py

# A release: the wheel (config inside) and the EMR venv archive, with SHA256SUMS, into dist/.
# aws/scripts/deploy.sh uploads it with the jobs and jvm/jars/emr to the artifacts bucket.
package: setup
	$(PY) -m pipeline.deploy.package --out dist

lint: $(STAMP)
	$(VENV)/bin/ruff check src aws scripts tests bench
	$(VENV)/bin/ruff format --check src aws scripts tests bench

clean:
	rm -rf $(LAKE) .pytest_cache dist
