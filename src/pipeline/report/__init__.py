"""The run report: one self-contained HTML file per run under `<lake>/_ops/reports/`."""

from pipeline.report.html import render_report
from pipeline.report.observer import ReportObserver

__all__ = ["ReportObserver", "render_report"]
