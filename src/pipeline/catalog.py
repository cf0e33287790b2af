"""The dataset catalogue (`config/datasets.yaml`): where each source lands and how it is read.

Interpreted once here; a new source is a catalogue entry, a reader and (later) a contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from pipeline.settings import ConfigError, parse_typed

READERS = ("csv", "parquet", "fx_json", "kafka")


@dataclass(frozen=True)
class DatasetSpec:
    source_system: str
    landing: str  # folder under <lake>/landing
    reader: Literal["csv", "parquet", "fx_json", "kafka"]
    description: str
    file_suffix: str = ""
    key: list[str] = field(default_factory=list)
    partition_by: list[str] = field(default_factory=list)
    # The source column holding each record's data time; bronze steps report its max as
    # details["newest_data_at"] (freshness). Empty: the dataset reports no data time.
    event_time: str = ""
    name: str = ""


@dataclass(frozen=True)
class Catalog:
    datasets: dict[str, DatasetSpec]

    def __getitem__(self, name: str) -> DatasetSpec:
        try:
            return self.datasets[name]
        except KeyError:
            known = ", ".join(sorted(self.datasets))
            raise ConfigError(f"unknown dataset {name!r}; the catalogue has: {known}") from None


def load_catalog(path: Path) -> Catalog:
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the dataset catalogue: {exc}") from exc
    entries = raw.get("datasets") if isinstance(raw, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f"{path}: expected a non-empty mapping under 'datasets'")
    datasets = {}
    for name, entry in entries.items():
        if isinstance(entry, dict) and "name" in entry:
            raise ConfigError(f"{path}: datasets.{name}.name: the name is the mapping key, remove it")
        spec = parse_typed(DatasetSpec, {**(entry or {}), "name": name}, str(path), f"datasets.{name}")
        datasets[name] = spec
    return Catalog(datasets)
