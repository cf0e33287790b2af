"""Incremental data for a rerun: ~share new records per dataset in new landing files dated the
day after the data ends, in each source's own format; and the incremental figures' table."""

from __future__ import annotations

import contextlib
import csv
import json
import re
import uuid
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.context import RunContext


def _later_timestamp(value: str, day: date) -> str:
    """The same time of day on `day` (CSV style, second precision, Z); unparseable stays as is."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return value
    return f"{day.isoformat()}T{parsed:%H:%M:%S}Z"


def _iso_ms(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _csv_increment(folder: Path, day: date, share: float, rng: np.random.Generator) -> tuple[int, int]:
    """One new export dated `day` holding ~share of the records (from files with the usual
    header, well-formed rows only) with updated_at moved to `day`: newer versions of them."""
    files = sorted(folder.glob("*.csv"))
    parsed = []
    for f in files:
        with f.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        if rows:
            parsed.append((tuple(rows[0]), rows[1:]))
    header = Counter(h for h, _ in parsed).most_common(1)[0][0]
    picked: list[list[str]] = []
    for h, rows in parsed:
        if h == header:
            keep = rng.random(len(rows)) < share
            picked += [r for r, k in zip(rows, keep, strict=True) if k and len(r) == len(header)]
    if not picked:
        picked = [next(r for h, rows in parsed if h == header for r in rows if len(r) == len(header))]
    updated = header.index("updated_at")
    for r in picked:
        r[updated] = _later_timestamp(r[updated], day)
    stem = files[0].name.rsplit("_", 1)[0]
    with (folder / f"{stem}_{day:%Y%m%d}.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(header)
        writer.writerows(picked)
    return 1, len(picked)


def _parquet_increment(
    folder: Path,
    part: str,
    file_name: str,
    day: date,
    share: float,
    rng: np.random.Generator,
    key: str,
    new_keys,
    timestamps: tuple[str, ...],
) -> tuple[int, int]:
    """One new unload `<part>=<day>/<file_name>` holding ~share of the rows, with new keys (nulls
    stay null) and timestamps moved by (day - the source file's day)."""
    pieces = []
    for f in sorted(folder.glob(f"{part}=*/*.parquet")):
        table = pq.ParquetFile(f).read()
        if not table.num_rows:
            continue
        sample = table.filter(pa.array(rng.random(table.num_rows) < share))
        shift = pa.scalar(day - date.fromisoformat(f.parent.name.split("=", 1)[1]), pa.duration("us"))
        for name in timestamps:
            i = sample.schema.get_field_index(name)
            sample = sample.set_column(i, name, pc.add(sample[name], shift))
        pieces.append(sample)
    table = pa.concat_tables(pieces, promote_options="default")
    old = table[key].to_pylist()
    fresh = new_keys(sum(k is not None for k in old))
    table = table.set_column(
        table.schema.get_field_index(key), key, pa.array([None if k is None else next(fresh) for k in old])
    )
    target = folder / f"{part}={day.isoformat()}" / file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, target, compression="snappy")
    return 1, table.num_rows


def _order_ids(folder: Path):
    top = 0
    for f in folder.glob("*/*.parquet"):
        for k in pq.ParquetFile(f).read(columns=["order_id"])["order_id"].to_pylist():
            if k and (m := re.fullmatch(r"\s*ORD-(\d+)\s*", k, re.IGNORECASE)):
                top = max(top, int(m.group(1)))

    def new(n: int):
        return iter(f"ORD-{top + 1 + i:07d}" for i in range(n))

    return new


def _uuids(rng: np.random.Generator):
    def new(n: int):
        return iter(str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n))

    return new


def _fx_increment(folder: Path, day: date, share: float) -> tuple[int, int]:
    """The latest ~share of the vendor files (at least one) again, dated `day` onwards."""
    files = sorted(folder.glob("rates_*.json"))
    n = max(1, round(share * len(files)))
    docs = []
    for f in reversed(files):
        try:
            docs.append(json.loads(f.read_text(encoding="utf-8")))
        except json.JSONDecodeError:
            continue  # the corrupt file
        if len(docs) == n:
            break
    rows = 0
    for i, doc in enumerate(reversed(docs)):
        new_day = day + timedelta(days=i)
        shift = (new_day - date.fromisoformat(doc["date"])).days
        doc["date"], doc["timestamp"] = new_day.isoformat(), doc["timestamp"] + shift * 86_400
        (folder / f"rates_{new_day.isoformat()}.json").write_text(
            json.dumps(doc, indent=2) + "\n", encoding="utf-8"
        )
        rows += len(doc["rates"])
    return len(docs), rows


def _kafka_increment(folder: Path, day: date, share: float, rng: np.random.Generator) -> tuple[int, int]:
    """Per partition, one new replay file of ~share of its records: offsets continue the
    partition's, event ids are new, broker and event timestamps move to `day` (same time of day
    for the broker timestamp, the same lateness for the event)."""
    by_partition: dict[tuple[str, int], list[tuple[int, Path]]] = defaultdict(list)
    for f in folder.glob("*.jsonl"):
        m = re.fullmatch(r"(.+)-p(\d+)-(\d+)\.jsonl", f.name)
        if m:
            by_partition[(m.group(1), int(m.group(2)))].append((int(m.group(3)), f))
    new_ids = _uuids(rng)
    files = rows = 0
    for (topic, partition), found in sorted(by_partition.items()):
        found.sort()
        picked, next_offset = [], 0
        for first, f in found:
            lines = f.read_text(encoding="utf-8").splitlines()
            if not lines:
                continue
            next_offset = max(next_offset, first + len(lines))
            with contextlib.suppress(ValueError, KeyError, TypeError):
                next_offset = max(next_offset, int(json.loads(lines[-1])["offset"]) + 1)
            keep = rng.random(len(lines)) < share
            picked += [json.loads(line) for line, k in zip(lines, keep, strict=True) if k]
        out = []
        for i, record in enumerate(picked):
            broker = datetime.fromisoformat(record["timestamp"])
            shift = day - broker.date()
            record["offset"] = next_offset + i
            record["timestamp"] = _iso_ms(broker + shift)
            try:
                value = json.loads(record["value"])
            except (TypeError, json.JSONDecodeError):
                value = None  # a malformed value stays as delivered
            if isinstance(value, dict):
                if value.get("event_id") is not None:
                    value["event_id"] = next(new_ids(1))
                with contextlib.suppress(KeyError, TypeError, ValueError):  # an unparseable event_ts stays
                    value["event_ts"] = _iso_ms(datetime.fromisoformat(value["event_ts"]) + shift)
                record["value"] = json.dumps(value, separators=(",", ":"))
            out.append(json.dumps(record, separators=(",", ":")) + "\n")
        if out:
            (folder / f"{topic}-p{partition}-{next_offset:012d}.jsonl").write_text(
                "".join(out), encoding="utf-8"
            )
            files, rows = files + 1, rows + len(out)
    return files, rows


def append_increment(ctx: RunContext, manifest: dict, share: float, seed: int) -> dict[str, dict[str, int]]:
    """~share new records per dataset in new landing files dated the day after the data ends."""
    day = date.fromisoformat(manifest["end_date"]) + timedelta(days=1)
    rng = np.random.default_rng([seed, 99])
    landing = {name: Path(ctx.landing_path(name)) for name in ctx.catalog.datasets}
    added = {}
    for name in ("crm_accounts", "crm_contacts", "crm_opportunities"):
        added[name] = _csv_increment(landing[name], day, share, rng)
    added["snowflake_orders"] = _parquet_increment(
        landing["snowflake_orders"],
        "date",
        "data_0_0_0.snappy.parquet",
        day,
        share,
        rng,
        "order_id",
        _order_ids(landing["snowflake_orders"]),
        ("order_ts", "updated_at"),
    )
    added["redshift_behavior"] = _parquet_increment(
        landing["redshift_behavior"],
        "event_date",
        "0000_part_00.parquet",
        day,
        share,
        rng,
        "event_id",
        _uuids(rng),
        ("event_ts", "loaded_at"),
    )
    added["fx_rates"] = _fx_increment(landing["fx_rates"], day, share)
    added["kafka_events"] = _kafka_increment(landing["kafka_events"], day, share, rng)
    return {name: {"files": files, "rows": rows} for name, (files, rows) in added.items()}


def print_incremental(full: dict, incr: dict, same: dict, added: dict, share: float, prep_s: float) -> None:
    """`full`: a warm full run (same process, after the JVM's warm-up), the ratios' denominator."""
    rows = sum(a["rows"] for a in added.values())
    print(
        f"\n4. incremental: +{share:.2%} new data ({rows:,} records in "
        f"{sum(a['files'] for a in added.values())} new landing files, written in {prep_s:.1f}s), "
        "whole DAG again; then a rerun with nothing new; against a warm full run (section 3's watched mean)"
    )
    print("   new records: " + ", ".join(f"{n} {a['rows']:,}" for n, a in added.items()))
    header = (
        f"{'step':<26} {'warm s':>8} | {'incr s':>8} {'rows in':>8} {'incr/full':>9} | "
        f"{'no-change s':>11} {'/full':>6}  increment's write (gold)"
    )
    rule = "-" * len(header)
    print(header)
    print(rule)
    by_step = {name: {s["step"]: s for s in run["steps"]} for name, run in (("i", incr), ("n", same))}

    def line(name: str, f: dict, i: dict, n: dict) -> str:
        return (
            f"{name:<26} {f['seconds']:>8.2f} | {i['seconds']:>8.2f} {i['rows_in']:>8,} "
            f"{i['seconds'] / f['seconds']:>8.2f}x | {n['seconds']:>11.2f} {n['seconds'] / f['seconds']:>5.2f}x"
            f"{_write_path(i)}"
        )

    for s in full["steps"]:
        print(line(s["step"], s, by_step["i"][s["step"]], by_step["n"][s["step"]]))
    print(rule)
    for layer in full["layers"]:
        print(line(f"{layer} total", full["layers"][layer], incr["layers"][layer], same["layers"][layer]))
    print(line("total", full["total"], incr["total"], same["total"]))


def _write_path(step: dict) -> str:
    """A gold step's path on the increment: incremental and how many keys (orders, dates) it
    recomputed, full and why, or skipped and why; empty for other steps."""
    if step.get("write") == "incremental":
        return f"  incremental, {step.get('keys_recomputed')} keys"
    if step.get("write") == "full":
        return f"  full: {step.get('full_rebuild')}"
    return f"  skipped: {step['skipped']}" if step.get("skipped") and step["layer"] == "gold" else ""
