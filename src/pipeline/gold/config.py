"""config/marts.yaml: per-mart options of the gold business rules, and how gold updates
incrementally (`incremental`), validated on load.

A mart's options (the section named after it) are part of its build fingerprint
(`marts.build_gold`), so changing one rebuilds the mart on the next run; `incremental` changes how
a mart is written, never what it holds, so it is in no fingerprint. A missing file, section or key
means the default, which is always the brief's rule. Every problem is a ConfigError naming the
file and the dotted key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from pipeline.settings import ConfigError, load_yaml, parse_typed

MARTS_FILE = "marts.yaml"

BeforeFirstVersion = Literal["unknown", "earliest"]


@dataclass(frozen=True)
class FctOrdersOptions:
    # An order placed before its account's first SCD2 version: `unknown` (no version in force:
    # null segment/country, the brief) or `earliest` (late-arriving dimension: the first version).
    before_first_version: BeforeFirstVersion = "unknown"


@dataclass(frozen=True)
class IncrementalOptions:
    # Above this share (0 to 1) of fct_orders' rows written by an increment, it is rebuilt in full
    # instead (which then costs less): the new orders and every row of a file holding a replaced
    # one (a MERGE rewrites a file whole). The per-date marts do not weigh it.
    rebuild_above_share: float = 0.25
    # A mart whose main inputs hold fewer rows is rebuilt in full: finding the changed rows has a
    # fixed cost (change feeds, earlier versions, their snapshots) that a rebuild of this size
    # does not reach (docs/performance.md). 0: always incremental where the mart has a rule.
    rebuild_below_rows: int = 1_000_000

    def __post_init__(self) -> None:
        if not 0 <= self.rebuild_above_share <= 1:
            raise ConfigError(
                f"rebuild_above_share: expected a share in [0, 1], got {self.rebuild_above_share}"
            )
        if self.rebuild_below_rows < 0:
            raise ConfigError(
                f"rebuild_below_rows: expected a whole number of rows >= 0, got {self.rebuild_below_rows!r}"
            )


@dataclass(frozen=True)
class MartsConfig:
    fct_orders: FctOrdersOptions = field(default_factory=FctOrdersOptions)
    # How gold updates incrementally: not a business rule, so not in any mart's fingerprint.
    incremental: IncrementalOptions = field(default_factory=IncrementalOptions)


_CACHE: dict[tuple[str, float], MartsConfig] = {}


def load_marts_config(config_dir: Path) -> MartsConfig:
    """Parse and validate `<config_dir>/marts.yaml` once per file version."""
    path = Path(config_dir) / MARTS_FILE
    if not path.exists():
        return MartsConfig()
    key = (str(path), path.stat().st_mtime)
    if key not in _CACHE:
        try:
            raw = load_yaml(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read: {exc}") from exc
        _CACHE[key] = parse_typed(MartsConfig, raw, str(path), "")
    return _CACHE[key]
