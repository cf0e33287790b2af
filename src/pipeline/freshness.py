"""How old a table's newest data is, kept with the data.

Each write records the table's newest data time in its commit metadata (`newest_data_at`): the
later of what the batch carried and what the table already held (a late batch does not make the
table look older). A run with nothing new reports the recorded value, so the freshness lag keeps
growing while a source is silent instead of going missing. Steps report it as
`details["newest_data_at"]` (the FreshnessLagSeconds metric). A gold mart is as fresh as the
stalest of its main inputs (`stalest_input`): a mart is not current while one of them lags.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipeline.lake import Lake

NEWEST_KEY = "newest_data_at"


def _parse(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = (
        value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    )
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)  # naive: UTC


def recorded_newest(lake: Lake, table: str) -> str | None:
    """The newest data time the table's commits recorded (ISO 8601, UTC), or None."""
    value = _parse(lake.latest_metadata(table, NEWEST_KEY))
    return value.isoformat() if value else None


def table_newest(lake: Lake, table: str, batch_newest: datetime | str | None) -> str | None:
    """The table's newest data time once the batch is in: max(batch, recorded), ISO 8601 UTC."""
    known = [t for t in (_parse(batch_newest), _parse(lake.latest_metadata(table, NEWEST_KEY))) if t]
    return max(known).isoformat() if known else None


def stalest_input(lake: Lake, tables: list[str]) -> str | None:
    """The oldest of the tables' recorded newest data times (ISO 8601 UTC); None when one of
    them recorded none (then the derived table's freshness is unknown, not made up)."""
    recorded = [_parse(lake.latest_metadata(t, NEWEST_KEY)) for t in tables]
    if not recorded or any(t is None for t in recorded):
        return None
    return min(recorded).isoformat()


# Text that names a day, as a date or timestamp must: Spark's cast also reads "2026" (January 1st)
# and "T10:00" (today at 10:00, so the value depends on when the job ran). Leading whitespace:
# the cast ignores it. Silver's parse of a date or timestamp and bronze's newest time use it.
FULL_DATE = r"^\s*[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"


def arrival_micros(df: DataFrame) -> Column:
    """When each row of `df` reached bronze (`_ingestion_ts`) in epoch microseconds: the bound on a
    plausible data time (bronze's newest time, silver's `after_arrival` rule). For a frame without
    the column (not stamped yet): now, as bronze would stamp it. In microseconds because
    adding an interval to a timestamp is time-zone arithmetic on every row."""
    return F.unix_micros(F.col("_ingestion_ts") if "_ingestion_ts" in df.columns else F.current_timestamp())


# A delivery date in a landing path (date=2026-07-01/, rates_2026-07-01.json, accounts_20260701.csv),
# as bronze's backfill window (`bronze.ingest.landing_date`) and silver's file-date rule read it.
DELIVERY_DATE = r"(?<![0-9])([0-9]{4})-?([0-9]{2})-?([0-9]{2})(?![0-9])"


def file_name_date(df: DataFrame) -> Column:
    """The delivery date the name of each row's landing file (`_source_file`; its folders do not
    count) carries, the last one as `landing_date` reads a path; null when the name holds none or
    no real day (2026-13-01), or the frame has no landing file."""
    if "_source_file" not in df.columns:
        return F.lit(None).cast("date")
    name = F.substring_index(F.col("_source_file"), "/", -1)
    found = F.try_element_at(F.regexp_extract_all(name, F.lit(DELIVERY_DATE), 0), F.lit(-1))
    return F.regexp_replace(found, DELIVERY_DATE, "$1-$2-$3").try_cast("date")
