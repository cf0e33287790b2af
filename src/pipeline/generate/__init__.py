"""Deterministic generator of a realistic landing zone for the seven source datasets.

`generate()` writes CRM CSV exports, Snowflake and Redshift Parquet unloads, vendor FX JSON and
Kafka replay files under `landing_root`, with defects injected at `defect_rate`, plus
`_manifest.json` stating exactly how many files, records and defects of each type every dataset
holds, which is what the pipeline's reconciliation and quality tests check against.

Determinism: every dataset draws from its own `numpy.random.default_rng([seed, stream])`, and its
defects from `[seed, stream, 1]`, so changing one dataset (or the defect rate) leaves the others'
clean data unchanged. No wall clock, no Python hash(), files written in sorted order.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from . import activity, datasets, entities
from .timeline import Period

GENERATOR_VERSION = 1
MANIFEST_NAME = "_manifest.json"
MIN_DAYS = 7

__all__ = ["GENERATOR_VERSION", "MANIFEST_NAME", "Volumes", "generate"]


@dataclass(frozen=True)
class Volumes:
    """Entity counts; scale 1 gives about one million landing records in total."""

    accounts: int
    contacts: int
    opportunities: int
    users: int
    orders: int
    behavior_events: int
    product_events: int

    @classmethod
    def at(cls, scale: float) -> Volumes:
        def n(base: int, minimum: int = 1) -> int:
            return max(minimum, round(base * scale))

        return cls(
            accounts=n(5_000, 20),
            contacts=n(18_000),
            opportunities=n(9_500),
            users=n(15_000),
            orders=n(120_000),
            behavior_events=n(540_000),
            product_events=n(230_000),
        )


# Stream numbers are part of the output contract: renumbering changes every generated file.
_STREAM = {
    "crm_accounts": 1,
    "crm_contacts": 2,
    "crm_opportunities": 3,
    "snowflake_orders": 4,
    "redshift_behavior": 5,
    "fx_rates": 6,
    "kafka_events": 7,
    "users": 8,
}


def _rng(seed: int, name: str, *sub: int) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAM[name], *sub])


def generate(
    landing_root: Path,
    scale: float = 1.0,
    seed: int = 42,
    defect_rate: float = 0.01,
    days: int = 90,
    end_date: date = date(2026, 9, 30),
    skew: bool = False,
) -> dict:
    """Write the landing zone for `days` days ending at `end_date` (inclusive) and return the manifest.

    `skew`: orders concentrated on a few accounts (Zipf's law) and on one hot day, to see joins
    and aggregates under skew; off, the sample is exactly what it always was. Only the orders
    change; the manifest then says `"skew": true`.

    Existing output of the seven datasets under `landing_root` becomes exactly what this call
    generates: a file whose bytes are unchanged is left as it is, modification time included
    (bronze takes a rewritten file as a new delivery, so generating the same landing zone again
    re-delivers nothing), a changed one is replaced, one no longer generated is removed. Anything
    else there is left alone.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if not 0 <= defect_rate <= 0.5:
        raise ValueError(f"defect_rate must be within [0, 0.5], got {defect_rate}")
    if days < MIN_DAYS:
        raise ValueError(f"days must be at least {MIN_DAYS}, got {days}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")

    root = Path(landing_root).absolute()
    root.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the landing zone (hidden, one file system: moves are renames), then synced in.
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-generating-", dir=root.parent))
    try:
        manifest = _write(staging, scale, seed, defect_rate, days, end_date, skew)
        for path in datasets.ALL_PATHS:
            _sync(staging / path, root / path)
        _sync_file(staging / MANIFEST_NAME, root / MANIFEST_NAME)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _sync(staged: Path, target: Path) -> None:
    """Make folder `target` hold exactly `staged`'s files, leaving alone those already equal."""
    keep = {p.relative_to(staged) for p in staged.rglob("*") if p.is_file()} if staged.exists() else set()
    if target.exists():
        for old in sorted(target.rglob("*"), reverse=True):  # files before their folders
            if old.is_file() and old.relative_to(target) not in keep:
                old.unlink()
            elif old.is_dir() and not any(old.iterdir()):
                old.rmdir()
    for relative in sorted(keep):
        _sync_file(staged / relative, target / relative)


def _sync_file(staged: Path, target: Path) -> None:
    if target.is_file() and filecmp.cmp(staged, target, shallow=False):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, target)


def _write(
    root: Path, scale: float, seed: int, defect_rate: float, days: int, end_date: date, skew: bool
) -> dict:
    """Generate the landing zone under `root` (empty), manifest included; return the manifest."""
    period = Period(end_date, days)
    volumes = Volumes.at(scale)
    accounts = entities.build_accounts(_rng(seed, "crm_accounts"), volumes.accounts, period)
    users = entities.build_users(_rng(seed, "users"), volumes.users, accounts)
    histories = {
        "crm_accounts": accounts.history,
        "crm_contacts": entities.build_contacts(
            _rng(seed, "crm_contacts"), volumes.contacts, accounts, period
        ),
        "crm_opportunities": entities.build_opportunities(
            _rng(seed, "crm_opportunities"), volumes.opportunities, accounts, period
        ),
    }

    def defects_rng(name: str) -> np.random.Generator:
        return _rng(seed, name, 1)

    results = {
        name: datasets.crm(root, source, histories[name], period, defects_rng(name), defect_rate)
        for name, source in datasets.CRM_SOURCES.items()
    }
    results["snowflake_orders"] = datasets.daily_parquet(
        root,
        datasets.ORDERS,
        activity.build_orders(_rng(seed, "snowflake_orders"), volumes.orders, accounts, period, skew),
        period,
        defects_rng("snowflake_orders"),
        defect_rate,
    )
    results["redshift_behavior"] = datasets.daily_parquet(
        root,
        datasets.BEHAVIOR,
        activity.build_behavior(
            _rng(seed, "redshift_behavior"), volumes.behavior_events, users, accounts, period
        ),
        period,
        defects_rng("redshift_behavior"),
        defect_rate,
    )
    results["fx_rates"] = datasets.fx(
        root,
        activity.build_fx_rates(_rng(seed, "fx_rates"), period),
        period,
        defects_rng("fx_rates"),
        defect_rate,
    )
    results["kafka_events"] = datasets.kafka(
        root,
        activity.build_product_events(
            _rng(seed, "kafka_events"), volumes.product_events, users, accounts, period
        ),
        defects_rng("kafka_events"),
        defect_rate,
    )

    manifest = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "scale": scale,
        "defect_rate": defect_rate,
        "days": days,
        "start_date": period.start.isoformat(),
        "end_date": period.end.isoformat(),
        "datasets": {name: result.manifest() for name, result in sorted(results.items())},
    }
    if skew:  # only then, so the default manifest stays byte for byte what it was
        manifest["skew"] = True
    (root / MANIFEST_NAME).write_text(json.dumps(manifest, sort_keys=True, indent=2) + "\n", encoding="utf-8")
    return manifest
