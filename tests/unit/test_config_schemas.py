"""The JSON Schemas of config/ (schemas/*.schema.json, mapped to the files for editors in
.vscode/settings.json): published as generated, every config file valid against its schema, a
typo or a wrong type named with file and key, and the models agreeing with the loaders."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from pipeline.catalog import load_catalog
from pipeline.contracts.model import load_contract, load_contracts
from pipeline.dq.config import load_dq_config
from pipeline.driver.dag import load_dag
from pipeline.erase import load_erasure
from pipeline.gold.config import load_marts_config
from pipeline.jobs import JOBS
from pipeline.maintenance import load_maintenance
from pipeline.observability.metrics import load_metric_catalogue
from pipeline.schemas import SCHEMAS, config_files, drift, schema_name, validate_file
from pipeline.schemas.__main__ import main
from pipeline.settings import ConfigError, load_settings
from tests.helpers import REPO

CONFIG = REPO / "config"

# schema name -> the loader the pipeline reads such a file with
LOADERS: dict[str, Callable[[Path], object]] = {
    "settings": lambda p: load_settings(p.stem, config_dir=p.parent),
    "datasets": load_catalog,
    "contract": lambda p: load_contract(p, p.parent.parent / "reference"),
    "dq": load_dq_config,
    "marts": lambda p: load_marts_config(p.parent),
    "maintenance": lambda p: load_maintenance(p.parent),
    "metrics": load_metric_catalogue,
    "pipeline": lambda p: load_dag(p, set(JOBS)),
    "erasure": lambda p: load_erasure(
        p.parent, load_contracts(p.parent / "contracts", p.parent / "reference")
    ),
}


def model_accepts(name: str, path: Path) -> bool:
    model, _ = SCHEMAS[name]
    try:
        model.model_validate(yaml.safe_load(path.read_text()) or {})
    except ValidationError:
        return False
    return True


def loader_accepts(name: str, path: Path) -> bool:
    try:
        LOADERS[name](path)
    except ConfigError:
        return False
    return True


@pytest.fixture
def config(tmp_path):
    """A copy of config/ to change, and a way to change one of its files."""
    copy = tmp_path / "config"
    shutil.copytree(CONFIG, copy)

    def change(relative: str, edit: Callable[[dict], None]) -> Path:
        path = copy / relative
        data = yaml.safe_load(path.read_text())
        edit(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return copy, change


def test_published_schemas_are_the_generated_ones():
    assert drift() == []
    mapping = json.loads((REPO / ".vscode" / "settings.json").read_text())["yaml.schemas"]
    assert sorted(mapping) == sorted(f"./schemas/{name}.schema.json" for name in SCHEMAS)
    for schema in mapping:
        assert json.loads((REPO / schema).read_text())["$schema"].startswith("https://json-schema.org/")


def test_every_config_file_has_a_schema_and_is_valid():
    files = config_files(CONFIG)
    assert len(files) >= 10 + 7  # the config folder's files and the seven contracts
    for path in files:
        name = schema_name(path, CONFIG)
        assert name is not None, f"{path}: no schema describes it (add it to pipeline.schemas.SCHEMAS)"
        assert validate_file(path, CONFIG) == [], path
        assert model_accepts(name, path) and loader_accepts(name, path), path
    assert main(["--validate", str(CONFIG)]) == 0


def test_a_typo_and_a_wrong_type_are_named_with_file_and_key(config):
    copy, change = config
    dq = change("dq.yaml", lambda d: d["defaults"]["row_count"].update(severty="warn"))
    assert validate_file(dq, copy) == [
        f"{dq}: defaults.row_count.severty: unknown key; allowed: min, max, severity"
    ]
    local = change("local.yaml", lambda d: d["spark"].update(shuffle_partitions="4"))
    assert validate_file(local, copy) == [f"{local}: spark.shuffle_partitions: '4' is not of type 'integer'"]
    contract = change("contracts/orders.yaml", lambda d: d["columns"]["amount"].update(nulable=False))
    [message] = validate_file(contract, copy)
    assert message.startswith(f"{contract}: columns.amount.nulable: unknown key; allowed: type, nullable,")
    maintenance = change("maintenance.yaml", lambda d: d["zorder"][1].update(table=7))
    assert validate_file(maintenance, copy) == [f"{maintenance}: zorder[1].table: 7 is not of type 'string'"]
    assert main(["--validate", str(copy)]) == 1


def test_the_loaders_name_the_same_key_as_the_schema(config):
    """One validator (pipeline.typed): a loader refuses with the file, the key (list indexes
    included), what was expected and what was found."""
    copy, change = config
    dq = change("dq.yaml", lambda d: d["defaults"]["row_count"].update(severty="warn"))
    with pytest.raises(ConfigError) as err:
        LOADERS["dq"](dq)
    assert str(err.value) == f"{dq}: defaults.row_count: unknown key(s) severty; allowed: min, max, severity"
    maintenance = change("maintenance.yaml", lambda d: d["zorder"][1].update(table=7))
    with pytest.raises(ConfigError) as err:
        LOADERS["maintenance"](maintenance)
    assert str(err.value) == f"{maintenance}: zorder[1].table: expected str, got 7"
    contract = change("contracts/orders.yaml", lambda d: d["columns"]["amount"].update(type=["decimal"]))
    with pytest.raises(ConfigError) as err:
        LOADERS["contract"](contract)
    assert str(err.value) == f"{contract}: columns.amount.type: expected str, got ['decimal']"
    dag = change("pipeline.yaml", lambda d: d["retry"].update(max_attempts="3"))
    with pytest.raises(ConfigError) as err:
        LOADERS["pipeline"](dag)
    assert str(err.value) == f"{dag}: retry.max_attempts: expected int, got '3'"


def set_key(*keys: str | int, value: object) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        for key in keys[:-1]:
            data = data[key]
        data[keys[-1]] = value

    return edit


def drop_key(*keys: str) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        for key in keys[:-1]:
            data = data[key]
        del data[keys[-1]]

    return edit


INVALID = [
    ("local.yaml", set_key("lake", "engin", value="auto")),  # a typo'd key
    ("local.yaml", set_key("spark", "shuffle_partitions", value=4.5)),  # a float for an int
    ("local.yaml", set_key("lineage", "fail_on_error", value="yes")),  # a string for a bool
    ("local.yaml", set_key("pii", "hmac_key", value="s3cret")),  # a secret's value, not a reference
    ("dev.yaml", set_key("aws", "emr", "max_executors", value=True)),  # a bool for an int
    ("datasets.yaml", set_key("datasets", "crm_accounts", "reader", value="xml")),  # not a reader
    ("datasets.yaml", set_key("datasets", "fx_rates", "key", value="rate_date")),  # not a list
    ("datasets.yaml", set_key("datasets", value={})),  # no dataset
    ("contracts/orders.yaml", set_key("history", value="scd3")),
    ("contracts/orders.yaml", set_key("columns", "amount", "nullable", value="no")),
    ("contracts/orders.yaml", drop_key("sequence_by")),  # a required key missing
    ("dq.yaml", set_key("gold", "fct_orders", "ranges", "amount_usd", "min", value="0")),
    ("dq.yaml", set_key("silver", "orders", "freshness", "severity", value="fatal")),
    ("marts.yaml", set_key("fct_orders", "before_first_version", value="latest")),
    ("maintenance.yaml", set_key("target_file_mb", value="128")),
    ("maintenance.yaml", set_key("zorder", 0, "column", value=["x"])),
    ("metrics.yaml", drop_key("metrics", "RowsIn", "description")),
    ("metrics.yaml", set_key("metrics", "RowsIn", "alarm", value={"statistic": "Median"})),
    ("pipeline.yaml", set_key("steps", "silver_orders", "depends", value=["bronze_snowflake_orders"])),
    ("pipeline.yaml", set_key("steps", "silver_orders", "job", value="platinum")),
    ("pipeline.yaml", set_key("retry", "max_attempts", value="3")),
    ("erasure.yaml", set_key("subjects", 0, "id", value=["contact_id"])),
    ("erasure.yaml", set_key("raw_text", value="value")),
]
VALID = [
    ("local.yaml", set_key("spark", "conf", value={"spark.sql.adaptive.enabled": True, "spark.x": 3})),
    ("local.yaml", set_key("lake", "storage_options", value={"AWS_ALLOW_HTTP": "true"})),
    ("pipeline.yaml", set_key("retry", value=None)),  # the default policy
    ("pipeline.yaml", set_key("retry", "initial_backoff_s", value=1)),  # an int for a float
    ("dq.yaml", set_key("gold", "revenue_daily", "allowed", value={"segment": ["SMB", 1]})),
    ("contracts/orders.yaml", set_key("columns", "amount", "min", value=0.5)),
]


@pytest.mark.parametrize(("relative", "edit"), INVALID, ids=[f"{f}-{i}" for i, (f, _) in enumerate(INVALID)])
def test_models_and_loaders_both_refuse(config, relative, edit):
    copy, change = config
    path = change(relative, edit)
    name = schema_name(path, copy)
    assert not loader_accepts(name, path)
    assert not model_accepts(name, path)
    assert validate_file(path, copy), "the published schema lets it through"


@pytest.mark.parametrize(("relative", "edit"), VALID, ids=[f"{f}-{i}" for i, (f, _) in enumerate(VALID)])
def test_models_and_loaders_both_accept(config, relative, edit):
    copy, change = config
    path = change(relative, edit)
    name = schema_name(path, copy)
    assert loader_accepts(name, path) and model_accepts(name, path)
    assert validate_file(path, copy) == []
