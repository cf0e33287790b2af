"""Upload a release to the artifacts bucket: what `aws/scripts/deploy.sh` runs after `make package`.

`s3://<aws.artifacts_bucket>/releases/<version>/` receives the wheel, the EMR venv archive,
SHA256SUMS and requirements-emr.txt (from dist/), the spark-submit entry points (aws/jobs/*.py
under jobs/) and the jars a job needs beyond the EMR image (jvm/jars/emr under jars/). A release is
immutable: the same version with the same checksums is already deployed (nothing is uploaded);
the same version with other contents is refused, so a job run never mixes two builds. Objects
are written with SSE-KMS, which the bucket policy requires.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pipeline.deploy.package import ARCHIVE, sha256
from pipeline.deploy.submit import ARTIFACT_JARS, release_version
from pipeline.settings import PROJECT_ROOT, ConfigError, Settings, load_settings

JOBS_DIR = PROJECT_ROOT / "aws" / "jobs"
JARS_DIR = PROJECT_ROOT / "jvm" / "jars" / "emr"


def release_files(dist: Path) -> dict[str, Path]:
    """Object key under the release prefix -> local file. Errors name what is missing and how
    to make it."""
    wanted = {name: dist / name for name in ("SHA256SUMS", "requirements-emr.txt", ARCHIVE)}
    wheels = sorted(dist.glob("lakehouse_pipeline-*.whl"))
    missing = [str(p) for p in wanted.values() if not p.exists()] + ([] if wheels else [f"{dist}/*.whl"])
    if missing:
        raise ConfigError(f"release files missing: {', '.join(missing)}; run `make package` first")
    files = {**wanted, wheels[-1].name: wheels[-1]}
    for line in (dist / "SHA256SUMS").read_text().splitlines():  # dist/ must be one consistent build
        digest, name = line.split("  ", 1)
        if name in files and sha256(files[name]) != digest:
            raise ConfigError(
                f"{dist / name}: does not match {dist / 'SHA256SUMS'}; run `make package` again"
            )
    files.update({f"jobs/{p.name}": p for p in sorted(JOBS_DIR.glob("*.py"))})
    jars = {jar.file: JARS_DIR / jar.file for jar in ARTIFACT_JARS}
    absent = [str(p) for p in jars.values() if not p.exists()]
    if absent:
        raise ConfigError(f"EMR jars missing: {', '.join(absent)}; run `make jars` (jvm/emr/pom.xml)")
    files.update({f"jars/{name}": path for name, path in jars.items()})
    return files


def manifest(files: dict[str, Path]) -> str:
    """The release's identity: sha256 of every object, one line each, in key order."""
    return "".join(f"{sha256(path)}  {key}\n" for key, path in sorted(files.items()))


def upload(settings: Settings, dist: Path, *, version: str | None = None, client: Any = None) -> str:
    """Upload the release; return its S3 prefix. Idempotent for the same contents."""
    if settings.aws is None:
        raise ConfigError(f"config/{settings.env}.yaml has no aws section: nowhere to deploy to")
    import boto3
    from botocore.exceptions import ClientError

    client = client or boto3.client("s3", region_name=settings.aws.region)
    bucket, version = settings.aws.artifacts_bucket, version or release_version()
    prefix = f"releases/{version}"
    files = release_files(dist)
    ours = manifest(files)
    try:
        theirs = client.get_object(Bucket=bucket, Key=f"{prefix}/MANIFEST")["Body"].read().decode()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
            raise
        theirs = None
    where = f"s3://{bucket}/{prefix}"
    if theirs == ours:
        print(f"{where}: already deployed with the same contents; nothing uploaded")
        return where
    if theirs is not None:
        raise ConfigError(
            f"{where} exists with other contents: a release is immutable. Bump `version` in "
            "pyproject.toml, run `make package` and deploy again"
        )
    for key, path in sorted(files.items()):
        client.upload_file(
            str(path), bucket, f"{prefix}/{key}", ExtraArgs={"ServerSideEncryption": "aws:kms"}
        )
        print(f"uploaded {where}/{key}")
    # written last: a release with a MANIFEST is complete
    client.put_object(
        Bucket=bucket, Key=f"{prefix}/MANIFEST", Body=ours.encode(), ServerSideEncryption="aws:kms"
    )
    print(f"{where}: deployed {len(files)} files")
    return where


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.deploy.release",
        description="Upload dist/ (make package), aws/jobs and jvm/jars/emr as one immutable release "
        "to s3://<aws.artifacts_bucket>/releases/<version>/.",
    )
    parser.add_argument("--env", required=True, choices=["dev", "prod"], help="the environment to deploy to")
    parser.add_argument("--dist", type=Path, default=PROJECT_ROOT / "dist", help="make package's output")
    parser.add_argument("--config-dir", type=Path, help="folder holding <env>.yaml (default ./config)")
    args = parser.parse_args(argv)
    try:
        upload(load_settings(args.env, config_dir=args.config_dir), args.dist)
    except ConfigError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
