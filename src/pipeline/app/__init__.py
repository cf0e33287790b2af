"""Where the pieces are put together (the composition root): the driver gets its job registry
(`pipeline.jobs.JOBS`) and its check (the DQ gate, `pipeline.dq.check.DQ_CHECK`) from here;
neither the driver nor a job imports the other's side."""

from __future__ import annotations

from pipeline.driver.edge import Check
from pipeline.driver.executors import LocalExecutor


def step_check() -> Check:
    """The check every published table passes: the DQ gate (config/dq.yaml)."""
    from pipeline.dq.check import DQ_CHECK  # Great Expectations: imported when a run needs it

    return DQ_CHECK


def local_executor() -> LocalExecutor:
    """Steps in this process, the DAG's job kinds, each publish judged by the DQ gate."""
    from pipeline.jobs import JOBS

    return LocalExecutor(JOBS, step_check())
