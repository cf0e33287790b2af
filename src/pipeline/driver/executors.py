"""Where a step runs. The runner hands each step to an `Executor` and gets a `StepResult` back
(or an exception, which it classifies and maybe retries; see `driver/retry.py`).

- `LocalExecutor`: in this process, in the run's one SparkSession: `pipeline.jobs.JOBS[job]`.
  This is what `lakehouse run` and the spark-submit entry points (aws/jobs) use.

Remote executors go here too, behind the same `run(step, ctx)`: an EMR-on-EC2 executor
(submit the step's aws/jobs script as an EMR step, poll it, read its outcome from the run
state) and an EMR Serverless executor (StartJobRun, same outcome contract). They are not
implemented yet; the AWS orchestration issue adds them. Until then `LocalExecutor` is the only
executor, and nothing pretends otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from pipeline.driver.dag import Step
from pipeline.step_result import StepResult


@runtime_checkable
class Executor(Protocol):
    name: str

    def run(self, step: Step, ctx: Any) -> StepResult:
        """Run one step to completion; raise on failure (the runner decides about retries)."""
        ...


class LocalExecutor:
    """Run the step's job function in-process, sharing the context's SparkSession."""

    name = "local"

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
