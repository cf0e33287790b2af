"""Where a step runs. The runner hands each step to an `Executor` and gets a `StepResult` back
(or an exception, which it classifies and maybe retries; see `driver/retry.py`).

- `LocalExecutor`: in this process, in the run's one SparkSession: `pipeline.jobs.JOBS[job]`.
  One step at a time (`max_parallel` 1): the steps share that session. This is what `lakehouse
  run` and the spark-submit entry points (aws/jobs) use.
- `EmrServerlessExecutor`, `EmrStepsExecutor` (`driver/emr.py`): one EMR job run per step,
  `aws.emr.max_parallel_steps` at once; `executor_for(settings, name)` builds any of the three.

Optional parts of the protocol, looked up with getattr by the runner: `max_parallel` (how many
steps at once, default 1), `run_attempt(step, ctx, attempt)` (called instead of `run` with the
`StepAttempt`, for executors whose submissions must be idempotent) and `interrupt()` (the run
is being stopped: cancel what is running; called from another thread).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pipeline.driver.dag import Step
from pipeline.step_result import StepResult

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
    """Run the step's job function in-process, sharing the context's SparkSession."""

    name = "local"
    max_parallel = 1

    def __init__(self, jobs: Mapping[str, Callable[[Any, str], StepResult]] | None = None):
        self._jobs = jobs

    @property
    def jobs(self) -> Mapping[str, Callable[[Any, str], StepResult]]:
        if self._jobs is None:
            from pipeline.jobs import JOBS  # imported on first use: the bronze/silver/gold code

            self._jobs = JOBS
        return self._jobs

    def run(self, step: Step, ctx: Any) -> StepResult:
        result = self.jobs[step.job](ctx, step.dataset)
        if not isinstance(result, StepResult):
            raise TypeError(f"job {step.job!r} returned {type(result).__name__}, expected a StepResult")
        return result


def executor_for(settings: Any, name: str, **kwargs: Any) -> Executor:
    """The executor `lakehouse run --executor NAME` uses. The EMR ones get boto3 clients in
    `settings.aws.region` unless `kwargs` pass `client` (and `sleep`, `clock`, `timeout_s`)."""
    if name == "local":
        return LocalExecutor(**kwargs)
    if name in ("emr-serverless", "emr-ec2"):
        from pipeline.driver.emr import EmrServerlessExecutor, EmrStepsExecutor

        cls = EmrServerlessExecutor if name == "emr-serverless" else EmrStepsExecutor
        return cls(settings, **kwargs)
    from pipeline.settings import ConfigError

    raise ConfigError(f"--executor: unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
