"""CloudWatch dashboard and alarm definitions, rendered from the metric catalogue.

`python -m pipeline.observability.dashboards --write` writes, for dev and prod,
`aws/terraform/generated/dashboard_<env>.json` (a dashboard body) and `alarms_<env>.json`
(a list of PutMetricAlarm-shaped definitions, sorted by AlarmName). `--check` exits 1 when the
committed files differ from a fresh rendering (a unit test does the same).

The files are Terraform templates: `${aws_region}` (widget region) and `${sns_topic_arn}`
(alarm actions) are left for `templatefile()` to fill. The namespace comes from each
environment's `metrics.namespace`. Datasets per layer: bronze = config/datasets.yaml,
silver = config/contracts/*.yaml, gold = the gold steps of config/pipeline.yaml. Per-partition
metrics (dimension Partition, e.g. KafkaConsumerLag) have series known only at run time: their
widget line is a SEARCH expression over the layer, which draws every partition that reported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from pipeline.observability.metrics import (
    LAYERS,
    PARTITION,
    MetricCatalogue,
    MetricSpec,
    load_metric_catalogue,
)
from pipeline.settings import PROJECT_ROOT, ConfigError, load_settings, load_yaml

GENERATED_DIR = PROJECT_ROOT / "aws" / "terraform" / "generated"
CONFIG_DIR = PROJECT_ROOT / "config"
AWS_ENVS = ("dev", "prod")
REGION_VAR = "${aws_region}"
SNS_TOPIC_VAR = "${sns_topic_arn}"
REGENERATE = "python -m pipeline.observability.dashboards --write"
WIDGET_WIDTH, WIDGET_HEIGHT, PER_ROW = 12, 6, 2


def layer_datasets(config_dir: Path = CONFIG_DIR) -> dict[str, list[str]]:
    """The datasets of each layer, sorted."""
    datasets_file = config_dir / "datasets.yaml"
    pipeline_file = config_dir / "pipeline.yaml"
    try:
        bronze = sorted((load_yaml(datasets_file.read_text()) or {}).get("datasets") or {})
        steps = (load_yaml(pipeline_file.read_text()) or {}).get("steps") or {}
    except (OSError, yaml.YAMLError, AttributeError) as exc:
        raise ConfigError(f"{config_dir}: cannot read datasets.yaml / pipeline.yaml: {exc}") from exc
    silver = sorted(p.stem for p in (config_dir / "contracts").glob("*.yaml"))
    gold = sorted({s["dataset"] for s in steps.values() if isinstance(s, dict) and s.get("job") == "gold"})
    return {"bronze": bronze, "silver": silver, "gold": gold}


def namespace_for(env: str, config_dir: Path = CONFIG_DIR) -> str:
    return load_settings(env, config_dir=config_dir).metrics.namespace


def _series(spec: MetricSpec, env: str, datasets: dict[str, list[str]]) -> list[tuple[str, dict[str, str]]]:
    """(suffix for names, dimensions) of every series of a metric, deterministic order."""
    if "Dataset" not in spec.dimensions and "Layer" not in spec.dimensions:
        return [("", {"Environment": env})]
    out = []
    for layer in LAYERS:
        if layer not in spec.layers:
            continue
        if "Dataset" not in spec.dimensions:
            out.append((layer, {"Environment": env, "Layer": layer}))
            continue
        for dataset in datasets.get(layer, []):
            values = {"Environment": env, "Layer": layer, "Dataset": dataset}
            suffix = f"{layer}-{dataset}" if "Layer" in spec.dimensions else dataset
            out.append((suffix, {d: values[d] for d in spec.dimensions}))
    return out


def _search(spec: MetricSpec, env: str, namespace: str, layer: str) -> str:
    """A CloudWatch SEARCH over every series of a per-partition metric in one layer."""
    schema = ",".join([json.dumps(namespace), *spec.dimensions])
    return (
        f'SEARCH(\'{{{schema}}} MetricName="{spec.name}" Environment="{env}" Layer="{layer}"\', '
        f"'{_stat(spec)}', 3600)"
    )


def _stat(spec: MetricSpec) -> str:
    if spec.alarm is not None:
        return spec.alarm.statistic
    if PARTITION in spec.dimensions:  # a level per partition (lag), not counts to add up
        return "Maximum"
    return "Sum" if spec.unit == "Count" else "Maximum"


def render_dashboard(
    catalogue: MetricCatalogue,
    env: str,
    *,
    namespace: str | None = None,
    datasets: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """A CloudWatch dashboard body: one widget per metric group and layer (run-scope groups: one
    widget), each listing the group's metrics for every dataset of the layer."""
    namespace = namespace or namespace_for(env)
    datasets = datasets if datasets is not None else layer_datasets()
    widgets: list[dict[str, Any]] = []
    for group in catalogue.groups():
        specs = [m for m in catalogue.metrics.values() if m.group == group]
        panels: dict[str, list[list[Any]]] = {}
        for spec in specs:
            if PARTITION in spec.dimensions:
                for layer in (x for x in LAYERS if x in spec.layers):
                    lines = panels.setdefault(layer, [])
                    expression = _search(spec, env, namespace, layer)
                    lines.append([{"expression": expression, "id": f"e{len(lines) + 1}", "label": spec.name}])
                continue
            for _suffix, dims in _series(spec, env, datasets):
                layer = dims.get("Layer", "")
                line: list[Any] = [namespace, spec.name]
                for name, value in dims.items():
                    line += [name, value]
                label = " ".join(x for x in (spec.name, dims.get("Dataset", "")) if x)
                line.append({"stat": _stat(spec), "label": label})
                panels.setdefault(layer, []).append(line)
        for layer, lines in panels.items():
            index = len(widgets)
            widgets.append(
                {
                    "type": "metric",
                    "x": (index % PER_ROW) * WIDGET_WIDTH,
                    "y": (index // PER_ROW) * WIDGET_HEIGHT,
                    "width": WIDGET_WIDTH,
                    "height": WIDGET_HEIGHT,
                    "properties": {
                        "title": f"{group} - {layer}" if layer else group,
                        "region": REGION_VAR,
                        "view": "timeSeries",
                        "stacked": False,
                        "period": 3600,
                        "metrics": lines,
                    },
                }
            )
    return {"widgets": widgets}


def render_alarms(
    catalogue: MetricCatalogue,
    env: str,
    *,
    namespace: str | None = None,
    datasets: dict[str, list[str]] | None = None,
) -> list[dict[str, Any]]:
    """PutMetricAlarm-shaped definitions: one per catalogue alarm and series, actions to the SNS
    topic (`${sns_topic_arn}`), severity as a tag."""
    namespace = namespace or namespace_for(env)
    datasets = datasets if datasets is not None else layer_datasets()
    alarms = []
    for spec in catalogue.metrics.values():
        alarm = spec.alarm
        if alarm is None:
            continue
        for suffix, dims in _series(spec, env, datasets):
            name = "-".join(x for x in ("lakehouse", env, spec.name, suffix) if x)
            alarms.append(
                {
                    "AlarmName": name,
                    "AlarmDescription": f"[{alarm.severity}] {alarm.description} ({spec.name}: {spec.description})",
                    "Namespace": namespace,
                    "MetricName": spec.name,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
                    "Statistic": alarm.statistic,
                    "Period": alarm.period,
                    "EvaluationPeriods": alarm.evaluation_periods,
                    "Threshold": float(alarm.threshold),
                    "ComparisonOperator": alarm.comparison,
                    "TreatMissingData": alarm.treat_missing_data,
                    "ActionsEnabled": True,
                    "AlarmActions": [SNS_TOPIC_VAR],
                    "OKActions": [SNS_TOPIC_VAR] if alarm.severity == "critical" else [],
                    "Tags": [
                        {"Key": "severity", "Value": alarm.severity},
                        {"Key": "environment", "Value": env},
                    ],
                }
            )
    return sorted(alarms, key=lambda a: a["AlarmName"])


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def rendered_files(catalogue: MetricCatalogue | None = None, config_dir: Path = CONFIG_DIR) -> dict[str, str]:
    """File name -> content of every generated file."""
    catalogue = catalogue or load_metric_catalogue(config_dir / "metrics.yaml")
    datasets = layer_datasets(config_dir)
    files = {}
    for env in AWS_ENVS:
        namespace = namespace_for(env, config_dir)
        files[f"dashboard_{env}.json"] = dumps(
            render_dashboard(catalogue, env, namespace=namespace, datasets=datasets)
        )
        files[f"alarms_{env}.json"] = dumps(
            render_alarms(catalogue, env, namespace=namespace, datasets=datasets)
        )
    return files


def drift(out_dir: Path = GENERATED_DIR, config_dir: Path = CONFIG_DIR) -> list[str]:
    """The generated files that are missing or differ from a fresh rendering."""
    stale = []
    for name, text in rendered_files(config_dir=config_dir).items():
        path = out_dir / name
        if not path.exists() or path.read_text() != text:
            stale.append(str(path))
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="write the generated files")
    mode.add_argument("--check", action="store_true", help="exit 1 when the committed files drift")
    parser.add_argument("--out", type=Path, default=GENERATED_DIR)
    parser.add_argument("--config-dir", type=Path, default=CONFIG_DIR)
    args = parser.parse_args(argv)
    if args.write:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, text in rendered_files(config_dir=args.config_dir).items():
            (args.out / name).write_text(text)
            print(f"wrote {args.out / name}")
        return 0
    stale = drift(args.out, args.config_dir)
    for path in stale:
        print(f"out of date: {path}", file=sys.stderr)
    if stale:
        print(f"regenerate with: {REGENERATE}", file=sys.stderr)
        return 1
    print("generated CloudWatch definitions match config/metrics.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
