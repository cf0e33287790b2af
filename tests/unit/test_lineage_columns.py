"""The declared column lineage cannot drift from the code it describes.

Gold: every mart is built (lazily, no Spark action) from empty silver inputs with the silver
schemas the contracts give, and its output columns must equal GOLD_COLUMN_LINEAGE's keys; every
declared input column must exist in its silver table (contract) or gold mart (declaration).
Silver: the lineage covers exactly the columns silver_fields() lists.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from pipeline.contracts.model import load_contracts
from pipeline.gold import transforms as T
from pipeline.gold.marts import MARTS, Inputs
from pipeline.lineage.columns import (
    GOLD_AGGREGATED,
    GOLD_COLUMN_LINEAGE,
    quarantine_column_lineage,
    silver_column_lineage,
    silver_dataset_lineage,
)
from pipeline.lineage.datasets import silver_fields

CONFIG = Path(__file__).resolve().parents[2] / "config"


@pytest.fixture(scope="module")
def contracts():
    return load_contracts(CONFIG / "contracts", CONFIG / "reference")


@pytest.fixture(scope="module")
def gold_outputs(spark, contracts):
    tables = {
        name: spark.createDataFrame([], ", ".join(f"`{c}` {t}" for c, t in silver_fields(contract)))
        for name, contract in contracts.items()
    }
    tables["fx_calendar"] = T.fx_calendar(tables["fx_rates"])
    built = {}
    for name in ["fct_orders", *[m for m in MARTS if m != "fct_orders"]]:
        built[name] = MARTS[name].build(Inputs({**tables, **built}, date(2026, 1, 1)))
    return {name: df.columns for name, df in built.items()}


def test_every_mart_is_declared(gold_outputs):
    assert set(GOLD_COLUMN_LINEAGE) == set(MARTS) == set(GOLD_AGGREGATED)


@pytest.mark.parametrize("mart", sorted(MARTS))
def test_declared_gold_columns_equal_the_transform_output(gold_outputs, mart):
    assert set(GOLD_COLUMN_LINEAGE[mart]) == set(gold_outputs[mart])
    assert GOLD_AGGREGATED[mart] <= set(GOLD_COLUMN_LINEAGE[mart])


@pytest.mark.parametrize("mart", sorted(MARTS))
def test_declared_gold_inputs_exist_and_are_read_by_the_mart(contracts, mart):
    spec = MARTS[mart]
    for column, refs in GOLD_COLUMN_LINEAGE[mart].items():
        assert refs, f"{mart}.{column}: no inputs declared"
        for layer, table, source in refs:
            if layer == "silver":
                assert table in spec.silver, f"{mart}.{column}: {table} is not an input of the mart"
                assert source in dict(silver_fields(contracts[table])), f"{mart}.{column}: {table}.{source}"
            else:
                assert (layer, table) == ("gold", table) and table in spec.gold, f"{mart}.{column}"
                assert source in GOLD_COLUMN_LINEAGE[table], f"{mart}.{column}: gold {table}.{source}"


def test_silver_lineage_covers_every_silver_column(contracts):
    for name, contract in contracts.items():
        lineage = silver_column_lineage(contract)
        assert list(lineage) == [c for c, _ in silver_fields(contract)], name
        assert all(sources for sources in lineage.values()), name
        assert silver_dataset_lineage(contract), name
        assert quarantine_column_lineage(contract), name


def test_silver_computed_and_renamed_columns_trace_to_bronze(contracts):
    fx = silver_column_lineage(contracts["fx_rates"])
    assert [s.column for s in fx["units_per_usd"]] == ["rate"]
    assert [s.column for s in fx["rate_to_usd"]] == ["rate"]
    orders = silver_column_lineage(contracts["orders"])
    assert [s.column for s in orders["order_date"]] == ["order_ts"]
    accounts = silver_column_lineage(contracts["accounts"])
    assert [s.column for s in accounts["owner_email_hash"]] == ["owner_email"]
    assert accounts["owner_email_hash"][0].masking
    assert [s.column for s in accounts["valid_from"]] == ["updated_at"]
