"""What watches a run: log context, lineage, metrics, alerts, GX Data Docs, the HTML report."""

from __future__ import annotations

from pipeline.settings import Settings


def observers_for(settings: Settings, dag, scope: str = "all") -> list:
    """Everything that watches a run: log context, lineage, metrics, alerts, the GX Data Docs
    and, last because it reads what the others wrote, the HTML run report.

    `scope`: "all" (a run in this process), "step" (a `--member` job: the step's lineage,
    metrics and alerts only) or "run" (a driver whose steps run on EMR: the pipeline's lineage,
    the run's metrics, the run_failed alert, Data Docs from every job's validations, the report)."""
    from pipeline.dq.docs import DataDocsObserver
    from pipeline.driver.observers import RunEventsOnly, StepEventsOnly
    from pipeline.lineage import LineageObserver
    from pipeline.observability.alerts import AlertObserver
    from pipeline.observability.emitters import MetricsObserver
    from pipeline.observability.logging import LogContextObserver
    from pipeline.report import ReportObserver

    if scope == "step":
        return [
            LogContextObserver(),
            LineageObserver(settings, pipeline_events=False),
            StepEventsOnly(MetricsObserver(settings)),
            StepEventsOnly(AlertObserver(settings)),
        ]
    if scope == "run":
        return [
            LogContextObserver(),
            LineageObserver(settings, step_events=False),
            RunEventsOnly(MetricsObserver(settings)),
            RunEventsOnly(AlertObserver(settings)),
            DataDocsObserver(),
            ReportObserver(settings, dag),
        ]
    return [
        LogContextObserver(),
        LineageObserver(settings),
        MetricsObserver(settings),
        AlertObserver(settings),
        DataDocsObserver(),
        ReportObserver(settings, dag),
    ]


def report_path(observers: list) -> str | None:
    """Where the run's HTML report was written, if an observer wrote one."""
    return next((o.last_report_path for o in observers if hasattr(o, "last_report_path")), None)
