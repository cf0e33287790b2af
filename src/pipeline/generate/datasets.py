"""Per-dataset assembly: clean data -> defects -> landing files, and each dataset's manifest entry.

The three CRM entities share one CSV path and the two Parquet sources one daily-table path; only
their declarative specs (where files go, where defects may land) differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import vocab
from .activity import DailyTable
from .defects import (
    CsvDefects,
    TableDefects,
    inject_csv,
    inject_fx,
    inject_kafka,
    inject_table,
    truncate_text,
)
from .entities import CrmHistory
from .timeline import DAY_S, Period
from .writers import fx_text, product_event_values, write_csv, write_kafka_replay, write_parquet, write_text


@dataclass
class DatasetResult:
    path: str
    files: int
    records: int
    defects: dict[str, int]

    def manifest(self) -> dict:
        return {
            "path": self.path,
            "files": self.files,
            "records": self.records,
            "defects": dict(self.defects),
        }


@dataclass(frozen=True)
class CrmSource:
    path: str
    stem: str
    defects: CsvDefects


def _drift(entity: str) -> dict:
    column, values = vocab.CRM_DRIFT_COLUMNS[entity]
    return {"drift_column": column, "drift_values": values}


CRM_SOURCES = {
    "crm_accounts": CrmSource(
        "crm/accounts",
        "accounts",
        CsvDefects(
            key="account_id",
            dates=("created_at", "updated_at"),
            numbers=("annual_revenue",),
            empty_without_header=True,
            **_drift("accounts"),
        ),
    ),
    "crm_contacts": CrmSource(
        "crm/contacts",
        "contacts",
        CsvDefects(
            key="contact_id",
            dates=("created_at", "updated_at"),
            **_drift("contacts"),
        ),
    ),
    "crm_opportunities": CrmSource(
        "crm/opportunities",
        "opportunities",
        CsvDefects(
            key="opportunity_id",
            dates=("close_date", "created_at", "updated_at"),
            numbers=("amount", "probability"),
            currency="currency",
            **_drift("opportunities"),
        ),
    ),
}


@dataclass(frozen=True)
class ParquetSource:
    path: str
    file_name: Callable[[date], str]
    defects: TableDefects


ORDERS = ParquetSource(
    "snowflake/orders",
    lambda day: f"date={day:%Y-%m-%d}/data_0_0_0.snappy.parquet",
    TableDefects(
        key="order_id",
        drift_column="channel",
        drift_values=vocab.ORDER_CHANNELS,
        currency="currency",
        amount="amount",
        empty_file=True,
    ),
)
BEHAVIOR = ParquetSource(
    "redshift/behavior_events",
    lambda day: f"event_date={day:%Y-%m-%d}/0000_part_00.parquet",
    TableDefects(key="event_id", drift_column="referrer", drift_values=vocab.REFERRERS, late_ts="event_ts"),
)
FX_PATH = "fx"
KAFKA_PATH = "kafka/product_events"
KAFKA_TOPIC = "product_events"
ALL_PATHS = tuple(s.path for s in CRM_SOURCES.values()) + (ORDERS.path, BEHAVIOR.path, FX_PATH, KAFKA_PATH)


def crm(
    root: Path, source: CrmSource, history: CrmHistory, period: Period, rng: np.random.Generator, rate: float
) -> DatasetResult:
    files, counts = inject_csv(rng, history.header, history.daily_exports(period), source.defects, rate)
    records = sum(
        write_csv(root / source.path / f"{source.stem}_{period.date(d):%Y%m%d}.csv", f)
        for d, f in enumerate(files)
    )
    return DatasetResult(source.path, len(files), records, counts)


def daily_parquet(
    root: Path, source: ParquetSource, data: DailyTable, period: Period, rng: np.random.Generator, rate: float
) -> DatasetResult:
    files, counts = inject_table(rng, data.table, data.day, period.days, source.defects, rate)
    records = sum(
        write_parquet(root / source.path / source.file_name(period.date(d)), table)
        for d, table in sorted(files.items())
    )
    return DatasetResult(source.path, len(files), records, counts)


def fx(
    root: Path,
    rates: list[tuple[int, dict[str, float]]],
    period: Period,
    rng: np.random.Generator,
    rate: float,
) -> DatasetResult:
    # The vendor stamps each day's fixing at 16:00 UTC.
    docs = [
        {
            "base": "USD",
            "date": period.date(d).isoformat(),
            "timestamp": period.start_s + d * DAY_S + 16 * 3600,
            "rates": dict(r),
        }
        for d, r in rates
    ]
    corrupt, counts = inject_fx(rng, docs, rate)
    records = 0
    for i, doc in enumerate(docs):
        text = fx_text(doc)
        if i == corrupt:
            text = truncate_text(rng, text)
        # A corrupt file is one record for the bronze layer to account for (and quarantine).
        records += 1 if i == corrupt else len(doc["rates"])
        write_text(root / FX_PATH / f"rates_{doc['date']}.json", text)
    return DatasetResult(FX_PATH, len(docs), records, counts)


def kafka(root: Path, events: pa.Table, rng: np.random.Generator, rate: float) -> DatasetResult:
    table, malformed, counts = inject_kafka(rng, events, rate)
    values = product_event_values(table)
    for i in np.flatnonzero(malformed):
        values[i] = truncate_text(rng, values[i])
    files, records = write_kafka_replay(root / KAFKA_PATH, KAFKA_TOPIC, table, values)
    return DatasetResult(KAFKA_PATH, files, records, counts)
