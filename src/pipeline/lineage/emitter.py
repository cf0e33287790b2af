"""OpenLineage events for a pipeline run: a StepObserver (pipeline.driver.observers).

One START and one COMPLETE or FAIL per logical step (retries inside a step are one run), named
`<namespace>/pipeline.<step>`, each with a parent run facet pointing at the pipeline run
(`<namespace>/pipeline`). The pipeline run itself gets a START before its first step and a
COMPLETE / FAIL (ABORT when interrupted) from `run_finished`.

Run ids are uuid5 of stable strings, so `lakehouse run --resume RUN_ID` keeps the parent run id;
a step's run id changes per attempt group (each resume of the step is a new OpenLineage run
of the same job, under the same parent): uuid5(run_id/step/len(outcome.previous)).

Skipped steps (an upstream failed) never started: no event is emitted for them (a START that
never happened cannot be closed; an ABORT without START would create a phantom run in Marquez).
Their absence under the parent run, and the parent's FAIL, say what happened.

Facets: parent; jobType (integration SPARK, processingType BATCH, STREAMING for the Kafka
source; jobType TASK for steps, DAG for the pipeline); schema (silver from the
contract, PII protected; gold column names); columnLineage (silver from the contract, gold from
columns.GOLD_COLUMN_LINEAGE); on COMPLETE outputStatistics (rows_out; `bytes` from details when
present; silver's quarantine gets `quarantined`) and dataQualityMetrics on the main input
(rowCount = rows_in); `details["dq"]` = [{rule, passed, observed, severity, ...}] becomes a
dataQualityAssertions facet on the output the gates checked (a dataset facet of the output:
the gates check what the step wrote); on FAIL errorMessage.

Transports (settings.lineage.transport): `file` appends JSON lines to
`<lake>/_ops/lineage/<run_id>.jsonl` (a local folder or the lake's bucket: pipeline.files); `http` posts to a
Marquez-compatible endpoint with the API key from settings.lineage.api_key; `none` emits
nothing. A failing emission is logged and the run goes on, unless `fail_on_error`, in which
case LineageError is raised from the observer method.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    data_quality_assertions_dataset,
    data_quality_metrics_input_dataset,
    error_message_run,
    job_type_job,
    output_statistics_output_dataset,
    parent_run,
    schema_dataset,
)

from pipeline.driver.observers import ObserverAbort
from pipeline.driver.state import FAILED, SKIPPED, SUCCEEDED
from pipeline.files import LakeFiles, files_for
from pipeline.lineage import columns as C
from pipeline.lineage.datasets import DatasetRef, StepDatasets, step_datasets
from pipeline.settings import ConfigError, LineageSettings, Settings

log = logging.getLogger(__name__)

PRODUCER = "https://pypi.org/project/lakehouse-pipeline/"  # identifies this code as the producer
RUN_NAMESPACE = uuid.UUID("5f0c1c7e-9a4b-4f53-8d0e-6c1b2a3d4e5f")  # uuid5 namespace for run ids
PIPELINE_JOB = "pipeline"


class LineageError(ObserverAbort):
    """Emitting a lineage event failed and settings.lineage.fail_on_error is set."""


def parent_run_id(run_id: str) -> str:
    return str(uuid.uuid5(RUN_NAMESPACE, f"pipeline/{run_id}"))


def step_run_id(run_id: str, step: str, attempt_group: int = 0) -> str:
    return str(uuid.uuid5(RUN_NAMESPACE, f"pipeline/{run_id}/{step}/{attempt_group}"))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FileLineageTransport:
    """JSON lines, one file per pipeline run: `<folder>/<run_id>.jsonl` (appended), in a local
    folder or an S3 bucket (`files`: pipeline.files; by default the one the folder needs)."""

    def __init__(self, folder: str | Path, files: LakeFiles | None = None):
        self.folder = str(folder).rstrip("/")
        self.files = files or files_for(self.folder)

    def path(self, run_id: str) -> str:
        return f"{self.folder}/{run_id}.jsonl"

    def emit(self, event: RunEvent, run_id: str) -> None:
        from openlineage.client.serde import Serde

        self.files.append_text(self.path(run_id), Serde.to_json(event) + "\n")


class HttpLineageTransport:
    """openlineage HttpTransport to a Marquez-compatible endpoint; the API key is resolved once,
    at the first event."""

    def __init__(self, conf: LineageSettings):
        if not conf.url:
            raise ConfigError("lineage.url: required when lineage.transport is http")
        self.conf = conf
        self._transport: Any = None

    def _build(self) -> Any:
        from openlineage.client.transport.http import (
            ApiKeyTokenProvider,
            HttpConfig,
            HttpTransport,
            TokenProvider,
        )

        auth = (
            ApiKeyTokenProvider({"apiKey": self.conf.api_key.resolve()})
            if self.conf.api_key
            else TokenProvider({})
        )
        return HttpTransport(HttpConfig(url=self.conf.url, endpoint=self.conf.endpoint, auth=auth))

    def emit(self, event: RunEvent, run_id: str) -> None:  # noqa: ARG002
        if self._transport is None:
            self._transport = self._build()
        self._transport.emit(event)


def build_transport(settings: Settings) -> Any:
    conf = settings.lineage
    if conf.transport == "none":
        return None
    if conf.transport == "http":
        return HttpLineageTransport(conf)
    folder = settings.lake.path("_ops", "lineage")
    try:
        files = files_for(folder, settings.lake.storage_options)
    except ValueError as exc:
        raise ConfigError(
            f"lineage.transport: file writes under a local or s3:// lake root, not {settings.lake.root}; "
            "use http (a Marquez-compatible endpoint) or none"
        ) from exc
    return FileLineageTransport(folder, files)


class LineageObserver:
    """A StepObserver that emits OpenLineage run events. `LineageObserver(settings)`; tests may
    pass `transport` (anything with `emit(event, run_id)`)."""

    def __init__(
        self,
        settings: Settings,
        transport: Any = ...,
        producer: str = PRODUCER,
        *,
        pipeline_events: bool = True,
        step_events: bool = True,
    ):
        # A run split over processes (EMR): the driver emits the pipeline's events
        # (step_events=False), each step's job its step's (pipeline_events=False); the parent
        # run id is derived from the run id, so both sides name the same parent.
        self.pipeline_events = pipeline_events
        self.step_events = step_events
        self.settings = settings
        self.namespace = settings.lineage.namespace
        self.fail_on_error = settings.lineage.fail_on_error
        self.transport = build_transport(settings) if transport is ... else transport
        self.producer = producer
        self._started_pipeline: set[str] = set()
        self._started_steps: dict[tuple[str, str], str] = {}  # (run_id, step) -> step run id

    # --- StepObserver --------------------------------------------------------------------------
    def step_started(self, ctx: Any, step: Any, outcome: Any) -> None:
        if self.transport is None:
            return
        self._ensure_pipeline_started(ctx)
        if not self.step_events:
            return
        run_id = step_run_id(ctx.run_id, step.name, len(getattr(outcome, "previous", []) or []))
        self._started_steps[(ctx.run_id, step.name)] = run_id
        self._emit(self._step_event(ctx, step, outcome, RunState.START, run_id), ctx.run_id)

    def step_finished(self, ctx: Any, step: Any, outcome: Any) -> None:
        if self.transport is None:
            return
        run_id = self._started_steps.pop((ctx.run_id, step.name), None)
        if outcome.status == SKIPPED or run_id is None:
            return  # never started: nothing to close (see the module docstring)
        state = RunState.COMPLETE if outcome.status == SUCCEEDED else RunState.FAIL
        self._emit(self._step_event(ctx, step, outcome, state, run_id), ctx.run_id)

    def run_finished(self, ctx: Any, state: Any) -> None:
        if self.transport is None or not self.pipeline_events:
            return
        self._ensure_pipeline_started(ctx)
        event_type = {SUCCEEDED: RunState.COMPLETE, FAILED: RunState.FAIL}.get(state.status, RunState.ABORT)
        facets: dict[str, Any] = {}
        if event_type == RunState.FAIL:
            failed = [s.step for s in state.steps if s.status in (FAILED, SKIPPED)]
            facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=f"steps not succeeded: {', '.join(failed)}",
                programmingLanguage="PYTHON",
                producer=self.producer,
            )
        self._emit(self._pipeline_event(ctx, event_type, facets), ctx.run_id)

    # --- events --------------------------------------------------------------------------------
    def _ensure_pipeline_started(self, ctx: Any) -> None:
        if self.pipeline_events and ctx.run_id not in self._started_pipeline:
            self._started_pipeline.add(ctx.run_id)
            self._emit(self._pipeline_event(ctx, RunState.START, {}), ctx.run_id)

    def _job_type(self, job_type: str, streaming: bool = False) -> job_type_job.JobTypeJobFacet:
        return job_type_job.JobTypeJobFacet(
            processingType="STREAMING" if streaming else "BATCH",
            integration="SPARK",
            jobType=job_type,
            producer=self.producer,
        )

    def _pipeline_event(self, ctx: Any, event_type: RunState, facets: dict[str, Any]) -> RunEvent:
        return RunEvent(
            eventType=event_type,
            eventTime=_now(),
            run=Run(runId=parent_run_id(ctx.run_id), facets=facets),
            job=Job(namespace=self.namespace, name=PIPELINE_JOB, facets={"jobType": self._job_type("DAG")}),
            producer=self.producer,
            inputs=[],
            outputs=[],
        )

    def _step_event(self, ctx: Any, step: Any, outcome: Any, event_type: RunState, run_id: str) -> RunEvent:
        parent_id = parent_run_id(ctx.run_id)
        run_facets: dict[str, Any] = {
            "parent": parent_run.ParentRunFacet(
                run=parent_run.Run(runId=parent_id),
                job=parent_run.Job(namespace=self.namespace, name=PIPELINE_JOB),
                root=parent_run.Root(
                    run=parent_run.RootRun(runId=parent_id),
                    job=parent_run.RootJob(namespace=self.namespace, name=PIPELINE_JOB),
                ),
                producer=self.producer,
            )
        }
        if event_type == RunState.FAIL:
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=outcome.error or f"step {step.name} failed",
                programmingLanguage="PYTHON",
                producer=self.producer,
            )
        datasets = step_datasets(ctx, step)
        finished = event_type == RunState.COMPLETE
        inputs = [self._input(ctx, step, d, outcome, finished, i == 0) for i, d in enumerate(datasets.inputs)]
        outputs = [self._output(ctx, step, d, datasets, outcome, finished) for d in datasets.outputs]
        job_name = f"{PIPELINE_JOB}.{step.name}"
        return RunEvent(
            eventType=event_type,
            eventTime=(outcome.ended_at if event_type != RunState.START else outcome.started_at) or _now(),
            run=Run(runId=run_id, facets=run_facets),
            job=Job(
                namespace=self.namespace,
                name=job_name,
                facets={"jobType": self._job_type("TASK", self._streaming(ctx, step))},
            ),
            producer=self.producer,
            inputs=inputs,
            outputs=outputs,
        )

    @staticmethod
    def _streaming(ctx: Any, step: Any) -> bool:
        """The Kafka bronze step is a Structured Streaming query (available-now trigger), in
        kafka and in replay mode alike."""
        return step.job == "bronze" and ctx.catalog[step.dataset].reader == "kafka"

    def _schema(self, ref: DatasetRef) -> dict[str, Any]:
        if not ref.fields:
            return {}
        fields = [
            schema_dataset.SchemaDatasetFacetFields(name=name, type=type_, ordinal_position=i)
            for i, (name, type_) in enumerate(ref.fields, 1)
        ]
        return {"schema": schema_dataset.SchemaDatasetFacet(fields=fields, producer=self.producer)}

    def _input(
        self, ctx: Any, step: Any, ref: DatasetRef, outcome: Any, finished: bool, main: bool
    ) -> InputDataset:
        input_facets: dict[str, Any] = {}
        if finished and main and outcome.rows_in and not outcome.details.get("skipped"):
            input_facets["dataQualityMetrics"] = (
                data_quality_metrics_input_dataset.DataQualityMetricsInputDatasetFacet(
                    columnMetrics={}, rowCount=int(outcome.rows_in), producer=self.producer
                )
            )
        return InputDataset(
            namespace=ref.namespace, name=ref.name, facets=self._schema(ref), inputFacets=input_facets
        )

    def _output(
        self, ctx: Any, step: Any, ref: DatasetRef, datasets: StepDatasets, outcome: Any, finished: bool
    ) -> OutputDataset:
        facets = self._schema(ref)
        lineage = self._column_lineage(ctx, step, ref, datasets)
        if lineage is not None:
            facets["columnLineage"] = lineage
        output_facets: dict[str, Any] = {}
        details = outcome.details or {}
        if finished and not details.get("skipped"):
            quarantine = ref.layer == "quarantine"
            rows = details.get("quarantined", 0) if quarantine else outcome.rows_out
            size = None if quarantine else details.get("bytes", details.get("bytes_written"))
            output_facets["outputStatistics"] = (
                output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                    rowCount=int(rows or 0),
                    size=int(size) if isinstance(size, int | float) else None,
                    producer=self.producer,
                )
            )
        if ref.layer != "quarantine" and isinstance(details.get("dq"), list) and details["dq"]:
            facets["dataQualityAssertions"] = self._assertions(details["dq"])
        return OutputDataset(
            namespace=ref.namespace, name=ref.name, facets=facets, outputFacets=output_facets
        )

    def _assertions(self, dq: list[dict[str, Any]]) -> Any:
        """The DQ gate's results (`details["dq"]`: a list of {rule, severity, passed, observed,
        expected, column}) as assertions on the table the step wrote."""
        assertions = []
        for result in dq:
            rule = str(result.get("rule", ""))
            observed = result.get("observed")
            column = result.get("column") or (rule.split(":", 1)[0] if ":" in rule else None)
            assertions.append(
                data_quality_assertions_dataset.Assertion(
                    assertion=str(rule),
                    success=bool(result.get("passed")),
                    column=column,
                    severity=result.get("severity"),
                    actual=None if observed is None else str(observed),
                    expected=None if result.get("expected") is None else str(result["expected"]),
                )
            )
        return data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
            assertions=assertions, producer=self.producer
        )

    def _column_lineage(self, ctx: Any, step: Any, ref: DatasetRef, datasets: StepDatasets) -> Any:
        def resolve(layer: str, table: str) -> tuple[str, str] | None:
            found = datasets.find(layer, table)
            return found.key if found is not None else None

        if step.job == "silver":
            contract = ctx.contracts[step.dataset]
            if ref.layer == "silver":
                columns = C.silver_column_lineage(contract)
                whole = C.silver_dataset_lineage(contract)
            else:
                columns, whole = C.quarantine_column_lineage(contract), []
            return C.column_lineage_facet(columns, resolve, whole, producer=self.producer)
        if step.job == "gold" and ref.layer == "gold":
            return C.column_lineage_facet(
                C.gold_column_lineage(step.dataset), resolve, producer=self.producer
            )
        return None

    def _emit(self, event: RunEvent, run_id: str) -> None:
        try:
            self.transport.emit(event, run_id)
        except Exception as exc:
            if self.fail_on_error:
                raise LineageError(
                    f"lineage: emitting {event.eventType} for {event.job.name} failed: {exc}"
                ) from exc
            log.warning("lineage: emitting %s for %s failed: %s", event.eventType, event.job.name, exc)
