"""GX Data Docs under `<lake>/_ops/data_docs/`, built once when a run ends.

Rendering every validation result into HTML takes a while (~0.3 s per gated table), so the gates
only validate, record and keep their GX validation results in `<lake>/_ops/gx/<run_id>/<step>.json`;
`DataDocsObserver` builds the site once, where the run ends (before the run report, which links
to it): from this process's validations and every result file of the run that another process
wrote (each EMR job gates its own step; the driver, which has no SparkSession, builds the site
in a GX context of its own, without a Spark data source). The durable record of every gate is
`<lake>/_ops/dq_results`.

The site is written where the lake is. GX 1.x writes sites to folders only, so for an s3:// lake
it is built in a local staging folder and mirrored to `<lake>/_ops/data_docs/` with boto3 (new
and changed files put, files GX dropped deleted; the store the lake's `storage_options` name, AWS S3
by default): AWS is a config switch, not a different path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pipeline.dq.config import DqConfig
from pipeline.dq.gate import _Gx, docs_path, dq_config, dq_enabled, validations_path
from pipeline.files import S3_SCHEMES, is_local, local_path, s3_client, s3_parts

log = logging.getLogger(__name__)

_staging: dict[str, str] = {}  # s3 docs location -> the local folder its site is built in


class _Docs:
    """The GX context a process that ran no gate (an EMR driver) renders other processes'
    results in: no data source, so no SparkSession."""

    context: Any = None
    sites: dict[str, str] = {}
    loaded: set[str] = set()  # result files already put into a context


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
    if not config.data_docs:
        return None
    target = docs_path(ctx)
    if not is_local(target) and urlparse(target).scheme in S3_SCHEMES:
        client = client or s3_client(ctx.settings.lake.storage_options)
    if not _load_results(ctx, client):
        # No gate ran in this run (a rerun with nothing new): the site stands as the last run
        # left it. A long-lived process keeps its GX context between runs, so ask the run's folder.
        return None
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
        _mirror_to_s3(Path(staging), target, client)
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


def _context() -> tuple[Any, dict[str, str]]:
    """The GX context to render in (the gates' when this process ran any) and its sites."""
    if _Gx.context is not None:
        return _Gx.context, _Gx.sites
    if _Docs.context is None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
        import great_expectations as gx

        _Docs.context = gx.get_context(mode="ephemeral")
    return _Docs.context, _Docs.sites


def _result_files(folder: str, client: Any) -> dict[str, str]:
    """location -> text of every `*.json` directly under `folder` (a local folder or s3://)."""
    if is_local(folder):
        base = local_path(folder)
        if not base.is_dir():
            return {}
        return {f"{folder}/{p.name}": p.read_text(encoding="utf-8") for p in sorted(base.glob("*.json"))}
    bucket, key = s3_parts(folder)
    prefix = key.rstrip("/") + "/"
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(".json"):
                body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                found[f"{folder}/{obj['Key'][len(prefix) :]}"] = body.decode(
                    "utf-8"
                )  # as save_validations names it
    return found


def _load_results(ctx: Any, client: Any) -> int:
    """Put the run's validation results that other processes kept into the rendering context;
    how many result files the run has (this process's included). Unreadable files are skipped
    with a warning: docs are a report."""
    folder = validations_path(ctx)
    mine = sum(1 for location in _Gx.saved if location.startswith(folder + "/"))
    if not is_local(folder) and urlparse(folder).scheme not in S3_SCHEMES:
        return mine
    try:
        files = _result_files(folder, client)
    except Exception:  # noqa: BLE001
        log.warning("dq: cannot list validation results under %s", folder, exc_info=True)
        return mine
    todo = {k: v for k, v in files.items() if k not in _Gx.saved and k not in _Docs.loaded}
    if not todo:
        return max(len(files), mine)
    # GX only now: importing it costs seconds, and a run with nothing new has no result to load.
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    context, _ = _context()
    store = context.validation_results_store
    for location, text in todo.items():
        try:
            payload = json.loads(text)
            for result in payload["results"]:
                run_time = (result.get("meta", {}).get("run_id") or {}).get("run_time")
                key = ValidationResultIdentifier(
                    expectation_suite_identifier=ExpectationSuiteIdentifier(name=result["suite_name"]),
                    run_id=RunIdentifier(run_name=ctx.run_id, run_time=run_time),
                    batch_identifier=payload["step"],
                )
                store.set(key, store.deserialize(json.dumps(result)))
            _Docs.loaded.add(location)
        except Exception:  # noqa: BLE001
            log.warning("dq: skipping unreadable validation results %s", location, exc_info=True)
    return max(len(files), mine)


def _build_site(base: str) -> str | None:
    """Build the site into folder `base` with the validations the context holds; the index's URL."""
    with _Gx.lock:
        context, sites = _context()
        site = sites.get(base)
        if site is None:
            site = f"lake_{len(sites)}"
            context.add_data_docs_site(
                site_name=site,
                site_config={
                    "class_name": "SiteBuilder",
                    "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": base},
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                },
            )
            sites[base] = site
        try:
            return context.build_data_docs(site_names=[site]).get(site)
        except Exception:  # noqa: BLE001 - docs are a report; a rendering problem must not fail the step
            log.warning("dq: building Data Docs under %s failed", base, exc_info=True)
            return None
