"""Silver as pure transforms: every contract rule, normalisation, evolution policy, PII, SCD2."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from pipeline.contracts.model import (
    Column,
    Contract,
    ContractError,
    load_contract,
    load_contracts,
    reference_values,
)
from pipeline.dq.config import DqConfig
from pipeline.dq.suites import silver_checks
from pipeline.silver import conform as conform_module
from pipeline.silver.conform import (
    RULES,
    check_evolution,
    conform,
    conform_rows,
    flag_conflicts,
    quarantined,
    rule_names,
    valid_values,
)
from pipeline.silver.history import after_deletes, distinct_versions, latest_per_key, scd2_changes
from pipeline.silver.pii import mask_phone, protect
from tests.helpers import session_conf

REPO = Path(__file__).resolve().parents[2]
REFS = {"currencies": ("EUR", "USD")}


def contract(**columns: Column) -> Contract:
    cols = {n: Column(**{**c.__dict__, "name": n}) for n, c in columns.items()}
    return Contract(
        name="t",
        description="d",
        grain="g",
        source="s",
        keys=["id"],
        sequence_by="updated_at",
        history="current",
        columns=cols,
    )


def broken(spark, c: Contract, rows, schema) -> list[list[str]]:
    """Each row's broken rules, in the order of `rows` (the conflict rule's join reorders)."""
    df = spark.createDataFrame([(i, *r) for i, r in enumerate(rows)], f"_row int, {schema}")
    return [sorted(r[RULES]) for r in conform(df, c, REFS).orderBy("_row").select(RULES).collect()]


def test_every_committed_contract_loads_and_compiles(spark):
    contracts = load_contracts(REPO / "config" / "contracts", REPO / "config" / "reference")
    assert set(contracts) == {
        "accounts",
        "contacts",
        "opportunities",
        "orders",
        "behavior_events",
        "product_events",
        "fx_rates",
    }
    for c in contracts.values():
        assert "record:malformed" in rule_names(c) and f"{c.keys[0]}:missing" in rule_names(c)


@pytest.fixture
def codegen_without_fallback(spark):
    """A stage whose compiled code Java refuses (a method over 64 KB) raises here: Spark would run
    it as slower per-operator code, with a warning in the log only."""
    with session_conf(spark, "spark.sql.codegen.fallback", "false"):
        yield


def test_every_committed_contract_conforms_in_code_that_compiles(spark, codegen_without_fallback):
    """Conformance not cached (the SCD2 late path, quarantine replay, the property tests), its
    quarantined and valid rows computed whole with Spark's fallback off: a stage whose generated
    code Java refuses fails here instead of running as slower per-operator code. A filter on the
    rules under the conflict aggregate made orders' aggregate outgrow Java's 64 KB method limit."""
    ref_dir = REPO / "config" / "reference"
    contracts = load_contracts(REPO / "config" / "contracts", ref_dir)
    keep = ("_ingestion_ts", "_source_file", "_batch_id")
    for c in contracts.values():
        refs = {
            col.reference: reference_values(ref_dir, col.reference) for col in c.read_columns if col.reference
        }
        # As bronze holds them: text, but a map or list arrives typed (JSON events).
        types = {col.source_column: col.type if "<" in col.type else "string" for col in c.read_columns}
        bronze = spark.createDataFrame(
            [(*[None] * len(types), datetime(2026, 3, 1), "part-0.csv", "b1")],
            ", ".join(
                [
                    *(f"`{n}` {t}" for n, t in types.items()),
                    "_ingestion_ts timestamp, _source_file string, _batch_id string",
                ]
            ),
        )
        conformed = conform(bronze, c, refs)
        whole = F.to_json(F.struct("*")).alias("row")  # every column computed, none pruned
        outputs = (
            quarantined(conformed, "b1")
            .select(whole)
            .unionAll(valid_values(conformed, c, keep).select(whole))
        )
        assert len(outputs.collect()) == 1, c.name  # the check is that it runs: no compile error


def test_each_rule_kind_reports_its_own_name(spark):
    c = contract(
        id=Column(type="string", nullable=False, pattern="^A-[0-9]+$"),
        kind=Column(type="string", allowed=["x", "y"]),
        cur=Column(type="string", reference="currencies"),
        n=Column(type="int", min=0, max=10),
        rate=Column(type="double", min_exclusive=0),
        updated_at=Column(type="timestamp"),
    )
    schema = "id string, kind string, cur string, n string, rate string, updated_at string"
    rows = [
        ("A-1", "x", "EUR", "5", "1.5", "2026-01-01T00:00:00Z"),  # clean
        (None, "z", "XXX", "11", "0", "yesterday"),
        ("B-1", "y", "USD", "-1", "abc", None),
    ]
    assert broken(spark, c, rows, schema) == [
        [],
        sorted(
            [
                "id:missing",
                "kind:not_allowed",
                "cur:not_in_currencies",
                "n:above_max",
                "rate:not_above_min",
                "updated_at:unparseable",
            ]
        ),
        sorted(["id:pattern", "n:below_min", "rate:unparseable"]),
    ]


def test_a_rows_rules_come_in_the_contracts_order_and_none_is_an_empty_list(spark):
    """The quarantine reason lists a row's rules in the contract's column order: one rule alone,
    several, and none (an empty array, not one empty name)."""
    c = contract(
        id=Column(type="string", nullable=False),
        n=Column(type="int", max=10),
        updated_at=Column(type="timestamp"),
    )
    df = spark.createDataFrame(
        [(0, "A", "1", None), (1, "A", "11", None), (2, None, "x", "soon")],
        "_row int, id string, n string, updated_at string",
    )
    conformed = conform(df, c, REFS).orderBy("_row")
    assert [r[RULES] for r in conformed.select(RULES).collect()] == [
        [],
        ["n:above_max"],
        ["id:missing", "n:unparseable", "updated_at:unparseable"],
    ]
    reasons = [r["_quarantine_reason"] for r in quarantined(conformed, "b").orderBy("_row").collect()]
    assert reasons == ["n:above_max", "id:missing; n:unparseable; updated_at:unparseable"]


def test_normalisation_happens_before_the_rules(spark):
    c = contract(
        id=Column(type="string", nullable=False, normalize=["trim", "upper"]),
        country=Column(type="string", normalize=["country_code"], pattern="^[A-Z]{2}$"),
    )
    df = spark.createDataFrame(
        [(" a1 ", " us "), ("b", "United Kingdom"), ("c", "   ")], "id string, country string"
    )
    out = valid_values(conform(df, c, REFS).withColumn("_ingestion_ts", df.id), c, ())
    assert sorted((r["id"], r["country"]) for r in out.collect()) == [("A1", "US"), ("B", "GB"), ("C", None)]


def test_a_corrupt_bronze_record_is_quarantined_as_malformed_with_its_raw_text(spark):
    c = contract(id=Column(type="string", nullable=False))
    df = spark.createDataFrame(
        [("1", None, None), ("2", "2,x,y", "field count")],
        "id string, _corrupt_record string, _parse_error string",
    )
    q = quarantined(conform(df, c, REFS), "batch-1").collect()
    assert [(r["id"], r["_corrupt_record"], r["_rules_broken"], r["_quarantine_batch_id"]) for r in q] == [
        ("2", "2,x,y", ["record:malformed"], "batch-1")
    ]


def test_text_holding_a_control_character_is_quarantined_tabs_and_line_breaks_are_text(spark):
    """A NUL (ends a C string in many a reader), an escape sequence, DEL, a C1 control from a
    mis-decoded export: quarantined under `<column>:control_character`; tab, LF and CR are text
    (a quoted CSV field may hold a line break), and so is any other Unicode."""
    c = contract(id=Column(type="string", nullable=False), name=Column(type="string"))
    rows = [
        ("a", "nul\x00inside"),
        ("b", "\x1b[31mred"),
        ("c", "del\x7f"),
        ("d", "c1\x85"),
        ("e", "tab\tline\nbreak\r\n"),
        ("f", "café ✓ 中文"),
        ("g", None),
        ("h\x00", "key too"),
    ]
    assert broken(spark, c, rows, "id string, name string") == [
        ["name:control_character"],
        ["name:control_character"],
        ["name:control_character"],
        ["name:control_character"],
        [],
        [],
        [],
        ["id:control_character"],
    ]
    assert {"id:control_character", "name:control_character"} <= set(rule_names(c))


def test_derived_columns_do_not_echo_their_inputs_failure(spark):
    c = contract(
        id=Column(type="string"),
        units=Column(type="double", nullable=False),
        inverse=Column(type="double", nullable=False, expr="try_divide(1, units)"),
    )
    rows = [("a", "2"), ("b", "N/A")]
    assert broken(spark, c, rows, "id string, units string") == [[], ["units:unparseable"]]


def test_a_derived_value_that_would_throw_on_a_refused_input_quarantines_the_row(spark):
    """ANSI mode: `1 / units` throws on a rate of 0, which the rules refuse (min_exclusive 0).
    The row is quarantined under that rule, the step does not fail (it would on every run, the
    row staying in bronze); and the committed FX contract's rate of 0 (or one rounding to 0 at
    ten decimals) is quarantined the same way."""
    assert spark.conf.get("spark.sql.ansi.enabled") == "true"
    c = contract(
        id=Column(type="string"),
        units=Column(type="decimal(24,10)", nullable=False, min_exclusive=0),
        inverse=Column(type="decimal(24,12)", nullable=False, expr="cast(1 / units as decimal(24,12))"),
    )
    rows = [("a", "2"), ("b", "0"), ("c", "1e-13"), ("d", "-1")]
    assert broken(spark, c, rows, "id string, units string") == [
        [],
        ["units:not_above_min"],
        ["units:not_above_min", "units:scale"],  # rounds to 0 at ten decimals
        ["units:not_above_min"],
    ]
    fx = load_contracts(REPO / "config" / "contracts", REPO / "config" / "reference")["fx_rates"]
    bronze = spark.createDataFrame(
        [
            ("2026-10-01", "USD", "GBP", "0.0"),
            ("2026-10-01", "USD", "EUR", "0.5"),
            # a shifted decimal point: 1 JPY worth $1e10 would overflow gold's USD amounts
            ("2026-10-01", "USD", "JPY", "0.0000000001"),
            ("2026-10-01", "USD", "KWD", "0.001"),  # the lowest the contract takes: $1,000 a unit
        ],
        "rate_date string, base string, currency string, rate string",
    )
    refs = {"currencies": ("USD", "GBP", "EUR", "JPY", "KWD")}
    got = {r["currency"]: (r[RULES], r["__v_rate_to_usd"]) for r in conform(bronze, fx, refs).collect()}
    assert got["GBP"] == (["units_per_usd:below_min"], None)
    assert got["JPY"] == (["units_per_usd:below_min"], None)
    assert got["EUR"][0] == [] and str(got["EUR"][1]) == "2.000000000000"
    assert got["KWD"][0] == [] and str(got["KWD"][1]) == "1000.000000000000"


def test_an_amount_above_what_gold_can_price_is_quarantined(spark):
    """Orders and opportunities take amounts up to 1e12: times the highest rate fx_rates takes
    (1,000 USD a unit) it fits gold's decimal(18,2). Above it the row is quarantined with its
    reason instead of every later gold run failing on the overflow (ANSI mode)."""
    contracts = load_contracts(REPO / "config" / "contracts", REPO / "config" / "reference")
    for name in ("orders", "opportunities"):
        amount = contracts[name].columns["amount"]
        c = contract(id=Column(type="string"), amount=amount)
        rows = [("a", "1000000000000.00"), ("b", "1000000000000.01"), ("c", "9.5e15")]
        assert broken(spark, c, rows, "id string, amount string") == [
            [],
            ["amount:above_max"],
            ["amount:above_max"],
        ], name


def test_a_decimal_with_digits_beyond_its_scale_is_quarantined_not_rounded(spark):
    """try_cast rounds 100.005 to decimal(18,2)'s 100.01: a changed amount. Digits beyond the
    scale break `<column>:scale`, as text (an exponent shifts them) or as a wider typed decimal
    (a Parquet decimal(38,6)); trailing zeros are no extra digits and pass."""
    c = contract(id=Column(type="string"), amount=Column(type="decimal(18,2)", nullable=False))
    rows = [("100.005",), ("100.0500",), ("1.005e2",), ("1e-3",), ("100.0000000000000000000000001",), ("7",)]
    assert broken(spark, c, [(str(i), *r) for i, r in enumerate(rows)], "id string, amount string") == [
        ["amount:scale"],
        [],
        [],
        ["amount:scale"],
        ["amount:scale"],
        [],
    ]
    typed = [("a", Decimal("100.005000")), ("b", Decimal("100.050000")), ("c", None)]
    assert broken(spark, c, typed, "id string, amount decimal(38,6)") == [
        ["amount:scale"],
        [],
        ["amount:missing"],
    ]
    assert "amount:scale" in rule_names(c) and "id:scale" not in rule_names(c)
    # A column that says `rounds` (a vendor's rate with more digits than the table keeps) is
    # rounded half up to its scale, not quarantined; the rule is not even listed.
    rate = contract(id=Column(type="string"), rate=Column(type="decimal(18,2)", nullable=False, rounds=True))
    rounded = spark.createDataFrame([("a", "100.005"), ("b", "0.004")], "id string, rate string")
    assert_df_equality(
        valid_values(conform(rounded, rate, REFS), rate, ()),
        spark.createDataFrame(
            [("a", Decimal("100.01")), ("b", Decimal("0.00"))], "id string, rate decimal(18,2)"
        ),
        ignore_nullable=True,
    )
    assert "rate:scale" not in rule_names(rate)
    clean = spark.createDataFrame([("b", "100.0500")], "id string, amount string")
    assert_df_equality(
        valid_values(conform(clean, c, REFS), c, ()),
        spark.createDataFrame([("b", Decimal("100.05"))], "id string, amount decimal(18,2)"),
        ignore_nullable=True,
    )


def test_an_fx_rate_dated_another_day_than_its_file_name_is_quarantined(spark):
    """A vendor file named for one day whose document says another is no fixing of the day it
    was delivered as: `rate_date:file_date_mismatch` (the committed FX contract's
    `matches_file_date`). A name without a date, or a date only in a folder, is not checked."""
    fx = load_contracts(REPO / "config" / "contracts", REPO / "config" / "reference")["fx_rates"]
    files = [
        ("file:/l/fx/rates_2026-07-01.json", "2026-07-01"),
        ("file:/l/fx/rates_2026-07-01.json", "2026-07-02"),
        ("file:/l/fx/rates_20260703.json", "2026-07-04"),
        ("file:/l/fx/rates.json", "2026-07-05"),
        ("file:/l/fx/date=2026-07-06/rates.json", "2026-07-07"),
        ("file:/l/fx/rates_2026-13-01.json", "2026-07-08"),  # no real day in the name
    ]
    bronze = spark.createDataFrame(
        [(i, f, d, "USD", "EUR", "0.5") for i, (f, d) in enumerate(files)],
        "_row int, _source_file string, rate_date string, base string, currency string, rate string",
    )
    got = conform(bronze, fx, {"currencies": ("USD", "EUR")}).orderBy("_row").select(RULES).collect()
    assert [r[RULES] for r in got] == [
        [],
        ["rate_date:file_date_mismatch"],
        ["rate_date:file_date_mismatch"],
        [],
        [],
        [],
    ]
    assert "rate_date:file_date_mismatch" in rule_names(fx)


def test_evolution_policy(spark):
    c = contract(id=Column(type="string"), amount=Column(type="decimal(18,2)"))
    new = check_evolution(
        spark.createDataFrame([], "id string, amount string, channel string, _batch_id string").schema, c
    )
    assert new == ["channel"]
    with pytest.raises(ContractError, match=r"column\(s\) \['amount'\] missing upstream"):
        check_evolution(spark.createDataFrame([], "id string").schema, c)
    with pytest.raises(ContractError, match="'amount' arrives as double but the contract says decimal"):
        check_evolution(spark.createDataFrame([], "id string, amount double").schema, c)


def test_a_contract_column_that_is_not_a_mapping_or_a_repeated_key_fails_naming_file_and_key(tmp_path):
    """`amount: decimal(18,2)` (a shorthand the loader does not take) and a key written twice (YAML
    keeps the last silently, dropping the first's rules) are refused, naming the file and the key."""
    head = "name: t\ndescription: d\ngrain: g\nsource: s\nkeys: [id]\nsequence_by: id\nhistory: current\n"
    bad = tmp_path / "t.yaml"
    bad.write_text(head + "columns:\n  id: {type: string}\n  amount: decimal(18,2)\n")
    with pytest.raises(
        ContractError, match=r"t.yaml: columns.amount: expected a mapping .* got 'decimal\(18,2\)'"
    ):
        load_contract(bad, REPO / "config" / "reference")
    bad.write_text(head + "columns:\n  id: {type: string}\n  amount: {type: int, min: 0, min: -5}\n")
    with pytest.raises(ContractError, match=r"(?s)t.yaml: cannot read contract: .*found the key 'min' twice"):
        load_contract(bad, REPO / "config" / "reference")
    bad.write_text(head + "columns:\n  id: {type: string}\n  id: {type: int}\n")
    with pytest.raises(ContractError, match=r"found the key 'id' twice"):
        load_contract(bad, REPO / "config" / "reference")


def test_invalid_contract_files_fail_naming_file_and_key(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text(
        "name: t\ndescription: d\ngrain: g\nsource: s\nkeys: [id]\nsequence_by: id\nhistory: current\ncolumns:\n  id: {type: varchar}\n"
    )
    with pytest.raises(ContractError, match=r"t.yaml: columns.id.type: unknown type 'varchar'"):
        load_contract(bad, REPO / "config" / "reference")
    bad.write_text(bad.read_text().replace("varchar", "string").replace("keys: [id]", "keys: [nope]"))
    with pytest.raises(ContractError, match=r"keys: unknown column\(s\) \['nope'\]"):
        load_contract(bad, REPO / "config" / "reference")
    fine = bad.read_text().replace("keys: [nope]", "keys: [id]")
    for column, message in [
        ("{type: string, not_after_arrival: 1 day}", "not_after_arrival: .*on a string column"),
        (
            "{type: timestamp, not_after_arrival: tomorrow}",
            "not_after_arrival: 'tomorrow' on a timestamp column",
        ),
        ("{type: string, not_before: '1900-01-01'}", "not_before: .*on a string column"),
        ("{type: date, not_before: '1900'}", "not_before: '1900' on a date column"),
        ("{type: date, not_before: '1900-02-30'}", "not_before: '1900-02-30' on a date column"),
        ("{type: string, pattern: 'x(?i)y'}", "pattern: not a valid regular expression"),
        ("{type: timestamp, matches_file_date: true}", "matches_file_date: on a timestamp column"),
        ("{type: int, rounds: true}", "rounds: on a int column"),
        # bounds only on numbers: a string's `min` compared as a number would throw mid-job (ANSI)
        ("{type: string, min: 1}", "min: on a string column; only a number has bounds"),
        ("{type: date, max: 5}", "max: on a date column; only a number has bounds"),
        ("{type: timestamp, min_exclusive: 0}", "min_exclusive: on a timestamp column"),
    ]:
        bad.write_text(fine.replace("id: {type: string}", f"id: {{type: string}}\n  t: {column}"))
        with pytest.raises(ContractError, match=rf"columns.t.{message}"):
            load_contract(bad, REPO / "config" / "reference")
    # Conformance joins a row's broken rules with a control character: no rule name may hold one.
    bad.write_text(fine.replace("id: {type: string}", 'id: {type: string}\n  "a\\x1fb": {type: string}'))
    with pytest.raises(ContractError, match=r"a column name 'a\\x1fb' holds a control character; rename it"):
        load_contract(bad, REPO / "config" / "reference")


def test_a_time_later_than_the_rows_arrival_is_quarantined(spark):
    """A source clock gone wrong, a 9999-12-31 placeholder: as a sequence value it would win every
    later correction of its key for good. A value more than the tolerance after the row reached
    bronze (`_ingestion_ts`) breaks `<column>:after_arrival`; a date is judged by its day."""
    c = contract(
        id=Column(type="string"),
        updated_at=Column(type="timestamp", not_after_arrival="1 day"),
        day=Column(type="date", not_after_arrival="1 day"),
    )
    arrival = datetime(2026, 7, 1, 12, 0)
    rows = [
        ("a", "2026-07-01T11:00:00", "2026-07-01", arrival),
        ("b", "2026-07-02T12:00:00", "2026-07-02", arrival),  # exactly the tolerance: fine
        ("c", "2026-07-02T12:00:01", "2026-07-03", arrival),
        ("d", "9999-12-31T00:00:00", "9999-12-31", arrival),
        ("e", "2001-01-01T00:00:00", "1900-01-01", arrival),
    ]
    assert broken(spark, c, rows, "id string, updated_at string, day string, _ingestion_ts timestamp") == [
        [],
        [],
        ["day:after_arrival", "updated_at:after_arrival"],
        ["day:after_arrival", "updated_at:after_arrival"],
        [],
    ]


def test_a_date_or_timestamp_needs_a_full_date_and_is_not_before_the_lower_bound(spark):
    """Spark's cast reads "2026" as January 1st and "T10:00" as today at 10:00 (a value that
    depends on when the job ran): without a full date (yyyy-mm-dd) a value is unparseable. A
    placeholder like 0001-01-01 (which no nanosecond reader of the table can hold) is before the
    lower bound, 1900-01-01 unless the contract says `not_before`: `<column>:too_early`."""
    c = contract(
        id=Column(type="string"),
        updated_at=Column(type="timestamp"),
        day=Column(type="date", not_before="2000-01-01"),
    )
    rows = [
        ("a", " 2026-09-22T10:00:00Z ", "2026-9-2"),
        ("b", "2026", "2026"),
        ("c", "T10:00", "2026-09"),
        ("d", "10:00:00", "+2026-09-22"),
        ("e", "0001-01-01T00:00:00Z", "1999-12-31"),
        ("f", "1899-12-31T23:59:59Z", "2000-01-01"),
        ("g", "1900-01-01T00:00:00Z", None),
    ]
    assert broken(spark, c, rows, "id string, updated_at string, day string") == [
        [],
        ["day:unparseable", "updated_at:unparseable"],
        ["day:unparseable", "updated_at:unparseable"],
        ["day:unparseable", "updated_at:unparseable"],
        ["day:too_early", "updated_at:too_early"],
        ["updated_at:too_early"],
        [],
    ]
    assert {"updated_at:too_early", "day:too_early"} <= set(rule_names(c))
    assert "id:too_early" not in rule_names(c)


def test_trim_removes_any_whitespace_and_a_pattern_matches_the_whole_value(spark):
    """A quoted CSV field may end in a line break ("ACC-000002\\r\\n"): `trim` removes Unicode
    whitespace, not only spaces, and a pattern's `$` does not pass a value ending in a line break
    (Java's `$` also matches before a final line terminator), so no second key or country appears."""
    c = contract(
        id=Column(type="string", nullable=False, normalize=["trim", "upper"], pattern="^ACC-[0-9]{6}$"),
        country=Column(type="string", normalize=["country_code"], pattern="^[A-Z]{2}$"),
        code=Column(type="string", pattern="^[A-Z]{2}$"),
    )
    rows = [
        ("ACC-000002\r\n", "DE\n", "DE"),
        ("\u00a0\tacc-000003\u2028", "\u3000germany\r", "FR"),
        ("ACC-000004", "US", "DE\n"),
        ("ACC-000005", "US", "DE\r\n"),
        ("ACC-0\n00006", "US", "FR"),
    ]
    assert broken(spark, c, rows, "id string, country string, code string") == [
        [],
        [],
        ["code:pattern"],
        ["code:pattern"],
        ["id:pattern"],
    ]
    conformed = conform(spark.createDataFrame(rows, "id string, country string, code string"), c, REFS)
    out = valid_values(conformed, c, ())
    assert sorted((r["id"], r["country"]) for r in out.collect()) == [
        ("ACC-000002", "DE"),
        ("ACC-000003", "DE"),
    ]
    # The DQ gate checks the same regex (GX: Spark's rlike, or Python's re in a pandas check).
    (check,) = [
        x for x in silver_checks(c, DqConfig(), ["id", "country", "code"]) if x.rule == "code:pattern"
    ]
    assert check.kwargs["regex"] == c.columns["code"].whole_pattern
    assert re.search(check.kwargs["regex"], "DE") and not re.search(check.kwargs["regex"], "DE\n")


CONFLICT_SCHEMA = "id string, v string, updated_at timestamp, _ingestion_ts timestamp, _source_file string"


def conformed_by(way: str, monkeypatch):
    """The conflict rule applied as `conform` does (Spark picks the join) or as silver's job and the
    stream gate do (`flag_conflicts` on the row-level result: broadcast, or a shuffle join above
    BROADCAST_CONFLICTS)."""
    if way == "conform":
        return conform
    if way == "shuffle":
        monkeypatch.setattr(conform_module, "BROADCAST_CONFLICTS", 0)
    return lambda df, c, refs: flag_conflicts(conform_rows(df, c, refs), c)


@pytest.mark.parametrize("history", ["current", "scd2"])
@pytest.mark.parametrize("way", ["conform", "broadcast", "shuffle"])
def test_a_key_given_two_versions_at_one_sequence_value_in_one_file_is_quarantined(
    spark, history, way, monkeypatch
):
    """Which version the source meant is unknown: every row of the conflict is quarantined, naming
    the key and the sequence column, and none is dropped as a duplicate. Exact duplicates still
    collapse; another file or a later delivery at the same sequence value (a corrected export) replaces
    the earlier. A null sequence value is a value too (rows "n")."""
    c = replace(
        contract(id=Column(type="string"), v=Column(type="string"), updated_at=Column(type="timestamp")),
        history=history,
        tracked=["v"],
    )
    t, first, later = datetime(2026, 9, 30, 12), datetime(2026, 10, 1), datetime(2026, 10, 2)
    rows = [
        ("a", "Enterprise", t, first, "f1"),
        ("a", "SMB", t, first, "f1"),
        ("b", "same", t, first, "f1"),
        ("b", "same", t, first, "f2"),
        ("c", "old", t, first, "f1"),
        ("c", "corrected", t, later, "f2"),
        ("e", "in f1", t, first, "f1"),
        ("e", "in f2", t, first, "f2"),
        ("d", "x", t, first, "f1"),
        ("d", "y", datetime(2026, 9, 30, 13), first, "f1"),
        ("n", "one", None, first, "f1"),
        ("n", "two", None, first, "f1"),
    ]
    conformed = conformed_by(way, monkeypatch)(spark.createDataFrame(rows, CONFLICT_SCHEMA), c, REFS)
    rule = "id+updated_at:conflict"
    assert rule in rule_names(c)
    q = quarantined(conformed, "batch-1").collect()
    assert sorted((r["id"], r["v"], r["_quarantine_reason"]) for r in q) == [
        ("a", "Enterprise", rule),
        ("a", "SMB", rule),
        ("n", "one", rule),
        ("n", "two", rule),
    ]
    dedup = distinct_versions if history == "scd2" else latest_per_key
    kept = dedup(valid_values(conformed, c, ("_ingestion_ts", "_source_file")), c)
    expected = [("b", "same"), ("c", "corrected"), ("d", "y"), ("e", "in f2")]
    if history == "scd2":
        expected.append(("d", "x"))
    assert sorted((r["id"], r["v"]) for r in kept.collect()) == sorted(expected)


def test_a_batch_without_conflicts_is_flagged_without_a_join(spark):
    """The usual batch: `flag_conflicts` counts none and hands the persisted rows back as they are,
    so silver's cache keeps the scan's partitions (no shuffle of whole rows)."""
    c = contract(id=Column(type="string"), v=Column(type="string"), updated_at=Column(type="timestamp"))
    t, first = datetime(2026, 9, 30, 12), datetime(2026, 10, 1)
    rows = [("a", "x", t, first, "f1"), ("a", "x", t, first, "f1"), ("b", "y", t, first, "f1")]
    batch = conform_rows(spark.createDataFrame(rows, CONFLICT_SCHEMA), c, REFS)
    assert flag_conflicts(batch, c) is batch
    assert [r[RULES] for r in batch.collect()] == [[], [], []]


def test_email_becomes_keyed_hash_and_domain_and_phone_is_masked(spark):
    c = contract(
        id=Column(type="string"),
        email=Column(type="string", pii="email"),
        phone=Column(type="string", pii="phone"),
        first_name=Column(type="string", pii="name"),
    )
    df = spark.createDataFrame(
        [("1", "ann@example.com", "+1-415-555-0134", "Ann"), ("2", None, None, None)],
        "id string, email string, phone string, first_name string",
    )
    out = protect(df, c, b"k3y")
    expected = spark.createDataFrame(
        [
            (
                "1",
                hmac.new(b"k3y", b"ann@example.com", hashlib.sha256).hexdigest(),
                "example.com",
                "+*-***-***-**34",
                "Ann",
            ),
            ("2", None, None, None, None),
        ],
        "id string, email_hash string, email_domain string, phone_masked string, first_name string",
    )
    assert_df_equality(out, expected, ignore_nullable=True)
    other_key = protect(df, c, b"other").first()["email_hash"]
    assert other_key != out.first()["email_hash"]


def test_phone_mask_keeps_only_the_last_two_digits(spark):
    # Full-width and Arabic-Indic digits are digits too: none may pass unmasked.
    phones = [
        "+44 20 7946 0958",
        "(555) 123",
        "+\uff14\uff14 \uff12\uff10 \uff17\uff19",
        "\u0660\u0661\u0662-\u0663\u0664",
    ]
    df = spark.createDataFrame([(p,) for p in phones], "p string")
    assert [r[0] for r in df.select(mask_phone(df.p)).collect()] == [
        "+** ** **** **58",
        "(***) *23",
        "+** ** \uff17\uff19",
        "***-\u0663\u0664",
    ]


def test_latest_per_key_breaks_ties_deterministically(spark):
    c = contract(id=Column(type="string"), v=Column(type="string"), updated_at=Column(type="timestamp"))
    t = datetime(2026, 1, 1)
    rows = [
        ("a", "old", datetime(2025, 1, 1), t, "f1"),
        ("a", "new-f1", t, t, "f1"),
        ("a", "new-f2", t, t, "f2"),
        ("b", "only", t, t, "f1"),
    ]
    df = spark.createDataFrame(
        rows, "id string, v string, updated_at timestamp, _ingestion_ts timestamp, _source_file string"
    )
    assert sorted((r["id"], r["v"]) for r in latest_per_key(df, c).collect()) == [
        ("a", "new-f2"),
        ("b", "only"),
    ]


def test_one_file_delivering_a_key_twice_at_one_sequence_value_gives_the_same_row_in_any_order(spark):
    """Sequence, ingestion time and file all tie: the row's values decide, so every run picks the
    same row however the rows reach the window (a map column, which Spark cannot hash, aside)."""
    c = contract(id=Column(type="string"), v=Column(type="string"), updated_at=Column(type="timestamp"))
    t = datetime(2026, 1, 1)
    rows = [("a", f"delivery-{i}", t, t, "f1", {"k": str(i)}) for i in range(6)]
    schema = "id string, v string, updated_at timestamp, _ingestion_ts timestamp, _source_file string, m map<string,string>"
    picks = set()
    for order in (rows, rows[::-1], rows[2:] + rows[:2]):
        df = spark.createDataFrame(order, schema).coalesce(1)
        picks.add(tuple((r["id"], r["v"]) for r in latest_per_key(df, c).collect()))
        picks.add(tuple((r["id"], r["v"]) for r in distinct_versions(df, c).collect()))
    assert len(picks) == 1 and len(next(iter(picks))) == 1


CURRENT = Contract(
    name="opportunities", description="d", grain="g", source="s", keys=["id"], sequence_by="updated_at",
    history="current", soft_delete="is_deleted",
    columns={n: Column(type=t, name=n) for n, t in [("id", "string"), ("updated_at", "timestamp"), ("is_deleted", "boolean")]},
)  # fmt: skip


def test_after_deletes_drops_what_a_consumed_deletion_supersedes_ordered_as_latest_per_key(spark):
    """By sequence, then delivery time, as latest_per_key orders deliveries: a batch row tying a
    deletion's sequence was delivered later and wins (as a merge into a stored row would let
    it); a row replayed from quarantine keeps its older delivery time and loses the tie."""
    t = lambda h: datetime(2026, 3, 1, h)  # noqa: E731
    schema = "id string, updated_at timestamp, is_deleted boolean, _ingestion_ts timestamp"
    earlier = spark.createDataFrame(
        [
            ("a", t(5), True, t(10)),
            ("a", t(1), False, t(9)),
            ("b", t(5), True, t(10)),
            ("c", t(2), False, t(9)),
        ],
        schema,
    )
    batch = spark.createDataFrame(
        [
            ("a", t(3), False, t(20)),  # older than a's deletion: dropped
            ("b", t(5), False, t(20)),  # ties b's deletion, delivered after it: kept
            ("c", t(1), False, t(20)),  # c was never deleted: kept (the merge judges it)
            ("d", t(1), False, t(20)),  # a new key: kept
        ],
        schema,
    )
    kept = {r["id"] for r in after_deletes(batch, earlier, CURRENT).collect()}
    assert kept == {"b", "c", "d"}
    replayed = spark.createDataFrame([("b", t(5), False, t(8)), ("a", t(6), False, t(8))], schema)
    # b's replayed version ties the deletion but was delivered before it; a's comes after its deletion
    assert {r["id"] for r in after_deletes(replayed, earlier, CURRENT).collect()} == {"a"}


SCD2 = Contract(
    name="accounts", description="d", grain="g", source="s", keys=["id"], sequence_by="updated_at", history="scd2",
    tracked=["segment"], soft_delete="is_deleted",
    columns={n: Column(type=t, name=n) for n, t in [("id", "string"), ("segment", "string"), ("phone", "string"), ("updated_at", "timestamp"), ("is_deleted", "boolean")]},
)  # fmt: skip
SCHEMA = "id string, segment string, phone string, updated_at timestamp, is_deleted boolean"


def apply_round(spark, table, batch):
    """One silver run: history for the batch's keys merged into the stored versions."""
    incoming = spark.createDataFrame(batch, SCHEMA)
    keys = {r[0] for r in batch}
    existing = [r for r in table if r["id"] in keys]
    hist_schema = SCHEMA + ", valid_from timestamp, valid_to timestamp, is_current boolean"
    stored = spark.createDataFrame([tuple(r.values()) for r in existing], hist_schema)
    changes = [r.asDict() for r in scd2_changes(stored, incoming, SCD2).collect()]
    merged = {(r["id"], r["valid_from"]): r for r in table}
    merged.update({(r["id"], r["valid_from"]): r for r in changes if r["is_current"] is not None})
    for r in changes:
        if r["is_current"] is None:  # superseded: the merge deletes it
            del merged[(r["id"], r["valid_from"])]
    return sorted(merged.values(), key=lambda r: (r["id"], r["valid_from"]))


def d(day):
    return datetime(2026, 1, day)


def test_scd2_across_several_update_rounds(spark):
    table = apply_round(spark, [], [("a", "SMB", "1", d(1), False), ("b", "SMB", "1", d(1), False)])
    # round 2: a changes segment, a re-delivers day 1, b changes only an untracked attribute
    table = apply_round(
        spark,
        table,
        [("a", "Mid", "1", d(5), False), ("a", "SMB", "1", d(1), False), ("b", "SMB", "2", d(5), False)],
    )
    # round 3: a changes again twice in one batch; b is soft-deleted
    table = apply_round(
        spark,
        table,
        [("a", "Ent", "1", d(8), False), ("a", "SMB", "1", d(9), False), ("b", "SMB", "2", d(10), True)],
    )
    got = [
        (
            r["id"],
            r["segment"],
            r["valid_from"].day,
            r["valid_to"] and r["valid_to"].day,
            r["is_current"],
            r["is_deleted"],
        )
        for r in table
    ]
    assert got == [
        ("a", "SMB", 1, 5, False, False),
        ("a", "Mid", 5, 8, False, False),
        ("a", "Ent", 8, 9, False, False),
        ("a", "SMB", 9, None, True, False),
        ("b", "SMB", 1, 10, False, False),
        ("b", "SMB", 10, None, False, True),
    ]
    # the same batch again changes nothing
    assert apply_round(spark, table, [("a", "SMB", "1", d(9), False)]) == table


def test_scd2_increments_end_as_one_run_over_the_same_rows_late_and_corrected_versions_included(spark):
    rows = [
        ("a", "SMB", "1", d(1), False),
        ("a", "Mid", "1", d(5), False),
        ("a", "Ent", "1", d(9), False),
        ("b", "SMB", "1", d(1), False),
        ("b", "Mid", "1", d(6), False),
    ]
    late_and_corrected = [
        ("a", "Ent", "1", d(7), False),  # late: repeats its successor (day 9), which it absorbs
        ("b", "Ent", "2", d(6), False),  # a corrected re-delivery of day 6
        ("b", "SMB", "1", d(3), False),  # late: repeats its predecessor (day 1), changes nothing
    ]
    increments = apply_round(spark, apply_round(spark, [], rows), late_and_corrected)
    one_go = apply_round(spark, [], [r for r in rows if (r[0], r[3]) != ("b", d(6))] + late_and_corrected)
    assert increments == one_go
    assert [(r["id"], r["segment"], r["valid_from"].day) for r in increments] == [
        ("a", "SMB", 1),
        ("a", "Mid", 5),
        ("a", "Ent", 7),
        ("b", "SMB", 1),
        ("b", "Ent", 6),
    ]


def test_scd2_changes_of_a_small_batch_in_one_partition_are_the_same_and_need_no_shuffle(spark):
    """A small batch (silver's SMALL_BATCH_ROWS) and its keys' stored versions, one partition
    each: the same changes as the partitioned path, computed without a shuffle."""
    hist_schema = SCHEMA + ", valid_from timestamp, valid_to timestamp, is_current boolean"
    stored = spark.createDataFrame(
        [
            ("a", "SMB", "1", d(1), False, d(1), d(5), False),
            ("a", "Mid", "1", d(5), False, d(5), d(9), False),
            ("a", "Ent", "1", d(9), False, d(9), None, True),
            ("b", "SMB", "1", d(1), False, d(1), None, True),
        ],
        hist_schema,
    ).coalesce(1)
    incoming = spark.createDataFrame(
        [("a", "Ent", "1", d(7), False), ("b", "Ent", "2", d(6), False), ("c", "SMB", "1", d(2), False)],
        SCHEMA,
    ).coalesce(1)
    partitioned = scd2_changes(stored, incoming, SCD2)
    together = scd2_changes(stored, incoming, SCD2, one_partition=True)
    assert_df_equality(together, partitioned, ignore_row_order=True)
    # the superseded day-9 version is marked, the late day-7 one takes its place
    assert sorted((r["id"], r["valid_from"].day, r["is_current"]) for r in together.collect()) == [
        ("a", 1, False),
        ("a", 5, False),
        ("a", 7, True),
        ("a", 9, None),
        ("b", 1, False),
        ("b", 6, True),
        ("c", 2, True),
    ]
    shuffle = re.compile(r"(?<!Broadcast)Exchange ")
    assert not shuffle.search(together._jdf.queryExecution().executedPlan().toString())
    assert shuffle.search(partitioned._jdf.queryExecution().executedPlan().toString())
