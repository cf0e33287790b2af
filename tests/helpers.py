"""Building run contexts for tests on a temporary lake, sharing the suite's SparkSession."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pipeline.catalog import load_catalog
from pipeline.context import RunContext
from pipeline.lake import open_lake
from pipeline.settings import load_settings

REPO = Path(__file__).resolve().parents[1]


def make_ctx(spark, lake_root: Path, run_id: str = "test-run", **settings_changes) -> RunContext:
    settings = load_settings("local", lake_root=str(lake_root), config_dir=REPO / "config")
    settings = dataclasses.replace(settings, **settings_changes)
    catalog = load_catalog(settings.config_path(settings.datasets_file))
    return RunContext(settings, spark, open_lake("delta-rs", spark), catalog, run_id)
