"""The DQ gate a step runs on what it is about to publish: GX suite + row-level counts + rules.

Write, audit, publish: silver gates the batch it is about to merge, before the commit (and gold
the mart it is about to write), so rows failing a critical check never become visible.

`run_gate(ctx, step, dataset, layer, df, row_level_counts, table)`:

1. The gated DataFrame (a silver batch, a gold mart) comes cached (the driver's edge keeps it
   cached through the publish, `driver.edge.finish`); one aggregate gives its row count, for
   freshness the newest `sequence_by` and gold's `counts` conditions. Up to ONE_PARTITION_ROWS
   rows, the checks below read it as one partition (no shuffle, fewer Spark jobs).
2. GX: ONE validation of one suite holding all of the table's expectations (suites.py) over that
   cached DataFrame, in a thread of its own while steps 3-5 run, for verdicts only (GX bundles
   their metrics into few Spark jobs); the checks that failed run again for details
   (`validate_gx`). A frame of at most `driver_validation_rows` (config/dq.yaml) is validated
   by GX's pandas engine in the driver instead, its checked columns moved there in one Arrow
   transfer, with the verdicts GX's Spark engine gives (`driver_frame`). On a silver batch they
   are exact for the table: the rows already published passed their own batch's gate, and the
   merge upserts by the checked-unique key, so a batch with unique keys keeps the table's keys
   unique.
3. Row-level: quarantine ratio (batch) and per-rule ratios from the counts the silver step
   computed in its single pass over the batch (no scan here).
4. Table-level figures of a batch (`TableAfter`: row count and newest data time as the publish
   will leave the table, derived by the step from the batch and what the table holds): row-count
   bounds, volume change and freshness are judged on them, not on the batch. Without them (a
   gold overwrite) the DataFrame is the whole table; a gold batch merged by key (fct_orders'
   increment) comes with them too.
5. Config rules: referential integrity (distinct orphan ids against another silver table),
   freshness (age of the newest `sequence_by`), volume change against the previous run's row
   count (its recorded verdict, `dq.record`: no Spark job), and gold `counts` (rows
   matching a condition, counted in step 1's aggregate; for a gold batch, in one aggregate over
   the table as the publish will leave it, `TableAfter.frame`).
6. Every result is recorded (`dq.record`: spooled now, appended to the Delta table
   `<lake>/_ops/dq_results` in one commit when the run ends), and the GX validation results go
   to `<lake>/_ops/gx/<run_id>/<step>.json`, from which Data Docs are built once at the end of
   the run (`dq.docs.DataDocsObserver`), in whichever process ends it.
7. Only then, if a `critical` result failed: `DqGateFailed` (a ValueError, so the driver's
   retry classifier treats it as fatal: no retry; downstream steps are skipped); the caller has
   not written anything yet.

Switch: `enabled:` in config/dq.yaml (a missing file means off) and LAKEHOUSE_DQ=off.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import string
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as dtime
from typing import Any

from pyspark import inheritable_thread_target
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, Row
from pyspark.sql import functions as F

from pipeline.dq.config import Count, DqConfig, GoldRules, SilverRules, Thresholds, load_dq_config
from pipeline.dq.record import VERDICT_KEY, newest_verdict, record, results_path
from pipeline.dq.suites import (
    ROW_COUNT_BOUNDS,
    Check,
    gold_checks,
    gold_missing_columns,
    silver_checks,
    to_suite,
)
from pipeline.settings import ConfigError
from pipeline.step_result import AUDIT_ROWS, TableAfter

log = logging.getLogger(__name__)

ENV_SWITCH = "LAKEHOUSE_DQ"
CONFIG_FILE = "dq.yaml"
VERDICTS = "BOOLEAN_ONLY"  # every check's verdict from bundled aggregates (validate_gx)
DETAILS = "BASIC"  # failed checks only: unexpected counts, percentages, up to 20 examples
ONE_PARTITION_ROWS = 1_000_000  # a gated frame up to this size is validated in one partition

BATCH_QUARANTINE_RATIO = "batch:quarantine_ratio"
QUARANTINE_RULE = "quarantine:"  # + a contract rule (`segment:missing`): that rule's share of the batch


class DqGateFailed(ValueError):
    """A critical DQ rule failed (fatal: a ValueError, never retried). Raised after recording."""

    def __init__(self, step: str, dataset: str, failed: list[DqResult], results: list[DqResult]):
        self.step, self.dataset, self.failed, self.results = step, dataset, failed, results
        # What the step would have put in StepResult.details (for a runner that records a failed
        # step's details): {"dq": [...]} and, from gate_step, "dq_seconds".
        self.details: dict[str, Any] = {"dq": [r.detail() for r in results]}
        shown = "; ".join(f"{r.rule} (observed {r.observed}, expected {r.expected})" for r in failed[:5])
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        super().__init__(
            f"DQ gate failed for {dataset} in {step}: {len(failed)} critical rule(s): {shown}{more}"
            + _quarantined_under(failed, results)
        )


def _quarantined_under(failed: list[DqResult], results: list[DqResult]) -> str:
    """When a quarantine ratio failed: the contract rules most rows broke, so the message says
    why (a CSV export that lost a column: every row under `<column>:missing`)."""
    if not any(r.rule == BATCH_QUARANTINE_RATIO for r in failed):
        return ""
    by_rule = sorted(
        (r for r in results if r.rule.startswith(QUARANTINE_RULE) and r.count),
        key=lambda r: (-(r.count or 0), r.rule),
    )
    if not by_rule:
        return ""
    shown = ", ".join(f"{r.rule.removeprefix(QUARANTINE_RULE)} ({r.count} rows)" for r in by_rule[:3])
    more = f" and {len(by_rule) - 3} more rules" if len(by_rule) > 3 else ""
    return (
        f". The batch's rows broke the contract's rules {shown}{more} (every rule's share: the "
        "step's dq details, _ops/dq_results)"
    )


@dataclass(frozen=True)
class DqResult:
    rule: str
    severity: str  # warn | critical
    passed: bool
    observed: str
    expected: str
    column: str = ""
    engine: str = "gx"  # gx | row-level | rule
    count: int | None = None  # the rows a row-level ratio counted (not recorded: in `observed`)

    def detail(self) -> dict[str, Any]:
        """The shape StepResult.details["dq"] holds (consumed by lineage, metrics, alerts)."""
        return {
            "rule": self.rule,
            "severity": self.severity,
            "passed": self.passed,
            "observed": self.observed,
            "expected": self.expected,
            "column": self.column,
        }


def dq_config(ctx: Any) -> DqConfig:
    return load_dq_config(ctx.settings.config_path(CONFIG_FILE))


def dq_enabled(ctx: Any) -> bool:
    if os.environ.get(ENV_SWITCH, "").strip().lower() in ("off", "0", "false", "no"):
        return False
    return dq_config(ctx).enabled


def docs_path(ctx: Any) -> str:
    return ctx.settings.lake.path("_ops", "data_docs")


def validations_path(ctx: Any, run_id: str | None = None) -> str:
    """`<lake>/_ops/gx/<run_id>`: the GX validation results of a run's gates, one file per step."""
    return ctx.settings.lake.path("_ops", "gx", run_id or ctx.run_id)


def save_validations(ctx: Any, step_name: str, name: str) -> None:
    """Keep the GX validation results of table `name`'s gate (the verdicts, and the details of
    the failed checks) in `<validations_path>/<step>.json`, so the process that ends the run
    (an EMR driver elsewhere, or this one) builds Data Docs from every step's gate."""
    from pipeline.files import files_for

    with _Gx.lock:
        results = _Gx.last.pop(name, [])
    if not results:
        return
    location = f"{validations_path(ctx)}/{step_name}.json"
    payload = {"step": step_name, "suite": name, "results": [r.to_json_dict() for r in results]}
    try:
        files = files_for(location, ctx.settings.lake.storage_options)
        files.write_text(location, json.dumps(payload, default=str), content_type="application/json")
    except Exception:  # noqa: BLE001 - Data Docs are a report; dq_results holds the verdicts
        log.warning("dq: could not keep the validation results of %s at %s", name, location, exc_info=True)
        return
    with _Gx.lock:
        _Gx.saved.add(location)


def gate_step(
    ctx: Any,
    step_name: str,
    dataset: str,
    layer: str,
    df: DataFrame,
    row_level_counts: dict[str, Any] | None = None,
    table: TableAfter | Callable[[], TableAfter] | None = None,
) -> dict[str, Any]:
    """run_gate for a step, called before its write: the StepResult details to add,
    {"dq": [...], "dq_seconds": s}, or {} when the gates are off. DqGateFailed carries the same
    in `.details`."""
    if not dq_enabled(ctx):
        return {}
    start = time.monotonic()
    try:
        results = run_gate(ctx, step_name, dataset, layer, df, row_level_counts, table)
    except DqGateFailed as exc:
        exc.details = {
            "dq": [r.detail() for r in exc.results],
            "dq_seconds": round(time.monotonic() - start, 3),
        }
        raise
    return {"dq": [r.detail() for r in results], "dq_seconds": round(time.monotonic() - start, 3)}


def run_gate(
    ctx: Any,
    step_name: str,
    dataset: str,
    layer: str,
    df: DataFrame,
    row_level_counts: dict[str, Any] | None = None,
    table: TableAfter | Callable[[], TableAfter] | None = None,
) -> list[DqResult]:
    """Validate `df` (what the step is about to publish), record every result, raise on critical
    failures. `df` is read by several Spark jobs: the caller caches it (driver.edge.finish).

    `row_level_counts` (silver): {"rows": n, "quarantined": q, "rules": {rule: count}} from the
    silver step's single pass over the batch. `table`: `df` is a batch to merge, and these are
    the table's figures after the merge (or the callable deriving them, called while GX
    validates the batch); without it `df` is the whole table (a gold overwrite).
    """
    config = dq_config(ctx)
    if not dq_enabled(ctx):
        return []
    if layer == "silver" and dataset not in ctx.contracts:
        raise ConfigError(f"dq gate: no contract for silver dataset {dataset!r}")
    unknown = sorted(set(config.silver) - set(ctx.contracts))
    if unknown:
        raise ConfigError(f"{ctx.settings.config_path(CONFIG_FILE)}: silver: no contract for {unknown}")

    results = _evaluate(ctx, config, dataset, layer, df, row_level_counts, table)
    record(ctx, step_name, dataset, layer, results)
    save_validations(ctx, step_name, f"{layer}.{dataset}")
    failed = [r for r in results if not r.passed and r.severity == "critical"]
    warned = [r for r in results if not r.passed and r.severity == "warn"]
    log.info(
        "dq %s %s: %d results, %d critical failed, %d warn failed",
        layer,
        dataset,
        len(results),
        len(failed),
        len(warned),
    )
    for r in warned:
        log.warning(
            "dq warn %s %s: %s observed %s, expected %s", layer, dataset, r.rule, r.observed, r.expected
        )
    if failed:
        raise DqGateFailed(step_name, dataset, failed, results)
    return results


def _evaluate(
    ctx: Any,
    config: DqConfig,
    dataset: str,
    layer: str,
    df: DataFrame,
    counts: dict[str, Any] | None,
    table: TableAfter | Callable[[], TableAfter] | None = None,
) -> list[DqResult]:
    """Every result of the gate. GX validates the batch in a thread of its own while this one
    derives the table's figures (`table`, when a callable: a silver merge's effect) and judges the
    rules on them: both are a few small Spark jobs, mostly waiting on the scheduler, and neither
    needs the other (measured: docs/performance.md, Gates)."""
    contract = ctx.contracts.get(dataset) if layer == "silver" else None
    seq = contract.sequence_by if contract is not None and contract.sequence_by in df.columns else None
    gold = config.gold_rules(dataset) if contract is None else None
    where = f"{ctx.settings.config_path(CONFIG_FILE)}: gold.{dataset}"
    # A gold batch merged by key: its `counts` conditions count rows of the whole table after
    # the publish (TableAfter.frame), which the batch alone cannot tell.
    counts_on_table = gold is not None and bool(gold.counts) and table is not None
    # A silver batch the job counted (counts' AUDIT_ROWS) needs no figures query of its own: its
    # freshness is the table's after the publish (`table`), the batch's only if that has none.
    audit_rows = (counts or {}).get(AUDIT_ROWS) if gold is None and table is not None else None
    stats = (
        None
        if audit_rows is not None
        else _figures(df, seq, gold.counts if gold is not None and not counts_on_table else {}, where)
    )
    rows = int(audit_rows if stats is None else stats["rows"])
    if rows <= ONE_PARTITION_ROWS:
        # One task reads the cached partitions: GX's aggregates and its uniqueness window need no
        # shuffle (measured: 9 Spark jobs -> 4 per validation, faster up to 535k rows on 2 cores).
        df = df.coalesce(1)

    first: list[DqResult] = []
    if contract is not None:
        checks = silver_checks(contract, config, df.columns, ctx.references(contract))
        rules: SilverRules | None = config.silver_rules(dataset)
    else:
        assert gold is not None
        checks = gold_checks(gold, config, df.columns)
        rules = None
        missing = gold_missing_columns(gold, df.columns)
        if missing:
            first.append(
                DqResult(
                    "table:columns", gold.severity, False, f"missing {missing}", "columns exist", "", "rule"
                )
            )
    # A batch: the row-count bounds apply to the table after the publish, not to the batch.
    bounds = [c for c in checks if c.rule == ROW_COUNT_BOUNDS] if table is not None else []
    checks = [c for c in checks if c not in bounds]
    # The pool's exit waits for GX, also when a figure below raises: nothing reads the frame
    # after the edge releases it.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gx") as pool:
        validated = pool.submit(
            inheritable_thread_target(validate_gx),
            f"{layer}.{dataset}",
            checks,
            df,
            rows,
            config.driver_validation_rows,
        )
        after = table() if callable(table) else table
        table_rows = rows if after is None else after.rows
        if after is not None:
            first += [bounds_result(c, after.rows) for c in bounds]
            first.append(DqResult("batch:row_count", "warn", True, str(rows), "", "", "rule"))
        rest = [DqResult("table:row_count", "warn", True, str(table_rows), "", "", "rule")]
        if gold is not None and not counts_on_table:
            rest += count_results(gold, stats, rows)
        elif gold is not None:
            if after is None or after.frame is None:
                raise TypeError(
                    f"dq gate gold.{dataset}: a batch's table figures carry no frame for `counts`"
                )
            rest += count_results(gold, _figures(after.frame, None, gold.counts, where), table_rows)
        if counts:
            rest += row_level_results(config, rules, counts)
        if rules is not None:
            rest += reference_results(ctx, rules, df)
            if rules.freshness is not None:
                newest = None
                if after is not None and after.newest is not None:
                    newest = _parse_time(after.newest)
                elif seq:  # the batch's own newest, counted here if the job did not
                    newest = (stats if stats is not None else _figures(df, seq, {}, where))["newest"]
                rest.append(freshness_result(ctx, rules, seq, newest))
        volume = volume_result(ctx, config, dataset, layer, table_rows)
        if volume is not None:
            rest.append(volume)
        return first + validated.result() + rest


# ---------------------------------------------------------------- GX


SPARK, PANDAS = "spark", "pandas"  # GX's execution engines a gate validates with


class _Gx:
    """One ephemeral GX context per process: a Spark data source and a pandas one (frames
    validated in the driver), one suite per table and, per table and engine, an asset + batch
    definition + validation definition, reused while it holds the table's suite in force."""

    lock = threading.Lock()
    context: Any = None
    sources: dict[str, Any] = {}  # engine -> data source
    suites: dict[str, tuple[str, Any]] = {}  # table -> (checks signature, suite)
    assets: set[tuple[str, str]] = set()  # (table, engine) with an asset in the engine's source
    validations: dict[tuple[str, str], tuple[Any, Any]] = {}  # (table, engine) -> (suite, validation)
    sites: dict[str, str] = {}  # docs directory -> site name
    last: dict[str, list[Any]] = {}  # table -> its latest validation results, until saved
    saved: set[str] = set()  # result files this process wrote (its context holds them already)

    @classmethod
    def get(cls) -> Any:
        if cls.context is None:
            os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            try:
                context.variables.progress_bars = ProgressBarsConfig(
                    globally=False, metric_calculations=False
                )
            except Exception:  # noqa: BLE001 - cosmetic only
                log.debug("dq: cannot switch off GX progress bars", exc_info=True)
            # persist=False: run_gate caches the frame itself (or reuses the step's cache).
            cls.sources = {
                SPARK: context.data_sources.add_spark(name="lake", persist=False),
                PANDAS: context.data_sources.add_pandas(name="driver"),
            }
            cls.context = context
        return cls.context

    @classmethod
    def validation(cls, name: str, checks: list[Check], engine: str = SPARK) -> Any:
        """The validation definition of table `name`'s `checks` on `engine`. Both engines use
        the table's one suite (Data Docs show one suite per table whichever engine judged), so
        an engine's definition is reused only while it holds the suite of these checks: GX
        refuses to run one whose suite was replaced since."""
        import great_expectations as gx

        context = cls.get()
        suite = cls._suite(name, checks)
        cached = cls.validations.get((name, engine))
        if cached is not None and cached[0] is suite:
            return cached[1]
        source, vd_name = cls.sources[engine], name if engine == SPARK else f"{name}@{engine}"
        if (name, engine) not in cls.assets:
            source.add_dataframe_asset(name=name).add_batch_definition_whole_dataframe("whole")
            cls.assets.add((name, engine))
        if (name, engine) in cls.validations:
            context.validation_definitions.delete(vd_name)
            del cls.validations[(name, engine)]
        vd = context.validation_definitions.add(
            gx.ValidationDefinition(
                name=vd_name, data=source.get_asset(name).get_batch_definition("whole"), suite=suite
            )
        )
        cls.validations[(name, engine)] = (suite, vd)
        return vd

    @classmethod
    def _suite(cls, name: str, checks: list[Check]) -> Any:
        """Table `name`'s suite of `checks`: the one in the context while they are unchanged,
        else a new one in its place (built before the old one goes, so a check GX refuses
        leaves the old suite in force)."""
        signature = "\n".join(c.signature() for c in checks)
        cached = cls.suites.get(name)
        if cached is not None and cached[0] == signature:
            return cached[1]
        suite = to_suite(name, checks)
        if cls.suites.pop(name, None) is not None:
            cls.context.suites.delete(name)
        suite = cls.context.suites.add(suite)
        cls.suites[name] = (signature, suite)
        return suite


def validate_gx(
    name: str, checks: list[Check], df: DataFrame, rows: int | None = None, driver_rows: int = 0
) -> list[DqResult]:
    """One GX validation running every check of the table over `df` (cached by the caller).

    Verdicts first, details for failures only: the suite runs with BOOLEAN_ONLY, which computes
    the unexpected counts of every column in one bundled aggregate; BASIC would add one Spark job
    per column expectation to fetch example unexpected values, even when there are none. Only
    the checks that failed run again with BASIC (counts, percentages, examples for Data Docs).
    No check uses `mostly`, so a passing column check had no unexpected value.

    A frame of at most `driver_rows` rows is validated by GX's pandas engine (`driver_frame`):
    GX's Spark queries cost 0.5-1 s of JVM CPU a validation whatever the frame's size (planning,
    code generation, 3-4 jobs), the pandas engine and the transfer ~0.3 s for a small table
    (docs/performance.md, "Small frames are judged in the driver")."""
    if not checks:
        return []
    by_rule = {c.rule: c for c in checks}
    frame, engine = df, SPARK
    if rows is not None and driver_rows > 0 and rows <= driver_rows:  # 0: Spark always
        try:
            local = driver_frame(df, checks)
        except Exception:  # noqa: BLE001 - a value the move cannot carry: Spark judges the frame
            log.warning(
                "dq %s: cannot move the frame to the driver; GX on Spark judges it", name, exc_info=True
            )
            local = None
        if local is not None:
            frame, engine = local, PANDAS
    with _Gx.lock:
        verdicts = _Gx.validation(name, checks, engine).run(
            batch_parameters={"dataframe": frame}, result_format=VERDICTS
        )
        failed = [by_rule[rule] for r in verdicts.results if not r.success and (rule := _rule(r)) in by_rule]
        details = {}
        if failed:
            detailed = _Gx.validation(f"{name}.failed", failed, engine).run(
                batch_parameters={"dataframe": frame}, result_format=DETAILS
            )
            details = {_rule(r): r for r in detailed.results}
        _Gx.last[name] = [verdicts, detailed] if failed else [verdicts]
    results = []
    for r in verdicts.results:
        rule = _rule(r)
        check = by_rule.get(rule)
        if rule in details:
            observed = _observed(details[rule])
        elif r.success:
            observed = _passed_observed(r.expectation_config.type, rows)
        else:
            observed = _observed(r)
        results.append(
            DqResult(
                rule,
                check.severity if check else "critical",
                bool(r.success),
                observed,
                check.expected if check else "",
                check.column if check else "",
                "gx",
            )
        )
    return results


# Spark types a driver frame carries as they are (pandas: Python objects); integers travel as exact
# decimals: pandas turns an integer column with nulls into floats, which cannot tell 2**53 from
# 2**53 + 1 apart (a uniqueness check).
_AS_IS = ("string", "boolean", "date")
_INTEGRAL = ("tinyint", "smallint", "int", "bigint")
_WHOLE_MATCH = r"(?![\s\S])"  # Contract.whole_pattern's end: any character in both dialects
_REPEAT = re.compile(r"\{[0-9]+(?:,[0-9]*)?\}")
_PUNCTUATION = frozenset(string.punctuation)


def driver_frame(df: DataFrame, checks: list[Check]) -> Any:
    """The columns `checks` read, as a pandas DataFrame on which GX's pandas engine gives the
    verdicts GX's Spark engine gives on `df`; None when a check could be judged differently
    there, and the frame stays on Spark: a float column (pandas reads NaN as null), a range on a
    column that is not a number or with a bound a double cannot hold exactly (Spark compares a
    decimal with it as doubles, pandas exactly), a value set on a column that is not text, a
    pattern the two regex dialects could read differently (`_same_regex`). Timestamps travel
    as microseconds since the epoch (equal exactly when the instants are, in any session time
    zone; no range on them goes to the driver), local ones as their text, integers as decimals."""
    types = dict(df.dtypes)
    wanted: dict[str, Any] = {}
    for check in checks:
        names = check.kwargs.get("column_list") or (
            [check.kwargs["column"]] if "column" in check.kwargs else []
        )
        for column in names:
            kind = types.get(column, "")
            value = F.col(f"`{column}`")
            if kind in _AS_IS or kind.startswith("decimal("):
                wanted[column] = value
            elif kind in _INTEGRAL:
                wanted[column] = value.cast("decimal(20,0)")
            elif kind == "timestamp":
                wanted[column] = F.unix_micros(value).cast("decimal(20,0)")
            elif kind == "timestamp_ntz":  # pandas' nanoseconds hold years 1678-2261 only
                wanted[column] = value.cast("string")
            else:
                return None
        kind = types.get(check.kwargs.get("column", ""), "")
        number = kind in _INTEGRAL or kind.startswith("decimal(")
        bounds = (check.kwargs.get("min_value"), check.kwargs.get("max_value"))
        if (
            (
                check.expectation == "ExpectColumnValuesToBeBetween"
                and not (number and all(map(_exact, bounds)))
            )
            or (check.expectation == "ExpectColumnValuesToBeInSet" and kind != "string")
            or (
                check.expectation == "ExpectColumnValuesToMatchRegex"
                and not (kind == "string" and _same_regex(check.kwargs["regex"]))
            )
        ):
            return None
    # Table-level checks alone still need the rows: one constant column carries them.
    columns = [value.alias(name) for name, value in wanted.items()] or [F.lit(True).alias("_row")]
    return df.select(*columns).toPandas()


def _exact(bound: Any) -> bool:
    """A range bound both engines compare exactly: none, or an integer a double holds (GX gets
    it as an int, `suites.to_suite`, and Spark compares a decimal with it as a decimal)."""
    return bound is None or (abs(bound) < 2**53 and float(bound).is_integer())


def _same_regex(regex: str) -> bool:
    """Whether Java (Spark) and Python (pandas) read a pattern alike: it is made of literal
    characters, escaped punctuation, classes of those and ranges, groups, lookaheads, `*+?|^`,
    `{m}`, `{m,}`, `{m,n}`, and `$` only at the end of a whole-value pattern (Contract.whole_pattern:
    nothing after it but closing groups and the end guard). Outside that set the dialects part: a
    backslash before a letter or digit (shorthand classes are ASCII in Java, Unicode in Python),
    `.` (Java's also stops at \\r, \\u0085, \\u2028, \\u2029), inline flags (case folding), a class
    inside a class or `&&` (Java's set operations), `{,n}` and a lone brace (Python only), `$`
    before more pattern (Java's also matches before \\r)."""
    pattern, i = regex.removesuffix(_WHOLE_MATCH), 0
    whole = pattern != regex
    while i < len(pattern):
        c, after = pattern[i], pattern[i + 1 : i + 2]
        if c == "\\":
            if after not in _PUNCTUATION:
                return False
            i += 2
        elif c == "[":
            i += 2 if after == "^" else 1
            if pattern[i : i + 1] == "]":
                return False
            while i < len(pattern) and pattern[i] != "]":
                if pattern[i] == "[" or pattern.startswith("&&", i):
                    return False
                if pattern[i] == "\\":
                    if pattern[i + 1 : i + 2] not in _PUNCTUATION:
                        return False
                    i += 1
                i += 1
            if i == len(pattern):
                return False
            i += 1
        elif c == "{":
            repeat = _REPEAT.match(pattern, i)
            if repeat is None:
                return False
            i = repeat.end()
        elif (
            c in ".}"
            or (c == "$" and not (whole and set(pattern[i + 1 :]) <= {")"}))
            or (c == "(" and after == "?" and not pattern.startswith(("(?:", "(?=", "(?!"), i))
        ):
            return False
        else:
            i += 1
    return True


def _rule(r: Any) -> str:
    return (r.expectation_config.meta or {}).get("rule", r.expectation_config.type)


def _passed_observed(expectation_type: str, rows: int | None) -> str:
    if expectation_type == "expect_table_row_count_to_be_between":
        return f"{rows} rows" if rows is not None else ""
    return "0 unexpected (0%)"  # a column (map) check without `mostly` passes with none


def _observed(r: Any) -> str:
    info = r.result or {}
    # GX keeps an expectation's error at the top, or per metric that failed (by metric id): the
    # Spark engine's examples of unexpected timestamps in year 1 fail in PySpark's conversion.
    errors = r.exception_info or {}
    raised = [e for e in (errors, *errors.values()) if isinstance(e, dict) and e.get("raised_exception")]
    if raised:
        return "error: " + str(raised[0].get("exception_message", ""))[:200]
    if "observed_value" in info:
        return str(info["observed_value"])
    if "unexpected_count" in info:
        pct = info.get("unexpected_percent") or 0.0
        return f"{info['unexpected_count']} unexpected ({pct:.3g}%)"
    return ""


# ---------------------------------------------------------------- row-level and config rules


def _breach(value: float, t: Thresholds) -> str | None:
    if t.critical is not None and value > t.critical:
        return "critical"
    if t.warn is not None and value > t.warn:
        return "warn"
    return None


def _expected(t: Thresholds) -> str:
    parts = [
        f"warn above {t.warn:g}" if t.warn is not None else "",
        f"critical above {t.critical:g}" if t.critical is not None else "",
    ]
    return ", ".join(p for p in parts if p)


def _ratio_result(rule: str, column: str, count: int, rows: int, t: Thresholds, engine: str) -> DqResult:
    ratio = count / rows if rows else 0.0
    breach = _breach(ratio, t)
    severity = breach or ("critical" if t.critical is not None else "warn")
    return DqResult(
        rule, severity, breach is None, f"{ratio:.4f} ({count}/{rows})", _expected(t), column, engine, count
    )


def row_level_results(config: DqConfig, rules: SilverRules | None, counts: dict[str, Any]) -> list[DqResult]:
    """Quarantine ratios from the silver step's counts (the batch, not the whole table)."""
    rows = int(counts.get("rows") or 0)
    if rows == 0:
        return []
    thresholds = (rules.quarantine_ratio if rules else None) or config.defaults.quarantine_ratio
    out = [
        _ratio_result(
            BATCH_QUARANTINE_RATIO, "", int(counts.get("quarantined") or 0), rows, thresholds, "row-level"
        )
    ]
    for rule, count in sorted((counts.get("rules") or {}).items()):
        column = rule.split(":", 1)[0]
        out.append(
            _ratio_result(
                f"{QUARANTINE_RULE}{rule}",
                column,
                int(count or 0),
                rows,
                config.defaults.rule_ratio,
                "row-level",
            )
        )
    return out


def reference_results(ctx: Any, rules: SilverRules, df: DataFrame) -> list[DqResult]:
    out = []
    for ref in rules.references:
        rule = f"{ref.column}:references:{ref.dataset}.{ref.to_column}"
        expected = f"orphan ratio <= {ref.max_ratio:g}"
        target = ctx.table_path("silver", ref.dataset)
        if ref.column not in df.columns:
            out.append(
                DqResult(rule, ref.severity, False, f"no column {ref.column}", expected, ref.column, "rule")
            )
            continue
        if not ctx.lake.exists(target):
            out.append(
                DqResult(
                    rule, ref.severity, True, f"skipped: {target} not built yet", expected, ref.column, "rule"
                )
            )
            continue
        ids = df.select(F.col(f"`{ref.column}`").alias("_id")).where(F.col("_id").isNotNull()).distinct()
        known = ctx.lake.read(target).select(F.col(f"`{ref.to_column}`").alias("_ref")).distinct()
        stats = (
            ids.join(known, F.col("_id") == F.col("_ref"), "left")
            .agg(F.count(F.lit(1)).alias("ids"), F.count_if(F.col("_ref").isNull()).alias("orphans"))
            .first()
        )
        n, orphans = int(stats["ids"]), int(stats["orphans"] or 0)
        ratio = orphans / n if n else 0.0
        out.append(
            DqResult(
                rule,
                ref.severity,
                ratio <= ref.max_ratio,
                f"{ratio:.4f} ({orphans}/{n} distinct ids)",
                expected,
                ref.column,
                "rule",
            )
        )
    return out


def _figures(df: DataFrame, seq: str | None, counts: dict[str, Count], where: str) -> Row:
    """Every row-level figure of the gated frame in one aggregate (one Spark job): its row count,
    the newest `seq` (freshness) and the rows matching each gold `counts` condition (`_c<i>`)."""
    aggs = [F.count(F.lit(1)).alias("rows")] + ([F.max(F.col(f"`{seq}`")).alias("newest")] if seq else [])
    try:
        conditions = [F.count_if(F.expr(c.where)).alias(f"_c{i}") for i, c in enumerate(counts.values())]
        return df.agg(*aggs, *conditions).first()
    except AnalysisException as exc:
        if not counts:
            raise
        raise ConfigError(f"{where}.counts: a condition does not apply to the table: {exc}") from exc


def count_results(rules: GoldRules, figures: Row, rows: int) -> list[DqResult]:
    """The gold `counts` rules: rows matching each condition, as `_figures` counted them."""
    out = []
    for i, (name, rule) in enumerate(rules.counts.items()):
        n = int(figures[f"_c{i}"])
        out.append(
            DqResult(
                f"count:{name}",
                rule.severity,
                n <= rule.max,
                f"{n} of {rows} rows",
                f"at most {rule.max} rows where {rule.where}",
                "",
                "rule",
            )
        )
    return out


def bounds_result(check: Check, rows: int) -> DqResult:
    """The row-count bounds `check` (ExpectTableRowCountToBeBetween's arguments) judged on a
    derived row count (a table after a batch's publish) instead of a DataFrame."""
    low, high = check.kwargs.get("min_value"), check.kwargs.get("max_value")
    passed = (low is None or rows >= low) and (high is None or rows <= high)
    return DqResult(check.rule, check.severity, passed, f"{rows} rows", check.expected, "", "rule")


def _parse_time(value: datetime | str) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def freshness_result(ctx: Any, rules: SilverRules, column: str | None, newest: datetime | None) -> DqResult:
    """Age of the newest `sequence_by` relative to the run's as-of (end of day) or now (UTC)."""
    fresh = rules.freshness
    assert fresh is not None
    as_of = getattr(ctx, "as_of", None)
    if as_of is not None:
        day = as_of if isinstance(as_of, date) else date.fromisoformat(str(as_of))
        reference = datetime.combine(day, dtime.max)
        against = f"as-of {day.isoformat()}"
    else:
        reference = datetime.now(UTC).replace(tzinfo=None)
        against = "now (UTC)"
    expected = f"newest {column or 'sequence_by'} at most {fresh.max_age_days:g} days before {against}"
    if newest is None:
        return DqResult("table:freshness", fresh.severity, False, "no rows", expected, column or "", "rule")
    if newest.tzinfo is not None:
        newest = newest.astimezone(UTC).replace(tzinfo=None)
    age_days = (reference - newest).total_seconds() / 86400
    return DqResult(
        "table:freshness",
        fresh.severity,
        age_days <= fresh.max_age_days,
        f"{age_days:.2f} days (newest {newest.isoformat()})",
        expected,
        column or "",
        "rule",
    )


def volume_result(ctx: Any, config: DqConfig, dataset: str, layer: str, rows: int) -> DqResult | None:
    """Row-count change against the latest row count an earlier run recorded for the table."""
    t = config.defaults.volume_change
    if t.warn is None and t.critical is None:
        return None
    previous = _previous_rows(ctx, dataset, layer)
    if previous is None:
        return None
    try:
        before, run = int(previous[0]), previous[1]
    except (TypeError, ValueError):
        return None
    change = abs(rows - before) / before if before else (0.0 if rows == 0 else float("inf"))
    breach = _breach(change, t)
    return DqResult(
        "table:volume_change",
        breach or ("critical" if t.critical is not None else "warn"),
        breach is None,
        f"{change:.4f} ({before} -> {rows} rows, previous run {run})",
        _expected(t),
        "",
        "rule",
    )


def _previous_rows(ctx: Any, dataset: str, layer: str) -> tuple[str, str] | None:
    """(observed table:row_count, run id) of the newest gate another run recorded for the table:
    from its verdict, spooled or in dq_results' commit metadata (no Spark job), or from the
    table for a record written before verdicts rode in commit metadata, or whose commit left the log
    (`delta.logRetentionDuration`: a table not gated for a month keeps its volume rule). No
    match in a log that still holds its first commit means no such record: a lake's first run
    does not scan dq_results at every gate (1.2 s a gate at scale 0.1)."""
    path = results_path(ctx)
    newest = newest_verdict(ctx, dataset, layer, other_runs=True)
    if newest is not None and VERDICT_KEY in newest:
        observed = [r["observed"] for r in newest[VERDICT_KEY] if r["rule"] == "table:row_count"]
        return (observed[0], newest["run_id"]) if observed else None
    if newest is None and (not ctx.lake.exists(path) or ctx.lake.log_from_first_commit(path)):
        return None
    previous = (
        ctx.lake.read(path)
        .where(
            (F.col("dataset") == dataset)
            & (F.col("layer") == layer)
            & (F.col("rule") == "table:row_count")
            & (F.col("run_id") != ctx.run_id)
        )
        .orderBy(F.col("evaluated_at").desc())
        .select("observed", "run_id")
        .first()
    )
    return None if previous is None else (previous["observed"], previous["run_id"])


# ---------------------------------------------------------------- the last verdict


def recheck(ctx: Any, step_name: str, dataset: str, layer: str) -> dict[str, Any]:
    """For a step that wrote nothing new (the table is the one the last gate judged): repeat the
    last gate's verdict from dq_results, so a rerun or `--resume` after a critical failure fails
    again instead of letting downstream steps read the table. {} when off or never gated."""
    if not dq_enabled(ctx):
        return {}
    start = time.monotonic()
    path = results_path(ctx)
    # The newest record of this dataset; one written before verdicts rode in commit metadata
    # (no "layer", no verdict) sends the recheck to the table itself.
    newest = newest_verdict(ctx, dataset, layer)
    if newest is None:
        return {}
    if VERDICT_KEY in newest:
        # Fields a later version added are left out (a lake is read by older and newer code).
        known = {f.name for f in dataclasses.fields(DqResult)}
        results = [DqResult(**{k: v for k, v in r.items() if k in known}) for r in newest[VERDICT_KEY]]
        from_run = newest["run_id"]
    else:
        results, from_run = _last_verdict_from_table(ctx, path, dataset, layer)
        if not results:
            return {}
    details = {
        "dq": [r.detail() for r in results],
        "dq_seconds": round(time.monotonic() - start, 3),
        "dq_from_run": from_run,
    }
    failed = [r for r in results if not r.passed and r.severity == "critical"]
    if failed:
        exc = DqGateFailed(step_name, dataset, failed, results)
        exc.details = details
        raise exc
    return details


def _last_verdict_from_table(ctx: Any, path: str, dataset: str, layer: str) -> tuple[list[DqResult], str]:
    """The results of the last gate of `dataset` in `layer`, read from dq_results (Spark jobs)."""
    rows = ctx.lake.read(path).where((F.col("dataset") == dataset) & (F.col("layer") == layer))
    last = rows.agg(F.max("evaluated_at")).first()[0]
    if last is None:
        return [], ""
    latest = rows.where(F.col("evaluated_at") == F.lit(last)).collect()
    results = [
        DqResult(
            r["rule"],
            r["severity"],
            r["passed"],
            r["observed"],
            r["expected"],
            r["column"] or "",
            r["engine"],
        )
        for r in latest
    ]
    return results, latest[0]["run_id"]
