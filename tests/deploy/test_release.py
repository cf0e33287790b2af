"""aws/scripts/deploy.sh's upload: one immutable release per version in the artifacts bucket
(moto's S3: the artifacts bucket is control-plane here, not the lake)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from pipeline.deploy import release
from pipeline.deploy.package import ARCHIVE
from pipeline.settings import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[2]
BUCKET = "lakehouse-dev-artifacts"


def _dist(folder: Path, archive: bytes = b"env") -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "lakehouse_pipeline-9.9.9-py3-none-any.whl").write_bytes(b"wheel")
    (folder / ARCHIVE).write_bytes(archive)
    (folder / "requirements-emr.txt").write_text("deltalake==1.6.6\n")
    sums = "".join(
        f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}\n"
        for n in ("lakehouse_pipeline-9.9.9-py3-none-any.whl", ARCHIVE)
    )
    (folder / "SHA256SUMS").write_text(sums)
    return folder


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def _keys(client) -> set[str]:
    return {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def test_a_release_holds_package_jobs_and_jars_encrypted_and_a_manifest_last(s3, tmp_path, capsys):
    settings = load_settings("dev", config_dir=REPO / "config")
    where = release.upload(settings, _dist(tmp_path / "dist"), version="9.9.9", client=s3)
    assert where == f"s3://{BUCKET}/releases/9.9.9"
    keys = _keys(s3)
    jobs = {f"releases/9.9.9/jobs/{p.name}" for p in (REPO / "aws" / "jobs").glob("*.py")}
    assert "releases/9.9.9/jobs/run_step.py" in jobs and jobs <= keys
    jars = {f"releases/9.9.9/jars/{j.file}" for j in release.ARTIFACT_JARS}
    assert jars <= keys
    assert {f"releases/9.9.9/{ARCHIVE}", "releases/9.9.9/SHA256SUMS", "releases/9.9.9/MANIFEST"} <= keys
    head = s3.head_object(Bucket=BUCKET, Key=f"releases/9.9.9/{ARCHIVE}")
    assert head["ServerSideEncryption"] == "aws:kms"
    listed = s3.get_object(Bucket=BUCKET, Key="releases/9.9.9/MANIFEST")["Body"].read().decode().splitlines()
    assert {line.split("  ")[1] for line in listed} == {k.removeprefix("releases/9.9.9/") for k in keys} - {
        "MANIFEST"
    }


def test_deploying_the_same_release_again_uploads_nothing_and_other_contents_are_refused(
    s3, tmp_path, capsys
):
    settings = load_settings("dev", config_dir=REPO / "config")
    release.upload(settings, _dist(tmp_path / "a"), version="9.9.9", client=s3)
    before = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    capsys.readouterr()
    release.upload(settings, _dist(tmp_path / "b"), version="9.9.9", client=s3)
    assert "nothing uploaded" in capsys.readouterr().out
    assert {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]} == before
    with pytest.raises(ConfigError, match=r"releases/9\.9\.9 exists with other contents.*Bump `version`"):
        release.upload(settings, _dist(tmp_path / "c", archive=b"rebuilt"), version="9.9.9", client=s3)


def test_an_incomplete_or_inconsistent_dist_is_refused_before_anything_is_uploaded(s3, tmp_path):
    settings = load_settings("dev", config_dir=REPO / "config")
    with pytest.raises(ConfigError, match=r"run `make package` first"):
        release.upload(settings, tmp_path, version="9.9.9", client=s3)
    dist = _dist(tmp_path / "dist")
    (dist / ARCHIVE).write_bytes(b"changed after packaging")
    with pytest.raises(ConfigError, match=r"does not match .*SHA256SUMS"):
        release.upload(settings, dist, version="9.9.9", client=s3)
    assert _keys(s3) == set()
