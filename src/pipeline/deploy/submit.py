"""What each EMR job run is given, from the settings of an environment and one DAG step.

One typed place turns `config/<env>.yaml` (`aws`, `spark`, `sources`) and a step into the
parameters of a job run: the entry point and its arguments, the execution role of the step's
layer, the jars (Delta from the EMR image, the rest from the release in the artifacts bucket),
the Python environment (`spark.archives=...#environment` and the `PYSPARK_PYTHON` variables),
worker sizes and `spark.dynamicAllocation.maxExecutors`. The EMR Serverless executor sends
`serverless_request()`, the EMR-on-EC2 executor `emr_step()`, and `lakehouse run --plan` prints
`describe()`: the three can never disagree.

A release lives under `s3://<aws.artifacts_bucket>/releases/<version>/` (aws/scripts/deploy.sh):
`jobs/run_step.py`, `lakehouse_env.tar.gz` (the venv-pack archive with the wheel, which carries
config/), `jars/`, and `SHA256SUMS`.
"""

from __future__ import annotations

import importlib.metadata
import re
import shlex
from dataclasses import dataclass, field
from typing import Literal

from pipeline.kafka_client import client_options
from pipeline.settings import ConfigError, Settings
from pipeline.spark import JIT_OPTIONS

EMR_DELTA_LIB = "/usr/share/aws/delta/lib"  # Delta 4.0.0 on emr-spark-8.0.0
ENTRY_POINT = "jobs/run_step.py"  # aws/jobs/run_step.py: runs one DAG step by name
ARCHIVE = "lakehouse_env.tar.gz"  # make package: the venv-pack archive
PYTHON = "./environment/bin/python"  # the archive unpacked as ./environment (spark.archives)
KAFKA_SOURCE = "org.apache.spark.sql.kafka010.KafkaSourceProvider"  # format("kafka")
CLASS_NAME = re.compile(r"\b(?:[a-z][a-z0-9_]*\.){2,}[A-Z][A-Za-z0-9_$]*\b")

Mode = Literal["serverless", "ec2"]


@dataclass(frozen=True)
class Jar:
    """One jar on a job's classpath: `path` on the EMR image (`provided`) or a file name in the
    release's jars/ folder; the Maven coordinates it was built from; the classes (exact names)
    and packages (prefixes ending in '.') it provides; the other jars it needs."""

    name: str
    coordinates: str
    provides: tuple[str, ...]
    provided: bool = False
    requires: tuple[str, ...] = ()

    @property
    def file(self) -> str:
        """The file name Maven gives it (what jvm/jars/*/ holds)."""
        group, artifact, version = self.coordinates.split(":")
        return f"{artifact}-{version}.jar"

    def location(self, release_prefix: str) -> str:
        return f"{EMR_DELTA_LIB}/{self.name}" if self.provided else f"{release_prefix}/jars/{self.file}"


JARS: tuple[Jar, ...] = (
    Jar(
        "delta-spark.jar",
        "io.delta:delta-spark_2.13:4.0.0",
        ("io.delta.sql.", "org.apache.spark.sql.delta."),
        provided=True,
        requires=("delta-storage.jar",),
    ),
    Jar("delta-storage.jar", "io.delta:delta-storage:4.0.0", ("io.delta.storage.LogStore",), provided=True),
    Jar(
        "delta-storage-s3-dynamodb.jar",
        "io.delta:delta-storage-s3-dynamodb:4.0.0",
        ("io.delta.storage.S3DynamoDBLogStore", "io.delta.storage.BaseExternalLogStore"),
        provided=True,
        requires=("aws-java-sdk-dynamodb", "aws-java-sdk-core", "jmespath-java"),
    ),
    Jar(
        "spark-sql-kafka",
        "org.apache.spark:spark-sql-kafka-0-10_2.13:4.0.2",
        ("org.apache.spark.sql.kafka010.",),
        requires=("spark-token-provider-kafka", "kafka-clients", "commons-pool2"),
    ),
    Jar(
        "spark-token-provider-kafka",
        "org.apache.spark:spark-token-provider-kafka-0-10_2.13:4.0.0",
        ("org.apache.spark.kafka010.",),
    ),
    Jar("kafka-clients", "org.apache.kafka:kafka-clients:3.9.1", ("org.apache.kafka.",)),
    Jar("commons-pool2", "org.apache.commons:commons-pool2:2.12.0", ("org.apache.commons.pool2.",)),
    Jar(
        "aws-msk-iam-auth",
        "software.amazon.msk:aws-msk-iam-auth:2.4.0",
        ("software.amazon.msk.auth.iam.",),
        requires=("kafka-clients",),
    ),
    # S3DynamoDBLogStore is built on the AWS SDK v1, which emr-spark-8.0.0 no longer ships.
    Jar(
        "aws-java-sdk-dynamodb",
        "com.amazonaws:aws-java-sdk-dynamodb:1.12.780",
        ("com.amazonaws.services.dynamodbv2.",),
    ),
    Jar("aws-java-sdk-core", "com.amazonaws:aws-java-sdk-core:1.12.780", ("com.amazonaws.auth.",)),
    Jar("jmespath-java", "com.amazonaws:jmespath-java:1.12.780", ("com.amazonaws.jmespath.",)),
    Jar("redshift-jdbc42", "com.amazon.redshift:redshift-jdbc42:2.1.0.33", ("com.amazon.redshift.",)),
)
JARS_BY_NAME = {jar.name: jar for jar in JARS}
ARTIFACT_JARS = tuple(jar for jar in JARS if not jar.provided)  # = jvm/emr/pom.xml


def jar_for(class_name: str) -> Jar | None:
    """The jar that provides a class: an exact name first, else the longest package prefix."""
    exact = [j for j in JARS if class_name in j.provides]
    if exact:
        return exact[0]
    prefixed = [(len(p), j) for j in JARS for p in j.provides if p.endswith(".") and class_name.startswith(p)]
    return max(prefixed, key=lambda pair: pair[0])[1] if prefixed else None


def classes_named(settings: Settings) -> set[str]:
    """Every JVM class the environment's configuration makes a job load: class names in
    spark.conf values, the JDBC driver, the Kafka client's login module and callback handler,
    and the Kafka source itself when the Kafka step reads a broker."""
    texts = list(settings.spark.conf.values())
    names: set[str] = set()
    for source in settings.sources.values():
        if source.mode == "jdbc" and source.jdbc is not None:
            texts.append(source.jdbc.driver)
        if source.mode == "kafka" and source.kafka is not None:
            names.add(KAFKA_SOURCE)
            texts.extend(client_options(source.kafka).values())
    for text in texts:
        names.update(CLASS_NAME.findall(str(text)))
    return names


def jars_for(settings: Settings) -> list[Jar]:
    """The jars the environment needs (the classes it names, and what those jars require), in
    the order of JARS. A class no jar provides is a configuration error, named."""
    providers = {name: jar_for(name) for name in classes_named(settings)}
    unknown = sorted(name for name, jar in providers.items() if jar is None)
    if unknown:
        raise ConfigError(
            f"config/{settings.env}.yaml names {', '.join(unknown)}, which no jar of "
            "pipeline.deploy.submit.JARS provides: add the jar there and to jvm/emr/pom.xml"
        )
    needed: set[str] = set()
    todo = [jar.name for jar in providers.values() if jar is not None]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(JARS_BY_NAME[name].requires)
    return [jar for jar in JARS if jar.name in needed]


def release_version() -> str:
    """The version of the installed library: the release the jobs run."""
    return importlib.metadata.version("lakehouse-pipeline")


@dataclass(frozen=True)
class JobSubmission:
    """One job run of one step: everything EMR is given."""

    name: str  # lakehouse-<env>-<step>-<run id>
    step: str
    role_arn: str
    entry_point: str
    arguments: list[str]
    spark_conf: dict[str, str]  # the spark-defaults of the run, --conf k=v
    timeout_minutes: int
    log_uri: str
    log_group: str = ""  # CloudWatch Logs group of the job runs (EMR Serverless)
    kms_key_arn: str | None = None  # encrypts the job-run logs; a key ARN (not an alias): the API's rule
    tags: dict[str, str] = field(default_factory=dict)

    def spark_submit_parameters(self) -> str:
        return " ".join(f"--conf {shlex.quote(f'{k}={v}')}" for k, v in self.spark_conf.items())

    def serverless_request(self, application_id: str, client_token: str) -> dict:
        """StartJobRun's parameters. The client token makes a retried submit idempotent."""
        return {
            "applicationId": application_id,
            "clientToken": client_token,
            "executionRoleArn": self.role_arn,
            "name": self.name,
            "executionTimeoutMinutes": self.timeout_minutes,
            "jobDriver": {
                "sparkSubmit": {
                    "entryPoint": self.entry_point,
                    "entryPointArguments": list(self.arguments),
                    "sparkSubmitParameters": self.spark_submit_parameters(),
                }
            },
            "configurationOverrides": {"monitoringConfiguration": self._monitoring()},
            "tags": dict(self.tags),
        }

    def _monitoring(self) -> dict:
        key = {"encryptionKeyArn": self.kms_key_arn} if self.kms_key_arn else {}
        monitoring: dict = {"s3MonitoringConfiguration": {"logUri": self.log_uri, **key}}
        if self.log_group:
            monitoring["cloudWatchLoggingConfiguration"] = {
                "enabled": True,
                "logGroupName": self.log_group,
                **key,
            }
        return monitoring

    def emr_step(self) -> dict:
        """An AddJobFlowSteps step: spark-submit in cluster mode through command-runner.jar."""
        args = ["spark-submit", "--deploy-mode", "cluster"]
        for key, value in self.spark_conf.items():
            args += ["--conf", f"{key}={value}"]
        return {
            "Name": self.name,
            "ActionOnFailure": "CONTINUE",  # the driver decides what a failed step means
            "HadoopJarStep": {
                "Jar": "command-runner.jar",
                "Args": [*args, self.entry_point, *self.arguments],
            },
        }

    def describe(self) -> str:
        """What `lakehouse run --plan` prints for the step."""
        lines = [
            f"     job run {self.name}, role {self.role_arn}, timeout {self.timeout_minutes} min",
            f"     entry point {self.entry_point} {' '.join(map(shlex.quote, self.arguments))}",
        ]
        lines += [f"     --conf {k}={v}" for k, v in self.spark_conf.items()]
        return "\n".join(lines)


def release_prefix(settings: Settings, version: str) -> str:
    aws = _aws(settings)
    return f"s3://{aws.artifacts_bucket}/releases/{version}"


def job_submission(
    settings: Settings,
    step: str,
    job_kind: str,
    run_id: str,
    *,
    mode: Mode,
    dataset: str = "",
    version: str | None = None,
    kms_key_arn: str | None = None,
) -> JobSubmission:
    """The job run of DAG step `step` (job kind bronze, silver, gold or maintain, on `dataset`) in
    run `run_id`, in the execution role of the step's layer: a maintain step's dataset is the
    layer it maintains. `kms_key_arn`: `aws.kms_key_alias` resolved (kms:DescribeKey) by the
    executor, once per run."""
    aws = _aws(settings)
    emr = aws.emr
    version = version or release_version()
    prefix = release_prefix(settings, version)
    jars = jars_for(settings)
    conf: dict[str, str] = {
        "spark.app.name": f"lakehouse-{settings.env}-{step}",
        "spark.archives": f"{prefix}/{ARCHIVE}#environment",
        "spark.jars": ",".join(jar.location(prefix) for jar in jars),
        "spark.driver.cores": str(emr.driver_cores),
        "spark.driver.memory": emr.driver_memory,
        "spark.executor.cores": str(emr.executor_cores),
        "spark.executor.memory": emr.executor_memory,
        "spark.dynamicAllocation.enabled": "true",
        "spark.dynamicAllocation.maxExecutors": str(emr.max_executors),
        "spark.sql.shuffle.partitions": str(settings.spark.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        # toPandas through Arrow, as locally: the DQ gate moves small frames to the driver (dq.gate).
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.executorEnv.PYSPARK_PYTHON": PYTHON,
        "spark.executorEnv.LAKEHOUSE_ENV": settings.env,
    }
    # Where the driver's environment is set differs: EMR Serverless has its own keys, EMR on EC2
    # runs the driver in YARN's application master (cluster mode).
    driver_env = "spark.emr-serverless.driverEnv." if mode == "serverless" else "spark.yarn.appMasterEnv."
    conf.update({f"{driver_env}PYSPARK_PYTHON": PYTHON, f"{driver_env}LAKEHOUSE_ENV": settings.env})
    if mode == "serverless":
        conf[f"{driver_env}PYSPARK_DRIVER_PYTHON"] = PYTHON
    conf.update(settings.spark.conf)
    # The JIT's options, after any a config gives (Spark prepends the cluster's own, its
    # spark.*.defaultJavaOptions, to these).
    for key in ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions"):
        given = conf.get(key, "").split()
        conf[key] = " ".join([*given, *(o for o in JIT_OPTIONS.split() if o not in given)])
    return JobSubmission(
        name=f"lakehouse-{settings.env}-{step}-{run_id}",
        step=step,
        role_arn=aws.role_arn(dataset if job_kind == "maintain" else job_kind),
        entry_point=f"{prefix}/{ENTRY_POINT}",
        arguments=["--step", step, "--run-id", run_id, "--env", settings.env, "--member"],
        spark_conf=conf,
        timeout_minutes=emr.execution_timeout_minutes,
        log_uri=f"s3://{aws.logs_bucket}/emr/",
        log_group=emr.log_group if mode == "serverless" else "",
        kms_key_arn=kms_key_arn,
        tags={"project": "lakehouse", "environment": settings.env, "step": step, "run_id": run_id},
    )


def _aws(settings: Settings):
    if settings.aws is None:
        raise ConfigError(
            f"config/{settings.env}.yaml has no aws section: the EMR executors and deploy scripts "
            "need aws.region, account_id, artifacts_bucket, logs_bucket and emr (see config/dev.yaml)"
        )
    return settings.aws
