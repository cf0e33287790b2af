"""The job registry: the job kinds the DAG can name (`JOBS`) and their functions.

A step in config/pipeline.yaml says `job: <kind>` and `dataset: <name>`; the kind maps to one
function here. New kinds (silver, gold, ...) register the same way. The composition root
(pipeline.app) hands this registry to the driver's executor; the spark-submit entry points are
in pipeline.entry.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.bronze.ingest import ingest_files
from pipeline.bronze.jdbc import ingest_jdbc
from pipeline.bronze.kafka import ingest_kafka
from pipeline.catalog import STREAM_READERS
from pipeline.context import RunContext
from pipeline.step_result import JobOutput, StepResult

JobFn = Callable[[RunContext, str], JobOutput]


def bronze(ctx: RunContext, dataset: str) -> StepResult:
    """Land one dataset in bronze, by the reader its catalogue entry and source settings name."""
    if ctx.catalog[dataset].reader in STREAM_READERS:  # a topic, or its replay from landing files
        return ingest_kafka(ctx, dataset, trigger=ctx.stream_trigger)
    source = ctx.catalog.source(ctx.settings, dataset)
    if source.mode == "jdbc":
        assert source.jdbc is not None  # SourceSettings refuses mode jdbc without it
        return ingest_jdbc(ctx, dataset, source.jdbc)
    return ingest_files(ctx, dataset)


def silver(ctx: RunContext, dataset: str) -> JobOutput:
    from pipeline.silver.job import build_silver

    return build_silver(ctx, dataset)


def gold(ctx: RunContext, mart: str) -> JobOutput:
    from pipeline.gold import build_gold

    return build_gold(ctx, mart)


def maintain(ctx: RunContext, layer: str) -> StepResult:
    """Table maintenance of one layer (config/maintenance.yaml); `lakehouse maintain` forces it."""
    from pipeline.maintenance import maintain as maintain_layer

    return maintain_layer(ctx, layer, force=getattr(ctx, "force_maintenance", False))


JOBS: dict[str, JobFn] = {"bronze": bronze, "silver": silver, "gold": gold, "maintain": maintain}
