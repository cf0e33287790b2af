"""Where the pieces are put together (the composition root): the driver gets its job registry
(`pipeline.jobs.JOBS`) and its check (the DQ gate, `pipeline.dq.check.DQ_CHECK`) from here;
neither the driver nor a job imports the other's side.

The shells (`pipeline.cli`, `lakehouse`; `pipeline.entry`, the spark-submit scripts) parse
arguments and call in here: `run.run_pipeline` runs the DAG, `operation.lake_operation` a write
outside a run; `process` holds what every writer process does (UTC, logging, SIGTERM, the lake's
lease), `observers` what watches a run, `arguments` the options every command shares."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the shells import this package's modules; --help loads no executor, no Spark
    from pipeline.driver.edge import Check
    from pipeline.driver.executors import LocalExecutor


def step_check() -> Check:
    """The check every published table passes: the DQ gate (config/dq.yaml)."""
    from pipeline.dq.check import DQ_CHECK  # Great Expectations: imported when a run needs it

    return DQ_CHECK


def local_executor(parallel_steps: int = 1) -> LocalExecutor:
    """Steps in this process, the DAG's job kinds, each publish judged by the DQ gate;
    `parallel_steps` independent ones at once (`spark.parallel_steps` for a whole run)."""
    from pipeline.driver.executors import LocalExecutor
    from pipeline.jobs import JOBS

    return LocalExecutor(JOBS, step_check(), parallel_steps)
