"""The metric catalogue (`config/metrics.yaml`) and the mapping from step outcomes to datums.

One catalogue feeds the emitters (`emitters.py`), the CloudWatch dashboard and the alarms
(`dashboards.py`). Each metric says where its value comes from (`source`, see the catalogue's
header): a StepOutcome field, a key of `outcome.details`, the step status, the DQ results, a
freshness timestamp, or the run state.

Freshness: `lag.<key>` reads `details[<key>]`, the ISO 8601 timestamp (or epoch seconds) of the
newest data in the table, and emits the seconds from it to the step's end (`ended_at`, else now).
Jobs that do not report such a timestamp emit no freshness datum (absent is not zero).
Details keys that are absent or not numeric emit no datum either.

Per partition: `partitions.<key>` reads `details[<key>]`, a mapping {partition: number} (the
Kafka job's `kafka_consumer_lag`), and emits one datum per partition with the extra dimension
`Partition`, which such a metric must list (and no other metric may).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.settings import PROJECT_ROOT, ConfigError, load_yaml, parse_typed

DEFAULT_CATALOGUE = PROJECT_ROOT / "config" / "metrics.yaml"
STEP_DIMENSIONS = ("Environment", "Layer", "Dataset")
PARTITION = "Partition"  # the dimension of `partitions.<key>` metrics, one datum per partition
LAYERS = ("bronze", "silver", "gold")
UNITS = (
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Count",
    "Percent",
    "Count/Second",
    "Bytes/Second",
    "None",
)
STEP_SOURCE = re.compile(
    r"^(outcome\.(rows_in|rows_out|seconds|attempts)|details\.\w+|lag\.\w+|partitions\.\w+|status\.failed|dq\.failures)$"
)
RUN_SOURCE = re.compile(r"^run\.(failed|seconds|steps_failed)$")
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,254}$")


@dataclass(frozen=True)
class AlarmSpec:
    statistic: Literal["Sum", "Average", "Minimum", "Maximum", "SampleCount"]
    comparison: Literal[
        "GreaterThanOrEqualToThreshold",
        "GreaterThanThreshold",
        "LessThanThreshold",
        "LessThanOrEqualToThreshold",
    ]
    threshold: float
    description: str
    period: int = 3600
    evaluation_periods: int = 1
    treat_missing_data: Literal["breaching", "notBreaching", "ignore", "missing"] = "missing"
    severity: Literal["critical", "warning"] = "warning"


@dataclass(frozen=True)
class MetricSpec:
    unit: str
    description: str
    source: str
    group: str
    dimensions: list[str] = field(default_factory=lambda: list(STEP_DIMENSIONS))
    scope: Literal["step", "run"] = "step"
    layers: list[str] = field(default_factory=lambda: list(LAYERS))
    emit_on: list[str] = field(default_factory=lambda: ["succeeded"])
    alarm: AlarmSpec | None = None
    name: str = ""


@dataclass(frozen=True)
class MetricCatalogue:
    metrics: dict[str, MetricSpec]  # in file order
    path: str = ""

    def step_metrics(self) -> list[MetricSpec]:
        return [m for m in self.metrics.values() if m.scope == "step"]

    def run_metrics(self) -> list[MetricSpec]:
        return [m for m in self.metrics.values() if m.scope == "run"]

    def groups(self) -> list[str]:
        return list(dict.fromkeys(m.group for m in self.metrics.values()))


@dataclass(frozen=True)
class MetricDatum:
    name: str
    value: float
    unit: str
    dimensions: dict[str, str]
    timestamp: datetime

    def to_cloudwatch(self) -> dict[str, Any]:
        """One entry of PutMetricData's MetricData."""
        return {
            "MetricName": self.name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in self.dimensions.items()],
            "Timestamp": self.timestamp,
            "Value": float(self.value),
            "Unit": self.unit,
        }

    def to_dict(self) -> dict[str, Any]:
        ts = self.timestamp.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {
            "metric": self.name,
            "value": self.value,
            "unit": self.unit,
            "dimensions": dict(self.dimensions),
            "ts": ts,
        }


def load_metric_catalogue(path: Path | str = DEFAULT_CATALOGUE) -> MetricCatalogue:
    """Read and validate the catalogue; every problem names the file and the dotted key."""
    path = Path(path)
    try:
        raw = load_yaml(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the metric catalogue: {exc}") from exc
    entries = raw.get("metrics") if isinstance(raw, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f"{path}: metrics: expected a non-empty mapping of metric name -> definition")
    unknown_top = sorted(set(raw) - {"metrics"})
    if unknown_top:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(unknown_top)}; allowed: metrics")
    metrics: dict[str, MetricSpec] = {}
    for name, entry in entries.items():
        key = f"metrics.{name}"
        if not isinstance(name, str) or not NAME.match(name):
            raise ConfigError(f"{path}: {key}: a metric name is letters and digits, starting with a letter")
        if isinstance(entry, dict) and "name" in entry:
            raise ConfigError(f"{path}: {key}.name: the name is the mapping key, remove it")
        spec = parse_typed(MetricSpec, {**(entry or {}), "name": name}, str(path), key)
        _validate(spec, str(path), key)
        metrics[name] = spec
    return MetricCatalogue(metrics, str(path))


@lru_cache(maxsize=4)
def _cached_catalogue(path: str) -> MetricCatalogue:
    return load_metric_catalogue(path)


def default_catalogue() -> MetricCatalogue:
    return _cached_catalogue(str(DEFAULT_CATALOGUE))


def _validate(spec: MetricSpec, file: str, key: str) -> None:
    if spec.unit not in UNITS:
        raise ConfigError(
            f"{file}: {key}.unit: expected a CloudWatch unit ({', '.join(UNITS)}), got {spec.unit!r}"
        )
    pattern = RUN_SOURCE if spec.scope == "run" else STEP_SOURCE
    if not pattern.match(spec.source):
        raise ConfigError(
            f"{file}: {key}.source: {spec.source!r} is not a {spec.scope}-scope source; expected one of "
            + (
                "run.failed, run.seconds, run.steps_failed"
                if spec.scope == "run"
                else "outcome.<rows_in|rows_out|seconds|attempts>, details.<key>, lag.<key>, "
                "partitions.<key>, status.failed, dq.failures"
            )
        )
    per_partition = spec.source.startswith("partitions.")
    allowed_dims = ("Environment",) if spec.scope == "run" else STEP_DIMENSIONS
    if per_partition:
        allowed_dims = (*allowed_dims, PARTITION)
    bad = [d for d in spec.dimensions if d not in allowed_dims]
    if bad or "Environment" not in spec.dimensions or len(set(spec.dimensions)) != len(spec.dimensions):
        raise ConfigError(
            f"{file}: {key}.dimensions: expected distinct names among {', '.join(allowed_dims)}, "
            f"including Environment; got {spec.dimensions}"
        )
    if per_partition and PARTITION not in spec.dimensions:
        raise ConfigError(
            f"{file}: {key}.dimensions: a partitions.<key> source emits one datum per partition: add {PARTITION}"
        )
    if per_partition and spec.alarm is not None:
        raise ConfigError(
            f"{file}: {key}.alarm: per-partition series are not known before the job runs, so they "
            "cannot be alarmed one by one; alarm on a details.<key> total instead"
        )
    bad_layers = [layer for layer in spec.layers if layer not in LAYERS]
    if bad_layers or not spec.layers:
        raise ConfigError(f"{file}: {key}.layers: expected some of {', '.join(LAYERS)}, got {spec.layers}")
    bad_status = [s for s in spec.emit_on if s not in ("succeeded", "failed")]
    if bad_status or not spec.emit_on:
        raise ConfigError(f"{file}: {key}.emit_on: expected some of succeeded, failed, got {spec.emit_on}")
    if spec.alarm is not None:
        if spec.alarm.period < 10 or (spec.alarm.period >= 60 and spec.alarm.period % 60):
            raise ConfigError(f"{file}: {key}.alarm.period: 10, 30 or a multiple of 60 seconds")
        if spec.alarm.evaluation_periods < 1:
            raise ConfigError(f"{file}: {key}.alarm.evaluation_periods: at least 1")


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def dq_results(outcome: Any) -> list[dict[str, Any]]:
    """The DQ results of a step: `details["dq"]`, a list of {rule, severity, passed, ...}."""
    dq = (outcome.details or {}).get("dq")
    return [r for r in dq if isinstance(r, dict)] if isinstance(dq, list) else []


def _step_value(spec: MetricSpec, outcome: Any, end: datetime) -> float | None:
    kind, _, key = spec.source.partition(".")
    details = outcome.details or {}
    if kind == "outcome":
        return _number(getattr(outcome, key, None))
    if kind == "details":
        return _number(details.get(key))
    if kind == "status":
        return 1.0 if outcome.status == "failed" else 0.0
    if kind == "dq":
        return float(sum(1 for r in dq_results(outcome) if r.get("passed") is False))
    if kind == "lag":
        newest = _parse_time(details.get(key))
        return None if newest is None else max(0.0, (end - newest).total_seconds())
    return None


def _dimensions(
    spec: MetricSpec, env: str, layer: str = "", dataset: str = "", partition: str = ""
) -> dict[str, str]:
    values = {"Environment": env, "Layer": layer, "Dataset": dataset, PARTITION: partition}
    return {d: values[d] for d in spec.dimensions}


def _partition_values(spec: MetricSpec, outcome: Any) -> list[tuple[str, float]]:
    """(partition, value) of a `partitions.<key>` metric, in partition order; non-numbers skipped."""
    values = (outcome.details or {}).get(spec.source.partition(".")[2])
    if not isinstance(values, dict):
        return []
    found = [(str(p), _number(v)) for p, v in values.items()]
    ordered = sorted(found, key=lambda pv: (len(pv[0]), pv[0]))  # "2" before "10"
    return [(p, v) for p, v in ordered if v is not None]


def metrics_for(
    step: Any, outcome: Any, env: str, catalogue: MetricCatalogue | None = None
) -> list[MetricDatum]:
    """The datums of one finished step: layer = step.job, dataset = step.dataset.

    Only metrics whose `layers` include the step's layer and whose `emit_on` includes the
    outcome's status; pending/running/skipped outcomes emit nothing."""
    catalogue = catalogue or default_catalogue()
    end = _parse_time(outcome.ended_at) or datetime.now(UTC)
    out = []
    for spec in catalogue.step_metrics():
        if step.job not in spec.layers or outcome.status not in spec.emit_on:
            continue
        if spec.source.startswith("partitions."):
            out.extend(
                MetricDatum(
                    spec.name, value, spec.unit, _dimensions(spec, env, step.job, step.dataset, p), end
                )
                for p, value in _partition_values(spec, outcome)
            )
            continue
        value = _step_value(spec, outcome, end)
        if value is None:
            continue
        out.append(
            MetricDatum(spec.name, value, spec.unit, _dimensions(spec, env, step.job, step.dataset), end)
        )
    return out


def run_metrics_for(state: Any, env: str, catalogue: MetricCatalogue | None = None) -> list[MetricDatum]:
    """The run-level datums (scope: run) of a finished run."""
    catalogue = catalogue or default_catalogue()
    end = _parse_time(state.ended_at) or datetime.now(UTC)
    start = _parse_time(state.started_at)
    values = {
        "run.failed": 0.0 if state.status == "succeeded" else 1.0,
        "run.seconds": max(0.0, (end - start).total_seconds()) if start else None,
        "run.steps_failed": float(sum(1 for s in state.steps if s.status == "failed")),
    }
    return [
        MetricDatum(spec.name, values[spec.source], spec.unit, _dimensions(spec, env), end)
        for spec in catalogue.run_metrics()
        if values.get(spec.source) is not None
    ]
