"""Metric emitters and the observer that feeds them.

- `FileEmitter`: JSON lines under `<lake>/_ops/metrics/<run_id>.jsonl` (a local folder or the
  lake's bucket: pipeline.files).
- `CloudWatchEmitter`: PutMetricData through boto3, at most 1000 datums per call.
- `NoneEmitter`: drops everything (`metrics.sink: none`).

`emitter_for(settings)` picks one from `settings.metrics`; `MetricsObserver(settings)` is the
StepObserver that emits a step's datums when it finishes and the run-level datums at run end.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from pipeline.files import LakeFiles, files_for
from pipeline.observability.metrics import (
    MetricCatalogue,
    MetricDatum,
    load_metric_catalogue,
    metrics_for,
    run_metrics_for,
)
from pipeline.settings import ConfigError, Settings

log = logging.getLogger(__name__)

PUT_METRIC_DATA_MAX = 1000  # datums per PutMetricData call


class MetricEmitter(Protocol):
    def emit(self, run_id: str, datums: Sequence[MetricDatum]) -> None: ...


class NoneEmitter:
    def __init__(self) -> None:
        self.emitted = 0

    def emit(self, run_id: str, datums: Sequence[MetricDatum]) -> None:
        self.emitted += len(datums)


class FileEmitter:
    """Appends one JSON object per datum (with the run id) to `<folder>/<run_id>.jsonl`, in a
    local folder or an S3 bucket (`files`: pipeline.files; by default the one the folder needs)."""

    def __init__(self, folder: str | Path, files: LakeFiles | None = None):
        self.folder = str(folder).rstrip("/")
        try:
            self.files = files or files_for(self.folder)
        except ValueError as exc:
            raise ConfigError(
                f"metrics.sink: file writes to a local or s3:// lake, not {folder}; use sink: cloudwatch or none"
            ) from exc

    def path(self, run_id: str) -> str:
        return f"{self.folder}/{run_id}.jsonl"

    def emit(self, run_id: str, datums: Sequence[MetricDatum]) -> None:
        if not datums:
            return
        lines = "".join(json.dumps({"run_id": run_id, **d.to_dict()}, sort_keys=True) + "\n" for d in datums)
        self.files.append_text(self.path(run_id), lines)


class CloudWatchEmitter:
    """PutMetricData in batches of at most 1000 datums. The run id is not a dimension (it would
    make every run a new metric); it is in the file sink and the logs."""

    def __init__(self, namespace: str, region: str = "", client: Any = None):
        self.namespace = namespace
        if client is None:
            import boto3

            client = boto3.client("cloudwatch", region_name=region or None)
        self.client = client

    def emit(self, run_id: str, datums: Sequence[MetricDatum]) -> None:
        data = [d.to_cloudwatch() for d in datums]
        for start in range(0, len(data), PUT_METRIC_DATA_MAX):
            self.client.put_metric_data(
                Namespace=self.namespace, MetricData=data[start : start + PUT_METRIC_DATA_MAX]
            )


def emitter_for(settings: Settings) -> MetricEmitter:
    sink = settings.metrics.sink
    if sink == "cloudwatch":
        return CloudWatchEmitter(settings.metrics.namespace, settings.metrics.region)
    if sink == "file":
        folder = settings.lake.path("_ops", "metrics")
        try:
            files = files_for(folder, settings.lake.storage_options)
        except ValueError:
            files = None  # FileEmitter says what is wrong
        return FileEmitter(folder, files)
    return NoneEmitter()


def catalogue_for(settings: Settings) -> MetricCatalogue:
    """`<config_dir>/metrics.yaml` when the settings have a config folder holding one, else the
    project's catalogue."""
    if settings.config_dir:
        candidate = settings.config_path("metrics.yaml")
        if candidate.exists():
            return load_metric_catalogue(candidate)
    return load_metric_catalogue()


class MetricsObserver:
    """StepObserver: a finished step's datums at step_finished, the run's at run_finished."""

    def __init__(
        self,
        settings: Settings,
        emitter: MetricEmitter | None = None,
        catalogue: MetricCatalogue | None = None,
    ):
        self.env = settings.env
        self.emitter = emitter if emitter is not None else emitter_for(settings)
        self.catalogue = catalogue or catalogue_for(settings)

    def step_started(self, ctx: Any, step: Any, outcome: Any) -> None:
        pass

    def step_finished(self, ctx: Any, step: Any, outcome: Any) -> None:
        datums = metrics_for(step, outcome, self.env, self.catalogue)
        if datums:
            self.emitter.emit(ctx.run_id, datums)

    def run_finished(self, ctx: Any, state: Any) -> None:
        datums = run_metrics_for(state, self.env, self.catalogue)
        if datums:
            self.emitter.emit(state.run_id, datums)
        log.info("metrics: run %s summary emitted (%d datums)", state.run_id, len(datums))
