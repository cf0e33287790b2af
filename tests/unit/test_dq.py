"""DQ gates: suites from contracts, config validation, the gate's recording and failing."""

from __future__ import annotations

import dataclasses
import io
import shutil
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from unittest.mock import ANY

import boto3
import pytest
from chispa import assert_df_equality
from moto import mock_aws
from pyspark.sql import functions as F

from pipeline.app import local_executor
from pipeline.contracts.model import load_contracts
from pipeline.dq import record as record_module
from pipeline.dq.config import load_dq_config
from pipeline.dq.docs import DataDocsObserver
from pipeline.dq.gate import (
    DqGateFailed,
    DqResult,
    TableAfter,
    docs_path,
    recheck,
    row_level_results,
    run_gate,
    validations_path,
    volume_result,
)
from pipeline.dq.record import GATES_KEY, RESULTS_SCHEMA, VERDICT_KEY, flush, record, results_path, spool_path
from pipeline.dq.suites import gold_checks, silver_checks
from pipeline.files import s3_parts
from pipeline.lake import MergeSpec
from pipeline.settings import ConfigError
from pipeline.silver.job import merge_effect
from pipeline.step_result import AUDIT_ROWS
from tests.helpers import REPO, make_ctx

CONTRACTS = load_contracts(REPO / "config" / "contracts", REPO / "config" / "reference")


def _config_dir(tmp_path: Path, dq_yaml: str | None = None) -> Path:
    target = tmp_path / "config"
    shutil.copytree(REPO / "config", target)
    if dq_yaml is not None:
        (target / "dq.yaml").write_text(dq_yaml)
    return target


def _ctx(spark, tmp_path: Path, dq_yaml: str | None = None, run_id: str = "dq-run"):
    return make_ctx(spark, tmp_path / "lake", run_id=run_id, config_dir=str(_config_dir(tmp_path, dq_yaml)))


def _by_rule(checks):
    return {c.rule: c for c in checks}


def test_silver_suite_from_contract():
    config = load_dq_config(REPO / "config" / "dq.yaml")
    orders = CONTRACTS["orders"]
    columns = [*orders.columns, "_batch_id"]
    checks = _by_rule(silver_checks(orders, config, columns, {"currencies": ("USD", "EUR")}))
    assert checks["order_id:not_null"].expectation == "ExpectColumnValuesToNotBeNull"
    assert checks["order_id:unique"].expectation == "ExpectColumnValuesToBeUnique"
    # The whole value, as the contract rule: "ORD-0000001\n" does not pass `$`.
    assert checks["order_id:pattern"].kwargs == {
        "column": "order_id",
        "regex": r"^(?:^ORD-[0-9]{7}$)(?![\s\S])",
    }
    assert checks["status:allowed"].expectation == "ExpectColumnValuesToBeInSet"
    assert checks["currency:in_currencies"].kwargs["value_set"] == ["USD", "EUR"]
    assert (checks["amount:range"].kwargs["min_value"], checks["amount:range"].kwargs["max_value"]) == (
        0,
        10**12,
    )
    assert checks["table:row_count_bounds"].expectation == "ExpectTableRowCountToBeBetween"
    assert checks["updated_at:not_null"].severity == "critical"


def test_silver_suite_scd2_compound_keys_and_pii_not_pattern_checked():
    config = load_dq_config(REPO / "config" / "dq.yaml")
    accounts = CONTRACTS["accounts"]
    silver_columns = [c for c in accounts.columns if c not in ("owner_email", "phone")]
    silver_columns += ["owner_email_hash", "owner_email_domain", "phone_masked", "valid_from", "valid_to"]
    checks = _by_rule(silver_checks(accounts, config, silver_columns))
    unique = checks["account_id+valid_from:unique"]
    assert unique.expectation == "ExpectCompoundColumnsToBeUnique"
    assert unique.kwargs == {"column_list": ["account_id", "valid_from"]}
    assert "owner_email:pattern" not in checks and not any("owner_email" in r for r in checks)
    fx = _by_rule(silver_checks(CONTRACTS["fx_rates"], config, list(CONTRACTS["fx_rates"].columns)))
    assert fx["rate_date+currency:unique"].kwargs["column_list"] == ["rate_date", "currency"]
    # the committed bounds: at least 0.001 units per USD; a contract's `min_exclusive` is strict
    assert (
        fx["units_per_usd:range"].kwargs["min_value"],
        "strict_min" in fx["units_per_usd:range"].kwargs,
    ) == (
        0.001,
        False,
    )
    units = dataclasses.replace(CONTRACTS["fx_rates"].columns["units_per_usd"], min=None, min_exclusive=0)
    exclusive = dataclasses.replace(
        CONTRACTS["fx_rates"], columns={**CONTRACTS["fx_rates"].columns, "units_per_usd": units}
    )
    strict = _by_rule(silver_checks(exclusive, config, list(exclusive.columns)))["units_per_usd:range"]
    assert (strict.kwargs["min_value"], strict.kwargs["strict_min"]) == (0, True)


def test_gold_checks_from_config():
    config = load_dq_config(REPO / "config" / "dq.yaml")
    checks = _by_rule(
        gold_checks(config.gold_rules("fct_orders"), config, ["order_id", "order_date", "amount_usd"])
    )
    assert checks["order_id:unique"].severity == "critical"
    assert checks["amount_usd:range"].kwargs["min_value"] == 0


def test_a_failed_quarantine_ratio_names_the_rules_the_rows_broke_most_first():
    """A CSV export that lost a column: every row quarantined under `<column>:missing`. The
    failure names that rule and its count, not only the ratio."""
    config = load_dq_config(REPO / "config" / "dq.yaml")
    counts = {"rows": 40, "quarantined": 40, "rules": {"name:missing": 3, "segment:missing": 40, "x:y": 0}}
    results = row_level_results(config, None, counts)
    failed = [r for r in results if not r.passed and r.severity == "critical"]
    assert [r.rule for r in failed] == ["batch:quarantine_ratio"]
    message = str(DqGateFailed("silver_accounts", "accounts", failed, results))
    assert "rules segment:missing (40 rows), name:missing (3 rows) (every rule's share" in message
    assert "x:y" not in message
    passing = [r for r in results if r.rule != "batch:quarantine_ratio"]
    assert "broke the contract's rules" not in str(DqGateFailed("s", "d", passing[:1], results))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("enabled: maybe\n", "enabled: expected bool"),
        ("defaults: {quarantine_ratio: {warn: 0.6, critical: 0.5}}\n", "defaults.quarantine_ratio.critical"),
        (
            "defaults: {contract_severity: fatal}\n",
            "defaults.contract_severity: expected one of warn|critical",
        ),
        ("silver: {orders: {references: [{column: account_id}]}}\n", "silver.orders.references[0]"),
        ("silver: {orders: {freshness: {max_age_days: 0}}}\n", "silver.orders.freshness.max_age_days"),
        ("gold: {fct_orders: {ranges: {amount_usd: {}}}}\n", "gold.fct_orders.ranges.amount_usd"),
        ("gold: {fct_orders: {unknown_key: 1}}\n", "gold.fct_orders"),
        ("gold: {fct_orders: {counts: {x: {max: 0}}}}\n", "gold.fct_orders.counts.x.where"),
        ("gold: {fct_orders: {counts: {x: {where: 'true', max: -1}}}}\n", "gold.fct_orders.counts.x.max"),
        (
            "gold: {fct_orders: {counts: {x: {where: a, severity: fatal}}}}\n",
            "gold.fct_orders.counts.x.severity",
        ),
    ],
)
def test_config_validation_names_file_and_key(tmp_path, text, message):
    path = tmp_path / "dq.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_dq_config(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_config_means_off(tmp_path):
    assert load_dq_config(tmp_path / "nope.yaml").enabled is False


GOLD_DUP = """
enabled: true
gold:
  fct_orders:
    unique: [[order_id]]
    ranges: {amount_usd: {min: 0}}
    severity: %s
"""


def _orders(spark, dup: bool = True):
    rows = [("ORD-1", 10.0), ("ORD-2", 5.0), ("ORD-1" if dup else "ORD-3", 1.0)]
    return spark.createDataFrame(rows, "order_id string, amount_usd double")


def test_gate_critical_duplicate_key_raises_after_recording(spark, tmp_path):
    ctx = _ctx(spark, tmp_path, GOLD_DUP % "critical")
    with pytest.raises(DqGateFailed) as err:
        run_gate(ctx, "gold_fct_orders", "fct_orders", "gold", _orders(spark))
    assert isinstance(err.value, ValueError)  # the driver's classifier: fatal, no retry
    assert "fct_orders" in str(err.value) and "order_id:unique" in str(err.value)
    assert [r.rule for r in err.value.failed] == ["order_id:unique"]
    flush(ctx)  # the run's end
    rows = {r["rule"]: r for r in ctx.lake.read(results_path(ctx)).collect()}
    assert rows["order_id:unique"]["passed"] is False
    assert rows["order_id:unique"]["severity"] == "critical"
    # Verdicts come from one cheap pass; a failed check is re-run for its details: both ORD-1 rows.
    assert rows["order_id:unique"]["observed"].startswith("2 unexpected")
    assert rows["amount_usd:range"]["observed"] == "0 unexpected (0%)"
    assert rows["order_id:unique"]["engine"] == "gx"
    assert rows["amount_usd:range"]["passed"] is True
    assert rows["table:row_count"]["observed"] == "3"
    assert (
        rows["order_id:unique"]["run_id"] == "dq-run" and rows["order_id:unique"]["step"] == "gold_fct_orders"
    )
    assert not (Path(docs_path(ctx)) / "index.html").exists()  # built once, at run end
    DataDocsObserver().run_finished(ctx, None)
    index = Path(docs_path(ctx)) / "index.html"
    assert index.exists()
    pages = [p.read_text() for p in index.parent.rglob("*.html") if p != index]
    assert any("order_id" in page and "gold.fct_orders" in page for page in pages)


def test_a_run_without_a_gate_leaves_the_data_docs_as_they_are(spark, tmp_path):
    """A rerun with nothing new runs no gate: the site is not rebuilt (it costs about a second),
    even in a process whose GX context holds an earlier run's validations."""
    ctx = _ctx(spark, tmp_path, GOLD_DUP % "warn")
    run_gate(ctx, "gold_fct_orders", "fct_orders", "gold", _orders(spark))
    observer = DataDocsObserver()
    observer.run_finished(ctx, None)
    index = Path(docs_path(ctx)) / "index.html"
    assert observer.last_index and index.exists()
    index.unlink()
    idle = make_ctx(spark, tmp_path / "lake", run_id="dq-rerun", config_dir=ctx.settings.config_dir)
    observer.run_finished(idle, None)
    assert observer.last_index is None and not index.exists()
    observer.run_finished(ctx, None)  # the gated run's docs are built again on request
    assert index.exists()


def test_data_docs_go_to_the_lake_on_s3(spark, tmp_path, monkeypatch):
    """AWS is a config switch: with the lake root on S3 the site is written to
    s3://<bucket>/<lake>/_ops/data_docs/, as it is to the folder locally, pages GX dropped removed."""
    ctx = _ctx(spark, tmp_path, GOLD_DUP % "warn")
    run_gate(ctx, "gold_fct_orders", "fct_orders", "gold", _orders(spark))  # a validation to render
    for key, value in {"AWS_DEFAULT_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "testing"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(Bucket="lake-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        stale = "prod/lake/_ops/data_docs/validations/an-earlier-site-page.html"
        s3.put_object(Bucket="lake-bucket", Key=stale, Body=b"old")
        on_s3 = make_ctx(spark, "s3://lake-bucket/prod/lake", config_dir=ctx.settings.config_dir)
        # The S3 run's gate results, as the EMR job that gated the step keeps them beside the lake.
        kept = Path(validations_path(ctx)) / "gold_fct_orders.json"
        _, key = s3_parts(f"{validations_path(on_s3)}/gold_fct_orders.json")
        s3.put_object(Bucket="lake-bucket", Key=key, Body=kept.read_bytes())
        observer = DataDocsObserver()
        observer.run_finished(on_s3, None)
        listed = s3.list_objects_v2(Bucket="lake-bucket", Prefix="prod/lake/_ops/data_docs/")
        keys = [o["Key"] for o in listed.get("Contents", [])]
        assert "prod/lake/_ops/data_docs/index.html" in keys and stale not in keys  # a mirror of the site
        index = s3.get_object(Bucket="lake-bucket", Key="prod/lake/_ops/data_docs/index.html")
        assert index["ContentType"] == "text/html"
        assert observer.last_index and observer.last_index.endswith("index.html")
        pages = [
            s3.get_object(Bucket="lake-bucket", Key=k)["Body"].read().decode()
            for k in keys
            if k.endswith(".html") and "/validations/" in k
        ]
        assert any("order_id" in page and "gold.fct_orders" in page for page in pages)


def test_gate_warn_only_records_and_passes(spark, tmp_path):
    ctx = _ctx(spark, tmp_path, GOLD_DUP % "warn")
    results = run_gate(ctx, "gold_fct_orders", "fct_orders", "gold", _orders(spark))
    failed = [r for r in results if not r.passed]
    assert [(r.rule, r.severity) for r in failed] == [("order_id:unique", "warn")]
    flush(ctx)
    assert ctx.lake.read(results_path(ctx)).where("rule = 'order_id:unique' AND NOT passed").count() == 1
    detail = failed[0].detail()
    assert set(detail) == {"rule", "severity", "passed", "observed", "expected", "column"}
    # the next run compares its row count against this one
    ctx2 = make_ctx(spark, tmp_path / "lake", run_id="dq-run-2", config_dir=ctx.settings.config_dir)
    more = spark.createDataFrame([(f"ORD-{i}", 1.0) for i in range(10)], "order_id string, amount_usd double")
    results = {r.rule: r for r in run_gate(ctx2, "gold_fct_orders", "fct_orders", "gold", more)}
    assert results["table:volume_change"].passed is False
    assert results["table:volume_change"].severity == "warn"


def _fct(spark):
    """fct_orders-shaped rows: two orders of a known account with no version in force at their
    order time (null segment), one with a version, one of an unknown account."""
    day = date(2024, 1, 5)
    rows = [
        ("ORD-1", day, 1.0, None, None, True),
        ("ORD-2", day, 1.0, "SMB", "US", True),
        ("ORD-3", day, 1.0, None, None, True),
        ("ORD-4", day, 1.0, None, None, False),
    ]
    return spark.createDataFrame(
        rows,
        "order_id string, order_date date, amount_usd double, segment string, country string, "
        "account_known boolean",
    )


def test_account_version_missing_counts_orders_at_warn_and_passes(spark, tmp_path):
    ctx = _ctx(spark, tmp_path)  # the repository's config/dq.yaml
    results = {r.rule: r for r in run_gate(ctx, "gold_fct_orders", "fct_orders", "gold", _fct(spark))}
    rule = results["count:account_version_missing"]
    assert (rule.severity, rule.passed, rule.observed) == ("warn", False, "2 of 4 rows")
    assert "account_known AND segment IS NULL" in rule.expected
    flush(ctx)
    recorded = ctx.lake.read(results_path(ctx)).where("rule = 'count:account_version_missing'").collect()
    assert [(r["severity"], r["passed"], r["observed"]) for r in recorded] == [("warn", False, "2 of 4 rows")]

    none_missing = _fct(spark).where("order_id = 'ORD-2'")
    ctx2 = make_ctx(spark, tmp_path / "lake", run_id="dq-run-2", config_dir=ctx.settings.config_dir)
    results = {r.rule: r for r in run_gate(ctx2, "gold_fct_orders", "fct_orders", "gold", none_missing)}
    assert (
        results["count:account_version_missing"].passed,
        results["count:account_version_missing"].observed,
    ) == (
        True,
        "0 of 1 rows",
    )


def test_a_count_condition_the_table_cannot_answer_is_a_config_error(spark, tmp_path):
    ctx = _ctx(spark, tmp_path, "gold: {fct_orders: {counts: {x: {where: no_such_column}}}}\n")
    with pytest.raises(ConfigError, match="gold.fct_orders.counts"):
        run_gate(ctx, "gold_fct_orders", "fct_orders", "gold", _fct(spark))


def test_results_are_stamped_in_utc_whatever_the_local_time_zone(spark, tmp_path, monkeypatch):
    """evaluated_at is UTC (the session time zone) even when the driver's local zone is not: the
    freshness of a verdict and `recheck`'s choice of the latest one depend on it."""
    ctx = _ctx(spark, tmp_path)
    monkeypatch.setenv("TZ", "America/New_York")  # UTC-5 in December, UTC-4 in summer
    time.tzset()
    try:
        before = datetime.now(UTC).replace(tzinfo=None)
        record(ctx, "silver_orders", "orders", "silver", [DqResult("r", "warn", True, "0", "0", "c", "gx")])
        after = datetime.now(UTC).replace(tzinfo=None)
    finally:
        monkeypatch.undo()
        time.tzset()
    flush(ctx)
    stamp = (
        ctx.lake.read(results_path(ctx))
        .select(F.date_format("evaluated_at", "yyyy-MM-dd HH:mm:ss.SSSSSS"))
        .first()[0]
    )
    assert before <= datetime.fromisoformat(stamp) <= after


def test_row_level_quarantine_ratio_over_threshold_is_critical(spark, tmp_path):
    ctx = _ctx(spark, tmp_path)
    ctx.as_of = date(2026, 9, 30)
    df = spark.sql(
        "SELECT 'ORD-0000001' AS order_id, 'ACC-000001' AS account_id, 'placed' AS status, "
        "CAST(5 AS DECIMAL(18,2)) AS amount, TIMESTAMP'2026-09-30 10:00:00' AS updated_at"
    )
    counts = {"rows": 10, "quarantined": 6, "rules": {"amount:below_min": 6, "status:not_allowed": 0}}
    with pytest.raises(DqGateFailed) as err:
        run_gate(ctx, "silver_orders", "orders", "silver", df, counts)
    failed = {r.rule: r for r in err.value.failed}
    assert set(failed) == {"batch:quarantine_ratio"}
    assert failed["batch:quarantine_ratio"].observed.startswith("0.6000")
    results = {r.rule: r for r in err.value.results}
    assert results["quarantine:amount:below_min"].passed is False
    assert results["quarantine:amount:below_min"].severity == "warn"
    assert results["quarantine:status:not_allowed"].passed is True
    assert results["table:freshness"].passed is True
    assert results["account_id:references:accounts.account_id"].observed.startswith("skipped")
    flush(ctx)
    engines = {r["rule"]: r["engine"] for r in ctx.lake.read(results_path(ctx)).collect()}
    assert engines["batch:quarantine_ratio"] == "row-level" and engines["order_id:unique"] == "gx"


def test_switch_off_by_env(spark, tmp_path, monkeypatch):
    ctx = _ctx(spark, tmp_path, GOLD_DUP % "critical")
    monkeypatch.setenv("LAKEHOUSE_DQ", "off")
    assert run_gate(ctx, "gold_fct_orders", "fct_orders", "gold", _orders(spark)) == []
    assert flush(ctx) == 0 and not ctx.lake.exists(results_path(ctx))


def test_end_to_end_silver_gate_fails_and_skips_gold(spark, tmp_path):
    from pipeline.driver.dag import load_dag
    from pipeline.driver.runner import run_steps
    from pipeline.generate import generate
    from pipeline.jobs import JOBS

    ctx = _ctx(spark, tmp_path)
    generate(Path(ctx.settings.lake.path("landing")), scale=0.01, seed=3, defect_rate=0.5)
    dag = load_dag(REPO / "config" / "pipeline.yaml", set(JOBS))
    steps = ["bronze_snowflake_orders", "silver_orders", "gold_fct_orders"]
    out = io.StringIO()
    state = run_steps(ctx, dag, steps, out, executor=local_executor())
    assert state.failed is True, out.getvalue()
    outcomes = {s.step: s for s in state.steps}
    assert "DqGateFailed" in (outcomes["silver_orders"].error or ""), out.getvalue()
    assert outcomes["silver_orders"].attempts == 1  # fatal: not retried
    outcomes = {name: s.status for name, s in outcomes.items()}
    assert outcomes["silver_orders"] == "failed"
    assert outcomes["gold_fct_orders"] == "skipped"
    failed = ctx.lake.read(results_path(ctx)).where(
        "dataset = 'orders' AND NOT passed AND severity = 'critical'"
    )
    assert "batch:quarantine_ratio" in {r["rule"] for r in failed.collect()}
    # Audited before the write: the refused batch is neither in silver nor in quarantine.
    assert not ctx.lake.exists(ctx.table_path("silver", "orders"))
    assert not ctx.lake.exists(ctx.table_path("quarantine", "orders"))
    # consumed_version did not advance: the rerun judges the same bronze rows again and fails.
    ctx.run_id = "dq-rerun"
    state = run_steps(
        ctx, dag, ["silver_orders", "gold_fct_orders"], io.StringIO(), executor=local_executor()
    )
    again = {s.step: s for s in state.steps}
    assert again["silver_orders"].status == "failed" and "DqGateFailed" in again["silver_orders"].error
    assert again["gold_fct_orders"].status == "skipped"


# Current-state upsert with soft deletes, as silver contacts and opportunities merge.
SOFT_DELETE = MergeSpec(
    keys=("id",),
    update_when="s.`seq` >= t.`seq`",
    delete_when="s.`is_deleted` AND s.`seq` >= t.`seq`",
    insert_when="NOT s.`is_deleted`",
)
KEYED = "id string, seq int, is_deleted boolean"


def test_merge_effect_is_what_the_engine_merge_does_to_the_row_count(spark, tmp_path, lake):
    """The figure the gate judges before the commit equals the table's row count after the real
    MERGE (each engine), and the counts follow the spec's conditions row by row."""
    path = str(tmp_path / "t")
    target = [("a", 1, False), ("b", 1, False), ("c", 1, False), ("d", 5, False)]
    lake.append(path, spark.createDataFrame(target, KEYED))
    source = spark.createDataFrame(
        [
            ("b", 2, False),  # newer: updated, no change in count
            ("c", 2, True),  # newer deletion: deleted
            ("d", 1, True),  # older deletion: ignored
            ("e", 1, False),  # new: inserted
            ("f", 1, True),  # new but deleted: not inserted
            ("g", 1, None),  # deletion flag unknown: NOT NULL is not true, not inserted
        ],
        KEYED,
    )
    effect = merge_effect(source, lake.read(path), SOFT_DELETE)
    expected = spark.createDataFrame([(1, 1, 3)], "inserted bigint, deleted bigint, matched bigint")
    assert_df_equality(effect, expected, ignore_nullable=True)
    before = lake.read(path).count()
    lake.merge(path, source, SOFT_DELETE)
    assert lake.read(path).count() == before + 1 - 1
    # No table yet: what MergeSpec.inserts_when_unmatched keeps is inserted.
    first = merge_effect(source, None, SOFT_DELETE).first()
    assert tuple(first) == (SOFT_DELETE.inserts_when_unmatched(source).count(), 0, 0)


def test_batch_gate_judges_the_batch_and_the_table_figures_it_is_given(spark, tmp_path):
    """A silver batch's gate: column rules on the batch's rows (duplicate keys within the batch,
    null rates), row-count bounds and freshness on the table as the publish leaves it."""
    ctx = _ctx(spark, tmp_path)
    ctx.as_of = date(2026, 9, 30)
    batch = spark.sql(
        "SELECT * FROM VALUES "
        "('ORD-0000001', 'ACC-000001', 'placed', CAST(5 AS DECIMAL(18,2)), TIMESTAMP'2026-01-01 10:00:00'), "
        "('ORD-0000001', 'ACC-000001', 'placed', CAST(6 AS DECIMAL(18,2)), TIMESTAMP'2026-01-01 11:00:00'), "
        "('ORD-0000002', 'ACC-000002', 'shipped', CAST(7 AS DECIMAL(18,2)), NULL), "
        "('ORD-0000003', 'ACC-000003', 'placed', CAST(8 AS DECIMAL(18,2)), TIMESTAMP'2026-01-02 10:00:00') "
        "AS t(order_id, account_id, status, amount, updated_at)"
    )
    table = TableAfter(rows=0, newest="2026-09-30T10:00:00+00:00")
    with pytest.raises(DqGateFailed) as err:
        run_gate(ctx, "silver_orders", "orders", "silver", batch, None, table)
    results = {r.rule: r for r in err.value.results}
    rows = batch.count()
    duplicated = batch.groupBy("order_id").count().where("count > 1").agg(F.sum("count")).first()[0]
    nulls = batch.where("updated_at IS NULL").count()
    assert results["order_id:unique"].observed.startswith(f"{duplicated} unexpected")
    assert results["updated_at:not_null"].observed == f"{nulls} unexpected ({100 * nulls / rows:.3g}%)"
    # The bounds (min 1, critical) judge the table after the publish, not the batch of 4 rows.
    bounds = results["table:row_count_bounds"]
    assert (bounds.passed, bounds.observed, bounds.severity) == (False, "0 rows", "critical")
    assert results["table:row_count"].observed == "0" and results["batch:row_count"].observed == str(rows)
    # Freshness from the table's newest data time, although the batch itself is months old.
    assert (
        results["table:freshness"].passed is True
        and "2026-09-30T10:00:00" in results["table:freshness"].observed
    )
    assert {r.rule for r in err.value.failed} == {
        "order_id:unique",
        "updated_at:not_null",
        "table:row_count_bounds",
    }


def test_a_batch_the_job_counted_is_judged_alike_without_counting_it_again(spark, tmp_path, monkeypatch):
    """silver hands the gate the rows it counted of the very frame judged (AUDIT_ROWS): the gate
    runs no figures query of its own, and every result is the one it reaches counting itself."""
    import pipeline.dq.gate as gate

    ctx = _ctx(spark, tmp_path)
    ctx.as_of = date(2026, 1, 3)
    batch = spark.sql(
        "SELECT * FROM VALUES "
        "('ORD-0000001', 'ACC-000001', 'placed', CAST(5 AS DECIMAL(18,2)), TIMESTAMP'2026-01-01 10:00:00'), "
        "('ORD-0000002', 'ACC-000002', 'shipped', CAST(7 AS DECIMAL(18,2)), TIMESTAMP'2025-12-01 10:00:00') "
        "AS t(order_id, account_id, status, amount, updated_at)"
    )

    def judged(counts, newest):
        after = TableAfter(rows=9, newest=newest)
        found = run_gate(ctx, "silver_orders", "orders", "silver", batch, counts, after)
        return sorted((r.rule, r.passed, r.observed) for r in found)

    known = {AUDIT_ROWS: batch.count()}
    # No newest data time known for the table: freshness takes the batch's, counted then.
    assert judged(known, None) == judged(None, None)
    counted_itself = judged(None, "2026-01-02T10:00:00+00:00")
    monkeypatch.setattr(gate, "_figures", lambda *a: pytest.fail("the batch was counted again"))
    assert judged(known, "2026-01-02T10:00:00+00:00") == counted_itself
    assert ("batch:row_count", True, "2") in counted_itself


def test_table_figures_derived_beside_gx_are_judged_and_a_failure_waits_for_gx(spark, tmp_path, monkeypatch):
    """A step hands the gate a callable for the table's figures, derived while GX validates the
    batch in its own thread: they are judged as figures given outright. When deriving them fails,
    the gate raises that error only once GX has finished with the batch (the edge releases the
    batch's cache right after) and records nothing."""
    import pipeline.dq.gate as gate

    ctx = _ctx(spark, tmp_path)
    batch = spark.sql(
        "SELECT * FROM VALUES ('ORD-0000001', 'ACC-000001', 'placed', CAST(5 AS DECIMAL(18,2)), "
        "TIMESTAMP'2026-01-01 10:00:00') AS t(order_id, account_id, status, amount, updated_at)"
    )
    validated = []
    real_gx = gate.validate_gx

    def slow_gx(*args):
        time.sleep(1.0)  # still validating when the figures below are derived, or fail
        found = real_gx(*args)
        validated.append(time.monotonic())
        return found

    monkeypatch.setattr(gate, "validate_gx", slow_gx)
    results = {
        r.rule: r
        for r in run_gate(ctx, "silver_orders", "orders", "silver", batch, None, lambda: TableAfter(rows=7))
    }
    assert results["table:row_count"].observed == "7" and results["batch:row_count"].observed == "1"
    assert results["table:row_count_bounds"].passed and results["order_id:unique"].passed
    flush(ctx)
    recorded = ctx.lake.read(results_path(ctx)).count()

    def unreadable() -> TableAfter:
        raise RuntimeError("silver orders: the table cannot be read")

    with pytest.raises(RuntimeError, match="cannot be read"):
        run_gate(ctx, "silver_orders", "orders", "silver", batch, None, unreadable)
    raised = time.monotonic()
    assert len(validated) == 2 and validated[1] <= raised
    assert flush(ctx) == 0
    assert ctx.lake.read(results_path(ctx)).count() == recorded


def _table_verdict(ctx, dataset: str, layer: str) -> tuple[set, str]:
    """The last gate's results as dq_results holds them (an independent read of the table)."""
    rows = ctx.lake.read(results_path(ctx)).where(f"dataset = '{dataset}' AND layer = '{layer}'").collect()
    last = max(r["evaluated_at"] for r in rows)
    latest = [r for r in rows if r["evaluated_at"] == last]
    verdict = {
        (r["rule"], r["severity"], r["passed"], r["observed"], r["expected"], r["column"]) for r in latest
    }
    return verdict, latest[0]["run_id"]


def _detail_set(details: list[dict]) -> set:
    return {
        (d["rule"], d["severity"], d["passed"], d["observed"], d["expected"], d["column"]) for d in details
    }


@pytest.mark.parametrize("engine", ["delta-rs", "delta-spark"])
def test_recheck_repeats_the_last_verdict_of_the_dataset_and_layer(spark, tmp_path, engine):
    config = str(_config_dir(tmp_path))
    ctx = make_ctx(spark, tmp_path / "lake", run_id="run-1", engine=engine, config_dir=config)
    refused = [
        DqResult("k:unique", "critical", False, "2 duplicates", "0", "k"),
        DqResult("r", "warn", True, "0", "0"),
    ]
    record(ctx, "gold_m", "m", "gold", refused)
    record(ctx, "silver_m", "m", "silver", [DqResult("s", "critical", True, "ok", "ok", engine="rule")])
    record(ctx, "gold_other", "other", "gold", [DqResult("o", "warn", False, "1", "0")])
    flush(ctx)  # run-1 ends: its verdicts are read from dq_results' commit metadata
    ctx2 = make_ctx(spark, tmp_path / "lake", run_id="run-2", engine=engine, config_dir=config)
    with pytest.raises(DqGateFailed) as err:  # refused, and refused again on every rerun
        recheck(ctx2, "gold_m", "m", "gold")
    verdict, run = _table_verdict(ctx, "m", "gold")
    assert (_detail_set(err.value.details["dq"]), err.value.details["dq_from_run"]) == (verdict, run)
    assert [r.rule for r in err.value.failed] == ["k:unique"]
    details = recheck(ctx2, "silver_m", "m", "silver")
    assert (_detail_set(details["dq"]), details["dq_from_run"]) == _table_verdict(ctx, "m", "silver")
    assert recheck(ctx2, "gold_x", "never_gated", "gold") == {}

    record(ctx2, "gold_m", "m", "gold", [DqResult("k:unique", "critical", True, "0 duplicates", "0", "k")])
    details = recheck(ctx2, "gold_m", "m", "gold")  # the newer verdict passed, read from the spool
    assert details["dq_from_run"] == "run-2"
    flush(ctx2)
    assert (_detail_set(details["dq"]), details["dq_from_run"]) == _table_verdict(ctx, "m", "gold")
    assert recheck(ctx2, "gold_m", "m", "gold") == {**details, "dq_seconds": ANY}  # now from the table

    # A verdict a later version wrote, with a field this one does not know, is still repeated.
    later = {**dataclasses.asdict(refused[0]), "added_later": 1}
    meta = {"run_id": "run-3", "step": "gold_m", "dq": "m", "layer": "gold", VERDICT_KEY: [later]}
    ctx.lake.append(results_path(ctx), ctx.lake.read(results_path(ctx)).limit(1), metadata=meta)
    with pytest.raises(DqGateFailed) as err:
        recheck(ctx2, "gold_m", "m", "gold")
    assert [r.rule for r in err.value.failed] == ["k:unique"] and err.value.details["dq_from_run"] == "run-3"


@pytest.mark.parametrize("engine", ["delta-rs", "delta-spark"])
def test_recheck_reads_a_verdict_recorded_without_commit_metadata_from_the_table(spark, tmp_path, engine):
    """dq_results written before verdicts rode in commit metadata: the table answers."""
    ctx = make_ctx(
        spark, tmp_path / "lake", run_id="old-run", engine=engine, config_dir=str(_config_dir(tmp_path))
    )
    _record_without_verdict(ctx, ("k:unique", "k", "critical", "2", "0", False, "gx"))
    with pytest.raises(DqGateFailed) as err:
        recheck(ctx, "gold_m", "m", "gold")
    assert _detail_set(err.value.details["dq"]) == {("k:unique", "critical", False, "2", "0", "k")}
    assert err.value.details["dq_from_run"] == "old-run"


def _record_without_verdict(ctx, result: tuple) -> None:
    """One gold_m result of run `ctx.run_id` in dq_results, as written before verdicts rode in
    commit metadata. `result`: rule, column, severity, observed, expected, passed, engine."""
    now = datetime.now(UTC).replace(tzinfo=None)
    row = (ctx.run_id, "gold_m", "m", "gold", *result, now)
    ctx.lake.append(
        results_path(ctx),
        ctx.spark.createDataFrame([row], RESULTS_SCHEMA),
        metadata={"run_id": ctx.run_id, "step": "gold_m", "dq": "m"},
    )


def _recorded(ctx, step: str, dataset: str, layer: str, results: list[DqResult]) -> None:
    """One gate's results in a dq_results commit of their own (a run of one gate)."""
    record(ctx, step, dataset, layer, results)
    flush(ctx)


def _row_count(rows: int) -> list[DqResult]:
    return [DqResult("table:row_count", "warn", True, str(rows), "", "", "rule")]


def _table_previous_rows(ctx, dataset: str, layer: str) -> tuple[str, str]:
    """The newest row count another run recorded for the table, read from dq_results itself."""
    rows = (
        ctx.lake.read(results_path(ctx))
        .where(f"dataset = '{dataset}' AND layer = '{layer}' AND rule = 'table:row_count'")
        .where(F.col("run_id") != ctx.run_id)
        .collect()
    )
    newest = max(rows, key=lambda r: r["evaluated_at"])
    return newest["observed"], newest["run_id"]


@pytest.mark.parametrize("engine", ["delta-rs", "delta-spark"])
def test_volume_change_compares_with_the_row_count_another_run_recorded_last(spark, tmp_path, engine):
    config_dir = str(_config_dir(tmp_path))
    config = load_dq_config(Path(config_dir) / "dq.yaml")  # volume_change: warn above 0.5

    def run(run_id):
        return make_ctx(spark, tmp_path / "lake", run_id=run_id, engine=engine, config_dir=config_dir)

    # A record written before verdicts rode in commit metadata: the table answers.
    _record_without_verdict(run("run-1"), ("table:row_count", "", "warn", "4", "", True, "rule"))
    second = run("run-2")
    change = volume_result(second, config, "m", "gold", 8)
    assert (change.passed, change.severity) == (False, "warn")
    assert change.observed == "1.0000 (4 -> 8 rows, previous run run-1)"
    assert _table_previous_rows(second, "m", "gold") == ("4", "run-1")

    record(second, "gold_m", "m", "gold", _row_count(8))
    record(second, "silver_m", "m", "silver", _row_count(50))  # another layer
    record(second, "gold_other", "other", "gold", _row_count(100))  # another table
    # The run's own record is not "the previous run": run-2 still compares with run-1.
    assert (
        volume_result(second, config, "m", "gold", 8).observed == "1.0000 (4 -> 8 rows, previous run run-1)"
    )
    third = run("run-3")
    change = volume_result(third, config, "m", "gold", 6)  # run-2's records, still spooled
    assert (change.passed, change.observed) == (True, "0.2500 (8 -> 6 rows, previous run run-2)")
    flush(second)  # run-2 ends: the same from dq_results' commit metadata
    assert volume_result(third, config, "m", "gold", 6) == change
    assert _table_previous_rows(third, "m", "gold") == ("8", "run-2")
    assert volume_result(third, config, "m", "silver", 50).observed.endswith(
        "(50 -> 50 rows, previous run run-2)"
    )
    assert volume_result(third, config, "never_gated", "gold", 5) is None


@pytest.mark.parametrize("engine", ["delta-rs", "delta-spark"])
def test_volume_change_finds_a_record_whose_commit_left_the_log_and_a_first_run_reads_no_table(
    spark, tmp_path, engine, monkeypatch
):
    """No verdict in the log: the table answers only if commits left the log (cleaned up after
    a checkpoint); a log that still holds its first commit saw every record, so a lake's first
    run does not scan dq_results at each gate."""
    config_dir = str(_config_dir(tmp_path))
    config = load_dq_config(Path(config_dir) / "dq.yaml")

    def run(run_id):
        return make_ctx(spark, tmp_path / "lake", run_id=run_id, engine=engine, config_dir=config_dir)

    first = run("run-1")
    _recorded(first, "gold_m", "m", "gold", _row_count(4))
    _recorded(first, "gold_other", "other", "gold", _row_count(10))
    with monkeypatch.context() as patched:  # the first run: no other run's record, no table read
        patched.setattr(type(first.lake), "read", lambda *a, **k: pytest.fail("dq_results was scanned"))
        assert volume_result(first, config, "m", "gold", 4) is None
    path = results_path(first)
    for _ in range(3):
        _recorded(run("run-2"), "gold_other", "other", "gold", _row_count(10))
    first.lake.checkpoint(path)
    log = Path(path) / "_delta_log"
    for version in (0, 1):  # log cleanup: the oldest commits go, the checkpoint covers them
        (log / f"{version:020d}.json").unlink()
    assert not first.lake.log_from_first_commit(path)
    change = volume_result(run("run-3"), config, "m", "gold", 8)
    assert change.observed == "1.0000 (4 -> 8 rows, previous run run-1)"


# ---------------------------------------------------------------- the record: spooled, then one commit


def _spool(ctx) -> list[str]:
    folder = Path(spool_path(ctx))
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize("engine", ["delta-rs", "delta-spark"])
def test_a_runs_gates_reach_dq_results_in_one_commit_when_it_ends(spark, tmp_path, engine):
    ctx = make_ctx(
        spark, tmp_path / "lake", run_id="run-1", engine=engine, config_dir=str(_config_dir(tmp_path))
    )
    gates = {
        ("gold_m", "m", "gold"): [DqResult("k:unique", "critical", True, "0", "0", "k"), *_row_count(3)],
        ("silver_m", "m", "silver"): _row_count(5),
        ("bronze_kafka_events", "kafka_events", "bronze"): [
            DqResult("batch:quarantine_ratio", "warn", True, "0", "0")
        ],
    }
    for (step, dataset, layer), results in gates.items():
        record(ctx, step, dataset, layer, results)
    assert not ctx.lake.exists(results_path(ctx))  # nothing committed while the run goes on
    assert len(_spool(ctx)) == 3

    assert flush(ctx) == 3
    assert ctx.lake.version(results_path(ctx)) == 0 and _spool(ctx) == []
    rows = ctx.lake.read(results_path(ctx)).collect()
    assert sorted((r["step"], r["dataset"], r["layer"], r["rule"], r["run_id"]) for r in rows) == sorted(
        (step, dataset, layer, r.rule, "run-1")
        for (step, dataset, layer), results in gates.items()
        for r in results
    )
    (commit,) = ctx.lake.history(results_path(ctx))
    recorded = {(g["step"], g["dq"], g["layer"]): g[VERDICT_KEY] for g in commit.metadata[GATES_KEY]}
    assert recorded == {key: [dataclasses.asdict(r) for r in results] for key, results in gates.items()}
    assert flush(ctx) == 0 and ctx.lake.version(results_path(ctx)) == 0  # nothing left: no commit


@pytest.mark.parametrize("engine", ["delta-rs", "delta-spark"])
def test_a_killed_runs_spooled_refusal_still_stands_and_a_later_run_records_it_once(
    spark, tmp_path, engine, monkeypatch
):
    """A process killed after its gate refused and before the run's end: the refusal counts from
    the spool (a rerun fails again), another run's flush records it once it is LEFTOVER_AFTER old
    (never a file in flight), and a flush that committed but died before deleting the file does
    not record it twice."""
    config = str(_config_dir(tmp_path))
    killed = make_ctx(spark, tmp_path / "lake", run_id="run-1", engine=engine, config_dir=config)
    record(killed, "gold_m", "m", "gold", [DqResult("k:unique", "critical", False, "2 duplicates", "0", "k")])
    monkeypatch.setattr(record_module._Spooled, "names", {})  # the process died: it forgot its spool
    (name,) = _spool(killed)
    spooled = (Path(spool_path(killed)) / name).read_text()

    later = make_ctx(spark, tmp_path / "lake", run_id="run-2", engine=engine, config_dir=config)
    with pytest.raises(DqGateFailed) as err:
        recheck(later, "gold_m", "m", "gold")
    assert err.value.details["dq_from_run"] == "run-1"
    assert flush(later) == 0 and _spool(later) == [name]  # too young: it may be in flight

    monkeypatch.setattr(record_module, "LEFTOVER_AFTER", timedelta(0))
    assert flush(later) == 1 and _spool(later) == []
    (Path(spool_path(killed)) / name).write_text(spooled)  # as if that flush died before deleting
    assert flush(later) == 1 and _spool(later) == []
    rows = later.lake.read(results_path(later)).collect()
    assert [(r["run_id"], r["rule"], r["passed"]) for r in rows] == [("run-1", "k:unique", False)]
    with pytest.raises(DqGateFailed) as err:  # and the refusal stands, now from dq_results
        recheck(later, "gold_m", "m", "gold")
    assert err.value.details["dq_from_run"] == "run-1"


def test_a_failed_flush_loses_nothing_and_foreign_files_in_the_spool_are_left_alone(
    spark, tmp_path, monkeypatch, caplog
):
    config = _config_dir(tmp_path)
    ctx = make_ctx(spark, tmp_path / "lake", run_id="run-1", config_dir=str(config))
    _recorded(ctx, "gold_other", "other", "gold", _row_count(1))  # dq_results at version 0
    record(ctx, "gold_m", "m", "gold", _row_count(3))
    folder = Path(spool_path(ctx))
    (folder / "notes.txt").write_text("not a gate")
    unreadable = "20260101T000000000000Z.run-0.gold.m.0badf00d.json"
    (folder / unreadable).write_text("{truncated")
    monkeypatch.setattr(record_module, "LEFTOVER_AFTER", timedelta(0))

    def refused(*args, **kwargs):
        raise OSError("the lake's store refused the write")

    with monkeypatch.context() as patched:
        patched.setattr(type(ctx.lake), "append", refused)
        assert flush(ctx) == 0  # logged, not raised: the gates judged, the run goes on
    assert "the next run's flush records them" in caplog.text
    assert len(_spool(ctx)) == 3 and ctx.lake.version(results_path(ctx)) == 0
    next_run = make_ctx(spark, tmp_path / "lake", run_id="run-2", config_dir=str(config))
    change = volume_result(next_run, load_dq_config(config / "dq.yaml"), "m", "gold", 3)
    assert change.observed == "0.0000 (3 -> 3 rows, previous run run-1)"  # the spooled gate counts

    assert flush(ctx) == 1  # the retry records the gate; the foreign files stay where they were
    assert ctx.lake.history(results_path(ctx), 1)[0].operation == "MERGE"  # the failed commit may have landed
    assert _spool(ctx) == sorted(["notes.txt", unreadable])
    assert [r["observed"] for r in ctx.lake.read(results_path(ctx)).where("dataset = 'm'").collect()] == ["3"]
    assert f"{unreadable} is not a gate's results" in caplog.text


@pytest.mark.parametrize("trigger, commits", [("available-now", 0), ("continuous", 2)])
def test_a_continuous_stream_records_each_micro_batch_at_once_a_run_at_its_end(
    spark, tmp_path, trigger, commits
):
    """A `--trigger continuous` stream has no run end to wait for: each micro-batch's results get
    their dq_results commit as it is judged; in a run, they wait for the run's one commit."""
    from pyspark.sql import Row

    from pipeline.dq.stream import MicroBatchGate
    from pipeline.silver.conform import rule_names

    ctx = _ctx(spark, tmp_path)
    gate = MicroBatchGate.for_stream(ctx, "bronze_kafka_events", "kafka_events", trigger)
    rules = {f"_dq_rule_{i}": 0 for i in range(len(rule_names(gate.contract)))}
    totals = Row(**{"_dq_rows": 10, "_dq_quarantined": 0, **rules})
    per_batch = len(gate.judge(0, totals))
    gate.judge(1, totals)
    version = ctx.lake.version(results_path(ctx))
    assert (0 if version is None else version + 1) == commits
    flush(ctx)  # the run's end (the stream's, when it stops)
    recorded = ctx.lake.read(results_path(ctx)).where("step = 'bronze_kafka_events' AND layer = 'bronze'")
    assert recorded.count() == 2 * per_batch and _spool(ctx) == []


def test_a_gate_recorded_late_does_not_hide_a_newer_verdict(spark, tmp_path, monkeypatch):
    """A killed run's refusal, resumed under the same run id: the resumed gate passes and is
    recorded at its run's end; a later run records the killed attempt's file as a leftover, in a
    newer commit. The newest verdict is the resumed pass (by time, not by commit)."""
    config = str(_config_dir(tmp_path))
    run_1 = make_ctx(spark, tmp_path / "lake", run_id="run-1", config_dir=config)
    record(run_1, "gold_m", "m", "gold", [DqResult("k:unique", "critical", False, "2 duplicates", "0", "k")])
    monkeypatch.setattr(record_module._Spooled, "names", {})  # killed
    time.sleep(0.01)
    record(run_1, "gold_m", "m", "gold", [DqResult("k:unique", "critical", True, "0 duplicates", "0", "k")])
    assert flush(run_1) == 1  # the resumed run's end: its own gate only
    monkeypatch.setattr(record_module, "LEFTOVER_AFTER", timedelta(0))
    run_2 = make_ctx(spark, tmp_path / "lake", run_id="run-2", config_dir=config)
    assert flush(run_2) == 1  # the killed attempt's refusal, late
    (gate,) = run_2.lake.history(results_path(run_2), 1)[0].metadata[GATES_KEY]
    assert gate["late"] is True and gate[VERDICT_KEY][0]["passed"] is False
    details = recheck(
        make_ctx(spark, tmp_path / "lake", run_id="run-3", config_dir=config), "gold_m", "m", "gold"
    )
    assert [d["observed"] for d in details["dq"]] == ["0 duplicates"] and details["dq_from_run"] == "run-1"


def test_a_micro_batch_gate_counts_every_rule_as_silver_conformance_does_conflicts_included(spark, tmp_path):
    """The stream gate counts a micro-batch's rules from their verdicts alone (`rule_verdicts`),
    not from every typed value: its counts equal those of silver's whole conformance of the
    same rows. A replay delivering one record's coordinates twice with different values breaks
    the conflict rule (both rows); twice with the same values, nothing; a value that is not an
    event is malformed."""
    import json

    from pipeline.bronze.audit import with_audit_columns
    from pipeline.bronze.kafka import CORRUPT, parse_kafka_records
    from pipeline.dq.stream import MicroBatchGate
    from pipeline.silver.conform import conflict_rule, conform, rule_count_aggregates, rule_counts

    ctx = _ctx(spark, tmp_path)
    gate = MicroBatchGate.for_stream(ctx, "bronze_kafka_events", "kafka_events")

    def record(offset: int, event_type: str = "feature_used", value: str | None = None, event_id: str = ""):
        event = {"event_id": event_id or f"e-{offset}", "event_type": event_type, "account_id": "ACC-000001"}
        event["event_ts"] = "2026-09-30T10:00:00Z"
        ts = datetime(2026, 9, 30, 10, 0, 1)
        return ("product_events", 0, offset, ts, None, value or json.dumps(event), None, None, None)

    records = spark.createDataFrame(
        [
            *[record(i) for i in range(5)],
            record(10, "feature_used"),
            record(10, "item_viewed"),  # the same coordinates, another value: a conflict
            record(11),
            record(11),  # the same record twice: a duplicate, no conflict
            record(12, value="<html>502</html>"),
            record(13, "feature_used", event_id="e-twice"),
            record(14, "item_viewed", event_id="e-twice"),  # two offsets: two deliveries, no conflict
        ],
        "topic string, partition int, offset long, timestamp timestamp, key string, value string, "
        "_corrupt_record string, _parse_error string, _source_file string",
    )
    batch = with_audit_columns(parse_kafka_records(records), "kafka", "app:0").persist()
    try:
        counted = [F.count(F.lit(1)).alias("rows"), F.count(CORRUPT).alias("corrupt")]
        measured = gate.measure(batch, counted, (CORRUPT,))
        silver = conform(batch, gate.contract, gate.references).agg(*rule_count_aggregates(gate.contract))
        assert rule_counts(measured, gate.contract) == rule_counts(silver.first(), gate.contract)
        counts = rule_counts(measured, gate.contract)
        assert (measured["rows"], measured["corrupt"], counts["quarantined"]) == (12, 1, 3)
        assert counts["rules"][conflict_rule(gate.contract)] == 2
        assert counts["rules"]["record:malformed"] == 1
    finally:
        batch.unpersist()
