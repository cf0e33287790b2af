"""The gold I/O edge: read silver (and gold fct_orders), compute a mart, overwrite it.

`build_gold(ctx, mart)` is the job function for a DAG step `job: gold, dataset: <mart>`.

Idempotent reruns: every gold commit carries, under the metadata key `gold`, a fingerprint of
what it was built from: the mart's definition version, its options in config/marts.yaml
(`gold.config`), the version of every input table it read (inputs are read at exactly those
versions) and, for marts that depend on it, the as-of date.
When the table's latest fingerprint equals the one a run would write, the run skips the write,
so a rerun over unchanged inputs makes no new Delta version. Bump a mart's `definition` when its
business rule changes so the next run rebuilds it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipeline.context import RunContext
from pipeline.dq.gate import gate_step, recheck
from pipeline.freshness import NEWEST_KEY, recorded_newest, stalest_input
from pipeline.gold import transforms as T
from pipeline.gold.config import FctOrdersOptions, load_marts_config
from pipeline.step_result import StepResult

log = logging.getLogger(__name__)

FINGERPRINT_KEY = "gold"


@dataclass(frozen=True)
class Inputs:
    """The DataFrames a mart reads, by table name, the run's as-of date (None if unused) and the
    mart's options from config/marts.yaml (None: the defaults, or a mart without options)."""

    tables: dict[str, DataFrame]
    as_of: date | None
    options: Any = None

    def __getitem__(self, name: str) -> DataFrame:
        return self.tables[name]


@dataclass(frozen=True)
class Mart:
    name: str
    silver: tuple[str, ...]
    build: Callable[[Inputs], DataFrame]
    gold: tuple[str, ...] = ()  # gold tables read (their steps must run first)
    main: tuple[str, ...] = ()  # inputs whose row counts make rows_in
    uses_as_of: bool = False
    definition: int = 1  # bump when the business rule changes: forces a rebuild
    check_rows_match_main: bool = False  # one output row per main-input row


def _fct_orders(i: Inputs) -> DataFrame:
    options = i.options or FctOrdersOptions()  # none given: the defaults (the brief's rule)
    return T.fct_orders(
        i["orders"], i["accounts"], i["fx_calendar"], before_first_version=options.before_first_version
    )


def _revenue_daily(i: Inputs) -> DataFrame:
    return T.revenue_daily(i["fct_orders"])


def _pipeline_summary(i: Inputs) -> DataFrame:
    return T.pipeline_summary(i["opportunities"], i["fx_calendar"], i["accounts"])


def _customer_360(i: Inputs) -> DataFrame:
    assert i.as_of is not None
    opps = T.opportunities_usd(i["opportunities"], i["accounts"], i["fx_calendar"])
    return T.customer_360(
        i["accounts"],
        i["fct_orders"],
        opps,
        i["contacts"],
        i["behavior_events"],
        i["product_events"],
        i.as_of,
    )


def _engagement_daily(i: Inputs) -> DataFrame:
    return T.engagement_daily(i["behavior_events"], i["product_events"])


MARTS: dict[str, Mart] = {
    m.name: m
    for m in [
        Mart(
            "fct_orders",
            silver=("orders", "accounts", "fx_rates"),
            build=_fct_orders,
            main=("orders",),
            definition=2,  # 2: no account version in force at order_ts -> unknown (was: the earliest)
            check_rows_match_main=True,
        ),
        Mart(
            "revenue_daily",
            silver=(),
            gold=("fct_orders",),
            build=_revenue_daily,
            main=("fct_orders",),
            definition=2,  # 2: null country/segment shown as `unknown`
        ),
        Mart(
            "pipeline_summary",
            silver=("opportunities", "accounts", "fx_rates"),
            build=_pipeline_summary,
            main=("opportunities",),
        ),
        Mart(
            "customer_360",
            silver=(
                "accounts",
                "opportunities",
                "fx_rates",
                "contacts",
                "behavior_events",
                "product_events",
            ),
            gold=("fct_orders",),
            build=_customer_360,
            main=("accounts",),
            uses_as_of=True,
        ),
        Mart(
            "engagement_daily",
            silver=("behavior_events", "product_events"),
            build=_engagement_daily,
            main=("behavior_events", "product_events"),
        ),
    ]
}


def latest_event_date(behavior: DataFrame, product: DataFrame) -> date | None:
    """The default as-of date: the latest event_date in either event source (one aggregate)."""
    both = behavior.select("event_date").unionByName(product.select("event_date"))
    return both.agg(F.max("event_date")).first()[0]


def _resolve_as_of(ctx: RunContext, tables: dict[str, DataFrame]) -> date:
    as_of = getattr(ctx, "as_of", None)
    if as_of is not None:
        return as_of if isinstance(as_of, date) else date.fromisoformat(str(as_of))
    found = latest_event_date(tables["behavior_events"], tables["product_events"])
    if found is None:
        found = datetime.now(UTC).date()
        log.warning("gold: no events in silver to take as_of from; using today (UTC) %s", found)
    return found


def build_gold(ctx: RunContext, mart: str) -> StepResult:
    """Build one gold mart from its inputs, or skip when its inputs and as_of are unchanged."""
    spec = MARTS.get(mart)
    if spec is None:
        raise KeyError(f"unknown gold mart {mart!r}; known: {', '.join(sorted(MARTS))}")
    options = getattr(load_marts_config(ctx.settings.config_dir), spec.name, None)
    out_path = ctx.table_path("gold", spec.name)

    sources = [("silver", name) for name in spec.silver] + [("gold", name) for name in spec.gold]
    versions: dict[str, int | None] = {}
    tables: dict[str, DataFrame] = {}
    for layer, name in sources:
        path = ctx.table_path(layer, name)
        version = ctx.lake.version(path)
        versions[f"{layer}/{name}"] = version
        # Read at the recorded version, so the fingerprint names exactly what was used.
        tables[name] = ctx.lake.read(path, version=version)

    as_of = _resolve_as_of(ctx, tables) if spec.uses_as_of else None
    fingerprint: dict[str, Any] = {
        "mart": spec.name,
        "definition": spec.definition,
        "options": asdict(options) if options is not None else {},
        "inputs": versions,
        "as_of": as_of.isoformat() if as_of else None,
    }
    previous = ctx.lake.latest_metadata(out_path, FINGERPRINT_KEY)
    if previous == fingerprint:
        log.info("gold %s: inputs unchanged (%s), skipping", spec.name, versions)
        dq_details = recheck(ctx, f"gold_{spec.name}", spec.name, "gold")  # DQ: last verdict stands
        return StepResult(
            0,
            0,
            {
                "skipped": "inputs unchanged",
                "table": out_path,
                "version": ctx.lake.version(out_path),
                "inputs": versions,
                "as_of": fingerprint["as_of"],
                NEWEST_KEY: recorded_newest(ctx.lake, out_path),
                **dq_details,
            },
        )

    rows_in = sum(tables[name].count() for name in spec.main)
    newest_at = stalest_input(ctx.lake, [ctx.table_path(layer, n) for layer, n in sources if n in spec.main])
    cached: list[DataFrame] = []
    if "fx_rates" in tables:
        # Tiny (days x currencies) and used twice per lookup (the join and its end-date clamp):
        # computed once. Broadcast at the join (transforms._fx_lookup).
        tables["fx_calendar"] = T.fx_calendar(tables["fx_rates"]).cache()
        cached.append(tables["fx_calendar"])
    df = spec.build(Inputs(tables, as_of, options)).cache()
    cached.append(df)
    try:
        rows_out = df.count()
        if spec.check_rows_match_main and rows_out != rows_in:
            raise RuntimeError(
                f"gold {spec.name}: {rows_out} rows from {rows_in} input rows; expected one per input "
                "row (overlapping SCD2 versions or duplicate keys in silver?); nothing written"
            )
        written = ctx.lake.overwrite(
            out_path,
            df,
            metadata={
                FINGERPRINT_KEY: fingerprint,
                "run_id": ctx.run_id,
                "rows": rows_out,
                NEWEST_KEY: newest_at,
            },
        )
        # --- DQ gate (pipeline.dq): after the write, on the mart just written (still cached) ---
        dq_details = gate_step(ctx, f"gold_{spec.name}", spec.name, "gold", df)
        # --- end DQ gate ---
    finally:
        for frame in cached:
            frame.unpersist()
    log.info("gold %s: %d rows in, %d rows out, version %s", spec.name, rows_in, rows_out, written.version)
    return StepResult(
        rows_in,
        rows_out,
        {
            "table": out_path,
            "version": written.version,
            "inputs": versions,
            "as_of": fingerprint["as_of"],
            NEWEST_KEY: newest_at,  # as fresh as the stalest main input (pipeline.freshness)
            **dq_details,  # DQ gate: "dq" (list of result dicts) and "dq_seconds"
        },
    )
