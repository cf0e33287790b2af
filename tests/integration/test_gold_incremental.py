"""Incremental gold equals a full rebuild: a generated lake is run in full, then takes a sequence
of increments (new orders and events, late orders for old dates, a corrected FX rate, a new
account version back in time, updated orders one of which moves to another day); after each, gold
runs incrementally and every mart must equal a `--full-refresh` rebuild on a copy of the lake."""

from __future__ import annotations

import csv
import io
import json
import shutil
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.app import local_executor
from pipeline.driver.dag import load_dag
from pipeline.driver.runner import run_steps
from pipeline.generate import generate
from pipeline.gold import MARTS
from pipeline.jobs import JOBS
from tests.helpers import REPO, make_ctx
from tests.lake_compare import comparable, fingerprint

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

DAG = load_dag(REPO / "config" / "pipeline.yaml", set(JOBS))
STEPS = [s for s in DAG.order() if DAG.steps[s].job != "maintain"]
GOLD = [s for s in STEPS if DAG.steps[s].job == "gold"]


def downstream(*bronze: str) -> list[str]:
    """The bronze steps of these datasets and every step after them (maintenance left out)."""
    chosen = {f"bronze_{b}" for b in bronze}
    for step in STEPS:
        if chosen & set(DAG.steps[step].depends_on):
            chosen.add(step)
    return [s for s in STEPS if s in chosen or DAG.steps[s].job == "gold"]


def always_incremental(tmp_path) -> Path:
    """config/ as the repo has it, but gold updates incrementally at any size and share (a lake
    this small is below `incremental.rebuild_below_rows`, and fct_orders' few files hold most of
    its rows, so a merge would rewrite them: above `rebuild_above_share`)."""
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    marts = yaml.safe_load((config / "marts.yaml").read_text())
    marts["incremental"] |= {"rebuild_below_rows": 0, "rebuild_above_share": 1}
    (config / "marts.yaml").write_text(yaml.safe_dump(marts, sort_keys=False))
    return config


def run(ctx, steps: list[str]) -> dict[str, dict]:
    out = io.StringIO()
    state = run_steps(ctx, DAG, steps, out, executor=local_executor())
    assert not state.failed, out.getvalue()
    return {s.step: s.details for s in state.steps}


def assert_gold_equals_full_refresh(spark, lake, copy) -> None:
    shutil.copytree(lake, copy)
    full = make_ctx(spark, copy, run_id=f"full-{copy.name}")
    full.full_refresh = True
    details = run(full, GOLD)
    assert {details[s]["write"] for s in GOLD} == {"full"}, details
    ctx = make_ctx(spark, lake, run_id="check")
    for mart in MARTS:
        a = comparable(ctx.lake.read(ctx.table_path("gold", mart)))
        b = comparable(full.lake.read(full.table_path("gold", mart)))
        assert a.schema == b.schema, mart
        if fingerprint(a) != fingerprint(b):
            pytest.fail(
                f"gold/{mart} after {copy.name}: incremental differs from a full rebuild; only incremental: "
                f"{a.exceptAll(b).limit(5).collect()}; only full: {b.exceptAll(a).limit(5).collect()}"
            )


def _orders(landing) -> pa.Table:
    files = sorted((landing / "snowflake" / "orders").glob("*/*.parquet"))
    return pa.concat_tables(
        [pq.read_table(f) for f in files], promote_options="default"
    )  # later files add a column


def _write_orders(landing, day: date, table: pa.Table, name: str) -> None:
    target = landing / "snowflake" / "orders" / f"date={day.isoformat()}" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, target)


def _shift(table: pa.Table, columns: tuple[str, ...], days: int) -> pa.Table:
    for col in columns:
        shifted = pc.add(table[col], pa.scalar(timedelta(days=days), pa.duration("us")))
        table = table.set_column(
            table.schema.get_field_index(col), col, shifted.cast(table.schema.field(col).type)
        )
    return table


def _renumber(table: pa.Table, first: int) -> pa.Table:
    ids = pa.array([f"ORD-{first + i:07d}" for i in range(table.num_rows)])
    return table.set_column(table.schema.get_field_index("order_id"), "order_id", ids)


def _next_order_number(orders: pa.Table) -> int:
    return (
        max(int(k.strip()[4:]) for k in orders["order_id"].to_pylist() if k and k.strip()[4:].isdigit()) + 1
    )


def new_day(landing, day: date) -> None:
    """Orders, web events and FX rates of a new day: the latest ones again, moved to `day`."""
    orders = _orders(landing)
    order_days = pc.cast(orders["order_ts"], pa.date32())
    latest = pc.max(order_days).as_py()
    last = orders.filter(pc.equal(order_days, pa.scalar(latest)))
    moved = _shift(last, ("order_ts", "updated_at"), (day - latest).days)
    _write_orders(landing, day, _renumber(moved, _next_order_number(orders)), "new.parquet")
    web = landing / "redshift" / "behavior_events"
    events = pq.read_table(
        next((web / f"event_date={(day - timedelta(days=1)).isoformat()}").glob("*.parquet"))
    )
    events = _shift(events, ("event_ts", "loaded_at"), 1)
    events = events.set_column(0, "event_id", pa.array([str(uuid.uuid4()) for _ in range(events.num_rows)]))
    (web / f"event_date={day.isoformat()}").mkdir()
    pq.write_table(events, web / f"event_date={day.isoformat()}" / "0000_part_00.parquet")
    fx = landing / "fx"
    doc = json.loads(max(fx.glob("rates_*.json")).read_text())
    doc["date"] = day.isoformat()
    doc["rates"] = {c: v * 1.01 for c, v in doc["rates"].items()}
    (fx / f"rates_{day.isoformat()}.json").write_text(json.dumps(doc))


def late_orders(landing, day: date, age_days: int) -> None:
    """New orders placed `age_days` before `day` (copies of that day's orders, new ids), delivered now."""
    orders = _orders(landing)
    old = orders.filter(
        pc.equal(pc.cast(orders["order_ts"], pa.date32()), pa.scalar(day - timedelta(days=age_days)))
    )
    late = _renumber(old.slice(0, 10), _next_order_number(orders))
    delivered = pa.array(
        [late["updated_at"][0].as_py() + timedelta(days=age_days)] * late.num_rows,
        late.schema.field("updated_at").type,
    )
    late = late.set_column(late.schema.get_field_index("updated_at"), "updated_at", delivered)
    _write_orders(landing, day, late, "late.parquet")


def corrected_fx(landing) -> None:
    """A Friday's rates again, EUR and GBP corrected (carried over the weekend by the as-of rule)."""
    friday = next(
        f
        for f in sorted((landing / "fx").glob("rates_*.json"), reverse=True)
        if date.fromisoformat(f.stem[6:16]).weekday() == 4
    )
    doc = json.loads(friday.read_text())
    doc["rates"]["EUR"] *= 1.2
    doc["rates"]["GBP"] *= 0.8
    (landing / "fx" / f"{friday.stem}_corrected.json").write_text(json.dumps(doc))


def _clean(account: dict) -> bool:
    """Not one of the generator's defective records (shifted fields, bad dates), which silver
    would quarantine instead of versioning."""
    try:
        datetime.fromisoformat(account["updated_at"].replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return False
    return "@" in (account.get("owner_email") or "") and account.get("segment") in (
        "SMB",
        "Enterprise",
        "Mid-Market",
    )


def new_account_version(landing, day: date, back_days: int) -> str:
    """A new version of the account with the most orders, valid from `back_days` before `day`."""
    orders = _orders(landing)
    counts = pc.value_counts(orders["account_id"]).to_pylist()
    account = max((c for c in counts if c["values"]), key=lambda c: c["counts"])["values"].strip()
    rows = []
    for export in sorted((landing / "crm" / "accounts").glob("*.csv")):
        with export.open(newline="") as f:
            rows += [r for r in csv.DictReader(f) if r["account_id"] == account and _clean(r)]
    version = dict(rows[-1])
    version["segment"] = "SMB" if version["segment"] == "Enterprise" else "Enterprise"
    version["country"] = "NZ"
    version["updated_at"] = f"{(day - timedelta(days=back_days)).isoformat()}T12:00:00Z"
    with (landing / "crm" / "accounts" / f"accounts_{day:%Y%m%d}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(version))
        writer.writeheader()
        writer.writerow(version)
    return account


def updated_orders(landing, day: date) -> None:
    """Two orders re-delivered: one cancelled, one shipped and moved three days earlier."""
    orders = _orders(landing)
    placed = orders.filter(pc.equal(orders["status"], "placed")).slice(0, 2)
    status = pa.array(["cancelled", "shipped"])
    changed = placed.set_column(placed.schema.get_field_index("status"), "status", status)
    ts = changed["order_ts"].to_pylist()
    moved = pa.array([ts[0], ts[1] - timedelta(days=3)], changed.schema.field("order_ts").type)
    changed = changed.set_column(changed.schema.get_field_index("order_ts"), "order_ts", moved)
    stamp = pa.array(
        [datetime(day.year, day.month, day.day, tzinfo=UTC)] * 2, changed.schema.field("updated_at").type
    )
    changed = changed.set_column(changed.schema.get_field_index("updated_at"), "updated_at", stamp)
    _write_orders(landing, day, changed, "updates.parquet")


def test_incremental_gold_equals_a_full_rebuild_after_every_increment(spark, tmp_path, monkeypatch):
    # The gates are not what is compared here, and cost most of a small run.
    monkeypatch.setenv("LAKEHOUSE_DQ", "off")
    lake = tmp_path / "lake"
    landing = lake / "landing"
    end = date(2026, 9, 30)
    generate(landing, scale=0.005, seed=11, defect_rate=0.01, days=10, end_date=end)
    # Run ids as `lakehouse run` makes them (UTC time first): silver orders a re-delivery of a key
    # without a sequence column of its own (fx_rates) by batch id, which starts with the run id.
    config = always_incremental(tmp_path)
    first = run(make_ctx(spark, lake, run_id="20261001T000000Z-first", config_dir=config), STEPS)
    assert {first[s]["write"] for s in GOLD} == {"full"}

    def late_and_updated_orders():
        late_orders(landing, end + timedelta(days=2), 6)
        updated_orders(landing, end + timedelta(days=2))

    increments = [
        (
            "new_day",
            lambda: new_day(landing, end + timedelta(days=1)),
            ("snowflake_orders", "redshift_behavior", "fx_rates"),
        ),
        ("late_and_updated_orders", late_and_updated_orders, ("snowflake_orders",)),
        ("corrected_fx", lambda: corrected_fx(landing), ("fx_rates",)),
        (
            "account_version",
            lambda: new_account_version(landing, end + timedelta(days=3), 5),
            ("crm_accounts",),
        ),
    ]
    for i, (name, make, sources) in enumerate(increments):
        make()
        ctx = make_ctx(spark, lake, run_id=f"2026100{i + 2}T000000Z-{name}", config_dir=config)
        details = run(ctx, downstream(*sources))
        # Each increment changes orders, FX or accounts: fct_orders and revenue_daily update in place.
        for mart in ("fct_orders", "revenue_daily"):
            got = details[f"gold_{mart}"]
            assert got.get("write") == "incremental" and got["keys_recomputed"] > 0, (name, mart, details)
        if name == "new_day":
            assert details["gold_engagement_daily"]["write"] == "incremental"
        assert_gold_equals_full_refresh(spark, lake, tmp_path / f"{i}_{name}")
