"""`ReportObserver`: a StepObserver that writes the run report at the end of every run.

At `run_finished` it reads the run's lineage (`<lake>/_ops/lineage/<run_id>.jsonl`) and metrics
(`<lake>/_ops/metrics/<run_id>.jsonl`) when they exist (local lake roots; on s3 the file
transports are not used, so the report is drawn without them), renders the report
(`pipeline.report.html.render_report`) and writes `<lake>/_ops/reports/<run_id>.html`: a plain
file under a local lake root, a boto3 `put_object` (ContentType text/html) under s3://.
It prints nothing; the CLI prints `last_report_path` in the run summary.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pipeline.driver.dag import Dag
from pipeline.driver.state import S3_SCHEMES, RunState, is_local, local_path, s3_parts
from pipeline.report.html import render_report
from pipeline.settings import Settings

log = logging.getLogger(__name__)

DATA_DOCS_HREF = "../data_docs/index.html"  # relative to <lake>/_ops/reports/<run_id>.html


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a JSON-lines file; a missing file is empty, bad lines are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s: skipping a line that is not JSON", path)
            continue
        if isinstance(item, dict):
            found.append(item)
    return found


class ReportObserver:
    """`ReportObserver(settings, dag)`; after a run, `last_report_path` is where the report went
    (a local path or an s3:// URI), None before the first run. Tests may pass an s3 `client`."""

    def __init__(self, settings: Settings, dag: Dag, client: Any = None):
        self.settings = settings
        self.dag = dag
        self.last_report_path: str | None = None
        self._client = client

    # --- StepObserver --------------------------------------------------------------------------
    def step_started(self, ctx: Any, step: Any, outcome: Any) -> None:
        pass

    def step_finished(self, ctx: Any, step: Any, outcome: Any) -> None:
        pass

    def run_finished(self, ctx: Any, state: RunState) -> None:  # noqa: ARG002
        self.last_report_path = self.write(state)

    # --- building blocks -----------------------------------------------------------------------
    def location(self, run_id: str) -> str:
        return self.settings.lake.path("_ops", "reports", f"{run_id}.html")

    def render(self, state: RunState) -> str:
        root = self.settings.lake.root
        lineage: list[dict] = []
        metrics: list[dict] = []
        docs_href = None
        if is_local(root):
            lineage = read_jsonl(
                local_path(self.settings.lake.path("_ops", "lineage", f"{state.run_id}.jsonl"))
            )
            metrics = read_jsonl(
                local_path(self.settings.lake.path("_ops", "metrics", f"{state.run_id}.jsonl"))
            )
            if local_path(self.settings.lake.path("_ops", "data_docs", "index.html")).is_file():
                docs_href = DATA_DOCS_HREF
        elif self._s3_exists(self.settings.lake.path("_ops", "data_docs", "index.html")):
            docs_href = DATA_DOCS_HREF
        return render_report(
            state, self.dag, lineage, metrics, env=self.settings.env, data_docs_href=docs_href
        )

    def write(self, state: RunState) -> str:
        """Render and store the report; returns its location."""
        text = self.render(state)
        location = self.location(state.run_id)
        if is_local(location):
            path = local_path(location)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
            try:
                tmp.write_text(text, encoding="utf-8")
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            return str(path)
        bucket, key = s3_parts(location)
        self.client.put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"), ContentType="text/html")
        return location

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def _s3_exists(self, location: str) -> bool:
        if urlparse(location).scheme not in S3_SCHEMES:
            return False
        bucket, key = s3_parts(location)
        try:
            self.client.head_object(Bucket=bucket, Key=key)
        except Exception:  # noqa: BLE001 - not found, no credentials: no link either way
            return False
        return True
