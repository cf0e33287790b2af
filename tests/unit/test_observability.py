"""Observability: metric catalogue, emitters (file, CloudWatch via moto), alerts (SNS via moto,
webhook on a local HTTP server), JSON logs, and drift of the generated CloudWatch definitions."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from pipeline.driver.dag import Step
from pipeline.driver.state import RunState, StepOutcome
from pipeline.observability import dashboards
from pipeline.observability.alerts import AlertObserver
from pipeline.observability.emitters import (
    CloudWatchEmitter,
    FileEmitter,
    MetricsObserver,
    NoneEmitter,
    emitter_for,
)
from pipeline.observability.logging import (
    LogContextObserver,
    configure_json_logging,
    current_log_context,
    log_context,
)
from pipeline.observability.metrics import (
    DEFAULT_CATALOGUE,
    load_metric_catalogue,
    metrics_for,
)
from pipeline.settings import (
    AlertSettings,
    ConfigError,
    LakeSettings,
    MetricsSettings,
    SecretRef,
    Settings,
)

REGION = "us-east-1"
SILVER = Step(job="silver", dataset="orders", name="silver_orders")
BRONZE = Step(job="bronze", dataset="crm_accounts", name="bronze_crm_accounts")


def silver_outcome(**changes) -> StepOutcome:
    base = StepOutcome(
        step="silver_orders",
        status="succeeded",
        attempts=1,
        started_at="2026-01-02T03:04:00.000Z",
        ended_at="2026-01-02T03:04:05.000Z",
        seconds=5.0,
        rows_in=100,
        rows_out=90,
        details={"quarantined": 4, "duplicates": 6, "bronze_version": 3},
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture
def aws_env(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


# -- catalogue -------------------------------------------------------------------------------


def test_catalogue_loads():
    catalogue = load_metric_catalogue()
    expected = {
        "RowsIn",
        "RowsOut",
        "RowsQuarantined",
        "DuplicatesDropped",
        "StepDurationSeconds",
        "StepFailed",
        "DqFailures",
        "FreshnessLagSeconds",
    }
    assert expected <= set(catalogue.metrics)
    assert catalogue.metrics["RowsQuarantined"].source == "details.quarantined"
    assert catalogue.metrics["StepFailed"].alarm.severity == "critical"


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"unit": "Rows", "description": "d", "source": "outcome.rows_in", "group": "g"}, "metrics.Bad.unit"),
        ({"unit": "Count", "description": "d", "source": "outcome.nope", "group": "g"}, "metrics.Bad.source"),
        ({"unit": "Count", "description": "d", "source": "outcome.rows_in"}, "metrics.Bad.group"),
        (
            {"unit": "Count", "description": "d", "source": "outcome.rows_in", "group": "g", "colour": 1},
            "metrics.Bad",
        ),
        (
            {
                "unit": "Count",
                "description": "d",
                "source": "outcome.rows_in",
                "group": "g",
                "alarm": {"statistic": "Sum", "comparison": "Bigger", "threshold": 1, "description": "x"},
            },
            "metrics.Bad.alarm.comparison",
        ),
        (
            {
                "unit": "Count",
                "description": "d",
                "source": "outcome.rows_in",
                "group": "g",
                "dimensions": ["Host"],
            },
            "metrics.Bad.dimensions",
        ),
    ],
)
def test_bad_catalogue_names_file_and_key(tmp_path, entry, key):
    path = tmp_path / "metrics.yaml"
    path.write_text(json.dumps({"metrics": {"Bad": entry}}))
    with pytest.raises(ConfigError) as err:
        load_metric_catalogue(path)
    assert str(path) in str(err.value)
    assert key in str(err.value)


# -- metrics_for ----------------------------------------------------------------------------


def test_metrics_for_succeeded_silver_outcome():
    datums = {d.name: d for d in metrics_for(SILVER, silver_outcome(), "dev")}
    dims = {"Environment": "dev", "Layer": "silver", "Dataset": "orders"}
    assert {n: d.value for n, d in datums.items()} == {
        "RowsIn": 100,
        "RowsOut": 90,
        "RowsQuarantined": 4,
        "DuplicatesDropped": 6,
        "DqFailures": 0,
        "StepDurationSeconds": 5.0,
        "StepFailed": 0,
    }
    assert all(d.dimensions == dims for d in datums.values())
    assert datums["RowsIn"].unit == "Count" and datums["StepDurationSeconds"].unit == "Seconds"
    assert "FreshnessLagSeconds" not in datums  # no newest_data_at: omitted, not zero
    assert "CorruptRecords" not in datums  # a bronze metric


def test_metrics_for_freshness_failed_and_bronze():
    fresh = silver_outcome(details={"newest_data_at": "2026-01-01T03:04:05Z"})
    lag = {d.name: d.value for d in metrics_for(SILVER, fresh, "dev")}["FreshnessLagSeconds"]
    assert lag == 86400.0
    failed = {
        d.name: d.value for d in metrics_for(SILVER, silver_outcome(status="failed", error="boom"), "dev")
    }
    assert failed == {"StepFailed": 1.0, "StepDurationSeconds": 5.0, "DqFailures": 0.0}
    assert metrics_for(SILVER, silver_outcome(status="skipped"), "dev") == []
    bronze = StepOutcome(
        "bronze_crm_accounts", status="succeeded", details={"corrupt_records": 2, "new_files": 1}
    )
    assert {d.name: d.value for d in metrics_for(BRONZE, bronze, "local")}["CorruptRecords"] == 2


def test_per_partition_metric_emits_one_datum_per_partition():
    step = Step(job="bronze", dataset="kafka_events", name="bronze_kafka_events")
    lag = {"kafka_consumer_lag": {"10": 0, "2": 7, "0": 3, "1": "n/a"}, "corrupt_records": 0}
    for status in ("succeeded", "failed"):  # a stopped stream reports how far behind it stopped
        outcome = StepOutcome("bronze_kafka_events", status=status, details=lag)
        datums = [d for d in metrics_for(step, outcome, "dev") if d.name == "KafkaConsumerLag"]
        assert [(d.dimensions["Partition"], d.value) for d in datums] == [("0", 3), ("2", 7), ("10", 0)]
        assert all(
            d.dimensions
            == {"Environment": "dev", "Layer": "bronze", "Dataset": "kafka_events", "Partition": p}
            for d, p in zip(datums, ("0", "2", "10"), strict=True)
        )
    replay = StepOutcome("bronze_kafka_events", status="succeeded", details={"corrupt_records": 0})
    assert not [d for d in metrics_for(step, replay, "dev") if d.name == "KafkaConsumerLag"]


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({"dimensions": ["Environment", "Dataset"]}, "add Partition"),
        (
            {"source": "details.kafka_consumer_lag"},
            "expected distinct names among Environment, Layer, Dataset,",
        ),
        (
            {
                "alarm": {
                    "statistic": "Maximum",
                    "comparison": "GreaterThanThreshold",
                    "threshold": 1,
                    "description": "x",
                }
            },
            "cannot be alarmed one by one",
        ),
    ],
)
def test_per_partition_metric_definitions_are_checked(tmp_path, entry, says):
    base = {
        "unit": "Count",
        "description": "d",
        "source": "partitions.kafka_consumer_lag",
        "group": "g",
        "dimensions": ["Environment", "Dataset", "Partition"],
    }
    path = tmp_path / "metrics.yaml"
    path.write_text(json.dumps({"metrics": {"Lag": {**base, **entry}}}))
    with pytest.raises(ConfigError) as err:
        load_metric_catalogue(path)
    assert "metrics.Lag" in str(err.value) and says in str(err.value)


# -- emitters -------------------------------------------------------------------------------


def test_file_emitter_and_observer_write_jsonl(tmp_path):
    settings = Settings(lake=LakeSettings(root=str(tmp_path)))
    emitter = emitter_for(settings)
    assert isinstance(emitter, FileEmitter)
    observer = MetricsObserver(settings)
    ctx = SimpleNamespace(run_id="20260102T030400Z-abc123")
    observer.step_finished(ctx, SILVER, silver_outcome())
    state = RunState(ctx.run_id, [silver_outcome()], status="succeeded", started_at="2026-01-02T03:04:00Z")
    state.ended_at = "2026-01-02T03:05:00Z"
    observer.run_finished(ctx, state)
    path = tmp_path / "_ops" / "metrics" / f"{ctx.run_id}.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    by_name = {line["metric"]: line for line in lines}
    assert by_name["RowsOut"]["value"] == 90 and by_name["RowsOut"]["run_id"] == ctx.run_id
    assert by_name["RowsOut"]["dimensions"] == {
        "Environment": "local",
        "Layer": "silver",
        "Dataset": "orders",
    }
    assert by_name["RunFailed"]["value"] == 0 and by_name["RunDurationSeconds"]["value"] == 60
    assert by_name["RunFailed"]["dimensions"] == {"Environment": "local"}


def test_file_emitter_writes_to_a_local_or_s3_lake_and_none_sink_drops():
    from pipeline.files import S3Files

    on_s3 = emitter_for(Settings(lake=LakeSettings(root="s3://bucket/lake")))
    assert isinstance(on_s3.files, S3Files) and on_s3.path("r1") == "s3://bucket/lake/_ops/metrics/r1.jsonl"
    with pytest.raises(ConfigError, match="metrics.sink"):
        emitter_for(Settings(lake=LakeSettings(root="hdfs://nn/lake")))
    assert isinstance(emitter_for(Settings(metrics=MetricsSettings(sink="none"))), NoneEmitter)


def test_cloudwatch_emitter_with_moto(aws_env):
    settings = Settings(env="dev", metrics=MetricsSettings(sink="cloudwatch", namespace="Lakehouse/test"))
    emitter = emitter_for(settings)
    assert isinstance(emitter, CloudWatchEmitter)
    calls = []
    real = emitter.client.put_metric_data
    emitter.client.put_metric_data = lambda **kw: (calls.append(len(kw["MetricData"])), real(**kw))[1]
    datums = metrics_for(SILVER, silver_outcome(ended_at=None), "dev")
    emitter.emit("run-1", datums * 150)  # 1050 datums: two calls
    assert calls == [1000, 50]
    listed = boto3.client("cloudwatch").list_metrics(Namespace="Lakehouse/test")["Metrics"]
    names = {m["MetricName"] for m in listed}
    assert {"RowsIn", "RowsOut", "RowsQuarantined", "DuplicatesDropped", "StepDurationSeconds"} <= names
    rows_in = next(m for m in listed if m["MetricName"] == "RowsIn")
    assert {d["Name"]: d["Value"] for d in rows_in["Dimensions"]} == {
        "Environment": "dev",
        "Layer": "silver",
        "Dataset": "orders",
    }


# -- alerts ---------------------------------------------------------------------------------


def test_alert_observer_publishes_to_sns(aws_env):
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name="lakehouse-test-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    settings = Settings(
        env="dev", lake=LakeSettings(root="s3://lake"), alerts=AlertSettings(sns_topic_arn=topic)
    )
    observer = AlertObserver(settings)
    ctx = SimpleNamespace(run_id="20260102T030400Z-abc123")
    failed = silver_outcome(status="failed", error="AnalysisException: " + "x" * 300, error_kind="fatal")
    observer.step_finished(ctx, SILVER, failed)
    observer.step_finished(ctx, SILVER, silver_outcome())  # succeeded, no critical DQ: no alert
    state = RunState(ctx.run_id, [failed], status="failed")
    observer.run_finished(ctx, state)  # already alerted for a step: no run alert

    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)["Messages"]
    assert len(messages) == 1
    envelope = json.loads(messages[0]["Body"])
    assert len(envelope["Subject"]) <= 100 and "silver_orders" in envelope["Subject"]
    alert = json.loads(envelope["Message"])
    assert alert["alert"] == "step_failed" and alert["step"] == "silver_orders"
    assert alert["dataset"] == "orders" and alert["error"].startswith("AnalysisException")
    assert alert["run_state"] == f"s3://lake/_ops/runs/{ctx.run_id}.json"


def test_alert_on_critical_dq_and_run_level(caplog):
    observer = AlertObserver(Settings())  # nothing configured: logged
    ctx = SimpleNamespace(run_id="r1")
    dq = [
        {"rule": "order_total_positive", "severity": "critical", "passed": False},
        {"rule": "few_nulls", "severity": "warn", "passed": False},
    ]
    with caplog.at_level(logging.WARNING, logger="pipeline.observability.alerts"):
        observer.step_finished(ctx, SILVER, silver_outcome(details={"dq": dq}))
        observer.run_finished(ctx, RunState("r1", [silver_outcome(status="skipped")], status="interrupted"))
    kinds = [a["alert"] for a in observer.sent]
    assert kinds == ["dq_critical", "run_failed"]  # critical and warn failures: one alert
    assert observer.sent[0]["severity"] == "critical"
    assert observer.sent[0]["dq_critical_failures"] == [dq[0]]
    assert observer.sent[0]["dq_warn_failures"] == [dq[1]]
    assert "ALERT" in caplog.text and "order_total_positive" in caplog.text


def warn_results(n: int) -> list[dict]:
    return [
        {"rule": f"warn_rule_{i}", "severity": "warn", "passed": False, "observed": i, "expected": 0}
        for i in range(n)
    ] + [
        {"rule": "fine", "severity": "warn", "passed": True},
        {"rule": "ok", "severity": "critical", "passed": True},
    ]


def test_dq_warn_alert_via_sns(aws_env):
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name="lakehouse-test-warn-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="warn-alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    settings = Settings(env="dev", alerts=AlertSettings(sns_topic_arn=topic))
    assert "dq_warn" in settings.alerts.on  # on by default
    observer = AlertObserver(settings)
    ctx = SimpleNamespace(run_id="r-warn")
    observer.step_finished(ctx, SILVER, silver_outcome(details={"dq": warn_results(2)}))
    observer.step_finished(ctx, SILVER, silver_outcome(details={"dq": warn_results(0)}))  # all passed
    failed = silver_outcome(status="failed", error="boom", details={"dq": warn_results(30)})
    observer.step_finished(ctx, SILVER, failed)  # one step_failed alert, listing the warn rules

    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)["Messages"]
    envelopes = [json.loads(m["Body"]) for m in messages]
    alerts = sorted((json.loads(e["Message"]) for e in envelopes), key=lambda a: a["alert"])
    assert [a["alert"] for a in alerts] == ["dq_warn", "step_failed"]
    warn, step = alerts
    assert warn["severity"] == "warning" and warn["status"] == "succeeded" and warn["step"] == "silver_orders"
    assert [r["rule"] for r in warn["dq_warn_failures"]] == ["warn_rule_0", "warn_rule_1"]
    assert warn["dq_warn_failures_total"] == 2 and warn["dq_critical_failures"] == []
    subject = next(e["Subject"] for e in envelopes if json.loads(e["Message"])["alert"] == "dq_warn")
    assert "DQ warnings in silver_orders: 2 rule(s)" in subject and len(subject) <= 100
    assert step["severity"] == "critical" and step["dq_warn_failures_total"] == 30
    assert [r["rule"] for r in step["dq_warn_failures"]] == [f"warn_rule_{i}" for i in range(20)]  # capped


def test_replayed_warn_verdict_is_not_alerted_again():
    """A rerun with nothing new repeats the last gate's verdict (dq.gate.recheck): the warnings
    were alerted by the run that judged them; an hourly rerun must not page again."""
    observer = AlertObserver(Settings())
    ctx = SimpleNamespace(run_id="r-rerun")
    replayed = {"dq": warn_results(2), "dq_from_run": "r-first"}
    observer.step_finished(ctx, SILVER, silver_outcome(details=replayed))
    assert observer.sent == []
    observer.step_finished(ctx, SILVER, silver_outcome(details={"dq": warn_results(2)}))  # judged now
    assert [a["alert"] for a in observer.sent] == ["dq_warn"]
    critical = [{"rule": "keys_unique", "severity": "critical", "passed": False}]
    failed = silver_outcome(
        status="failed", error="DQ gate", details={"dq": critical, "dq_from_run": "r-first"}
    )
    observer.step_finished(ctx, SILVER, failed)  # a repeated critical verdict fails the step: alerted
    assert [a["alert"] for a in observer.sent] == ["dq_warn", "step_failed"]


def test_dq_warn_alert_only_when_enabled():
    dq = {"dq": warn_results(1)}
    observer = AlertObserver(Settings(alerts=AlertSettings(on=["step_failed", "dq_critical"])))
    observer.step_finished(SimpleNamespace(run_id="r"), SILVER, silver_outcome(details=dq))
    assert observer.sent == []
    with pytest.raises(ConfigError, match="unknown alert kind"):
        AlertSettings(on=["dq_warning"])


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802
        length = int(self.headers["Content-Length"])
        _Hook.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("kind", ["step_failed", "dq_warn"])
def test_webhook_alert_posts_json(monkeypatch, caplog, kind):
    _Hook.received.clear()
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    server.timeout = 5
    thread = threading.Thread(target=server.handle_request, daemon=True)  # one request, then done
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/hook/s3cr3t"
    monkeypatch.setenv("TEST_ALERT_WEBHOOK", url)
    settings = Settings(alerts=AlertSettings(webhook_url=SecretRef(env="TEST_ALERT_WEBHOOK")))
    try:
        with caplog.at_level(logging.DEBUG):
            outcome = (
                silver_outcome(status="failed", error="boom")
                if kind == "step_failed"
                else silver_outcome(details={"dq": warn_results(1)})
            )
            AlertObserver(settings).step_finished(SimpleNamespace(run_id="r2"), SILVER, outcome)
        thread.join(10)
    finally:
        server.server_close()
    assert not thread.is_alive()
    (body,) = _Hook.received
    assert body["alert"] == kind and body["step"] == "silver_orders" and body["run_id"] == "r2"
    if kind == "step_failed":
        assert body["error"] == "boom" and body["severity"] == "critical"
    else:
        assert body["severity"] == "warning" and body["dq_warn_failures"][0]["rule"] == "warn_rule_0"
        assert body["text"].startswith("[lakehouse local] DQ warnings in silver_orders")
    assert "s3cr3t" not in caplog.text


def test_webhook_failure_does_not_log_url(monkeypatch, caplog):
    monkeypatch.setenv("TEST_ALERT_WEBHOOK", "http://127.0.0.1:9/hook/s3cr3t")
    settings = Settings(alerts=AlertSettings(webhook_url=SecretRef(env="TEST_ALERT_WEBHOOK")))

    def refuse(request, timeout):
        assert timeout == 10
        raise OSError(f"cannot reach {request.full_url}")

    with caplog.at_level(logging.DEBUG):
        AlertObserver(settings, opener=refuse).step_finished(
            SimpleNamespace(run_id="r3"), SILVER, silver_outcome(status="failed")
        )
    assert "webhook" in caplog.text and "s3cr3t" not in caplog.text


# -- logging --------------------------------------------------------------------------------


def test_json_log_lines_carry_context():
    stream = io.StringIO()
    handler = configure_json_logging("INFO", stream)
    try:
        log = logging.getLogger("pipeline.test")
        observer = LogContextObserver()
        ctx = SimpleNamespace(run_id="r9")
        observer.step_started(ctx, SILVER, silver_outcome())
        log.info("merged %d rows", 90, extra={"api_token": "abc", "rows": 90})
        observer.step_finished(ctx, SILVER, silver_outcome())
        log.info("between steps")
        observer.run_finished(ctx, None)
        with log_context(run_id="r10", layer="gold"):
            try:
                raise ValueError("bad")
            except ValueError:
                log.exception("failed")
        assert current_log_context()["run_id"] is None
    finally:
        logging.getLogger().removeHandler(handler)
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "merged 90 rows" and first["level"] == "INFO"
    assert (first["run_id"], first["step"], first["dataset"], first["layer"]) == (
        "r9",
        "silver_orders",
        "orders",
        "silver",
    )
    assert first["api_token"] == "***" and first["rows"] == 90 and first["ts"].endswith("Z")
    assert second["run_id"] == "r9" and second["step"] is None
    assert third["run_id"] == "r10" and third["layer"] == "gold" and "ValueError: bad" in third["exc_info"]


# -- generated CloudWatch definitions -------------------------------------------------------


def test_generated_cloudwatch_definitions_match_catalogue():
    stale = dashboards.drift()
    assert not stale, (
        f"aws/terraform/generated is out of date with config/metrics.yaml: {', '.join(stale)}; "
        f"regenerate with: {dashboards.REGENERATE}"
    )


def test_every_alarm_references_a_catalogue_metric():
    catalogue = load_metric_catalogue(DEFAULT_CATALOGUE)
    for env in dashboards.AWS_ENVS:
        path = dashboards.GENERATED_DIR / f"alarms_{env}.json"
        alarms = json.loads(path.read_text())
        assert alarms, path
        for alarm in alarms:
            spec = catalogue.metrics.get(alarm["MetricName"])
            assert spec is not None and spec.alarm is not None, alarm["AlarmName"]
            assert {d["Name"] for d in alarm["Dimensions"]} == set(spec.dimensions)
            assert alarm["AlarmActions"] == ["${sns_topic_arn}"]
        dashboard = json.loads((dashboards.GENERATED_DIR / f"dashboard_{env}.json").read_text())
        lines = [line for w in dashboard["widgets"] for line in w["properties"]["metrics"]]
        drawn = {line[1] for line in lines if isinstance(line[0], str)}
        # Per-partition metrics: one SEARCH expression per layer, the series found at run time.
        searches = [line[0]["expression"] for line in lines if isinstance(line[0], dict)]
        drawn |= {re.search(r'MetricName="(\w+)"', e).group(1) for e in searches}
        assert drawn == set(catalogue.metrics)
        assert any("Partition}" in e and "KafkaConsumerLag" in e for e in searches)


def test_check_cli_reports_drift(tmp_path, capsys):
    assert dashboards.main(["--check", "--out", str(tmp_path)]) == 1
    assert dashboards.REGENERATE in capsys.readouterr().err
    assert dashboards.main(["--write", "--out", str(tmp_path)]) == 0
    assert dashboards.main(["--check", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == sorted(dashboards.rendered_files())
