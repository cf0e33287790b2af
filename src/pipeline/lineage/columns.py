"""Column lineage, declared as data (not inferred from Spark plans).

Silver: derived from the contracts. Each silver column comes from its bronze source column
(`source:` or the same name); computed columns (`expr:`) from the bronze columns their
expression reads; PII outputs from the raw column with a masking transformation (email ->
`<col>_hash` keyed HMAC, `<col>_domain`; phone -> `<col>_masked`). The MERGE that writes silver
(current state, events, SCD2) is declared too: lineage agents that read Spark plans see the
MERGE target as an input of itself and lose the source columns behind the match condition; here
the silver columns come from bronze only, and the match keys, the sequence column (update when
newer) and the soft-delete flag are dataset-level INDIRECT inputs (JOIN / CONDITIONAL).

Gold: `GOLD_COLUMN_LINEAGE` below, one entry per output column of every mart in
`pipeline.gold.marts.MARTS`, kept next to the lineage code because the transforms are pure
DataFrame functions. tests/unit/test_lineage_columns.py builds each mart from empty silver
inputs and fails when a declared column set differs from the transform's output, or when a
declared input column does not exist in its silver contract / gold declaration.

Transformations follow the column lineage facet 1-2-0 model: type DIRECT (IDENTITY,
TRANSFORMATION, AGGREGATION) or INDIRECT (JOIN, GROUP_BY, FILTER, SORT, WINDOW, CONDITIONAL),
with `masking` true where the output hides the original value. The deprecated field-level
`transformationType` (IDENTITY | MASKED) is filled as well for older consumers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from openlineage.client.facet_v2 import column_lineage_dataset

from pipeline.contracts.model import Column, Contract, pii_outputs

DIRECT, INDIRECT = "DIRECT", "INDIRECT"
IDENTITY, TRANSFORMATION, AGGREGATION = "IDENTITY", "TRANSFORMATION", "AGGREGATION"

Ref = tuple[str, str, str]  # (layer, table, column)


@dataclass(frozen=True)
class Source:
    """One input column of an output column (or of the whole dataset), with how it is used."""

    layer: str
    table: str
    column: str
    subtype: str = IDENTITY
    description: str | None = None
    masking: bool = False
    type: str = DIRECT


# ---------------------------------------------------------------------------------------------
# Gold: {mart: {output column: [(layer, table, column), ...]}} - the DIRECT inputs of every
# output column (see pipeline.gold.transforms). Silver tables are named by contract, gold by mart.
# ---------------------------------------------------------------------------------------------
_ORD, _ACC, _FX, _OPP = (
    ("silver", "orders"),
    ("silver", "accounts"),
    ("silver", "fx_rates"),
    ("silver", "opportunities"),
)
_CON, _WEB, _PRD = ("silver", "contacts"), ("silver", "behavior_events"), ("silver", "product_events")
_FCT = ("gold", "fct_orders")


def _c(table: tuple[str, str], column: str) -> Ref:
    return (*table, column)


GOLD_COLUMN_LINEAGE: dict[str, dict[str, list[Ref]]] = {
    "fct_orders": {
        "order_id": [_c(_ORD, "order_id")],
        "account_id": [_c(_ORD, "account_id")],
        "order_ts": [_c(_ORD, "order_ts")],
        "order_date": [_c(_ORD, "order_date")],
        "status": [_c(_ORD, "status")],
        "currency": [_c(_ORD, "currency")],
        "amount": [_c(_ORD, "amount")],
        "rate_to_usd": [_c(_FX, "rate_to_usd")],
        "fx_rate_date": [_c(_FX, "rate_date"), _c(_ORD, "order_date")],  # USD: the order date
        "amount_usd": [_c(_ORD, "amount"), _c(_FX, "rate_to_usd")],
        "fx_missing": [_c(_FX, "rate_to_usd")],
        "segment": [_c(_ACC, "segment")],
        "country": [_c(_ACC, "country")],
        "account_known": [_c(_ACC, "account_id")],
    },
    "revenue_daily": {
        "order_date": [_c(_FCT, "order_date")],
        "country": [_c(_FCT, "country")],
        "segment": [_c(_FCT, "segment")],
        "revenue_usd": [_c(_FCT, "amount_usd")],
        "order_count": [_c(_FCT, "order_id")],
        "orders_missing_fx": [_c(_FCT, "fx_missing")],
    },
    "pipeline_summary": {
        "stage": [_c(_OPP, "stage")],
        "segment": [_c(_ACC, "segment")],
        "opportunity_count": [_c(_OPP, "opportunity_id")],
        "amount_usd": [_c(_OPP, "amount"), _c(_FX, "rate_to_usd")],
        "weighted_amount_usd": [_c(_OPP, "amount"), _c(_OPP, "probability"), _c(_FX, "rate_to_usd")],
        "opportunities_missing_fx": [_c(_FX, "rate_to_usd")],
    },
    "customer_360": {
        "account_id": [_c(_ACC, "account_id")],
        "account_name": [_c(_ACC, "account_name")],
        "segment": [_c(_ACC, "segment")],
        "country": [_c(_ACC, "country")],
        "industry": [_c(_ACC, "industry")],
        "lifetime_revenue_usd": [_c(_FCT, "amount_usd")],
        "order_count": [_c(_FCT, "order_id")],
        "last_order_date": [_c(_FCT, "order_date")],
        "open_pipeline_usd": [_c(_OPP, "amount"), _c(_FX, "rate_to_usd")],
        "active_contacts": [_c(_CON, "contact_id")],
        "web_events_30d": [_c(_WEB, "event_id")],
        "product_events_30d": [_c(_PRD, "event_id")],
        "last_activity_ts": [_c(_WEB, "event_ts"), _c(_PRD, "event_ts")],
        # the run's as-of date; by default the latest event date of either event source
        "as_of_date": [_c(_WEB, "event_date"), _c(_PRD, "event_date")],
    },
    "engagement_daily": {
        "event_date": [_c(_WEB, "event_date"), _c(_PRD, "event_date")],
        "account_id": [_c(_WEB, "account_id"), _c(_PRD, "account_id")],
        "web_events": [_c(_WEB, "event_id")],
        "product_events": [_c(_PRD, "event_id")],
        "distinct_users": [_c(_WEB, "user_id"), _c(_PRD, "user_id")],
    },
}

# Output columns that aggregate their inputs (sum, count, max over a group): subtype AGGREGATION.
GOLD_AGGREGATED: dict[str, set[str]] = {
    "fct_orders": set(),
    "revenue_daily": {"revenue_usd", "order_count", "orders_missing_fx"},
    "pipeline_summary": {
        "opportunity_count",
        "amount_usd",
        "weighted_amount_usd",
        "opportunities_missing_fx",
    },
    "customer_360": {
        "lifetime_revenue_usd",
        "order_count",
        "last_order_date",
        "open_pipeline_usd",
        "active_contacts",
        "web_events_30d",
        "product_events_30d",
        "last_activity_ts",
        "as_of_date",
    },
    "engagement_daily": {"web_events", "product_events", "distinct_users"},
}


def gold_column_lineage(mart: str) -> dict[str, list[Source]]:
    declared = GOLD_COLUMN_LINEAGE.get(mart, {})
    aggregated = GOLD_AGGREGATED.get(mart, set())
    lineage: dict[str, list[Source]] = {}
    for column, refs in declared.items():
        if column in aggregated:
            subtype = AGGREGATION
        elif len(refs) == 1 and refs[0][2] == column:
            subtype = IDENTITY
        else:
            subtype = TRANSFORMATION
        lineage[column] = [Source(layer, table, col, subtype) for layer, table, col in refs]
    return lineage


# ---------------------------------------------------------------------------------------------
# Silver: from the contract.
# ---------------------------------------------------------------------------------------------
PII_TRANSFORMS = {
    "_hash": "keyed HMAC-SHA256 of the normalised email",
    "_domain": "domain part of the normalised email (local part dropped)",
    "_masked": "every digit but the last two replaced by *",
}


def _referenced(expr: str, contract: Contract) -> list[str]:
    return [n for n in contract.columns if re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", expr)]


def _bronze_columns(col: Column, contract: Contract, seen: frozenset[str] = frozenset()) -> list[str]:
    """The bronze columns a contract column is read or computed from."""
    if not col.expr:
        return [col.source_column]
    found: list[str] = []
    for name in _referenced(col.expr, contract):
        if name in seen or name == col.name:
            continue
        for source in _bronze_columns(contract.columns[name], contract, seen | {col.name}):
            if source not in found:
                found.append(source)
    return found


def _conform_description(col: Column) -> tuple[str, str | None]:
    steps = [*col.normalize]
    if col.type != "string":
        steps.append(f"cast to {col.type}")
    if col.expr:
        return TRANSFORMATION, col.expr
    return (TRANSFORMATION, ", ".join(steps)) if steps else (IDENTITY, None)


def _source_column(contract: Contract, name: str) -> str:
    col = contract.columns.get(name)
    return col.source_column if col is not None and not col.expr else name


def silver_column_lineage(contract: Contract) -> dict[str, list[Source]]:
    """{silver column: [bronze sources]} for every column silver_fields() lists."""
    bronze = contract.source
    lineage: dict[str, list[Source]] = {}
    for col in contract.columns.values():
        sources = _bronze_columns(col, contract)
        for out in pii_outputs(col):
            if out == col.name:
                subtype, description = _conform_description(col)
                masking = False
            else:
                subtype, masking = TRANSFORMATION, True
                description = next(d for suffix, d in PII_TRANSFORMS.items() if out.endswith(suffix))
            lineage[out] = [Source("bronze", bronze, s, subtype, description, masking) for s in sources]
    for audit in ("_source_file", "_batch_id"):
        lineage[audit] = [Source("bronze", bronze, audit)]
    if contract.history == "scd2":
        seq = _source_column(contract, contract.sequence_by)
        lineage["valid_from"] = [Source("bronze", bronze, seq, TRANSFORMATION, f"{contract.sequence_by}")]
        lineage["valid_to"] = [
            Source("bronze", bronze, seq, TRANSFORMATION, "valid_from of the key's next version")
        ]
        current = [Source("bronze", bronze, seq, TRANSFORMATION, "latest version of the key")]
        if contract.soft_delete:
            current.append(
                Source("bronze", bronze, _source_column(contract, contract.soft_delete), TRANSFORMATION)
            )
        lineage["is_current"] = current
    return lineage


def silver_dataset_lineage(contract: Contract) -> list[Source]:
    """INDIRECT inputs of the whole silver table: the contract rules that route rows to
    quarantine (FILTER), and the MERGE: match keys (JOIN), sequence (CONDITIONAL: update when
    newer, latest per key) and soft delete (CONDITIONAL: delete when flagged)."""
    bronze = contract.source
    found: list[Source] = []
    match = list(contract.keys)
    if contract.history == "scd2":
        match_what = "MERGE on the keys and valid_from (SCD2 versions)"
    elif contract.history == "events":
        match_what = "MERGE inserting unseen keys only"
    else:
        match_what = "MERGE on the keys (latest state per key)"
    for key in match:
        found.append(
            Source("bronze", bronze, _source_column(contract, key), "JOIN", match_what, type=INDIRECT)
        )
    seq = _source_column(contract, contract.sequence_by)
    found.append(
        Source(
            "bronze", bronze, seq, "CONDITIONAL", "latest per key; MERGE updates when newer", type=INDIRECT
        )
    )
    if contract.soft_delete:
        found.append(
            Source(
                "bronze",
                bronze,
                _source_column(contract, contract.soft_delete),
                "CONDITIONAL",
                "MERGE deletes soft-deleted keys",
                type=INDIRECT,
            )
        )
    for col in contract.read_columns:
        if _has_rule(col):
            found.append(
                Source("bronze", bronze, col.source_column, "FILTER", "contract rules", type=INDIRECT)
            )
    return found


def _has_rule(col: Column) -> bool:
    return bool(
        not col.nullable
        or col.pattern
        or col.allowed
        or col.reference
        or col.min is not None
        or col.max is not None
        or col.min_exclusive is not None
        or col.type != "string"
    )


def quarantine_column_lineage(contract: Contract) -> dict[str, list[Source]]:
    """Quarantine keeps bronze columns as they arrived: identity for the ones the contract reads."""
    bronze = contract.source
    lineage = {c.source_column: [Source("bronze", bronze, c.source_column)] for c in contract.read_columns}
    for audit in ("_ingestion_ts", "_source_file", "_batch_id"):
        lineage[audit] = [Source("bronze", bronze, audit)]
    return lineage


# ---------------------------------------------------------------------------------------------
# The facet.
# ---------------------------------------------------------------------------------------------
Resolve = Callable[[str, str], tuple[str, str] | None]  # (layer, table) -> (namespace, name)


def _input_field(source: Source, resolve: Resolve) -> column_lineage_dataset.InputField | None:
    where = resolve(source.layer, source.table)
    if where is None:
        return None
    transformation = column_lineage_dataset.Transformation(
        type=source.type,
        subtype=source.subtype,
        description=source.description,
        masking=source.masking,
    )
    return column_lineage_dataset.InputField(
        namespace=where[0], name=where[1], field=source.column, transformations=[transformation]
    )


def column_lineage_facet(
    columns: dict[str, list[Source]],
    resolve: Resolve,
    dataset: list[Source] | None = None,
    producer: str = "",
) -> column_lineage_dataset.ColumnLineageDatasetFacet | None:
    fields: dict[str, column_lineage_dataset.Fields] = {}
    for column, sources in columns.items():
        inputs = [f for f in (_input_field(s, resolve) for s in sources) if f is not None]
        if not inputs:
            continue
        masked = any(s.masking for s in sources)
        identity = all(s.subtype == IDENTITY for s in sources)
        descriptions = sorted({s.description for s in sources if s.description})
        fields[column] = column_lineage_dataset.Fields(
            inputFields=inputs,
            transformationDescription="; ".join(descriptions) or None,
            transformationType="MASKED" if masked else ("IDENTITY" if identity else None),
        )
    if not fields:
        return None
    whole = [f for f in (_input_field(s, resolve) for s in dataset or []) if f is not None]
    return column_lineage_dataset.ColumnLineageDatasetFacet(fields=fields, dataset=whole, producer=producer)
