"""OpenLineage for the pipeline: datasets by storage location, declared column lineage, and a
StepObserver that emits START / COMPLETE / FAIL per step (`LineageObserver(settings)`)."""

from pipeline.lineage.emitter import LineageError, LineageObserver, parent_run_id, step_run_id

__all__ = ["LineageError", "LineageObserver", "parent_run_id", "step_run_id"]
