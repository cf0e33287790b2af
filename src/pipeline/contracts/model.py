"""Data contracts (`config/contracts/<dataset>.yaml`): the single source of truth for a silver
dataset's columns, types, keys, rules, PII classes and evolution policy.

Validated on load: a contract that names an unknown type, column, normaliser or reference
fails at start-up with the file and key, never mid-run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import Literal

import yaml

from pipeline.settings import ConfigError, load_yaml, parse_typed

SIMPLE_TYPES = {"string", "int", "bigint", "double", "boolean", "date", "timestamp", "map<string,string>"}
DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
NUMERIC_TYPES = {"int", "bigint", "double"}  # and decimal(p,s)
NORMALIZERS = {"trim", "lower", "upper", "country_code"}
INTERVAL = re.compile(r"^(\d{1,6}) (second|minute|hour|day)s?$")  # "1 day", "6 hours"
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# The earliest date or timestamp a column takes unless its contract says `not_before`: earlier
# ones are placeholders (0001-01-01) or typos, and a year before 1678 does not fit the
# nanosecond timestamps of pyarrow and pandas readers of the table.
DEFAULT_NOT_BEFORE = "1900-01-01"


def interval_seconds(text: str) -> int:
    """The seconds of a contract interval ("1 day": 86400); ValueError when it is not one."""
    found = INTERVAL.match(text)
    if found is None:
        raise ValueError(f"not an interval: {text!r}")
    return int(found[1]) * _UNIT_SECONDS[found[2]]


PII_CLASSES = {"none", "name", "email", "phone"}


class ContractError(ConfigError):
    """A contract is invalid, or data breaks its evolution policy (fails the step, no retry)."""


@dataclass(frozen=True)
class Column:
    type: str
    nullable: bool = True
    description: str = ""
    source: str = ""  # bronze column it comes from; default: the same name
    expr: str = ""  # SQL over other (typed) columns; computed, not read
    normalize: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)
    pattern: str = ""
    min: float | None = None
    max: float | None = None
    min_exclusive: float | None = None
    # A date or timestamp at most this much ("1 day") later than the record's arrival in bronze
    # (`_ingestion_ts`): a source clock gone wrong or a year-9999 placeholder would otherwise win
    # every "latest" for good (sequence columns) or pin a table's newest data time.
    not_after_arrival: str = ""
    # A date or timestamp not before this date ("1900-01-01"; empty: DEFAULT_NOT_BEFORE).
    not_before: str = ""
    # A date equal to the date in its landing file's name (`rates_2026-07-01.json`): a vendor
    # document whose own date says another day is no fixing of the day it was delivered as.
    # A file name without a date is not checked.
    matches_file_date: bool = False
    # A decimal whose source gives more fractional digits than its scale is rounded half up to it
    # (a vendor's FX rate, a measurement) instead of quarantined as `<column>:scale` (amounts).
    rounds: bool = False
    reference: str = ""  # config/reference/<name>.yaml: the allowed values
    pii: Literal["none", "name", "email", "phone"] = "none"
    name: str = ""

    @property
    def source_column(self) -> str:
        return self.source or self.name

    @property
    def earliest(self) -> str:
        """The lower bound of a date or timestamp column (`not_before`), "" for other types."""
        return (self.not_before or DEFAULT_NOT_BEFORE) if self.type in ("date", "timestamp") else ""

    @property
    def whole_pattern(self) -> str:
        """`pattern` matched against the whole value. Java's and Python's `$` also match before a
        final line break, so "ACC-000002\\n" would pass `^ACC-[0-9]{6}$`; a lookahead for no
        further character ends the value for both engines (Spark's rlike and GX)."""
        return rf"^(?:{self.pattern})(?![\s\S])" if self.pattern else ""


@dataclass(frozen=True)
class Evolution:
    new_columns: Literal["accept", "fail"] = "accept"
    removed_columns: Literal["accept", "fail"] = "fail"
    retyped_columns: Literal["accept", "fail"] = "fail"


@dataclass(frozen=True)
class Contract:
    name: str
    description: str
    grain: str
    source: str  # bronze dataset (config/datasets.yaml)
    keys: list[str]
    sequence_by: str
    history: Literal["scd2", "current", "events"]
    columns: dict[str, Column]
    tracked: list[str] = field(default_factory=list)
    soft_delete: str = ""
    partition_by: list[str] = field(default_factory=list)
    # history events: how many days either side of a batch's dates (its date partition column)
    # silver looks for an event id it holds already, e.g. one delivered again with a corrected
    # time on another date. Further apart, the delivery is a second row.
    redelivery_days: int = 7
    evolution: Evolution = field(default_factory=Evolution)

    def column(self, name: str) -> Column:
        return self.columns[name]

    @property
    def read_columns(self) -> list[Column]:
        return [c for c in self.columns.values() if not c.expr]

    @property
    def derived_columns(self) -> list[Column]:
        return [c for c in self.columns.values() if c.expr]


def load_contract(path: Path, reference_dir: Path) -> Contract:
    where = str(path)
    try:
        raw = load_yaml(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ContractError(f"{where}: cannot read contract: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("columns"), dict):
        raise ContractError(f"{where}: expected a mapping with a 'columns' mapping")
    for name, spec in raw["columns"].items():
        if spec is not None and not isinstance(spec, dict):
            raise ContractError(
                f"{where}: columns.{name}: expected a mapping such as {{type: 'decimal(18,2)', nullable: false}}, "
                f"got {spec!r}"
            )
    columns = {name: {**(spec or {}), "name": name} for name, spec in raw["columns"].items()}
    contract = parse_typed(Contract, {**raw, "columns": columns}, where, "")
    _validate(contract, where, reference_dir)
    if contract.name != Path(path).stem:
        raise ContractError(f"{where}: name: {contract.name!r} must match the file name {Path(path).stem!r}")
    return contract


def _has_control_character(name: str) -> bool:
    return any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in name)


def _validate(c: Contract, where: str, reference_dir: Path) -> None:
    for col in c.columns.values():
        key = f"{where}: columns.{col.name}"
        # A rule's name is `<column>:<rule>`; conformance joins a row's rules with a control
        # character (silver.conform.RULE_SEPARATOR), so no name may hold one.
        for what, name in (("a column name", col.name), ("reference", col.reference)):
            if _has_control_character(name):
                raise ContractError(f"{key}: {what} {name!r} holds a control character; rename it")
        if col.type not in SIMPLE_TYPES and not DECIMAL.match(col.type):
            raise ContractError(
                f"{key}.type: unknown type {col.type!r}; use one of {sorted(SIMPLE_TYPES)} or decimal(p,s)"
            )
        unknown = set(col.normalize) - NORMALIZERS
        if unknown:
            raise ContractError(f"{key}.normalize: unknown {sorted(unknown)}; known: {sorted(NORMALIZERS)}")
        if col.pattern:
            try:
                re.compile(col.whole_pattern)  # as it runs: a global flag must lead the pattern
            except re.error as exc:
                raise ContractError(f"{key}.pattern: not a valid regular expression: {exc}") from exc
        if col.reference:
            reference_values(reference_dir, col.reference, key)
        if col.not_after_arrival and (
            col.type not in ("date", "timestamp") or not INTERVAL.match(col.not_after_arrival)
        ):
            raise ContractError(
                f"{key}.not_after_arrival: {col.not_after_arrival!r} on a {col.type} column; expected an "
                "interval such as '1 day' or '6 hours' (seconds, minutes, hours, days) on a date or timestamp"
            )
        if col.not_before and (col.type not in ("date", "timestamp") or not _is_date(col.not_before)):
            raise ContractError(
                f"{key}.not_before: {col.not_before!r} on a {col.type} column; expected a date such as "
                f"'{DEFAULT_NOT_BEFORE}' (yyyy-mm-dd) on a date or timestamp"
            )
        bounds = [b for b in ("min", "max", "min_exclusive") if getattr(col, b) is not None]
        if bounds and col.type not in NUMERIC_TYPES and not DECIMAL.match(col.type):
            raise ContractError(
                f"{key}.{bounds[0]}: on a {col.type} column; only a number has bounds "
                "(a date or timestamp: not_before, not_after_arrival; a string: pattern, allowed)"
            )
        if col.rounds and not DECIMAL.match(col.type):
            raise ContractError(
                f"{key}.rounds: on a {col.type} column; only a decimal is rounded to its scale"
            )
        if col.matches_file_date and col.type != "date":
            raise ContractError(
                f"{key}.matches_file_date: on a {col.type} column; only a date column can match"
            )
        if col.expr and col.source:
            raise ContractError(f"{key}: a column is either read (source) or computed (expr), not both")
    names = set(c.columns)
    for attr in ("keys", "tracked", "partition_by"):
        missing = [n for n in getattr(c, attr) if n not in names and not _is_pii_output(c, n)]
        if missing:
            raise ContractError(f"{where}: {attr}: unknown column(s) {missing}")
    if not c.keys:
        raise ContractError(f"{where}: keys: at least one key column is required")
    if c.sequence_by not in names and not c.sequence_by.startswith("_"):
        raise ContractError(f"{where}: sequence_by: unknown column {c.sequence_by!r}")
    if c.history == "scd2" and not c.tracked:
        raise ContractError(f"{where}: tracked: scd2 history needs the tracked attributes")
    if c.redelivery_days < 0:
        raise ContractError(f"{where}: redelivery_days: {c.redelivery_days} is below 0")
    if c.soft_delete and c.columns.get(c.soft_delete, Column("x")).type != "boolean":
        raise ContractError(f"{where}: soft_delete: {c.soft_delete!r} must be a boolean column")


def _is_date(text: str) -> bool:
    try:
        return bool(ISO_DATE.match(text)) and bool(date.fromisoformat(text))
    except ValueError:
        return False


def _is_pii_output(c: Contract, name: str) -> bool:
    """Tracked attributes may name the protected form of a PII column (owner_email_hash)."""
    return any(name in pii_outputs(col) for col in c.columns.values())


def pii_outputs(col: Column) -> list[str]:
    """The silver columns a contract column becomes."""
    if col.pii == "email":
        return [f"{col.name}_hash", f"{col.name}_domain"]
    if col.pii == "phone":
        return [f"{col.name}_masked"]
    return [col.name]


@cache
def reference_values(reference_dir: Path, name: str, key: str = "") -> tuple[str, ...]:
    path = Path(reference_dir) / f"{name}.yaml"
    try:
        data = load_yaml(path.read_text()) or {}
    except OSError as exc:
        raise ContractError(f"{key}.reference: no reference list {path}") from exc
    values = data.get(name)
    if not isinstance(values, list) or not values:
        raise ContractError(f"{path}: expected a non-empty list under {name!r}")
    return tuple(str(v) for v in values)


def load_contracts(contracts_dir: Path, reference_dir: Path) -> dict[str, Contract]:
    contracts = {p.stem: load_contract(p, reference_dir) for p in sorted(Path(contracts_dir).glob("*.yaml"))}
    if not contracts:
        raise ContractError(f"{contracts_dir}: no contracts found")
    return contracts
