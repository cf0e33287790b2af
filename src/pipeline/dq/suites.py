"""Expectations generated from the contracts (silver) and from config/dq.yaml (gold).

`Check` is a plain description of one GX expectation (class, arguments, the rule name it is
reported under, its column and severity), so what a suite holds is testable without GX; `to_suite`
turns a list of checks into one `ExpectationSuite` (one validation runs them all).

Silver checks run on the batch a silver step is about to publish, before the commit (the row
count bounds on the table as the publish will leave it, see dq.gate.TableAfter): keys not null
and unique (compound for several keys; SCD2 tables: keys + valid_from, since one key has many
versions), `nullable: false` columns not null, `allowed` and `reference` values in set, `min`/`max`/`min_exclusive` ranges,
`pattern` regexes (matched against the whole value, as the contract rule). PII columns are protected in silver (hashed, masked or kept as names): their
patterns describe the raw value and are not checked; a contract column absent from the table
(an email replaced by its hash) gets no check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pipeline.contracts.model import Contract
from pipeline.dq.config import DqConfig, GoldRules, RowCount

ROW_COUNT_BOUNDS = "table:row_count_bounds"  # a table-level rule: a batch's gate derives its figure


@dataclass(frozen=True)
class Check:
    expectation: str  # a great_expectations.expectations class name
    kwargs: dict[str, Any]
    rule: str  # how the result is reported: "<column>:not_null", "<k1>+<k2>:unique", ...
    severity: str
    column: str = ""
    expected: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def signature(self) -> str:
        return json.dumps(
            [self.expectation, self.kwargs, self.rule, self.severity], sort_keys=True, default=str
        )


def _not_null(col: str, severity: str) -> Check:
    return Check(
        "ExpectColumnValuesToNotBeNull", {"column": col}, f"{col}:not_null", severity, col, "not null"
    )


def _unique(cols: list[str], severity: str) -> Check:
    name = "+".join(cols)
    if len(cols) == 1:
        return Check(
            "ExpectColumnValuesToBeUnique", {"column": cols[0]}, f"{name}:unique", severity, name, "unique"
        )
    return Check(
        "ExpectCompoundColumnsToBeUnique",
        {"column_list": list(cols)},
        f"{name}:unique",
        severity,
        name,
        "unique",
    )


def _in_set(col: str, values: list[str], severity: str, rule: str = "in_set") -> Check:
    shown = ", ".join(values[:10]) + (", ..." if len(values) > 10 else "")
    return Check(
        "ExpectColumnValuesToBeInSet",
        {"column": col, "value_set": list(values)},
        f"{col}:{rule}",
        severity,
        col,
        f"in [{shown}]",
    )


def _between(
    col: str,
    lo: float | None,
    hi: float | None,
    severity: str,
    strict_min: bool = False,
    strict_max: bool = False,
) -> Check:
    kwargs: dict[str, Any] = {"column": col, "min_value": lo, "max_value": hi}
    if strict_min:
        kwargs["strict_min"] = True
    if strict_max:
        kwargs["strict_max"] = True
    low = "" if lo is None else f"{lo:g} {'<' if strict_min else '<='} "
    high = "" if hi is None else f" {'<' if strict_max else '<='} {hi:g}"
    return Check("ExpectColumnValuesToBeBetween", kwargs, f"{col}:range", severity, col, f"{low}value{high}")


def _pattern(col: str, regex: str, severity: str) -> Check:
    return Check(
        "ExpectColumnValuesToMatchRegex",
        {"column": col, "regex": regex},
        f"{col}:pattern",
        severity,
        col,
        regex,
    )


def _row_count(bounds: RowCount) -> Check | None:
    if bounds.min is None and bounds.max is None:
        return None
    expected = f"rows in [{bounds.min if bounds.min is not None else ''}, {bounds.max if bounds.max is not None else ''}]"
    return Check(
        "ExpectTableRowCountToBeBetween",
        {"min_value": bounds.min, "max_value": bounds.max},
        ROW_COUNT_BOUNDS,
        bounds.severity,
        "",
        expected,
    )


def silver_checks(
    contract: Contract,
    config: DqConfig,
    columns: list[str],
    references: dict[str, tuple[str, ...]] | None = None,
) -> list[Check]:
    """The checks of a silver table with `columns`, from its contract and config/dq.yaml."""
    severity = config.defaults.contract_severity
    present = set(columns)
    checks: list[Check] = []
    keys = list(contract.keys) + (["valid_from"] if contract.history == "scd2" else [])
    for key in keys:
        if key in present:
            checks.append(_not_null(key, severity))
    if all(k in present for k in keys):
        checks.append(_unique(keys, severity))
    for col in contract.columns.values():
        if col.name not in present:
            continue
        if not col.nullable and col.name not in keys:
            checks.append(_not_null(col.name, severity))
        if col.allowed:
            checks.append(_in_set(col.name, list(col.allowed), severity, "allowed"))
        if col.reference:
            values = list((references or {}).get(col.reference, ()))
            if values:
                checks.append(_in_set(col.name, values, severity, f"in_{col.reference}"))
        if col.pattern and col.pii == "none":
            checks.append(_pattern(col.name, col.whole_pattern, severity))  # as the contract rule
        if col.min is not None or col.max is not None:
            checks.append(_between(col.name, col.min, col.max, severity))
        if col.min_exclusive is not None:
            checks.append(_between(col.name, col.min_exclusive, None, severity, strict_min=True))
    rules = config.silver_rules(contract.name)
    row_count = _row_count(rules.row_count or config.defaults.row_count)
    if row_count is not None:
        checks.append(row_count)
    return checks


def gold_checks(rules: GoldRules, config: DqConfig, columns: list[str]) -> list[Check]:
    """The checks of a gold mart, from its `gold.<mart>` entry in config/dq.yaml."""
    present = set(columns)
    checks: list[Check] = []
    for col in rules.not_null:
        if col in present:
            checks.append(_not_null(col, rules.severity))
    for keys in rules.unique:
        if all(k in present for k in keys):
            checks.append(_unique(list(keys), rules.severity))
    for col, r in rules.ranges.items():
        if col in present:
            checks.append(_between(col, r.min, r.max, rules.severity, r.strict_min, r.strict_max))
    for col, values in rules.allowed.items():
        if col in present:
            checks.append(_in_set(col, values, rules.severity, "allowed"))
    row_count = _row_count(rules.row_count or config.defaults.row_count)
    if row_count is not None:
        checks.append(row_count)
    return checks


def gold_missing_columns(rules: GoldRules, columns: list[str]) -> list[str]:
    """Columns config/dq.yaml names for a mart that the mart does not have (a finding)."""
    named = (
        {c for keys in rules.unique for c in keys}
        | set(rules.not_null)
        | set(rules.ranges)
        | set(rules.allowed)
    )
    return sorted(named - set(columns))


def to_suite(name: str, checks: list[Check]):
    """One GX ExpectationSuite holding every check (each tagged with its rule and severity)."""
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=name)
    for check in checks:
        cls = getattr(gx.expectations, check.expectation)
        kwargs = {
            k: _bound(v) if k in ("min_value", "max_value") else v
            for k, v in check.kwargs.items()
            if v is not None or k in ("min_value", "max_value")
        }
        suite.add_expectation(cls(**kwargs, meta={"rule": check.rule, "severity": check.severity}))
    return suite


def _bound(value: Any) -> Any:
    """A range bound as GX hands it to the engine: an integral one as an integer, so that Spark
    compares a decimal column with it exactly (with a float it compares both as doubles, and
    pandas, in the driver, compares a Decimal with a float exactly: dq.gate.driver_frame)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value
