"""Step observers: the one place where lineage, metrics, alerts and reports hook into a run.

The runner calls every observer at step start, at step end (succeeded, failed or skipped; the
outcome carries rows, details and the error) and at run end. An observer that raises is
reported and ignored: losing a lineage event must not fail a pipeline run, unless the observer
raises `ObserverAbort` (e.g. lineage with fail_on_error), which stops the run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol, TextIO

from pipeline.driver.dag import Step
from pipeline.driver.state import RunState, StepOutcome

log = logging.getLogger(__name__)


class ObserverAbort(RuntimeError):
    """Raised by an observer that was configured to stop the run when it fails."""


class StepObserver(Protocol):
    def step_started(self, ctx: Any, step: Step, outcome: StepOutcome) -> None: ...

    def step_finished(self, ctx: Any, step: Step, outcome: StepOutcome) -> None: ...

    def run_finished(self, ctx: Any, state: RunState) -> None: ...


def notify(observers: Sequence[StepObserver], event: str, out: TextIO, *args: Any) -> None:
    for observer in observers:
        try:
            getattr(observer, event)(*args)
        except ObserverAbort:
            raise
        except Exception as exc:  # otherwise an observer must never fail the run
            log.exception("observer %s.%s failed", type(observer).__name__, event)
            print(
                f"warning: {type(observer).__name__}.{event} failed: {type(exc).__name__}: {exc}",
                file=out,
                flush=True,
            )


class StepEventsOnly:
    """An observer's step events without its run end: what a `--member` process (one step of a
    run a driver elsewhere owns) runs, so run-level work (the run's metrics, the run_failed
    alert) happens once, in the driver."""

    def __init__(self, observer: StepObserver):
        self.observer = observer

    def step_started(self, ctx: Any, step: Step, outcome: StepOutcome) -> None:
        self.observer.step_started(ctx, step, outcome)

    def step_finished(self, ctx: Any, step: Step, outcome: StepOutcome) -> None:
        self.observer.step_finished(ctx, step, outcome)

    def run_finished(self, ctx: Any, state: RunState) -> None:
        pass


class RunEventsOnly:
    """An observer's run end without its step events: what a driver whose steps run elsewhere
    (EMR) runs, since each step's job told the step-level observers itself."""

    def __init__(self, observer: StepObserver):
        self.observer = observer

    def step_started(self, ctx: Any, step: Step, outcome: StepOutcome) -> None:
        pass

    def step_finished(self, ctx: Any, step: Step, outcome: StepOutcome) -> None:
        pass

    def run_finished(self, ctx: Any, state: RunState) -> None:
        self.observer.run_finished(ctx, state)
