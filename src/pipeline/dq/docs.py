"""GX Data Docs under `<lake>/_ops/data_docs/`, built once when a run ends.

Rendering every validation result into HTML takes a while (~0.3 s per gated table), so the gates
only validate and record; `DataDocsObserver` builds the site once per process at run end (before
the run report, which links to it). The GX context is ephemeral: the site shows the validations
of this process (the whole DAG locally; one step per spark-submit on EMR). The durable record of
every gate is `<lake>/_ops/dq_results`.

The site is written where the lake is. GX 1.x writes sites to folders only, so for an s3:// lake
it is built in a local staging folder and mirrored to `<lake>/_ops/data_docs/` with boto3 (new
and changed files put, files GX dropped deleted; the store the lake's `storage_options` name, AWS S3
by default): AWS is a config switch, not a different path.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pipeline.dq.config import DqConfig
from pipeline.dq.gate import _Gx, docs_path, dq_config, dq_enabled
from pipeline.files import S3_SCHEMES, is_local, local_path, s3_client, s3_parts

log = logging.getLogger(__name__)

_staging: dict[str, str] = {}  # s3 docs location -> the local folder its site is built in


class DataDocsObserver:
    """StepObserver: builds the Data Docs at run end when this process ran a GX validation.
    Tests may pass an S3 `client`."""

    def __init__(self, client: Any = None) -> None:
        self.last_index: str | None = None
        self._client = client

    def step_started(self, ctx: Any, step: Any, outcome: Any) -> None:
        pass

    def step_finished(self, ctx: Any, step: Any, outcome: Any) -> None:
        pass

    def run_finished(self, ctx: Any, state: Any) -> None:
        if dq_enabled(ctx):
            self.last_index = build_docs(ctx, dq_config(ctx), self._client)


def build_docs(ctx: Any, config: DqConfig, client: Any = None) -> str | None:
    """Rebuild GX Data Docs under `<lake>/_ops/data_docs/`; the index's location."""
    if not config.data_docs or _Gx.context is None:
        return None
    target = docs_path(ctx)
    if is_local(target):
        return _build_site(str(local_path(target)))
    if urlparse(target).scheme not in S3_SCHEMES:
        log.warning("dq: Data Docs go to a folder or s3://, not %s; not built", target)
        return None
    if target not in _staging:
        _staging[target] = tempfile.mkdtemp(prefix="lakehouse-data-docs-")
    staging = _staging[target]
    if _build_site(staging) is None:
        return None
    try:
        _mirror_to_s3(Path(staging), target, client or s3_client(ctx.settings.lake.storage_options))
    except Exception:  # noqa: BLE001 - docs are a report; S3 trouble must not fail the run
        log.warning("dq: copying Data Docs to %s failed", target, exc_info=True)
        return None
    return f"{target}/index.html"


def _mirror_to_s3(folder: Path, target: str, client: Any = None) -> None:
    """Make s3 `target` hold exactly the files of `folder`: put the new and changed ones (a
    single-part put's ETag is its MD5, so the unchanged static assets are not sent every run),
    delete the others."""
    if client is None:
        client = s3_client()
    bucket, key = s3_parts(target)
    prefix = key.rstrip("/") + "/"
    existing = {
        o["Key"]: o["ETag"].strip('"')
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    }
    keep = set()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = prefix + path.relative_to(folder).as_posix()
        keep.add(key)
        body = path.read_bytes()
        if existing.get(key) == hashlib.md5(body, usedforsecurity=False).hexdigest():
            continue
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    stale = sorted(set(existing) - keep)
    for start in range(0, len(stale), 1000):  # delete_objects takes 1,000 keys a call
        batch = stale[start : start + 1000]
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch]})


def _build_site(base: str) -> str | None:
    """Build the site into folder `base` with this process's validations; the index's URL."""
    with _Gx.lock:
        context = _Gx.get()
        site = _Gx.sites.get(base)
        if site is None:
            site = f"lake_{len(_Gx.sites)}"
            context.add_data_docs_site(
                site_name=site,
                site_config={
                    "class_name": "SiteBuilder",
                    "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": base},
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                },
            )
            _Gx.sites[base] = site
        try:
            return context.build_data_docs(site_names=[site]).get(site)
        except Exception:  # noqa: BLE001 - docs are a report; a rendering problem must not fail the step
            log.warning("dq: building Data Docs under %s failed", base, exc_info=True)
            return None
