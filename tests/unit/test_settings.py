"""Configuration: defaults, precedence, and errors that name the file, key and expectation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.settings import ConfigError, SecretRef, load_settings, load_yaml

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, env: str, text: str) -> Path:
    (tmp_path / f"{env}.yaml").write_text(text)
    return tmp_path


@pytest.mark.parametrize("env", ["local", "dev", "prod"])
def test_committed_configs_load(env, monkeypatch):
    monkeypatch.delenv("LAKEHOUSE_LAKE_ROOT", raising=False)
    settings = load_settings(env, config_dir=REPO / "config")
    assert settings.env == env
    if env == "local":
        assert settings.lake.root.endswith("/lake") and settings.spark.master == "local[*]"
    else:
        assert settings.lake.root.startswith("s3://") and settings.lake.engine == "delta-spark"
        assert settings.spark.master is None


def test_precedence_cli_over_env_over_file(tmp_path, monkeypatch):
    config = write(tmp_path, "local", "lake: {root: /from/file}\n")
    monkeypatch.setenv("LAKEHOUSE_LAKE_ROOT", "/from/env")
    assert load_settings("local", config_dir=config).lake.root == "/from/env"
    assert load_settings("local", config_dir=config, lake_root="/from/cli").lake.root == "/from/cli"
    monkeypatch.delenv("LAKEHOUSE_LAKE_ROOT")
    assert load_settings("local", config_dir=config).lake.root == "/from/file"


def test_lakehouse_env_selects_the_file(tmp_path, monkeypatch):
    write(tmp_path, "dev", "env: dev\nlake: {root: 's3://b'}\n")
    monkeypatch.setenv("LAKEHOUSE_ENV", "dev")
    assert load_settings(config_dir=tmp_path).lake.root == "s3://b"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lake: {root: x, egnine: delta-rs}\n", r"local.yaml: lake: unknown key\(s\) egnine"),
        ("lake: {engine: delta}\n", r"lake.engine: expected one of auto\|delta-spark\|delta-rs, got 'delta'"),
        ("spark: {shuffle_partitions: many}\n", r"spark.shuffle_partitions: expected int, got 'many'"),
        ("spark: {parallel_steps: 0}\n", r"spark.parallel_steps: expected a positive number, got 0"),
        (
            "sources: {redshift_behavior: {jdbc: {url: u, table: t, user: x}}}\n",
            r"sources.redshift_behavior.jdbc.password: required value missing",
        ),
        (
            "sources: {redshift_behavior: {jdbc: {url: u, table: t, user: x, password: hunter2}}}\n",
            r"secrets are references, not values",
        ),
        ("- a list\n", r"expected a mapping at the top level"),
        # YAML would keep the second silently
        (
            "lake: {root: x}\nlake: {root: y}\n",
            r"(?s)local.yaml: not valid YAML: .*found the key 'lake' twice",
        ),
        (
            'alerts: {"on": [step_failed, dq_warning]}\n',
            r"local.yaml: alerts: on: unknown alert kind\(s\) 'dq_warning'; known kinds: step_failed, "
            r"dq_critical, dq_warn, run_failed",
        ),
    ],
)
def test_bad_config_fails_at_start_naming_file_and_key(tmp_path, text, message):
    write(tmp_path, "local", text)
    with pytest.raises(ConfigError, match=message):
        load_settings("local", config_dir=tmp_path)


KAFKA = "sources:\n  kafka_events:\n    mode: kafka\n    kafka: {%s}\n"


def test_kafka_mode_reads_a_plaintext_broker_locally_and_msk_with_iam_in_aws(tmp_path):
    local = load_settings(
        "local", config_dir=write(tmp_path, "local", KAFKA % "bootstrap_servers: 127.0.0.1:9092")
    )
    k = local.sources["kafka_events"].kafka
    assert (k.security_protocol, k.sasl_mechanism, k.topic) == ("PLAINTEXT", None, "product_events")
    for env in ("dev", "prod"):
        msk = load_settings(env, config_dir=REPO / "config").sources["kafka_events"]
        assert msk.mode == "kafka"
        assert (msk.kafka.security_protocol, msk.kafka.sasl_mechanism) == ("SASL_SSL", "AWS_MSK_IAM")


@pytest.mark.parametrize(
    ("kafka", "message"),
    [
        (None, r"local.yaml: sources.kafka_events: kafka: required when mode is kafka"),
        ("topic: t", r"sources.kafka_events.kafka.bootstrap_servers: required value missing"),
        (
            "bootstrap_servers: 'localhost'",
            r"sources.kafka_events.kafka: bootstrap_servers: expected host:port",
        ),
        (
            "bootstrap_servers: 'h:1', topic: 'a topic'",
            r"sources.kafka_events.kafka: topic: 'a topic' is not a Kafka topic name",
        ),
        (
            "bootstrap_servers: 'h:1', starting_offsets: first",
            r"sources.kafka_events.kafka: starting_offsets: expected earliest, latest or a JSON object",
        ),
        (
            "bootstrap_servers: 'h:1', security_protocol: SASL_SSL",
            r"sources.kafka_events.kafka: sasl_mechanism: unset does not fit security_protocol SASL_SSL",
        ),
        (
            "bootstrap_servers: 'h:1', sasl_mechanism: AWS_MSK_IAM",
            r"sasl_mechanism: AWS_MSK_IAM does not fit security_protocol PLAINTEXT",
        ),
        (
            "bootstrap_servers: 'h:1', security_protocol: SASL_PLAINTEXT",
            r"sources.kafka_events.kafka.security_protocol: expected one of PLAINTEXT\|SSL\|SASL_SSL",
        ),
    ],
)
def test_bad_kafka_settings_name_the_key(tmp_path, kafka, message):
    text = KAFKA % kafka if kafka else "sources: {kafka_events: {mode: kafka}}\n"
    with pytest.raises(ConfigError, match=message):
        load_settings("local", config_dir=write(tmp_path, "local", text))


def test_alert_kinds_default_and_bare_yaml_on_key(tmp_path):
    assert load_settings("local", config_dir=write(tmp_path, "local", "{}\n")).alerts.on == [
        "step_failed",
        "dq_critical",
        "dq_warn",
    ]
    # YAML 1.1 reads a bare `on:` as the boolean true; it still means alerts.on.
    config = write(tmp_path, "local", "alerts:\n  on: [dq_warn, run_failed]\n")
    assert load_settings("local", config_dir=config).alerts.on == ["dq_warn", "run_failed"]


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("spark: {jars: [a.jar, 3]}\n", ["spark.jars[1]: expected str, got 3"]),
        (
            "spark: {shuffle_partitions: true, driver_memory: 4}\n",
            ["spark.shuffle_partitions: expected int, got True", "spark.driver_memory: expected str, got 4"],
        ),
        (
            "spark: {conf: {spark.x: [1]}}\n",
            ["spark.conf.spark.x: expected a string, number or boolean, got [1]"],
        ),
        ("generator: 3\n", ["generator: expected a mapping, got 3"]),
        (
            "lineage: {api_key: hunter2}\n",
            [
                "lineage.api_key: secrets are references, not values: write {env: VAR_NAME} or "
                "{secretsmanager: secret-name}"
            ],
        ),
        (
            "sources: {kafka_events: {kafka: {bootstrap_servers: 'h:1', security_protocol: TLS}}}\n",
            [
                "sources.kafka_events.kafka.security_protocol: expected one of PLAINTEXT|SSL|SASL_SSL, got 'TLS'"
            ],
        ),
    ],
)
def test_each_problem_is_a_line_with_its_dotted_key_and_list_index(tmp_path, text, problems):
    path = tmp_path / "local.yaml"
    write(tmp_path, "local", text)
    with pytest.raises(ConfigError) as err:
        load_settings("local", config_dir=tmp_path)
    assert str(err.value).splitlines() == [f"{path}: {p}" for p in problems]


def test_types_are_strict_but_an_int_reads_as_a_float_and_options_as_text(tmp_path):
    text = (
        "generator: {scale: 2}\n"
        "spark: {conf: {spark.sql.adaptive.enabled: true, spark.sql.shuffle.partitions: 8}}\n"
        "lake: {storage_options: {AWS_ALLOW_HTTP: 'true', AWS_REGION: us-east-1}}\n"
    )
    settings = load_settings("local", config_dir=write(tmp_path, "local", text))
    assert settings.generator.scale == 2.0 and isinstance(settings.generator.scale, float)
    # Spark and delta-rs take options as text; YAML's true arrives as str(True).
    assert settings.spark.conf == {"spark.sql.adaptive.enabled": "True", "spark.sql.shuffle.partitions": "8"}
    assert settings.lake.storage_options == {"AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1"}
    with pytest.raises(ConfigError, match=r"generator.seed: expected int, got 42.0"):
        load_settings("local", config_dir=write(tmp_path, "local", "generator: {seed: 42.0}\n"))


def test_unknown_environment_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="expected one of local, dev, prod"):
        load_settings("staging", config_dir=tmp_path)
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_settings("dev", config_dir=tmp_path)


def test_secret_reference_resolves_from_env_and_says_what_is_missing(monkeypatch):
    ref = SecretRef(env="LAKEHOUSE_TEST_SECRET")
    monkeypatch.delenv("LAKEHOUSE_TEST_SECRET", raising=False)
    with pytest.raises(ConfigError, match="set the environment variable LAKEHOUSE_TEST_SECRET"):
        ref.resolve()
    monkeypatch.setenv("LAKEHOUSE_TEST_SECRET", "s3cret")
    assert ref.resolve() == "s3cret"


def test_secret_reference_resolves_from_secrets_manager(monkeypatch):
    import boto3
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        boto3.client("secretsmanager").create_secret(
            Name="lakehouse/dev/redshift", SecretString='{"password": "pw"}'
        )
        assert SecretRef(secretsmanager="lakehouse/dev/redshift", json_key="password").resolve() == "pw"


SOURCES = """
sources:
  crm_accounts:
    mode: jdbc
    jdbc: {url: "jdbc:postgresql://db:5432/crm", table: public.accounts, user: etl, password: {env: CRM_PW}}
  partner_events:
    mode: kafka
    kafka: {bootstrap_servers: "broker:9092", topic: partner.events}
    max_offsets_per_trigger: 5000
"""


def test_any_dataset_takes_a_jdbc_or_kafka_source_by_its_name(tmp_path):
    """A second JDBC table or topic is configuration: `sources.<dataset>`, whatever the dataset."""
    settings = load_settings("local", config_dir=write(tmp_path, "local", SOURCES))
    accounts = settings.source("crm_accounts", stream=False)
    assert (accounts.mode, accounts.jdbc.table, accounts.jdbc.password.env) == (
        "jdbc",
        "public.accounts",
        "CRM_PW",
    )
    partner = settings.source("partner_events", stream=True)
    assert (partner.mode, partner.kafka.topic, partner.max_offsets_per_trigger) == (
        "kafka",
        "partner.events",
        5000,
    )
    # a dataset without an entry reads its landing folder, or replays landing files when a stream
    assert settings.source("fx_rates", stream=False).mode == "files"
    assert settings.source("kafka_events", stream=True).mode == "replay"


def test_a_source_mode_that_does_not_fit_the_dataset_or_an_unknown_dataset_is_named(tmp_path):
    settings = load_settings("local", config_dir=write(tmp_path, "local", SOURCES))
    with pytest.raises(
        ConfigError,
        match=r"local.yaml: sources.crm_accounts.mode: 'jdbc' does not fit crm_accounts, a stream",
    ):
        settings.source("crm_accounts", stream=True)
    with pytest.raises(
        ConfigError,
        match=r"sources.partner_events.mode: 'kafka' does not fit partner_events, a file dataset: expected one of files\|jdbc",
    ):
        settings.source("partner_events", stream=False)
    with pytest.raises(
        ConfigError,
        match=r"local.yaml: sources: partner_events not in the catalogue \(datasets.yaml\); known: crm_accounts",
    ):
        settings.check_sources(["crm_accounts", "fx_rates"])
    with pytest.raises(ConfigError, match=r"sources.crm_accounts: jdbc: required when mode is jdbc"):
        load_settings(
            "local", config_dir=write(tmp_path, "local", "sources:\n  crm_accounts: {mode: jdbc}\n")
        )


YAML_QUIRKS = """\
on: yes
off_value: no
day: 2026-07-01
moment: 2026-07-01T12:00:00Z
octal: 0o17
old_octal: 017
float: 1e3
sexagesimal: 1:30
nulls: [~, null, Null]
anchor: &a {k: [1, 2]}
alias: *a
text: |
  two
  lines
"""


@pytest.mark.parametrize(
    "path",
    sorted((REPO / "config").rglob("*.yaml")) + ["quirks"],
    ids=lambda p: str(p.relative_to(REPO)) if isinstance(p, Path) else p,
)
def test_every_config_file_reads_as_yaml_safe_load_reads_it(path):
    """The C loader every reader uses gives PyYAML's safe_load data, YAML 1.1 quirks included."""
    text = YAML_QUIRKS if path == "quirks" else path.read_text()
    assert load_yaml(text) == yaml.safe_load(text)


def test_invalid_yaml_is_a_yaml_error_naming_the_line():
    with pytest.raises(yaml.YAMLError, match="line 2"):
        load_yaml("a: 1\n b: [\n")


@pytest.mark.parametrize(
    "text",
    [
        "base: &b {x: 1}\nd:\n  <<: *b\n  x: 2\n",  # a merge key's value overridden: by design
        "a: {b: &m {<<: {x: 1}, x: 2}}\nc: {<<: *m}\n",  # an anchor that overrides its own merge
        "a: {<<: [{x: 1}, {x: 2}]}\n",  # merged mappings sharing a key: the first wins
        "=: 1\n",
    ],
)
def test_yaml_merge_keys_load_as_safe_load_reads_them(text):
    assert load_yaml(text) == yaml.safe_load(text)


@pytest.mark.parametrize("text", ["a: 1\na: 2\n", "l: [{k: 1, k: 2}]\n", "b: &b {x: 1, x: 2}\nc: {<<: *b}\n"])
def test_yaml_refuses_a_key_written_twice_in_one_mapping(text):
    with pytest.raises(yaml.YAMLError, match="found the key '.' twice"):
        load_yaml(text)
