"""Small files beside the tables, under `<lake>/_ops/` (lineage and metrics JSON lines, run
reports, Data Docs pages): one interface over a local lake folder and an S3 bucket, so each
writer has one code path whichever the lake is.

- `LocalFiles`: plain Python; writes replace atomically (temporary file, then rename).
- `S3Files`: s3:// (s3a://, s3n://) through boto3, with the endpoint and region of the settings'
  `lake.storage_options` (an S3-compatible store; empty for AWS S3) and credentials from the AWS
  default chain. S3 has no append: `append_text` reads the object and puts it back longer, which
  is right for one writer per file (each run appends to its own `<run_id>.jsonl`).

`create_text` is the one atomic primitive: create a file only if it does not exist (a hard link of
a complete temporary file locally, PutObject with `If-None-Match: *` on S3); of many callers
racing for one name exactly one gets True. There is deliberately no compare-and-swap: the suite's
S3 endpoint (s3proxy) checks `If-Match` and then writes, so two writers holding one ETag can both
succeed; create-if-absent is atomic there and on S3 (`pipeline.lease` builds on it alone).

`files_for(location, storage_options)` picks one. Nothing here imports pyspark: the run state
and `lakehouse status` stay usable without a SparkSession.
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

S3_SCHEMES = ("s3", "s3a", "s3n")


class LakeFiles(Protocol):
    def read_text(self, location: str) -> str | None:
        """The file's text, or None when there is no such file."""
        ...

    def write_text(self, location: str, text: str, content_type: str | None = None) -> None: ...

    def append_text(self, location: str, text: str) -> None: ...

    def exists(self, location: str) -> bool: ...

    def create_text(self, location: str, text: str) -> bool:
        """Write the file only if it does not exist, atomically; False when it already did."""
        ...

    def list_names(self, folder: str) -> list[str]:
        """Names of the files directly in `folder` (none when there is no such folder)."""
        ...

    def delete(self, location: str) -> None:
        """Remove the file; no error when it is already gone."""
        ...


def is_local(location: str) -> bool:
    return "://" not in location or location.startswith("file:")


def local_path(location: str) -> Path:
    return Path(urlparse(location).path) if location.startswith("file:") else Path(location)


def s3_parts(location: str) -> tuple[str, str]:
    """(bucket, key) of an s3:// (s3a://, s3n://) location; ValueError for any other."""
    parsed = urlparse(location)
    if parsed.scheme not in S3_SCHEMES:
        raise ValueError(f"{location}: expected a local folder or an s3:// location")
    return parsed.netloc, parsed.path.lstrip("/")


def s3_client(storage_options: dict[str, str] | None = None) -> Any:
    """A boto3 S3 client for the lake: AWS S3 by default; with `AWS_ENDPOINT_URL` in the lake's
    storage options, that endpoint (path-style unless `AWS_S3_ADDRESSING_STYLE: virtual`, as
    delta-rs addresses it). Credentials: the AWS default chain."""
    import boto3
    from botocore.config import Config

    options = {k.upper(): v for k, v in (storage_options or {}).items()}
    endpoint = options.get("AWS_ENDPOINT_URL")
    region = options.get("AWS_REGION") or None
    if not endpoint:
        return boto3.client("s3", region_name=region)
    style = "virtual" if options.get("AWS_S3_ADDRESSING_STYLE", "").lower() == "virtual" else "path"
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region or "us-east-1",
        config=Config(s3={"addressing_style": style}),
    )


class LocalFiles:
    def read_text(self, location: str) -> str | None:
        try:
            return local_path(location).read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return None

    def write_text(self, location: str, text: str, content_type: str | None = None) -> None:  # noqa: ARG002
        path = local_path(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"  # hidden: never read as data
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def append_text(self, location: str, text: str) -> None:
        path = local_path(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)

    def exists(self, location: str) -> bool:
        return local_path(location).is_file()

    def create_text(self, location: str, text: str) -> bool:
        path = local_path(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            tmp.write_text(text, encoding="utf-8")
            os.link(tmp, path)  # atomic and refuses an existing name; a reader sees all or nothing
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def list_names(self, folder: str) -> list[str]:
        path = local_path(folder)
        return sorted(p.name for p in path.iterdir() if p.is_file()) if path.is_dir() else []

    def delete(self, location: str) -> None:
        local_path(location).unlink(missing_ok=True)


class S3Files:
    """Objects in S3 (or an S3-compatible store). Tests may pass a `client`."""

    def __init__(self, storage_options: dict[str, str] | None = None, client: Any = None):
        self.storage_options = dict(storage_options or {})
        self._client = client
        self._lock = threading.Lock()  # appends of one process are read-modify-write

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = s3_client(self.storage_options)
        return self._client

    def read_text(self, location: str) -> str | None:
        bucket, key = s3_parts(location)
        try:
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:  # noqa: BLE001 - botocore's ClientError, without importing botocore
            if s3_not_found(exc):
                return None
            raise
        return body.decode("utf-8")

    def write_text(self, location: str, text: str, content_type: str | None = None) -> None:
        bucket, key = s3_parts(location)
        extra = {"ContentType": content_type} if content_type else {}
        self.client.put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"), **extra)

    def append_text(self, location: str, text: str) -> None:
        with self._lock:
            self.write_text(location, (self.read_text(location) or "") + text)

    def exists(self, location: str) -> bool:
        bucket, key = s3_parts(location)
        try:
            self.client.head_object(Bucket=bucket, Key=key)
        except Exception as exc:  # noqa: BLE001
            if s3_not_found(exc):
                return False
            raise
        return True

    def create_text(self, location: str, text: str) -> bool:
        bucket, key = s3_parts(location)
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"), IfNoneMatch="*")
        except Exception as exc:  # noqa: BLE001
            if _s3_error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return False  # 409: AWS S3 answers a concurrent conditional write of the same key so
            raise
        return True

    def list_names(self, folder: str) -> list[str]:
        bucket, prefix = s3_parts(folder.rstrip("/") + "/")
        names = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/"
        ):
            names += [obj["Key"][len(prefix) :] for obj in page.get("Contents", [])]
        return sorted(names)

    def delete(self, location: str) -> None:
        bucket, key = s3_parts(location)
        self.client.delete_object(Bucket=bucket, Key=key)


def _s3_error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def s3_not_found(exc: Exception) -> bool:
    return _s3_error_code(exc) in ("404", "NoSuchKey", "NotFound")


def files_for(location: str, storage_options: dict[str, str] | None = None, client: Any = None) -> LakeFiles:
    """The files of a lake at `location` (its root or any location under it)."""
    if is_local(location):
        return LocalFiles()
    if urlparse(location).scheme in S3_SCHEMES:
        return S3Files(storage_options, client)
    raise ValueError(
        f"{location}: files under the lake go to a local folder or s3:// (s3a://), not this scheme"
    )
