"""One writer per landing format: CRM CSV, Parquet, vendor JSON, Kafka replay JSON lines.

Writers only serialise; what goes into a file (including its defects) is decided by the caller.
Each returns what it wrote so the manifest counts come from the files, not from intentions.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .defects import CsvFile
from .timeline import iso_array


def _create(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_csv(path: Path, file: CsvFile) -> int:
    """RFC-4180 quoting (fields with commas, quotes or newlines are quoted, quotes doubled), LF line
    ends; a None header writes a 0-byte file. Returns the number of records after the header."""
    with _create(path).open("w", newline="", encoding="utf-8") as out:
        if file.header is None:
            return 0
        writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(file.header)
        writer.writerows(file.rows)
    return len(file.rows)


def write_parquet(path: Path, table: pa.Table) -> int:
    pq.write_table(table, _create(path), compression="snappy")
    return table.num_rows


def fx_text(document: dict) -> str:
    """The vendor's pretty-printed JSON (keys in the vendor's order, not sorted)."""
    return json.dumps(document, indent=2) + "\n"


def write_text(path: Path, text: str) -> None:
    _create(path).write_text(text, encoding="utf-8")


_EVENT_FIELDS = (
    "event_id",
    "event_type",
    "account_id",
    "user_id",
    "product_id",
    "properties",
    "experiment_id",
)


def product_event_values(table: pa.Table) -> list[str]:
    """The producer's event JSON per record. Built with f-strings for speed, which is safe because
    every field is a generated ASCII id/code/timestamp and `properties` is pre-rendered JSON."""
    columns = [table.column(c).to_pylist() for c in _EVENT_FIELDS]
    event_ts = iso_array(table.column("event_ms").to_numpy(), "ms").tolist()
    values = []
    for (event_id, etype, account, user, product, props, experiment), ts in zip(
        zip(*columns, strict=True), event_ts, strict=True
    ):
        eid = "null" if event_id is None else f'"{event_id}"'
        value = (
            f'{{"event_id":{eid},"event_type":"{etype}","account_id":"{account}","user_id":"{user}",'
            f'"product_id":"{product}","event_ts":"{ts}","properties":{props}'
        )
        values.append(value + ("}" if experiment is None else f',"experiment_id":"{experiment}"}}'))
    return values


def write_kafka_replay(directory: Path, topic: str, table: pa.Table, values: list[str]) -> tuple[int, int]:
    """Kafka records as JSON lines, one file per (partition, UTC day of the broker timestamp), named
    after the partition and the file's first offset. `table` is sorted by (partition, append order)
    and offsets are contiguous from 0 per partition. Returns (files, records) written."""
    if table.num_rows == 0:
        return 0, 0
    partition = table.column("partition").to_numpy()
    kafka_ms = table.column("kafka_ms").to_numpy()
    keys = ["null" if k is None else f'"{k}"' for k in table.column("key").to_pylist()]
    timestamps = iso_array(kafka_ms, "ms").tolist()
    offsets = (np.arange(len(partition)) - np.searchsorted(partition, partition, side="left")).tolist()
    group = partition * 1_000_000 + kafka_ms // 86_400_000
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]).tolist() + [len(partition)]
    for lo, hi in zip(starts[:-1], starts[1:], strict=True):
        p = int(partition[lo])
        lines = [
            f'{{"topic":"{topic}","partition":{p},"offset":{offsets[i]},"timestamp":"{timestamps[i]}",'
            f'"timestampType":0,"key":{keys[i]},"value":{json.dumps(values[i])}}}\n'
            for i in range(lo, hi)
        ]
        path = directory / f"{topic}-p{p}-{offsets[lo]:012d}.jsonl"
        _create(path).write_text("".join(lines), encoding="utf-8")
    return len(starts) - 1, len(partition)
