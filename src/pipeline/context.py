"""What every step gets: settings, the shared SparkSession, the lake, the catalogue, ids."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property
from typing import Literal

from pyspark.sql import SparkSession

from pipeline.catalog import Catalog, load_catalog
from pipeline.contracts.model import Contract, load_contracts, reference_values
from pipeline.lake import Lake, open_lake
from pipeline.run_id import batch_id, new_run_id
from pipeline.settings import Settings
from pipeline.spark import build_spark

# The Kafka job's trigger: available-now (drain what is there, then end) or continuous.
StreamTrigger = Literal["available-now", "continuous"]


@dataclass
class RunContext:
    settings: Settings
    spark: SparkSession
    lake: Lake
    catalog: Catalog
    run_id: str = field(default_factory=new_run_id)
    as_of: date | None = None  # gold's reference date; None: the latest event date in the data
    stream_trigger: StreamTrigger = "available-now"
    started: datetime = field(default_factory=lambda: datetime.now(UTC))  # orders custom run ids' batches

    @classmethod
    def create(cls, settings: Settings, run_id: str | None = None) -> RunContext:
        spark = build_spark(settings)
        lake = open_lake(
            settings.lake.engine,
            spark,
            settings.lake.storage_options,
            max_bytes=settings.lake.delta_rs_max_bytes,
        )
        catalog = load_catalog(settings.config_path(settings.datasets_file))
        settings.check_sources(catalog.datasets)
        return cls(settings, spark, lake, catalog, run_id or new_run_id())

    @cached_property
    def contracts(self) -> dict[str, Contract]:
        s = self.settings
        return load_contracts(s.config_path(s.contracts_dir), s.config_path(s.reference_dir))

    def for_step(self) -> RunContext:
        """A copy for one step run beside others: a clone of the run's SparkSession (its SQL conf
        at this moment, then its own: the lake's DML sets commit metadata and Txn in the session
        conf for one operation; the SparkContext and the cache are shared) and the lake on it."""
        step = copy.copy(self)  # the contracts already parsed come along
        # cloneSession (Spark-internal, 3.x and 4.x alike) keeps the conf set at run time;
        # newSession would start from the SparkContext's.
        step.spark = SparkSession(self.spark.sparkContext, self.spark._jsparkSession.cloneSession())
        step.lake = self.lake.on_session(step.spark)
        return step

    def references(self, contract: Contract) -> dict[str, tuple[str, ...]]:
        ref_dir = self.settings.config_path(self.settings.reference_dir)
        return {
            c.reference: reference_values(ref_dir, c.reference)
            for c in contract.columns.values()
            if c.reference
        }

    def table_path(self, layer: str, name: str) -> str:
        return self.settings.lake.path(layer, name)

    def landing_root(self) -> str:
        return self.settings.lake.path("landing")

    def landing_path(self, dataset: str) -> str:
        return f"{self.landing_root()}/{self.catalog[dataset].landing}"

    def checkpoint_path(self, name: str) -> str:
        return self.settings.lake.path("_checkpoints", name)

    def batch_id(self, dataset: str) -> str:
        """The `_batch_id` of what this run writes for `dataset`, ordered by time (pipeline.run_id)."""
        return batch_id(self.run_id, dataset, self.started)
