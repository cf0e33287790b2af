"""pipeline.deploy.submit: what an EMR job run is given. The requests validate against botocore's
own service models; every class the configuration names is in a jar on the job's classpath, and
where the jar is here (jvm/jars/, fetched by make setup) the class is really inside it."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import boto3
import pytest
from botocore.validate import validate_parameters

from pipeline.deploy import submit
from pipeline.settings import ConfigError, JdbcSettings, SecretRef, SourceSettings, load_settings

REPO = Path(__file__).resolve().parents[2]
LOCAL_JARS = [REPO / "jvm" / "jars" / "emr", REPO / "jvm" / "jars" / "spark"]
RUN_ID = "20261203T101500Z-1a2b3c"


def _settings(env: str):
    return load_settings(env, config_dir=REPO / "config")


def _local_copy(jar: submit.Jar) -> Path | None:
    return next((folder / jar.file for folder in LOCAL_JARS if (folder / jar.file).exists()), None)


def _validate(service: str, operation: str, params: dict) -> None:
    model = boto3.session.Session(region_name="us-east-1")._session.get_service_model(service)
    validate_parameters(params, model.operation_model(operation).input_shape)  # raises when invalid


def test_a_jdbc_driver_of_any_source_is_a_class_the_jobs_load():
    settings = _settings("dev")
    extra = SourceSettings(
        mode="jdbc",
        jdbc=JdbcSettings(
            url="jdbc:x://h/db", table="t", user="u", password=SecretRef(env="P"), driver="org.example.Driver"
        ),
    )
    with_extra = dataclasses.replace(settings, sources={**settings.sources, "crm_accounts": extra})
    assert submit.classes_named(with_extra) - submit.classes_named(settings) == {"org.example.Driver"}


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_class_the_configuration_names_is_in_a_jar_on_the_classpath(env):
    settings = _settings(env)
    classes = submit.classes_named(settings)
    # what config/<env>.yaml makes a job load: Delta, the log store, MSK IAM auth, Kafka, Redshift JDBC
    assert {
        "io.delta.sql.DeltaSparkSessionExtension",
        "io.delta.storage.S3DynamoDBLogStore",
        "software.amazon.msk.auth.iam.IAMLoginModule",
        submit.KAFKA_SOURCE,
        "com.amazon.redshift.jdbc42.Driver",
    } <= classes
    job = submit.job_submission(settings, "bronze_kafka_events", "bronze", RUN_ID, mode="serverless")
    classpath = job.spark_conf["spark.jars"].split(",")
    checked_inside = 0
    for name in classes:
        jar = submit.jar_for(name)
        assert jar is not None, f"{name}: no jar provides it"
        assert jar.location(submit.release_prefix(settings, submit.release_version())) in classpath
        copy = _local_copy(jar)
        if copy is not None:  # delta-storage-s3-dynamodb is on the EMR image only
            assert f"{name.replace('.', '/')}.class" in zipfile.ZipFile(copy).namelist(), (
                f"{name} not in {copy}"
            )
            checked_inside += 1
    assert checked_inside >= len(classes) - 1
    # and what those jars need at run time comes along: the SDK v1 for the log store, the
    # Kafka client for the connector
    files = {path.rsplit("/", 1)[1] for path in classpath}
    assert {
        "aws-java-sdk-dynamodb-1.12.780.jar",
        "kafka-clients-3.9.1.jar",
        "commons-pool2-2.12.0.jar",
    } <= files


def test_every_package_a_jar_claims_is_really_in_it():
    for jar in submit.JARS:
        copy = _local_copy(jar)
        if copy is None:
            continue
        entries = zipfile.ZipFile(copy).namelist()
        for provided in jar.provides:
            path = provided.replace(".", "/")
            assert any(e.startswith(path) for e in entries), f"{jar.name}: nothing under {provided} in {copy}"


def test_the_release_jars_are_exactly_what_jvm_emr_fetches():
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    pom = ET.parse(REPO / "jvm" / "emr" / "pom.xml").getroot()
    declared = {
        ":".join(d.find(f"m:{k}", ns).text for k in ("groupId", "artifactId", "version"))
        for d in pom.find("m:dependencies", ns)
    }
    assert declared == {jar.coordinates for jar in submit.ARTIFACT_JARS}


def test_an_unknown_class_in_the_configuration_is_named():
    settings = _settings("dev")
    odd = dataclasses.replace(
        settings,
        spark=dataclasses.replace(
            settings.spark, conf={**settings.spark.conf, "spark.x.listener": "com.example.audit.Listener"}
        ),
    )
    with pytest.raises(ConfigError, match=r"com\.example\.audit\.Listener.*jvm/emr/pom\.xml"):
        submit.jars_for(odd)


def test_the_jit_options_are_added_to_the_java_options_a_configuration_gives():
    settings = _settings("dev")

    def with_conf(**given: str):
        return dataclasses.replace(
            settings, spark=dataclasses.replace(settings.spark, conf={**settings.spark.conf, **given})
        )

    configured = with_conf(**{"spark.driver.extraJavaOptions": "-Dlog4j.configuration=file:log4j.properties"})
    conf = submit.job_submission(configured, "gold_fct_orders", "gold", RUN_ID, mode="serverless").spark_conf
    assert conf["spark.driver.extraJavaOptions"] == (
        "-Dlog4j.configuration=file:log4j.properties -XX:-DontCompileHugeMethods"
    )
    assert conf["spark.executor.extraJavaOptions"] == "-XX:-DontCompileHugeMethods"
    again = with_conf(**{"spark.executor.extraJavaOptions": "-XX:-DontCompileHugeMethods -Xss4m"})
    conf = submit.job_submission(again, "gold_fct_orders", "gold", RUN_ID, mode="ec2").spark_conf
    assert conf["spark.executor.extraJavaOptions"] == "-XX:-DontCompileHugeMethods -Xss4m"


def test_serverless_request_is_valid_for_start_job_run_and_runs_the_step_in_its_layers_role():
    settings = _settings("dev")
    key = "arn:aws:kms:us-east-1:123456789012:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    job = submit.job_submission(
        settings, "gold_fct_orders", "gold", RUN_ID, mode="serverless", version="1.2.3", kms_key_arn=key
    )
    request = job.serverless_request("00fabc123", client_token="tok-1")
    _validate("emr-serverless", "StartJobRun", request)
    assert request["executionRoleArn"] == "arn:aws:iam::123456789012:role/lakehouse-dev-gold"
    assert request["executionTimeoutMinutes"] == settings.aws.emr.execution_timeout_minutes
    driver = request["jobDriver"]["sparkSubmit"]
    assert driver["entryPoint"] == "s3://lakehouse-dev-artifacts/releases/1.2.3/jobs/run_step.py"
    assert driver["entryPointArguments"] == [
        "--step",
        "gold_fct_orders",
        "--run-id",
        RUN_ID,
        "--env",
        "dev",
        "--member",
    ]
    params = driver["sparkSubmitParameters"]
    for expected in (
        "spark.archives=s3://lakehouse-dev-artifacts/releases/1.2.3/lakehouse_env.tar.gz#environment",
        "spark.emr-serverless.driverEnv.PYSPARK_PYTHON=./environment/bin/python",
        "spark.executorEnv.PYSPARK_PYTHON=./environment/bin/python",
        "spark.dynamicAllocation.maxExecutors=6",
        "spark.io.delta.storage.S3DynamoDBLogStore.ddb.tableName=lakehouse-dev-delta-log",
        "spark.jars=/usr/share/aws/delta/lib/delta-spark.jar,",
        # HotSpot compiles Spark's large generated methods on the driver and the executors
        "spark.driver.extraJavaOptions=-XX:-DontCompileHugeMethods",
        "spark.executor.extraJavaOptions=-XX:-DontCompileHugeMethods",
    ):
        assert expected in params
    monitoring = request["configurationOverrides"]["monitoringConfiguration"]
    assert monitoring["s3MonitoringConfiguration"] == {
        "logUri": "s3://lakehouse-dev-logs/emr/",
        "encryptionKeyArn": key,
    }
    assert monitoring["cloudWatchLoggingConfiguration"] == {
        "enabled": True,
        "logGroupName": "/lakehouse/dev/emr-serverless",
        "encryptionKeyArn": key,
    }


def test_emr_step_is_valid_for_add_job_flow_steps_with_the_yarn_driver_environment():
    settings = _settings("prod")
    job = submit.job_submission(settings, "silver_orders", "silver", RUN_ID, mode="ec2", version="1.2.3")
    step = job.emr_step()
    _validate(
        "emr", "AddJobFlowSteps", {"JobFlowId": "j-ABC", "Steps": [step], "ExecutionRoleArn": job.role_arn}
    )
    args = step["HadoopJarStep"]["Args"]
    assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"]
    assert "spark.yarn.appMasterEnv.PYSPARK_PYTHON=./environment/bin/python" in args
    assert not [a for a in args if a.startswith("spark.emr-serverless.")]
    assert args[-8:] == [
        job.entry_point,
        "--step",
        "silver_orders",
        "--run-id",
        RUN_ID,
        "--env",
        "prod",
        "--member",
    ]
    assert job.role_arn == "arn:aws:iam::123456789012:role/lakehouse-prod-silver"
    assert "spark.dynamicAllocation.maxExecutors=20" in args


def test_an_environment_without_an_aws_section_is_told_what_to_add():
    with pytest.raises(ConfigError, match=r"config/local\.yaml has no aws section"):
        submit.job_submission(_settings("local"), "silver_orders", "silver", RUN_ID, mode="serverless")
