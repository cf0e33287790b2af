"""Observability: JSON logs, the metric catalogue and its emitters, dashboards, alarms, alerts.

- `logging`: `configure_json_logging`, `log_context`, `LogContextObserver`.
- `metrics`: the catalogue (`config/metrics.yaml`) and `metrics_for` (outcome -> datums).
- `emitters`: `FileEmitter`, `CloudWatchEmitter`, `NoneEmitter`, `emitter_for`, `MetricsObserver`.
- `dashboards`: CloudWatch dashboard and alarm definitions rendered from the catalogue.
- `alerts`: `AlertObserver` (SNS and / or a webhook).

Nothing here imports pyspark.
"""
