"""The driver's edge around any job: check, then publish (write, audit, publish).

A job returns a `StepResult`, a `Staged` publish or `Unchanged` (`pipeline.step_result`). Here
the step's `Check` judges a staged publish before anything is written (a refusal raises and
nothing is committed) and repeats its last verdict for an unchanged table. The judged frame stays
cached from the check through the publish, released after it. The driver is handed
its check (the DQ gate, `pipeline.dq.check.DQ_CHECK`) and its job registry by whoever builds it
(`pipeline.app`); it imports neither.
"""

from __future__ import annotations

from typing import Any, Protocol

from pipeline.step_result import JobOutput, Staged, StepResult, Unchanged


class Check(Protocol):
    def judge(self, ctx: Any, step: str, staged: Staged) -> dict[str, Any]:
        """Judge a publish before it is written: details for the step's result, or raise."""
        ...

    def stands(self, ctx: Any, step: str, dataset: str, layer: str) -> dict[str, Any]:
        """The last verdict on a table nothing rewrote: details, or raise as that verdict did."""
        ...

    def close_run(self, ctx: Any) -> None:
        """The run (or a lake operation) ends: make durable what the judging recorded (the DQ
        gate writes its spooled results to dq_results in one commit)."""
        ...


def finish(ctx: Any, step: str, output: JobOutput, check: Check) -> StepResult:
    """The step's result once `output` is checked and, when staged and passed, published."""
    if isinstance(output, StepResult):
        return output
    if isinstance(output, Unchanged):
        output.result.details.update(check.stands(ctx, step, output.dataset, output.layer))
        return output.result
    if isinstance(output, Staged):
        kept = False
        try:
            kept = _keep(output.audit)
            verdict = check.judge(ctx, step, output)
            result = output.publish()
        finally:
            if kept:
                output.audit.unpersist()
            output.release()
        result.details.update(verdict)
        return result
    raise TypeError(
        f"step {step}: the job returned {type(output).__name__}; expected a StepResult, Staged or Unchanged"
    )


def _keep(audit: Any) -> bool:
    """Cache the frame the check judges for the judging and the publish, so neither recomputes
    the job's transform; True when cached here (released after the publish). A frame the job
    cached, or a filter or projection of one (an SCD2 batch's current versions), is read from
    that cache: no second one."""
    if not hasattr(audit, "cache") or audit.is_cached or _reads_a_cache(audit):
        return False
    audit.cache()
    return True


def _reads_a_cache(frame: Any) -> bool:
    """Whether Spark answers `frame` by filtering or projecting cached data (a few JVM calls)."""
    node = frame._jdf.queryExecution().withCachedData()
    while node.nodeName() in ("Filter", "Project"):
        node = node.child()
    return node.nodeName() == "InMemoryRelation"
