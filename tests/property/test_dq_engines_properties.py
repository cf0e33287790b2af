"""The gate's two GX engines give the same verdicts (pipeline.dq.gate.validate_gx).

A gated frame of at most `driver_validation_rows` rows is judged by GX's pandas engine in the
driver (`driver_frame`), a larger one by GX's Spark engine. On generated hostile frames (nulls,
duplicates that differ by a microsecond or by one above 2**53, Unicode digits and line breaks
around a pattern, negative and zero amounts, timestamps at the ends of Spark's range), every
check's result, its verdict and its observed counts, is the same on both engines. Checks that the
two engines could judge differently keep the frame on Spark, and the gate's thresholds choose
the engine by row count.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pyspark.sql.types import (
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampNTZType,
    TimestampType,
)

from pipeline.contracts.model import Column
from pipeline.dq import gate
from pipeline.dq.config import RowCount
from pipeline.dq.suites import _between, _in_set, _not_null, _pattern, _row_count, _unique

SCHEMA = StructType(
    [
        StructField("order_id", StringType()),
        StructField("status", StringType()),
        StructField("amount", DecimalType(18, 2)),
        StructField("probability", IntegerType()),
        StructField("offset", LongType()),
        StructField("updated_at", TimestampType()),
        StructField("order_date", DateType()),
        StructField("is_deleted", BooleanType()),
        StructField("loaded_at", TimestampNTZType()),
    ]
)
ID_PATTERN = Column(name="order_id", type="string", pattern="^ORD-[0-9]{7}$").whole_pattern
CHECKS = [
    *[_not_null(f.name, "critical") for f in SCHEMA.fields],
    _unique(["order_id"], "critical"),
    _unique(["offset"], "critical"),
    _unique(["updated_at"], "critical"),
    _unique(["loaded_at"], "critical"),
    _unique(["order_id", "updated_at"], "critical"),
    _in_set("status", ["placed", "shipped"], "critical", "allowed"),
    _between("amount", 0, None, "critical"),
    _between("amount", 0.0, 1000.0, "warn", strict_min=True),  # as a contract's bounds load: floats
    _between("probability", 0, 100, "critical"),
    _pattern("order_id", ID_PATTERN, "critical"),
    _row_count(RowCount(min=1, max=6)),
]
T0 = datetime(2026, 3, 1, 12, 0, 0)

order_ids = st.sampled_from(
    [
        "ORD-0000001",
        "ORD-0000002",
        "ORD-000000١",  # an Arabic-Indic digit: not [0-9] in either dialect
        "ORD-0000001\n",  # `$` matches before a final newline; the whole-match guard does not
        "ORD-00000011",
        "ord-0000001",
        "",
        " ORD-0000001",
        None,
    ]
)
rows = st.lists(
    st.tuples(
        order_ids,
        st.sampled_from(["placed", "shipped", "Placed", "placed ", "", None]),
        st.sampled_from(
            [Decimal("0.00"), Decimal("0.01"), Decimal("-0.01"), Decimal("999.99"), Decimal("1000.01"), None]
        ),
        st.sampled_from([0, 100, -1, 101, None]),
        st.sampled_from([2**53, 2**53 + 1, 2**63 - 1, -(2**63), 0, None]),
        st.sampled_from(
            [
                T0,
                T0 + timedelta(microseconds=1),
                datetime(1, 1, 1),
                datetime(9999, 12, 31, 23, 59, 59, 999999),
                None,
            ]
        ),
        st.sampled_from([date(2026, 3, 1), date(1, 1, 1), date(9999, 12, 31), None]),
        st.sampled_from([True, False, None]),
        st.sampled_from(
            [T0, T0 + timedelta(microseconds=1), datetime(1, 1, 1), datetime(9999, 12, 31), None]
        ),
    ),
    min_size=0,
    max_size=8,
)


def _results(spark, data: list[tuple], driver_rows: int) -> list[tuple]:
    frame = spark.createDataFrame(data, SCHEMA).cache()
    try:
        found = gate.validate_gx("silver.engines", CHECKS, frame, len(data), driver_rows)
    finally:
        frame.unpersist()
    return sorted((r.rule, r.severity, r.passed, r.observed) for r in found)


@given(rows)
@example([])  # no rows: the row-count bounds fail on both
@example([("ORD-0000001", "placed", Decimal("1.00"), 5, 2**53, T0, date(2026, 3, 1), True, T0)] * 2)
@example(
    [
        ("ORD-0000001", "placed", Decimal("1.00"), 5, 2**53, T0, date(2026, 3, 1), True, T0),
        (
            "ORD-0000001",
            "placed",
            Decimal("1.00"),
            5,
            2**53 + 1,
            T0 + timedelta(microseconds=1),
            None,
            None,
            None,
        ),
    ]
)
def test_both_engines_give_every_check_the_same_result(spark, data):
    frame = spark.createDataFrame(data, SCHEMA)
    assert gate.driver_frame(frame, CHECKS) is not None  # the driver engine does judge these
    on_spark = _results(spark, data, driver_rows=0)
    in_driver = _results(spark, data, driver_rows=max(len(data), 1))
    assert [r[:3] for r in in_driver] == [r[:3] for r in on_spark]  # rule, severity, verdict
    for (rule, _, _, spark_saw), (_, _, _, driver_saw) in zip(on_spark, in_driver, strict=True):
        # The counts too, but where the Spark engine could not fetch a failure's examples
        # (PySpark cannot convert a timestamp of year 1 back to Python): the driver counts it.
        assert driver_saw == spark_saw or spark_saw.startswith("error: "), rule


def test_the_engines_agree_on_a_frame_failing_every_check(spark):
    """Not left to the search: a frame on which every column check fails on both engines with
    the same unexpected counts, and the failing ones' details (counts and percentages) match."""
    data = [
        ("ord-1", "lost", Decimal("-1.00"), 101, 7, T0, None, None, datetime(1, 1, 1)),
        ("ord-1", "lost", Decimal("-1.00"), 101, 7, T0, None, None, datetime(1, 1, 1)),
        (None, None, None, None, None, None, None, None, None),
    ] + [("ORD-0000001\n", "placed", Decimal("0.00"), 0, 1, T0, date(2026, 3, 1), True, T0)] * 5
    on_spark = _results(spark, data, driver_rows=0)
    assert on_spark == _results(spark, data, driver_rows=len(data))
    failed = {rule for rule, _, passed, _ in on_spark if not passed}
    assert failed == {r.rule for r in CHECKS}, sorted({r.rule for r in CHECKS} - failed)


def _regex(pattern: str):
    """A pattern check as the contract column with `pattern` makes it (Contract.whole_pattern)."""
    return _pattern("value", Column(name="value", type="string", pattern=pattern).whole_pattern, "critical")


@pytest.mark.parametrize(
    ("column_type", "check", "why"),
    [
        (DoubleType(), _not_null("value", "critical"), "pandas reads NaN as null"),
        (StringType(), _regex(r"^[\d]{3}$"), "\\d is Unicode in Python"),
        (StringType(), _regex(r"^a.c$"), "Java's . stops at \\r"),
        (StringType(), _regex(r"(?i)abc"), "case folding"),
        (StringType(), _regex(r"[a-z&&[^q]]+"), "Java's class sets"),
        (IntegerType(), _in_set("value", ["1", "2"], "critical"), "a value set compared as text"),
        (TimestampType(), _between("value", 0, None, "critical"), "a range on timestamps"),
        (StringType(), _between("value", 0, None, "critical"), "a range on text"),
        (DecimalType(18, 2), _between("value", 0, 99.99, "critical"), "Spark compares 99.99 as a double"),
        (LongType(), _between("value", 2**60, None, "critical"), "a bound no double holds"),
        (StringType(), _regex(r"a\\.c"), "an escaped backslash, then ."),
        (StringType(), _regex(r"[a\][b]"), "a class in a class"),
        (StringType(), _regex(r"a{,3}"), "{,n}: Python only"),
        (StringType(), _regex(r"a{b}"), "a lone brace"),
        (StringType(), _regex(r"(?#note)a"), "a comment"),
        (StringType(), _regex(r"a$[^x]"), "$ before more pattern"),
        (StringType(), _regex(r"(a$)[^b]"), "$ closing an inner group: Java's matches before \\r"),
        (StringType(), _regex(r"(?=a$)[^b]*"), "$ in a lookahead"),
        (StringType(), _regex(r"(a$|b)[^c]?"), "$ closing an inner branch"),
        (StringType(), _pattern("value", "abc$", "critical"), "$ of a pattern not matched whole"),
    ],
)
def test_a_check_the_engines_could_judge_apart_keeps_the_frame_on_spark(spark, column_type, check, why):
    frame = spark.createDataFrame([], StructType([StructField("value", column_type)]))
    assert gate.driver_frame(frame, [check]) is None, why


@pytest.mark.parametrize(
    "pattern",
    [r"^[A-Z]{2}$", r"^ORD-[0-9]{7}$", r"^(?:ab|c\-d)+x{2,}$", r"^[^,;]*[\]\[]?$", r"^a(?=b)b(?!c)"],
)
def test_a_pattern_both_dialects_read_alike_goes_to_the_driver(spark, pattern):
    frame = spark.createDataFrame([("x",)], "value string")
    assert gate.driver_frame(frame, [_regex(pattern)]) is not None


def test_the_gate_judges_a_frame_in_the_driver_up_to_the_configured_rows(spark, monkeypatch):
    """validate_gx moves a frame to the driver only at or below `driver_rows`; a changed list of
    checks for a table replaces its suite, and each engine's definition follows it."""
    moved = []
    real = gate.driver_frame
    monkeypatch.setattr(
        gate, "driver_frame", lambda df, checks: moved.append(len(checks)) or real(df, checks)
    )
    good = [("ORD-0000001", "placed", Decimal("1.00"), 5, 1, T0, date(2026, 3, 1), True, T0)]
    bad = good + [("ORD-0000002", "lost", Decimal("1.00"), 5, 2, T0, date(2026, 3, 1), True, T0)]
    few = [_not_null("order_id", "critical")]
    more = [*few, _in_set("status", ["placed"], "critical", "allowed")]
    frames = {
        name: spark.createDataFrame(data, SCHEMA).cache() for name, data in (("good", good), ("bad", bad))
    }
    frames["empty"] = spark.createDataFrame([], SCHEMA)
    # (frame, checks, rows, driver_rows) -> the statuses' verdict; the same table throughout
    cases = [
        ("bad", few, 2, 1, None),  # above the driver's rows: Spark
        ("bad", more, 2, 2, False),  # at them: the driver, with the new suite
        ("good", more, 1, 0, True),  # 0: Spark always; the changed suite
        ("bad", few, 2, 5, None),  # the driver, the first suite again
        ("bad", more, 2, 0, False),
        # Each engine's definition follows the suite the other engine replaced: Spark's, made for
        # `few` at the start, must not be taken back after the suite changed twice since.
        ("bad", few, 2, 0, None),
        ("bad", more, 2, 9, False),
        ("bad", few, 2, 9, None),
        ("bad", few, 2, 0, None),
    ]
    for name, checks, n, driver_rows, allowed in cases:
        moved.clear()
        found = {
            r.rule: r.passed
            for r in gate.validate_gx("silver.switching", checks, frames[name], n, driver_rows)
        }
        assert found["order_id:not_null"] is True
        assert found.get("status:allowed") is allowed
        assert bool(moved) == (n <= driver_rows)
    moved.clear()  # an empty frame with `driver_rows` 0 stays on Spark too
    found = gate.validate_gx("silver.switching", few, frames["empty"], 0, 0)
    assert [r.passed for r in found] == [True] and not moved
    for frame in frames.values():
        frame.unpersist()


def test_a_frame_the_driver_cannot_take_is_judged_on_spark(spark, monkeypatch, caplog):
    """A value the move to the driver cannot carry fails the move, not the gate: GX on Spark
    judges the frame, and the log says why."""

    def unmovable(df, checks):
        raise ValueError("a value pandas cannot hold")

    monkeypatch.setattr(gate, "driver_frame", unmovable)
    frame = spark.createDataFrame([("ORD-0000002",), (None,)], "order_id string")
    with caplog.at_level("WARNING", logger="pipeline.dq.gate"):
        found = gate.validate_gx("silver.unmovable", [_not_null("order_id", "critical")], frame, 2, 10)
    assert [(r.rule, r.passed, r.observed) for r in found] == [
        ("order_id:not_null", False, "1 unexpected (50%)")
    ]
    assert "cannot move the frame to the driver" in caplog.text
