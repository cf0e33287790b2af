"""`ReportObserver`: a StepObserver that writes the run report at the end of every run.

At `run_finished` it reads the run's lineage (`<lake>/_ops/lineage/<run_id>.jsonl`) and metrics
(`<lake>/_ops/metrics/<run_id>.jsonl`) when they exist (with the http and CloudWatch sinks they do
not, and the report is drawn without them), renders the report
(`pipeline.report.html.render_report`) and writes `<lake>/_ops/reports/<run_id>.html`, through
pipeline.files: a plain file under a local lake root, an object (ContentType text/html) in the
lake's bucket. It prints nothing; the CLI prints `last_report_path` in the run summary.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pipeline.driver.dag import Dag
from pipeline.driver.state import RunState
from pipeline.files import files_for, is_local, local_path
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
    return parse_jsonl(text, str(path))


def parse_jsonl(text: str, path: str) -> list[dict]:
    """The JSON objects of JSON-lines text read from `path`; bad lines are skipped."""
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
        self.files = files_for(settings.lake.root, settings.lake.storage_options, client)

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
        ops = self.settings.lake.path("_ops")
        lineage = self._read_jsonl(f"{ops}/lineage/{state.run_id}.jsonl")
        metrics = self._read_jsonl(f"{ops}/metrics/{state.run_id}.jsonl")
        docs_href = DATA_DOCS_HREF if self._exists(f"{ops}/data_docs/index.html") else None
        return render_report(
            state, self.dag, lineage, metrics, env=self.settings.env, data_docs_href=docs_href
        )

    def write(self, state: RunState) -> str:
        """Render and store the report; returns its location."""
        text = self.render(state)
        location = self.location(state.run_id)
        self.files.write_text(location, text, content_type="text/html")
        return str(local_path(location)) if is_local(location) else location

    # The report draws what it can read: lineage, metrics or Data Docs it cannot reach (missing,
    # no credentials) leave their sections empty instead of failing the run at its end.
    def _read_jsonl(self, location: str) -> list[dict]:
        try:
            text = self.files.read_text(location)
        except Exception:  # noqa: BLE001
            log.warning("report: cannot read %s; drawn without it", location, exc_info=True)
            return []
        return parse_jsonl(text, location) if text else []

    def _exists(self, location: str) -> bool:
        try:
            return self.files.exists(location)
        except Exception:  # noqa: BLE001
            return False
