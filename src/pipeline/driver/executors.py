"""Where a step runs. The runner hands each step to an `Executor` and gets a `StepResult` back
(or an exception, which it classifies and maybe retries; see `driver/retry.py`).

- `LocalExecutor`: in this process, on the run's one SparkContext: the job of the step's kind
  from the registry it is handed, through the edge (`driver.edge.finish`: the check it is
  handed judges a staged publish before it is written). `max_parallel` steps at once
  (`spark.parallel_steps`): with one, every step uses the run's SparkSession; with more, each
  step a clone of it (`RunContext.for_step`: its own SQL conf, which the lake's DML changes for
  one commit). That pays where a step waits, on a cluster's executors or on Spark's scheduling,
  planning and commits, which at scale 1 on 2 local cores is most of a step (docs/performance.md,
  "Steps side by side"). This is what `lakehouse run` and the spark-submit entry points (aws/jobs)
  use.
- `EmrServerlessExecutor`, `EmrStepsExecutor` (`driver/emr.py`): one EMR job run per step,
  `aws.emr.max_parallel_steps` at once; `executor_for(settings, name)` builds either.

Optional parts of the protocol, looked up with getattr by the runner: `max_parallel` (how many
steps at once, default 1), `run_attempt(step, ctx, attempt)` (called instead of `run` with the
`StepAttempt`, for executors whose submissions must be idempotent), `interrupt()` (the run is
being stopped: cancel what is running; called from another thread) and `close_run(ctx)` (the
run's steps have ended: make what they recorded durable; before the observers hear of the end;
a wrapper of the local executor forwards it, or the gates' results stay spooled).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pipeline.driver.dag import Step
from pipeline.driver.edge import Check, finish
from pipeline.step_result import JobOutput, StepResult

EXECUTORS = ("local", "emr-serverless", "emr-ec2")  # lakehouse run --executor


@dataclass(frozen=True)
class StepAttempt:
    """Which attempt of which step: `number` counts from 1 within this run of the step, `rerun`
    is how many earlier outcomes the step has in the run state (resumes)."""

    run_id: str
    step: str
    number: int
    rerun: int = 0


@runtime_checkable
class Executor(Protocol):
    name: str

    def run(self, step: Step, ctx: Any) -> StepResult:
        """Run one step to completion; raise on failure (the runner decides about retries)."""
        ...


class LocalExecutor:
    """Run the step's job function in-process, sharing the context's SparkSession; `jobs` maps
    a DAG job kind to its function, `check` judges what a job stages (`pipeline.app` builds the
    one the product runs: `local_executor()`)."""

    name = "local"

    def __init__(
        self, jobs: Mapping[str, Callable[[Any, str], JobOutput]], check: Check, max_parallel: int = 1
    ):
        self.jobs, self.check, self.max_parallel = jobs, check, max_parallel

    def run(self, step: Step, ctx: Any) -> StepResult:
        if self.max_parallel > 1:
            ctx = ctx.for_step()
        return finish(ctx, step.name, self.jobs[step.job](ctx, step.dataset), self.check)

    def close_run(self, ctx: Any) -> None:
        self.check.close_run(ctx)


def executor_for(settings: Any, name: str, **kwargs: Any) -> Executor:
    """The remote executor `lakehouse run --executor NAME` uses (`pipeline.app.local_executor`
    builds the local one). They get boto3 clients in `settings.aws.region` unless `kwargs` pass
    `client` (and `sleep`, `clock`, `timeout_s`)."""
    if name in ("emr-serverless", "emr-ec2"):
        from pipeline.driver.emr import EmrServerlessExecutor, EmrStepsExecutor

        cls = EmrServerlessExecutor if name == "emr-serverless" else EmrStepsExecutor
        return cls(settings, **kwargs)
    from pipeline.settings import ConfigError

    raise ConfigError(
        f"--executor: unknown remote executor {name!r}; choose one of {', '.join(EXECUTORS[1:])}"
    )
