"""config/dq.yaml: the gates' switch, thresholds and per-dataset rules, validated on load.

Every problem is a ConfigError naming the file and the dotted key (pipeline.settings.parse_typed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from pipeline.settings import ConfigError, load_yaml, parse_typed

Severity = Literal["warn", "critical"]
SEVERITIES = ("warn", "critical")


@dataclass(frozen=True)
class Thresholds:
    """Ratio thresholds: above `warn` is a warn result, above `critical` a critical one."""

    warn: float | None = None
    critical: float | None = None


@dataclass(frozen=True)
class RowCount:
    min: int | None = None
    max: int | None = None
    severity: Severity = "critical"


@dataclass(frozen=True)
class Defaults:
    quarantine_ratio: Thresholds = field(default_factory=lambda: Thresholds(0.05, 0.5))
    rule_ratio: Thresholds = field(default_factory=lambda: Thresholds(0.05, None))
    contract_severity: Severity = "critical"
    row_count: RowCount = field(default_factory=lambda: RowCount(min=1))
    volume_change: Thresholds = field(default_factory=lambda: Thresholds(0.5, None))


@dataclass(frozen=True)
class Reference:
    """`column` of this dataset must name a `to_column` value of silver `dataset`."""

    column: str
    dataset: str
    to_column: str
    max_ratio: float = 0.0  # share of distinct orphan values tolerated
    severity: Severity = "warn"


@dataclass(frozen=True)
class Freshness:
    max_age_days: float
    severity: Severity = "warn"


@dataclass(frozen=True)
class Range:
    min: float | None = None
    max: float | None = None
    strict_min: bool = False
    strict_max: bool = False


@dataclass(frozen=True)
class SilverRules:
    references: list[Reference] = field(default_factory=list)
    freshness: Freshness | None = None
    quarantine_ratio: Thresholds | None = None  # overrides defaults.quarantine_ratio
    row_count: RowCount | None = None


@dataclass(frozen=True)
class Count:
    """Rows matching `where` (a Spark SQL condition), counted; the rule passes up to `max`."""

    where: str
    max: int = 0
    severity: Severity = "warn"


@dataclass(frozen=True)
class GoldRules:
    unique: list[list[str]] = field(default_factory=list)  # key sets (compound when > 1 column)
    not_null: list[str] = field(default_factory=list)
    ranges: dict[str, Range] = field(default_factory=dict)
    allowed: dict[str, list[str]] = field(default_factory=dict)
    counts: dict[str, Count] = field(default_factory=dict)  # by rule name; own severity each
    row_count: RowCount | None = None
    severity: Severity = "critical"


@dataclass(frozen=True)
class DqConfig:
    enabled: bool = True
    data_docs: bool = True
    # A gated frame of at most this many rows is validated by GX's pandas engine in the driver
    # (its checked columns moved there in one Arrow transfer), larger ones by GX's Spark engine;
    # 0: Spark always (dq.gate.validate_gx).
    driver_validation_rows: int = 50_000
    defaults: Defaults = field(default_factory=Defaults)
    silver: dict[str, SilverRules] = field(default_factory=dict)
    gold: dict[str, GoldRules] = field(default_factory=dict)

    def silver_rules(self, dataset: str) -> SilverRules:
        return self.silver.get(dataset, SilverRules())

    def gold_rules(self, dataset: str) -> GoldRules:
        return self.gold.get(dataset, GoldRules())


_CACHE: dict[tuple[str, float], DqConfig] = {}


def load_dq_config(path: Path) -> DqConfig:
    """Parse and validate config/dq.yaml; a missing file means the gates are off."""
    path = Path(path)
    if not path.exists():
        return DqConfig(enabled=False)
    key = (str(path), path.stat().st_mtime)
    if key in _CACHE:
        return _CACHE[key]
    where = str(path)
    try:
        raw = load_yaml(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{where}: cannot read: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    # An empty entry (`orders:`) has no rules; allowed values are compared as text.
    silver = _mapping(raw.get("silver") or {}, where, "silver")
    gold = _mapping(raw.get("gold") or {}, where, "gold")
    raw = {
        **raw,
        "silver": {name: spec or {} for name, spec in silver.items()},
        "gold": {name: _gold_entry(spec, where, f"gold.{name}") for name, spec in gold.items()},
    }
    config = parse_typed(DqConfig, raw, where, "")
    _validate(config, where)
    _CACHE[key] = config
    return config


def _gold_entry(spec: object, where: str, key: str) -> dict:
    spec = dict(_mapping(spec or {}, where, key))
    ranges = _mapping(spec.get("ranges") or {}, where, f"{key}.ranges")
    allowed = _mapping(spec.get("allowed") or {}, where, f"{key}.allowed")
    return {
        **spec,
        "ranges": {column: r or {} for column, r in ranges.items()},
        "counts": spec.get("counts") or {},
        "allowed": {c: [str(x) for x in v] if isinstance(v, list) else v for c, v in allowed.items()},
    }


def _mapping(value: object, where: str, key: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key}: expected a mapping, got {type(value).__name__}")
    return value


def _ratio(t: Thresholds | None, where: str, key: str) -> None:
    if t is None:
        return
    for name in ("warn", "critical"):
        v = getattr(t, name)
        if v is not None and v < 0:
            raise ConfigError(f"{where}: {key}.{name}: must be >= 0, got {v}")
    if t.warn is not None and t.critical is not None and t.critical < t.warn:
        raise ConfigError(f"{where}: {key}.critical: must be >= warn ({t.warn}), got {t.critical}")


def _validate(c: DqConfig, where: str) -> None:
    if c.driver_validation_rows < 0:
        raise ConfigError(f"{where}: driver_validation_rows: must be >= 0, got {c.driver_validation_rows}")
    d = c.defaults
    _ratio(d.quarantine_ratio, where, "defaults.quarantine_ratio")
    _ratio(d.rule_ratio, where, "defaults.rule_ratio")
    _ratio(d.volume_change, where, "defaults.volume_change")
    for name, rules in c.silver.items():
        _ratio(rules.quarantine_ratio, where, f"silver.{name}.quarantine_ratio")
        for i, ref in enumerate(rules.references):
            if not 0 <= ref.max_ratio <= 1:
                raise ConfigError(
                    f"{where}: silver.{name}.references[{i}].max_ratio: must be within [0, 1], got {ref.max_ratio}"
                )
        if rules.freshness is not None and rules.freshness.max_age_days <= 0:
            raise ConfigError(f"{where}: silver.{name}.freshness.max_age_days: must be > 0")
    for name, rules in c.gold.items():
        for i, keys in enumerate(rules.unique):
            if not keys:
                raise ConfigError(f"{where}: gold.{name}.unique[{i}]: at least one column")
        for col, r in rules.ranges.items():
            if r.min is None and r.max is None:
                raise ConfigError(f"{where}: gold.{name}.ranges.{col}: give min and/or max")
        for rule, count in rules.counts.items():
            if not count.where.strip():
                raise ConfigError(f"{where}: gold.{name}.counts.{rule}.where: give a condition")
            if count.max < 0:
                raise ConfigError(f"{where}: gold.{name}.counts.{rule}.max: must be >= 0, got {count.max}")
