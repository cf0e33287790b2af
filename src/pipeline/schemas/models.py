"""Pydantic models of the configuration files, for their JSON Schemas: the models the loaders
validate with (`pipeline.typed.model_of`, derived from the dataclasses of `pipeline.settings`,
`catalog`, `contracts.model`, `dq.config`, `gold.config`, `maintenance`, `observability.metrics`,
`driver.dag`, `erase`), wrapped as whole files, so a schema accepts what its loader accepts.

Keys a loader fills itself (a mapping entry's `name`, `config_dir`) are not in the file, so not
in the model. The loaders' rules across files and entries (contract references, the DAG's
dependencies, patterns of names) stay in the loaders: a schema checks the shape of a file.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

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
from pipeline.typed import STRICT, Scalar, model_of

JOB = Literal[tuple(JOBS)]  # the job kinds the driver runs (load_dag checks the same)


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
