"""pipeline.files: the files under <lake>/_ops behave the same in a folder and in a bucket (the
bucket served by the suite's local S3 endpoint, reached through the lake's storage options)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.files import LocalFiles, S3Files, files_for, s3_client
from pipeline.observability.emitters import FileEmitter
from pipeline.observability.metrics import MetricDatum
from tests.s3_endpoint import env

BUCKET = "lakehouse-files-test"


@pytest.fixture
def bucket(s3_endpoint, monkeypatch):
    for key, value in env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    if BUCKET not in {b["Name"] for b in s3_endpoint.client().list_buckets()["Buckets"]}:
        s3_endpoint.create_bucket(BUCKET)
    return s3_endpoint


@pytest.fixture(params=["folder", "bucket"])
def lake(request, tmp_path):
    """(lake root, its files) for a local folder and for a bucket."""
    if request.param == "folder":
        return str(tmp_path / "lake"), LocalFiles()
    proxy = request.getfixturevalue("bucket")
    root = f"s3a://{BUCKET}/{request.node.name.replace('[', '-').rstrip(']')}/lake"
    return root, files_for(root, proxy.storage_options())


def test_write_read_append_exists(lake):
    root, files = lake
    location = f"{root}/_ops/lineage/run-1.jsonl"
    assert files.read_text(location) is None and not files.exists(location)
    files.append_text(location, '{"a": 1}\n')
    files.append_text(location, '{"a": 2}\n')
    assert files.read_text(location) == '{"a": 1}\n{"a": 2}\n' and files.exists(location)
    files.write_text(location, "replaced\n", content_type="application/json")
    assert files.read_text(location) == "replaced\n"


def test_a_bucket_object_keeps_its_content_type_and_key(bucket):
    files = S3Files(bucket.storage_options())
    files.write_text(f"s3a://{BUCKET}/ct/_ops/reports/r.html", "<html></html>", content_type="text/html")
    head = bucket.client().head_object(Bucket=BUCKET, Key="ct/_ops/reports/r.html")
    assert head["ContentType"] == "text/html"


def test_metric_lines_land_in_the_bucket_through_the_lake_settings(bucket):
    root = f"s3a://{BUCKET}/metrics-test/lake"
    emitter = FileEmitter(f"{root}/_ops/metrics", files_for(root, bucket.storage_options()))
    datum = MetricDatum("RowsIn", 3.0, "Count", {"Environment": "local"}, datetime(2026, 1, 2, tzinfo=UTC))
    emitter.emit("run-1", [datum])
    emitter.emit("run-1", [datum])
    body = bucket.client().get_object(Bucket=BUCKET, Key="metrics-test/lake/_ops/metrics/run-1.jsonl")["Body"]
    assert len(body.read().decode().splitlines()) == 2


def test_client_reaches_the_endpoint_the_options_name(bucket):
    client = s3_client(bucket.storage_options())
    assert client.meta.endpoint_url == bucket.endpoint
    assert BUCKET in {b["Name"] for b in client.list_buckets()["Buckets"]}
    with pytest.raises(ValueError, match="hdfs://nn/lake"):
        files_for("hdfs://nn/lake")
