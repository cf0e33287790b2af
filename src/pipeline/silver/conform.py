"""Contract enforcement as pure transforms: bronze rows -> typed values + the rules each breaks.

Every rule of a contract compiles to one Spark column expression, and all of them are gathered
into one array column (`_rules_broken`) in a single projection: one pass over the data, not one
scan per rule. One rule compares rows: a key given two different versions at one sequence value
in one file (`conflict_rule`): an aggregate finds those deliveries, a join marks their rows.
Values are parsed with try_cast, so a bad value becomes a quarantine reason instead of an
ANSI-mode exception mid-job.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, NamedTuple

from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, Row
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, FractionalType, StringType, StructType

from pipeline.contracts.model import DECIMAL, Column, Contract, ContractError, interval_seconds
from pipeline.freshness import FULL_DATE, arrival_micros, file_name_date
from pipeline.silver.history import values_hash

RULES = "_rules_broken"
VALUE = "__v_"  # prefix of the typed value columns during conformance
CORRUPT, ERROR = "_corrupt_record", "_parse_error"
READ_BROKEN = "__read_broken"  # the rules of the read columns a row breaks, during conformance

# Country names and codes seen in CRM exports, beyond the ISO-2 codes themselves.
COUNTRY_ALIASES = {
    "UNITED STATES": "US", "USA": "US", "U.S.": "US", "UNITED KINGDOM": "GB", "UK": "GB",
    "GREAT BRITAIN": "GB", "GERMANY": "DE", "DEUTSCHLAND": "DE", "FRANCE": "FR", "CANADA": "CA",
    "AUSTRALIA": "AU", "INDIA": "IN", "BRAZIL": "BR", "NETHERLANDS": "NL", "JAPAN": "JP",
    "IRELAND": "IE", "SWITZERLAND": "CH", "SINGAPORE": "SG", "MEXICO": "MX", "ITALY": "IT",
    "SWEDEN": "SE", "SPAIN": "ES", "POLAND": "PL",
}  # fmt: skip


def check_evolution(schema: StructType, contract: Contract) -> list[str]:
    """Apply the contract's evolution policy to the bronze schema; return accepted new columns.
    Raises ContractError naming the dataset, the column and the fix."""
    bronze = {f.name: f.dataType for f in schema.fields}
    wanted = {c.source_column: c for c in contract.read_columns}
    where = f"silver {contract.name} (from bronze {contract.source})"
    removed = sorted(set(wanted) - set(bronze))
    if removed and contract.evolution.removed_columns == "fail":
        raise ContractError(
            f"{where}: column(s) {removed} missing upstream; the contract's evolution policy is "
            "removed_columns: fail — restore them at the source or update the contract"
        )
    for name, col in wanted.items():
        actual = bronze.get(name)
        if actual is None or isinstance(actual, StringType):
            continue  # text is parsed by the contract type
        if (
            actual.simpleString() != col.type.replace(" ", "")
            and contract.evolution.retyped_columns == "fail"
        ):
            raise ContractError(
                f"{where}: column {name!r} arrives as {actual.simpleString()} but the contract says "
                f"{col.type}; evolution policy retyped_columns: fail — fix the source or the contract"
            )
    audit = {c for c in bronze if c.startswith("_")}
    new = sorted(set(bronze) - set(wanted) - audit)
    if new and contract.evolution.new_columns == "fail":
        raise ContractError(f"{where}: new column(s) {new} not in the contract; policy new_columns: fail")
    return new


# Unicode's White_Space: what `trim` removes from both ends. Spark's trim removes spaces only,
# so a key exported as "ACC-000002\r\n" kept its line break and became a second key. One
# btrim with a character set: no regular expression a value.
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def _trimmed(value: SparkColumn) -> SparkColumn:
    return F.btrim(value, F.lit(WHITESPACE))


def _normalized(col: Column, raw: SparkColumn, is_text: bool) -> SparkColumn:
    if not is_text:
        return raw
    value = raw
    for step in col.normalize:
        if step == "trim":
            value = _trimmed(value)
        elif step == "lower":
            value = F.lower(value)
        elif step == "upper":
            value = F.upper(value)
        elif step == "country_code":
            upper = F.upper(_trimmed(value))
            aliases = F.create_map(*[F.lit(x) for kv in COUNTRY_ALIASES.items() for x in kv])
            value = F.coalesce(aliases[upper], upper)
    return F.when(value != "", value)  # an empty string is a missing value


def conform(bronze: DataFrame, contract: Contract, references: dict[str, tuple[str, ...]]) -> DataFrame:
    """Bronze columns unchanged (quarantine keeps raw values), plus one typed `__v_<col>` per
    contract column and `_rules_broken`, the names of the rules the row breaks."""
    rows = conform_rows(bronze, contract, references)
    return with_conflicts(rows, conflicting_deliveries(rows, contract), contract)


def conform_rows(bronze: DataFrame, contract: Contract, references: dict[str, tuple[str, ...]]) -> DataFrame:
    """`conform` but the conflict rule: every rule judged on the row alone (no shuffle)."""
    types = {f.name: f.dataType for f in bronze.schema.fields}
    raw_cols, typed_cols, text = {}, {}, set()
    for col in contract.read_columns:
        source = col.source_column
        is_text = isinstance(types.get(source), StringType)
        raw = F.col(f"`{source}`") if source in types else F.lit(None).cast("string")
        raw_cols[col.name] = _normalized(col, raw, is_text)
        text |= {col.name} if is_text else set()
    staged = bronze.withColumns({f"__raw_{n}": c for n, c in raw_cols.items()})
    for col in contract.read_columns:
        raw_name = f"`__raw_{col.name}`"
        typed = F.expr(f"try_cast({raw_name} AS {col.type})")
        if col.type in ("date", "timestamp") and col.name in text:
            typed = F.when(F.col(raw_name).rlike(FULL_DATE), typed)
        typed_cols[col.name] = _representable(typed, col.type)
    staged = staged.withColumns({f"{VALUE}{n}": c for n, c in typed_cols.items()})
    row = RowFacts(arrival_micros(bronze), file_name_date(bronze))
    read_rules = [
        r
        for c in contract.read_columns
        for r in _column_rules(c, F.col(f"`__raw_{c.name}`"), references, row, types.get(c.source_column))
    ]
    malformed = F.col(CORRUPT).isNotNull() if CORRUPT in types else F.lit(False)
    # A column of its own, read three times below: Spark then builds the array once a row
    # instead of inlining it into each use (silver_orders' conform at scale 1: 1.15 -> 0.9 s).
    staged = staged.withColumn(READ_BROKEN, _broken(read_rules))
    read_broken = F.col(READ_BROKEN)
    # A derived value is computed from inputs that passed their rules only: under ANSI mode an
    # expression throws on a value its rules refuse (a rate of 0 dividing 1), which would fail
    # the step on every run while the row sits in bronze; such a row is quarantined instead.
    inputs_fine = ~malformed & (F.size(read_broken) == 0)
    for col in contract.derived_columns:
        expr = _qualify(col.expr, contract)
        typed = _representable(F.expr(f"try_cast(({expr}) AS {col.type})"), col.type)
        staged = staged.withColumn(f"{VALUE}{col.name}", F.when(inputs_fine, typed))
    derived_rules = [r for c in contract.derived_columns for r in _column_rules(c, None, references, row)]
    # A derived value is only reported broken when its inputs were fine (no echo of the cause).
    derived_broken = _broken(derived_rules)
    result = staged.withColumn(
        RULES,
        F.when(malformed, F.array(F.lit("record:malformed")))
        .when(F.size(read_broken) > 0, read_broken)
        .otherwise(derived_broken),
    )
    return result.drop(*[f"__raw_{n}" for n in raw_cols], READ_BROKEN)


def conflict_rule(contract: Contract) -> str:
    """The rule a key given two different versions at one sequence value in one file breaks."""
    return f"{'+'.join(contract.keys)}+{contract.sequence_by}:conflict"


def _delivery_columns(rows: DataFrame, contract: Contract) -> list[str]:
    """Key, sequence value and delivery (the file, `_source_file`, as one ingestion took it,
    `_ingestion_ts`): the columns a conflict shares, those the frame has (a test frame may lack one)."""
    names = [*contract.keys, contract.sequence_by, "_ingestion_ts", "_source_file"]
    found = [f"{VALUE}{n}" if n in contract.columns else n for n in dict.fromkeys(names)]
    return [n for n in found if n in rows.columns]


VALUES_HASH = "__values_hash"  # in `rule_verdicts`: a hash of a valid row's typed values


def rule_verdicts(
    bronze: DataFrame, contract: Contract, references: dict[str, tuple[str, ...]], keep: tuple[str, ...]
) -> DataFrame:
    """`conform_rows` narrowed to what counting its rules takes: the `keep` columns of `bronze`,
    `_rules_broken`, and what the conflict rule compares (the delivery's columns and a hash of a
    valid row's typed values, `VALUES_HASH`), for `flag_conflicts` and `rule_count_aggregates`.
    A gate that writes `bronze` as it is holds these beside it, not every typed value."""
    rows = conform_rows(bronze, contract, references)
    hashed = values_hash(rows, [f"{VALUE}{n}" for n in contract.columns])
    columns = dict.fromkeys([*keep, *_delivery_columns(rows, contract)])
    return rows.select(
        *[F.col(f"`{c}`") for c in columns],
        RULES,
        F.when(F.size(RULES) == 0, hashed).alias(VALUES_HASH),
    )


def conflicting_deliveries(rows: DataFrame, contract: Contract) -> DataFrame:
    """The deliveries (`_delivery_columns`) whose rows passing every rule do not all carry the
    same values, one row each: which version the source meant is unknown (as for a currency given
    twice in an FX document), and dedup would keep one at random and drop the other. Exact
    duplicates pass and collapse in dedup; another file or a later delivery of a key at the same
    sequence value (a corrected export) still replaces an earlier one (history.TIEBREAK).
    An aggregate of these few columns and a hash, not a window over whole rows: a window sorts
    every row of a partition in memory while silver caches the batch (at scale 10, 5.45M events in
    4 local partitions ran a 3g heap out)."""
    group = _delivery_columns(rows, contract)
    if VALUES_HASH in rows.columns:  # rule_verdicts
        hashed = F.col(VALUES_HASH)
    else:
        hashed = values_hash(rows, [f"{VALUE}{n}" for n in contract.columns])
    # Rows passing every rule are picked inside the aggregate, not by a filter before it: Spark
    # pushes a filter below the projection that builds the rules, inlining every rule into the
    # condition, and the aggregate's compiled code then outgrew Java's 64 KB method limit.
    hashed = F.when(F.size(RULES) == 0, hashed)
    return (
        rows.groupBy(*[F.col(f"`{n}`") for n in group])
        .agg(F.min(hashed).alias("__lo"), F.max(hashed).alias("__hi"))
        .filter(F.col("__lo") != F.col("__hi"))
        .select(*[F.col(f"`{n}`").alias(f"__d{i}") for i, n in enumerate(group)])
    )


def with_conflicts(rows: DataFrame, conflicts: DataFrame, contract: Contract) -> DataFrame:
    """`rows` with `conflict_rule` broken by each row that passes every other rule and belongs to
    one of `conflicts` (`conflicting_deliveries`): all of them. Null-safe: a delivery may share a
    null sequence value."""
    group = _delivery_columns(rows, contract)
    marked = conflicts.withColumn("__conflict", F.lit(True))
    on = [rows[f"`{n}`"].eqNullSafe(marked[f"__d{i}"]) for i, n in enumerate(group)]
    joined = rows.join(marked, on=on, how="left")
    conflict = (F.size(RULES) == 0) & F.col("__conflict").isNotNull()
    return joined.withColumn(
        RULES, F.when(conflict, F.array(F.lit(conflict_rule(contract)))).otherwise(F.col(RULES))
    ).drop("__conflict", *[f"__d{i}" for i in range(len(group))])


# Conflicting deliveries up to this many are broadcast to the batch's rows; more take a shuffle join.
BROADCAST_CONFLICTS = 100_000


def flag_conflicts(rows: DataFrame, contract: Contract) -> DataFrame:
    """`with_conflicts` for a persisted batch (`conform_rows` or `rule_verdicts` of it), deciding
    the join on the conflicts' count, one narrow aggregate over the cache: none, the usual case,
    leaves the batch as it is (no join, its partitions kept); a few are broadcast; many take a
    shuffle join."""
    conflicts = conflicting_deliveries(rows, contract)
    found = conflicts.count()
    if not found:
        return rows
    return with_conflicts(
        rows, F.broadcast(conflicts) if found <= BROADCAST_CONFLICTS else conflicts, contract
    )


def _representable(value: SparkColumn, type_name: str) -> SparkColumn:
    """Dates and timestamps outside years 1-9999 parse in Spark ("10000-01-01") but have no ISO 8601
    or Python form, so every reader downstream would fail on them: such a value does not parse."""
    if type_name in ("date", "timestamp"):
        return F.when(F.year(value).between(1, 9999), value)
    return value


# Joins a row's broken rules for `_broken`: a control character, which no rule name holds (the
# contract refuses one in a column or reference name, `contracts.model`).
RULE_SEPARATOR = "\x1f"


def _broken(rules: list[SparkColumn]) -> SparkColumn:
    """The names of the rules that hold (each `when(broken, name)`), in order, as an array.
    Joined and split, which Spark compiles with the rest of the projection, and not the array's
    nulls filtered out, a higher-order function Spark evaluates outside its compiled code
    (warm conformance of orders at scale 1: 1.1 -> 0.77 s, product_events 1.6 -> 1.3 s)."""
    if not rules:
        return F.array().cast("array<string>")
    joined = F.concat_ws(RULE_SEPARATOR, *rules)
    return F.when(joined == "", F.array().cast("array<string>")).otherwise(F.split(joined, RULE_SEPARATOR))


def _qualify(expr: str, contract: Contract) -> str:
    """Point an expr's column references at the typed values (`order_ts` -> `__v_order_ts`)."""
    for name in sorted(contract.columns, key=len, reverse=True):
        expr = re.sub(rf"(?<![\w`]){re.escape(name)}(?![\w`])", f"`{VALUE}{name}`", expr)
    return expr


# A control character other than tab, line feed and carriage return (Unicode's Cc: C0, DEL and
# C1; a NUL ends a C string in many a reader, the others are mis-decoded bytes or binary): never
# text. A plain range class: Java matches it faster than \p{Cc} less \t\n\r, and faster than
# Spark's translate (a map lookup a character). One search a text column: a search of the row's
# values together, referenced by every column's rule, made the SCD2 late path 2.5x slower.
CONTROL_CHARACTER = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]"


def _free_text(col: Column) -> bool:
    """A text column whose values no list bounds: an `allowed` or `reference` value holds no
    control character, so those rules refuse one already (no second search a row)."""
    return col.type == "string" and not col.allowed and not col.reference


def _beyond_scale(col: Column, raw: SparkColumn, raw_type: DataType | None) -> SparkColumn | None:
    """A decimal column's value with non-zero digits beyond the column's scale, which the cast
    rounds (100.005 as decimal(18,2) is 100.01): a changed amount must not pass silently. Text
    counts its digits (trailing zeros are no precision: 100.0500 fits; an exponent shifts them:
    1.005e1 has two), exactly for any length; a typed number (a wider decimal, a double) is
    compared with its cast. None when the column is not a decimal or `rounds` (contract)."""
    found = DECIMAL.match(col.type)
    if found is None or col.rounds:
        return None
    v = F.col(f"`{VALUE}{col.name}`")
    if isinstance(raw_type, StringType):
        # Only a value that parsed is looked at, so its first '.' and 'e' are the number's.
        fraction = F.regexp_replace(F.regexp_extract(raw, r"\.([0-9]+)", 1), "0+$", "")
        exponent = F.regexp_extract(raw, "[eE]([+-]?[0-9]+)", 1).try_cast("int")
        digits = F.length(fraction) - F.coalesce(exponent, F.lit(0))
        return v.isNotNull() & (digits > int(found[2]))
    if isinstance(raw_type, FractionalType):
        return v.isNotNull() & (raw != v)
    return None


class RowFacts(NamedTuple):
    """What rules compare a value with besides the contract: when the row reached bronze (epoch
    micros) and the date in its landing file's name (null when none)."""

    arrival: SparkColumn
    file_date: SparkColumn


def _column_rules(
    col: Column,
    raw: SparkColumn | None,
    references: dict[str, tuple[str, ...]],
    row: RowFacts,
    raw_type: DataType | None = None,
) -> list[SparkColumn]:
    v = F.col(f"`{VALUE}{col.name}`")
    present = v.isNotNull()
    # NaN sorts above every double in Spark, so `v < min` never holds for it: NaN breaks any bound.
    nan = F.isnan(v) if col.type in ("double", "float") else F.lit(False)
    checks: list[tuple[str, SparkColumn]] = []
    if not col.nullable:
        checks.append(("missing", v.isNull() & (raw.isNull() if raw is not None else F.lit(True))))
    if raw is not None and col.type != "string":  # text always "parses" as text
        checks.append(("unparseable", raw.isNotNull() & v.isNull()))
    scale = _beyond_scale(col, raw, raw_type) if raw is not None else None
    if scale is not None:
        checks.append(("scale", scale))
    if raw is not None and _free_text(col):
        checks.append(("control_character", present & v.rlike(CONTROL_CHARACTER)))
    if col.allowed:
        checks.append(("not_allowed", present & ~v.isin(col.allowed)))
    if col.reference:
        checks.append((f"not_in_{col.reference}", present & ~v.isin(list(references[col.reference]))))
    if col.pattern:
        checks.append(("pattern", present & ~v.rlike(col.whole_pattern)))
    if col.min is not None:
        checks.append(("below_min", present & ((v < F.lit(col.min)) | nan)))
    if col.max is not None:
        checks.append(("above_max", present & ((v > F.lit(col.max)) | nan)))
    if col.min_exclusive is not None:
        checks.append(("not_above_min", present & ((v <= F.lit(col.min_exclusive)) | nan)))
    if col.not_after_arrival:
        latest = row.arrival + F.lit(interval_seconds(col.not_after_arrival) * 1_000_000)  # epoch micros
        later = v > F.to_date(F.timestamp_micros(latest)) if col.type == "date" else F.unix_micros(v) > latest
        checks.append(("after_arrival", present & later))
    if col.earliest:
        checks.append(("too_early", present & (v < F.lit(date.fromisoformat(col.earliest)))))
    if col.matches_file_date:
        checks.append(("file_date_mismatch", present & (v != row.file_date)))
    return [F.when(cond, F.lit(f"{col.name}:{name}")) for name, cond in checks]


def rule_names(contract: Contract) -> list[str]:
    """Every rule the contract compiles to (for docs, DQ and reporting)."""
    names = ["record:malformed"]
    for col in contract.columns.values():
        names += [f"{col.name}:missing"] if not col.nullable else []
        names += [f"{col.name}:unparseable"] if not col.expr and col.type != "string" else []
        names += [f"{col.name}:scale"] if not col.expr and not col.rounds and DECIMAL.match(col.type) else []
        names += [f"{col.name}:control_character"] if not col.expr and _free_text(col) else []
        names += [f"{col.name}:not_allowed"] if col.allowed else []
        names += [f"{col.name}:not_in_{col.reference}"] if col.reference else []
        names += [f"{col.name}:pattern"] if col.pattern else []
        names += [f"{col.name}:below_min"] if col.min is not None else []
        names += [f"{col.name}:above_max"] if col.max is not None else []
        names += [f"{col.name}:not_above_min"] if col.min_exclusive is not None else []
        names += [f"{col.name}:after_arrival"] if col.not_after_arrival else []
        names += [f"{col.name}:too_early"] if col.earliest else []
        names += [f"{col.name}:file_date_mismatch"] if col.matches_file_date else []
    return [*names, conflict_rule(contract)]


def rule_count_aggregates(contract: Contract) -> list[SparkColumn]:
    """Aggregate columns over a conformed batch: rows, rows breaking any rule, and rows breaking
    each rule. They ride on an aggregate the caller already runs, so counting costs no scan."""
    return [
        F.count(F.lit(1)).alias("_dq_rows"),
        F.count(F.when(F.size(RULES) > 0, 1)).alias("_dq_quarantined"),
        *[
            F.count_if(F.array_contains(RULES, r)).alias(f"_dq_rule_{i}")
            for i, r in enumerate(rule_names(contract))
        ],
    ]


def rule_counts(totals: Row, contract: Contract) -> dict[str, Any]:
    """The `rule_count_aggregates` of a collected row: {"rows", "quarantined", "rules": {rule: n}}."""
    return {
        "rows": int(totals["_dq_rows"]),
        "quarantined": int(totals["_dq_quarantined"]),
        "rules": {r: int(totals[f"_dq_rule_{i}"] or 0) for i, r in enumerate(rule_names(contract))},
    }


def valid_values(conformed: DataFrame, contract: Contract, keep: tuple[str, ...]) -> DataFrame:
    """Rows that break no rule, as contract columns (typed) plus the `keep` audit columns."""
    return conformed.filter(F.size(RULES) == 0).select(
        *[F.col(f"`{VALUE}{n}`").alias(n) for n in contract.columns],
        *[F.col(k) for k in keep],
    )


def quarantined(conformed: DataFrame, batch_id: str) -> DataFrame:
    """Rows that break a rule: every bronze column as it arrived, the rules and a readable reason."""
    bronze_columns = [c for c in conformed.columns if not c.startswith(VALUE) and c != RULES]
    return conformed.filter(F.size(RULES) > 0).select(
        *[F.col(f"`{c}`") for c in bronze_columns],
        F.col(RULES).alias("_rules_broken"),
        F.array_join(RULES, "; ").alias("_quarantine_reason"),
        F.lit(batch_id).alias("_quarantine_batch_id"),
    )
