"""Typed, validated settings: one YAML file per environment, env-var and CLI overrides.

Loaded once at start-up. Every problem (unknown key, missing value, wrong type) is
reported with the file, the dotted key and what was expected, before any work starts.
Secrets are references (`{env: NAME}` or `{secretsmanager: NAME}`), never values.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from pipeline import typed

ENVIRONMENTS = ("local", "dev", "prod")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# config/ as the package carries it: a link to the checkout's config/, a folder in an installed wheel
PACKAGE_CONFIG = Path(__file__).resolve().parent / "config"


class ConfigError(ValueError):
    """A configuration problem, reported before any step runs."""


class _YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """safe_load's loader (libyaml's parser: ~10x faster than PyYAML's pure-Python one, which is
    taken where PyYAML lacks libyaml; configuration is read on every run), refusing a key
    repeated in one mapping: YAML keeps the last silently, so a contract's second `amount:`
    entry, or `{min: 0, min: -5}`, would drop the first's rules.
    Each mapping is checked once, as written: before merge keys (`<<: *anchor`, whose keys a
    mapping may override by design) are flattened into it."""

    _MERGE, _VALUE = "tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"

    def __init__(self, stream):
        super().__init__(stream)
        self._checked: set[int] = set()

    def _check_keys(self, node) -> None:
        if id(node) in self._checked:
            return
        self._checked.add(id(node))
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == self._MERGE:
                continue
            key = "=" if key_node.tag == self._VALUE else self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the constructor refuses it
                continue
            if repeated:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found the key {key!r} twice",
                    key_node.start_mark,
                )

    def flatten_mapping(self, node):
        self._check_keys(node)
        for key_node, value_node in node.value:  # a merged mapping, checked before it is flattened
            if key_node.tag == self._MERGE:
                for merged in value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]:
                    if isinstance(merged, yaml.MappingNode):
                        self._check_keys(merged)
        super().flatten_mapping(node)

    def construct_mapping(self, node, deep=False):
        self._check_keys(node)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """What `yaml.safe_load(text)` returns, but a key repeated in a mapping is an error; errors are
    yaml.YAMLError. Every config reader's loader."""
    return yaml.load(text, Loader=_YamlLoader)


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives; resolved only at the moment of use, never logged."""

    env: str | None = None
    secretsmanager: str | None = None
    json_key: str | None = None

    def __post_init__(self) -> None:
        if (self.env is None) == (self.secretsmanager is None):
            raise ConfigError("a secret reference needs exactly one of 'env' or 'secretsmanager'")

    def describe(self) -> str:
        return f"env var {self.env}" if self.env else f"Secrets Manager secret {self.secretsmanager}"

    def resolve(self) -> str:
        if self.env:
            value = os.environ.get(self.env)
            if not value:
                raise ConfigError(f"secret not available: set the environment variable {self.env}")
            return value
        import json

        import boto3

        raw = boto3.client("secretsmanager").get_secret_value(SecretId=self.secretsmanager)["SecretString"]
        return json.loads(raw)[self.json_key] if self.json_key else raw


CREDENTIAL_OPTIONS = frozenset(
    f"AWS_{name}{suffix}"
    for name in ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN")
    for suffix in ("", "_DYNAMODB")
)


@dataclass(frozen=True)
class LakeSettings:
    root: str = "./lake"
    engine: Literal["auto", "delta-spark", "delta-rs"] = "auto"
    # How the lake's clients reach an S3-compatible store other than AWS S3 itself (a local
    # endpoint in the tests), in delta-rs's option names: AWS_ENDPOINT_URL, AWS_REGION,
    # AWS_ALLOW_HTTP, AWS_S3_ADDRESSING_STYLE (path, the default, or virtual). delta-rs 1.x
    # commits with S3 conditional writes and refuses its old DynamoDB options (the DynamoDB log
    # store is delta-spark's: spark.conf in config/dev.yaml; docs/runtime_jars.md). delta-rs
    # takes them as its storage options, the boto3 clients of <lake>/_ops take the endpoint and
    # region, and S3A gets fs.s3a.* from them (pipeline.spark).
    # Empty on EMR. Credentials are never options: the AWS default chain supplies them.
    storage_options: dict[str, str] = field(default_factory=dict)
    # delta-rs moves each write (and each change feed it reads) through the driver as Arrow: above
    # this many bytes it refuses, naming the table, instead of exhausting the driver's memory.
    delta_rs_max_bytes: int = 1 << 30
    # One writer per lake (pipeline.lease): a lease not renewed for this long is free to take over.
    lease_ttl_s: float = 120.0

    def __post_init__(self) -> None:
        secret = sorted(k for k in self.storage_options if k.upper() in CREDENTIAL_OPTIONS)
        if secret:
            raise ConfigError(
                f"storage_options: {', '.join(secret)}: credentials are not configuration; every "
                "client of the lake takes them from the AWS default chain (AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY in the environment, a profile, or the instance role)"
            )

    def path(self, *parts: str) -> str:
        """A location under the lake root; works for local folders and s3:// URIs alike."""
        return "/".join([self.root.rstrip("/"), *parts])


@dataclass(frozen=True)
class SparkSettings:
    master: str | None = "local[*]"  # None: take what spark-submit / the cluster gives
    app_name: str = "lakehouse"
    shuffle_partitions: int = 4
    driver_memory: str = "4g"
    jars: list[str] = field(default_factory=list)
    conf: dict[str, str] = field(default_factory=dict)
    # Independent DAG steps run at once in a local run (`lakehouse run`, the spark-submit
    # pipeline entry), each in a session of its own on the one SparkContext.
    parallel_steps: int = 1

    def __post_init__(self) -> None:
        if self.parallel_steps < 1:
            raise ConfigError(f"spark.parallel_steps: expected a positive number, got {self.parallel_steps}")


@dataclass(frozen=True)
class JdbcSettings:
    url: str
    table: str
    user: str
    password: SecretRef
    watermark_column: str = "loaded_at"
    num_partitions: int = 4
    driver: str = "org.postgresql.Driver"
    fetch_size: int = 10000


KAFKA_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
KAFKA_SERVER = re.compile(r"^[A-Za-z0-9._-]+:[0-9]{1,5}$")


@dataclass(frozen=True)
class KafkaSettings:
    """Where a stream dataset with `sources.<dataset>.mode: kafka` reads. The defaults fit a plain broker (a local
    one in the tests: PLAINTEXT, no auth); MSK sets `security_protocol: SASL_SSL` and
    `sasl_mechanism: AWS_MSK_IAM` in config/dev.yaml and prod.yaml (TLS, and IAM auth with the
    EMR role: no stored secret). The same client settings serve Spark's Kafka source and the
    consumer-lag probe (`pipeline.kafka_client.client_options`)."""

    bootstrap_servers: str  # host:port[,host:port...]
    topic: str = "product_events"
    starting_offsets: str = "earliest"  # earliest | latest | Spark's JSON {"topic": {"0": offset}}
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["AWS_MSK_IAM"] | None = None  # with SASL_SSL only

    def __post_init__(self) -> None:
        servers = [s.strip() for s in self.bootstrap_servers.split(",")]
        bad = [s for s in servers if not KAFKA_SERVER.match(s)]
        if bad:
            raise ConfigError(
                f"bootstrap_servers: expected host:port[,host:port...], got {self.bootstrap_servers!r}"
            )
        if not KAFKA_TOPIC.match(self.topic):
            raise ConfigError(
                f"topic: {self.topic!r} is not a Kafka topic name (letters, digits, '.', '_', '-'; "
                "at most 249)"
            )
        offsets = self.starting_offsets.strip()
        if offsets not in ("earliest", "latest") and not (offsets.startswith("{") and offsets.endswith("}")):
            raise ConfigError(
                f"starting_offsets: expected earliest, latest or a JSON object of offsets per "
                f"topic and partition, got {self.starting_offsets!r}"
            )
        if self.security_protocol.startswith("SASL") != (self.sasl_mechanism is not None):
            raise ConfigError(
                f"sasl_mechanism: {self.sasl_mechanism or 'unset'} does not fit security_protocol "
                f"{self.security_protocol}: SASL_SSL needs sasl_mechanism (AWS_MSK_IAM for MSK), "
                "PLAINTEXT and SSL take none"
            )


FILE_MODES = ("files", "jdbc")  # a file dataset: its landing folder, or JDBC watermark extraction
STREAM_MODES = ("replay", "kafka")  # a stream dataset: landing files in the Kafka record shape, or a topic


@dataclass(frozen=True)
class SourceSettings:
    """How one dataset's source is read: `sources.<dataset>` in config/<env>.yaml, a dataset of
    the catalogue. A file dataset (csv, parquet, fx_json) reads its landing folder (`files`, the
    default) or a table by JDBC (`jdbc`, with `jdbc:`); a stream dataset (the kafka reader)
    replays landing files in the Kafka record shape (`replay`, the default) or reads a topic
    (`kafka`, with `kafka:`). `Settings.source` checks the mode against the dataset's reader."""

    mode: Literal["files", "jdbc", "replay", "kafka"] | None = None  # None: files, or replay for a stream
    jdbc: JdbcSettings | None = None  # required when mode is jdbc
    kafka: KafkaSettings | None = None  # required when mode is kafka
    max_files_per_trigger: int = 8  # replay mode: files per micro-batch, unless max_bytes_per_trigger is set
    # replay mode: bytes of landing files per micro-batch (at least one file), instead of a file
    # count, so a batch's size, and memory, stays the same however large the files grow
    max_bytes_per_trigger: int | None = None
    max_offsets_per_trigger: int = 200000  # kafka mode: records per micro-batch, over all partitions
    trigger_interval: str = "30 seconds"  # a continuous stream's micro-batch interval

    def __post_init__(self) -> None:
        if self.mode == "kafka" and self.kafka is None:
            raise ConfigError(
                "kafka: required when mode is kafka (at least kafka.bootstrap_servers); "
                "or set mode: replay to read the landing replay files"
            )
        if self.mode == "jdbc" and self.jdbc is None:
            raise ConfigError("jdbc: required when mode is jdbc (url, table, user, password)")
        for name in ("max_files_per_trigger", "max_bytes_per_trigger", "max_offsets_per_trigger"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected a positive number, got {getattr(self, name)}")


@dataclass(frozen=True)
class GeneratorSettings:
    scale: float = 1.0
    seed: int = 42
    defect_rate: float = 0.01
    days: int = 90


@dataclass(frozen=True)
class PiiSettings:
    # Key of the HMAC that replaces emails in silver. Locally, when the variable is unset, a
    # fixed development key is used (with a warning); dev and prod fail without a key.
    hmac_key: SecretRef = field(default_factory=lambda: SecretRef(env="LAKEHOUSE_PII_KEY"))


@dataclass(frozen=True)
class LineageSettings:
    transport: Literal["file", "http", "none"] = "file"  # file: <lake>/_ops/lineage/
    url: str = ""  # http: a Marquez-compatible endpoint
    endpoint: str = "api/v1/lineage"
    api_key: SecretRef | None = None
    namespace: str = "lakehouse"  # the job namespace
    fail_on_error: bool = False  # a lineage outage does not fail the pipeline unless asked


@dataclass(frozen=True)
class MetricsSettings:
    sink: Literal["file", "cloudwatch", "none"] = "file"  # file: <lake>/_ops/metrics/
    namespace: str = "Lakehouse"  # the CloudWatch namespace
    region: str = ""  # empty: the AWS SDK's default


STEP_FAILED, DQ_CRITICAL, DQ_WARN, RUN_FAILED = "step_failed", "dq_critical", "dq_warn", "run_failed"
ALERT_KINDS = (STEP_FAILED, DQ_CRITICAL, DQ_WARN, RUN_FAILED)


@dataclass(frozen=True)
class AlertSettings:
    sns_topic_arn: str = ""
    webhook_url: SecretRef | None = None  # e.g. a chat webhook; the URL is a secret
    # What is alerted (pipeline.observability.alerts): a failed step, failed critical / warn DQ
    # rules of a step, a failed run.
    on: list[str] = field(default_factory=lambda: [STEP_FAILED, DQ_CRITICAL, DQ_WARN])

    def __post_init__(self) -> None:
        unknown = [k for k in self.on if k not in ALERT_KINDS]
        if unknown:
            raise ConfigError(
                f"on: unknown alert kind(s) {', '.join(map(repr, unknown))}; "
                f"known kinds: {', '.join(ALERT_KINDS)}"
            )


JOB_KINDS = ("bronze", "silver", "gold")  # the job kinds of config/pipeline.yaml (pipeline.jobs)
EMR_RELEASE = re.compile(r"^emr-(spark-)?[0-9]+\.[0-9]+\.[0-9]+$")
AWS_NAME = re.compile(r"^[A-Za-z0-9._/+=,@-]{1,128}$")
MEMORY = re.compile(r"^[0-9]+[gG]$")


@dataclass(frozen=True)
class EmrSettings:
    """How `lakehouse run --executor emr-serverless|emr-ec2` submits steps. Everything named
    here is created by aws/terraform for the environment (a test holds the two together)."""

    release_label: str = "emr-spark-8.0.0"
    application_name: str = ""  # the EMR Serverless application, found by name
    cluster_name: str = ""  # EMR on EC2: the waiting cluster with this name
    log_group: str = ""  # EMR Serverless job runs also log to this CloudWatch Logs group
    # Execution role name per job kind: one role per layer (least privilege, aws/terraform/modules/iam).
    roles: dict[str, str] = field(default_factory=dict)
    max_parallel_steps: int = 3  # independent steps submitted at once
    execution_timeout_minutes: int = 120  # per job run; the executor cancels it after that
    poll_seconds: float = 15.0  # first poll interval; backs off to 4x while a job runs
    driver_cores: int = 4
    driver_memory: str = "14g"
    executor_cores: int = 4
    executor_memory: str = "14g"
    max_executors: int = 20  # spark.dynamicAllocation.maxExecutors per job

    def __post_init__(self) -> None:
        if not EMR_RELEASE.match(self.release_label):
            raise ConfigError(
                f"release_label: expected e.g. emr-spark-8.0.0 or emr-7.12.0, got {self.release_label!r}"
            )
        missing = [k for k in JOB_KINDS if not self.roles.get(k)]
        unknown = sorted(set(self.roles) - set(JOB_KINDS))
        if missing or unknown:
            raise ConfigError(
                f"roles: one execution role name per job kind ({', '.join(JOB_KINDS)}); "
                + (f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(unknown)}")
            )
        bad = [r for r in self.roles.values() if not AWS_NAME.match(r)]
        if bad:
            raise ConfigError(f"roles: not an IAM role name: {', '.join(map(repr, bad))}")
        for name in ("driver_memory", "executor_memory"):
            if not MEMORY.match(getattr(self, name)):
                raise ConfigError(
                    f"{name}: expected a size in gigabytes such as 14g, got {getattr(self, name)!r}"
                )
        for name in (
            "max_parallel_steps",
            "execution_timeout_minutes",
            "driver_cores",
            "executor_cores",
            "max_executors",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected a positive number, got {getattr(self, name)}")
        if self.poll_seconds <= 0:
            raise ConfigError(f"poll_seconds: expected a positive number, got {self.poll_seconds}")


@dataclass(frozen=True)
class AwsSettings:
    """The AWS account side of an environment (config/dev.yaml, prod.yaml); absent locally."""

    region: str
    account_id: str
    artifacts_bucket: str  # releases: s3://<artifacts_bucket>/releases/<version>/
    logs_bucket: str  # EMR job logs: s3://<logs_bucket>/emr/
    emr: EmrSettings
    kms_key_alias: str = ""  # the lake's key; job-run logs are encrypted with it (resolved to its ARN)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9]{12}", self.account_id):
            raise ConfigError(f"account_id: expected 12 digits (quote it in YAML), got {self.account_id!r}")
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-[0-9]", self.region):
            raise ConfigError(f"region: expected an AWS region such as us-east-1, got {self.region!r}")

    def role_arn(self, kind: str) -> str:
        """The execution role of a job kind (bronze, silver, gold)."""
        return f"arn:aws:iam::{self.account_id}:role/{self.emr.roles[kind]}"


@dataclass(frozen=True)
class Settings:
    env: Literal["local", "dev", "prod"] = "local"
    lake: LakeSettings = field(default_factory=LakeSettings)
    spark: SparkSettings = field(default_factory=SparkSettings)
    sources: dict[str, SourceSettings] = field(default_factory=dict)  # by catalogue dataset
    generator: GeneratorSettings = field(default_factory=GeneratorSettings)
    pii: PiiSettings = field(default_factory=PiiSettings)
    lineage: LineageSettings = field(default_factory=LineageSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    aws: AwsSettings | None = None  # dev and prod: what the EMR executors and deploy scripts use
    pipeline_file: str = "pipeline.yaml"
    datasets_file: str = "datasets.yaml"
    contracts_dir: str = "contracts"
    reference_dir: str = "reference"
    config_dir: str = ""  # filled by the loader: where the YAML files were read from

    def config_path(self, name: str) -> Path:
        return Path(self.config_dir) / name

    def source(self, dataset: str, stream: bool) -> SourceSettings:
        """`sources.<dataset>` with its mode resolved (the default of a file dataset, or of a
        `stream` one), or ConfigError naming the key when the mode does not fit the dataset."""
        conf = self.sources.get(dataset, SourceSettings())
        modes = STREAM_MODES if stream else FILE_MODES
        mode = conf.mode or modes[0]
        if mode not in modes:
            kind = "a stream (reader kafka)" if stream else "a file dataset"
            raise ConfigError(
                f"{self.config_path(f'{self.env}.yaml')}: sources.{dataset}.mode: {mode!r} does "
                f"not fit {dataset}, {kind}: expected one of {'|'.join(modes)}"
            )
        return dataclasses.replace(conf, mode=mode)

    def check_sources(self, datasets: Iterable[str]) -> None:
        """Every `sources` entry names a catalogue dataset (a typo would be ignored otherwise)."""
        unknown = sorted(set(self.sources) - set(datasets))
        if unknown:
            raise ConfigError(
                f"{self.config_path(f'{self.env}.yaml')}: sources: {', '.join(unknown)} not in "
                f"the catalogue ({self.datasets_file}); known: {', '.join(sorted(datasets))}"
            )


def default_config_dir() -> Path:
    """`LAKEHOUSE_CONFIG_DIR`, else ./config, else the config folder the package carries."""
    if os.environ.get("LAKEHOUSE_CONFIG_DIR"):
        return Path(os.environ["LAKEHOUSE_CONFIG_DIR"])
    cwd_config = Path.cwd() / "config"
    return cwd_config if (cwd_config / "local.yaml").exists() else PACKAGE_CONFIG


def load_settings(
    env: str | None = None, *, lake_root: str | None = None, config_dir: Path | None = None
) -> Settings:
    """Precedence: CLI arguments > environment variables > `<config_dir>/<env>.yaml`."""
    env = env or os.environ.get("LAKEHOUSE_ENV", "local")
    if env not in ENVIRONMENTS:
        raise ConfigError(f"LAKEHOUSE_ENV / --env: expected one of {', '.join(ENVIRONMENTS)}, got {env!r}")
    config_dir = Path(config_dir) if config_dir else default_config_dir()
    path = config_dir / f"{env}.yaml"
    if not path.exists():
        raise ConfigError(f"{path}: configuration file not found (set LAKEHOUSE_CONFIG_DIR or --config-dir)")
    try:
        data = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    data.setdefault("env", env)
    if data["env"] != env:
        raise ConfigError(f"{path}: env: file is for {env!r} but says {data['env']!r}")
    lake = dict(data.get("lake") or {})
    if os.environ.get("LAKEHOUSE_LAKE_ROOT"):
        lake["root"] = os.environ["LAKEHOUSE_LAKE_ROOT"]
    if os.environ.get("LAKEHOUSE_LAKE_ENGINE"):
        lake["engine"] = os.environ["LAKEHOUSE_LAKE_ENGINE"]
    if lake_root:
        lake["root"] = lake_root
    data["lake"] = lake
    data["config_dir"] = str(config_dir)
    settings = parse_typed(Settings, data, str(path), "")
    return dataclasses.replace(settings, lake=_absolute_lake(settings.lake))


def _absolute_lake(lake: LakeSettings) -> LakeSettings:
    if "://" in lake.root:
        return lake
    return dataclasses.replace(lake, root=str(Path(lake.root).expanduser().resolve()))


def parse_typed(tp: Any, value: Any, file: str, key: str) -> Any:
    """Turn parsed YAML into the annotated type (strict pydantic models derived from the
    dataclasses, `pipeline.typed`), or raise ConfigError naming file, dotted key, what was
    expected and what was found: one line per problem."""
    try:
        return typed.adapter(tp).validate_python(value)
    except ValidationError as exc:
        problems = [f"{file}: {typed.key_of(key, e['loc'])}: {_message(e)}" for e in exc.errors()]
        raise ConfigError("\n".join(problems)) from None


def _message(error: ErrorDetails) -> str:
    secret = error["type"] == "model_type" and error["ctx"]["class_name"] == SecretRef.__name__
    if secret and isinstance(error["input"], str):
        return "secrets are references, not values: write {env: VAR_NAME} or {secretsmanager: secret-name}"
    return typed.message(error)
