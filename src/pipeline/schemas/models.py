"""Pydantic models of the configuration files, derived from the dataclasses their loaders build
(`pipeline.settings`, `catalog`, `contracts.model`, `dq.config`, `gold.config`, `maintenance`,
`observability.metrics`, `driver.dag`, `erase`), so a field added to a loader is in its schema at once.

A model accepts what its loader's `parse_typed` accepts: the same keys, required fields, types
(strict: no "3" for 3, no true for 1; an int where a float is expected), literals and lists.
Keys a loader fills itself (a mapping entry's `name`, `config_dir`) are not in the file, so not
in the model. The loaders' cross-field rules (`__post_init__`, contract references, the DAG's
dependencies, patterns of names) stay in the loaders: a schema checks the shape of a file.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from pipeline.catalog import DatasetSpec
from pipeline.contracts.model import Column, Contract
from pipeline.dq.config import DqConfig, GoldRules
from pipeline.driver.dag import Step
from pipeline.driver.retry import RetryPolicy
from pipeline.erase import ErasureConfig
from pipeline.gold.config import MartsConfig
from pipeline.jobs import JOBS
from pipeline.maintenance import MaintenanceConfig
from pipeline.observability.metrics import NAME as METRIC_NAME
from pipeline.observability.metrics import MetricSpec
from pipeline.settings import Settings

# parse_typed reads a mapping of strings (spark.conf, storage_options) as str(value) each.
Scalar = str | int | float | bool
STRICT = ConfigDict(extra="forbid", strict=True)
JOB = Literal[tuple(JOBS)]  # the job kinds the driver runs (load_dag checks the same)
_COMMENT = re.compile(r"^\s*#\s?(.*)$")
_FIELD = re.compile(r"^\s+(\w+)\s*:[^#]*?(?:#\s*(.*))?$")


def _field_comments(dc: type) -> dict[str, str]:
    """The comments beside or just above each field of a dataclass: the schema's descriptions
    (what an editor shows on hover)."""
    comments: dict[str, str] = {}
    above: list[str] = []
    for line in inspect.getsource(dc).splitlines()[1:]:
        if match := _COMMENT.match(line):
            above.append(match.group(1).strip())
        elif (match := _FIELD.match(line)) and not line.strip().startswith(("def ", "@", '"')):
            text = " ".join([*above, match.group(2) or ""]).strip()
            if text:
                comments[match.group(1)] = text
            above = []
        else:
            above = []
    return comments


def _annotation(tp: Any) -> Any:
    """The pydantic annotation of a loader's field type."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        translated = tuple(_annotation(a) for a in args)
        return typing.Union[translated]  # noqa: UP007 (a tuple of members, built at run time)
    if origin is list:
        return list[_annotation(args[0])]
    if origin is dict:
        return dict[str, Scalar] if args[1] is str else dict[str, _annotation(args[1])]
    if dataclasses.is_dataclass(tp):
        return model_of(tp)
    return tp


def _json_default(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return all(_json_default(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_default(v) for k, v in value.items())
    return value is None or isinstance(value, str | int | float | bool)


@cache
def model_of(dc: type, drop: frozenset[str] = frozenset(), **overrides: Any) -> type[BaseModel]:
    """The strict model of dataclass `dc` without the fields in `drop`; `overrides` replace a
    field's annotation where the loader parses that field differently."""
    hints = typing.get_type_hints(dc)
    comments = _field_comments(dc)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(dc):
        if f.name in drop:
            continue
        annotation = overrides.get(f.name) or _annotation(hints[f.name])
        info: dict[str, Any] = {"description": comments.get(f.name)}
        if f.default is not dataclasses.MISSING:
            info["default"] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            made = f.default_factory()
            if _json_default(made):  # a default an editor can show (a list of names)
                info["default"] = made
            else:  # nested settings: the schema says only that the key is optional
                info["default_factory"] = f.default_factory
        fields[f.name] = (annotation, Field(**info))
    doc = inspect.getdoc(dc)
    generated = dc.__doc__ and dc.__doc__.startswith(f"{dc.__name__}(")  # dataclass's own repr-like doc
    return create_model(dc.__name__, __config__=STRICT, __doc__=None if generated else doc, **fields)


class SettingsFile(model_of(Settings, frozenset({"config_dir"}))):
    """config/<env>.yaml (local, dev, prod): settings of one environment."""


class DatasetsFile(BaseModel):
    """config/datasets.yaml: the bronze dataset catalogue, one entry per source."""

    model_config = STRICT
    datasets: dict[str, model_of(DatasetSpec, frozenset({"name"}))] = Field(min_length=1)


class ContractFile(model_of(Contract, columns=dict[str, model_of(Column, frozenset({"name"}))])):
    """config/contracts/<dataset>.yaml: the data contract of one silver dataset."""


class DqFile(model_of(DqConfig, gold=dict[str, model_of(GoldRules, allowed=dict[str, list[Scalar]])])):
    """config/dq.yaml: the data-quality gates."""


class MartsFile(model_of(MartsConfig)):
    """config/marts.yaml: options of the gold business rules, per mart."""


class MaintenanceFile(model_of(MaintenanceConfig)):
    """config/maintenance.yaml: table maintenance (compaction, Z-order, checkpoints, VACUUM)."""


class MetricsFile(BaseModel):
    """config/metrics.yaml: the metric catalogue (emitters, dashboards, alarms)."""

    model_config = STRICT
    metrics: dict[
        Annotated[str, Field(pattern=METRIC_NAME.pattern)], model_of(MetricSpec, frozenset({"name"}))
    ] = Field(min_length=1)


class PipelineFile(BaseModel):
    """config/pipeline.yaml: the DAG of steps and the retry policy."""

    model_config = STRICT
    retry: model_of(RetryPolicy) | None = None
    steps: dict[str, model_of(Step, frozenset({"name"}), job=JOB)] = Field(min_length=1)


class ErasureFile(model_of(ErasureConfig)):
    """config/erasure.yaml: the columns of each silver dataset that identify a person."""
