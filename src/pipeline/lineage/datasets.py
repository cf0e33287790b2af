"""The datasets a DAG step reads and writes, named by storage location (OpenLineage naming).

- a local path: namespace `file`, name = the absolute path;
- `s3://bucket/key` (s3a, s3n too): namespace `s3://bucket`, name = the key path;
- any other `scheme://authority/path` (hdfs, abfss, gs): namespace `scheme://authority`, name = path;
- a JDBC source: namespace `postgres://host:port` (redshift://, mysql://, ...), name
  `database.schema.table`;
- a Kafka topic: namespace `kafka://<first bootstrap server>`, name = the topic.

Per layer (see pipeline.jobs, silver.job, gold.marts):
- bronze: the landing folder (or the JDBC table / Kafka topic the source settings name) ->
  bronze/<dataset>;
- silver: bronze/<contract.source> -> silver/<name> + quarantine/<name>;
- gold: the mart's silver and gold inputs (gold.marts.MARTS) -> gold/<mart>.

Nothing here starts Spark work: schemas come from the contracts (silver) and the declared gold
column lineage (gold, names only); bronze and quarantine carry no schema facet.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from pipeline.contracts.model import Contract, pii_outputs

LANDING, SOURCE = "landing", "source"
# Audit columns silver keeps from bronze (silver.job.KEEP minus _ingestion_ts, dropped before write).
SILVER_AUDIT_COLUMNS = (("_source_file", "string"), ("_batch_id", "string"))
SCD2_COLUMNS = (("valid_from", "timestamp"), ("valid_to", "timestamp"), ("is_current", "boolean"))


@dataclass(frozen=True)
class DatasetRef:
    """One input or output of a step: its OpenLineage identity plus where it sits in the lake."""

    namespace: str
    name: str
    layer: str  # landing | source | bronze | silver | quarantine | gold
    table: str  # the dataset / contract / mart name within the layer
    fields: tuple[tuple[str, str | None], ...] = ()  # (column, type); empty: no schema facet

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class StepDatasets:
    inputs: list[DatasetRef] = field(default_factory=list)
    outputs: list[DatasetRef] = field(default_factory=list)

    def find(self, layer: str, table: str) -> DatasetRef | None:
        return next((d for d in [*self.inputs, *self.outputs] if (d.layer, d.table) == (layer, table)), None)


def location_dataset(location: str) -> tuple[str, str]:
    """(namespace, name) of a storage location, per the OpenLineage dataset naming spec."""
    parsed = urlparse(location)
    scheme = parsed.scheme.lower()
    if scheme in ("", "file"):
        path = parsed.path if scheme == "file" else location
        return "file", os.path.abspath(path)
    if scheme in ("s3", "s3a", "s3n"):
        return f"s3://{parsed.netloc}", parsed.path.lstrip("/")
    return f"{scheme}://{parsed.netloc}", parsed.path or "/"


JDBC_SCHEMES = {"postgresql": "postgres", "redshift": "redshift", "mysql": "mysql", "sqlserver": "sqlserver"}


def jdbc_dataset(url: str, table: str) -> tuple[str, str]:
    """`jdbc:postgresql://host:5432/db` + `schema.table` -> (`postgres://host:5432`, `db.schema.table`)."""
    parsed = urlparse(url.removeprefix("jdbc:"))
    scheme = JDBC_SCHEMES.get(parsed.scheme, parsed.scheme)
    host = parsed.hostname or ""
    port = f":{parsed.port}" if parsed.port else ""
    database = parsed.path.strip("/").split(";")[0]
    name = f"{database}.{table}" if database else table
    return f"{scheme}://{host}{port}", name


def kafka_dataset(bootstrap_servers: str, topic: str) -> tuple[str, str]:
    first = bootstrap_servers.split(",")[0].strip()
    return f"kafka://{first}", topic


def silver_fields(contract: Contract) -> list[tuple[str, str]]:
    """The columns a silver table holds, in order: contract columns with PII replaced by their
    protected forms (email -> _hash, _domain; phone -> _masked), the audit columns, and for SCD2
    the validity columns."""
    found: list[tuple[str, str]] = []
    for col in contract.columns.values():
        for out in pii_outputs(col):
            found.append((out, "string" if out != col.name else col.type))
    found += SILVER_AUDIT_COLUMNS
    if contract.history == "scd2":
        found += SCD2_COLUMNS
    return found


def _ref(location: str, layer: str, table: str, fields: list[tuple[str, str | None]] | None = None):
    namespace, name = location_dataset(location)
    return DatasetRef(namespace, name, layer, table, tuple(fields or ()))


def bronze_source(ctx: Any, dataset: str) -> DatasetRef:
    """Where a bronze step reads: the landing folder, or the JDBC table / Kafka topic configured."""
    source = ctx.catalog.source(ctx.settings, dataset)
    if source.mode == "kafka" and source.kafka is not None:
        namespace, name = kafka_dataset(source.kafka.bootstrap_servers, source.kafka.topic)
        return DatasetRef(namespace, name, SOURCE, dataset)
    if source.mode == "jdbc" and source.jdbc is not None:
        namespace, name = jdbc_dataset(source.jdbc.url, source.jdbc.table)
        return DatasetRef(namespace, name, SOURCE, dataset)
    return _ref(ctx.landing_path(dataset), LANDING, dataset)


def gold_fields(mart: str) -> list[tuple[str, str | None]]:
    from pipeline.lineage.columns import GOLD_COLUMN_LINEAGE

    return [(column, None) for column in GOLD_COLUMN_LINEAGE.get(mart, {})]


def step_datasets(ctx: Any, step: Any) -> StepDatasets:
    """Inputs and outputs of a DAG step (job bronze | silver | gold | maintain); unknown jobs: none."""
    if step.job == "bronze":
        return StepDatasets(
            [bronze_source(ctx, step.dataset)],
            [_ref(ctx.table_path("bronze", step.dataset), "bronze", step.dataset)],
        )
    if step.job == "silver":
        contract = ctx.contracts[step.dataset]
        return StepDatasets(
            [_ref(ctx.table_path("bronze", contract.source), "bronze", contract.source)],
            [
                _ref(ctx.table_path("silver", step.dataset), "silver", step.dataset, silver_fields(contract)),
                _ref(ctx.table_path("quarantine", step.dataset), "quarantine", step.dataset),
            ],
        )
    if step.job == "gold":
        from pipeline.gold.marts import MARTS

        mart = MARTS[step.dataset]
        inputs = []
        for name in mart.silver:
            contract = ctx.contracts.get(name)
            fields = silver_fields(contract) if contract is not None else None
            inputs.append(_ref(ctx.table_path("silver", name), "silver", name, fields))
        for name in mart.gold:
            inputs.append(_ref(ctx.table_path("gold", name), "gold", name, gold_fields(name)))
        return StepDatasets(
            inputs, [_ref(ctx.table_path("gold", mart.name), "gold", mart.name, gold_fields(mart.name))]
        )
    if step.job == "maintain":  # rewrites its layer's tables; bronze's guard reads silver's commits
        from pipeline.maintenance import MAINTENANCE_LAYERS, lake_tables

        tables = [t for t in lake_tables(ctx) if t.layer in MAINTENANCE_LAYERS[step.dataset]]
        outputs = [_ref(t.path, t.layer, t.name) for t in tables]
        consumers = {path: key for t in tables for key, path in t.consumers}
        readers = [_ref(path, *key.split("/")) for path, key in sorted(consumers.items())]
        return StepDatasets([*outputs, *readers], outputs)
    return StepDatasets()
