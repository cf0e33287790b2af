"""The driver's edge around a job (driver.edge.finish): check, then publish, whatever the job."""

from __future__ import annotations

from functools import partial

import pytest

from pipeline.driver.dag import Step
from pipeline.driver.edge import finish
from pipeline.driver.executors import LocalExecutor
from pipeline.step_result import Staged, StepResult, TableAfter, Unchanged


class Refused(ValueError):
    pass


class RecordingCheck:
    """A check that records what it was asked and refuses datasets named in `refuse`."""

    def __init__(self, refuse: tuple[str, ...] = ()):
        self.refuse, self.calls = refuse, []

    def judge(self, ctx, step, staged):
        table = staged.table() if staged.table else None
        self.calls.append(("judge", step, staged.dataset, staged.layer, staged.audit, table))
        if staged.dataset in self.refuse:
            raise Refused(f"{step}: {staged.dataset} refused")
        return {"dq": ["judged"]}

    def stands(self, ctx, step, dataset, layer):
        self.calls.append(("stands", step, dataset, layer))
        if dataset in self.refuse:
            raise Refused(f"{step}: last verdict on {dataset} was a refusal")
        return {"dq": ["as before"]}

    def close_run(self, ctx):
        self.calls.append(("close_run",))


def staged(dataset: str, log: list[str]) -> Staged:
    def publish():
        log.append("publish")
        return StepResult(3, 2, {"version": 7})

    return Staged(
        dataset,
        "silver",
        audit="the batch",
        publish=publish,
        table=lambda: TableAfter(rows=10),
        release=lambda: log.append("release"),
    )


def test_a_passed_check_publishes_then_releases_and_adds_its_verdict():
    log: list[str] = []
    check = RecordingCheck()
    result = finish(None, "silver_orders", staged("orders", log), check)
    assert log == ["publish", "release"]
    assert (result.rows_in, result.rows_out, result.details) == (3, 2, {"version": 7, "dq": ["judged"]})
    assert check.calls == [("judge", "silver_orders", "orders", "silver", "the batch", TableAfter(rows=10))]


def test_a_refused_check_publishes_nothing_and_still_releases():
    log: list[str] = []
    with pytest.raises(Refused, match="silver_orders: orders refused"):
        finish(None, "silver_orders", staged("orders", log), RecordingCheck(refuse=("orders",)))
    assert log == ["release"]


def test_a_failed_publish_still_releases():
    log: list[str] = []
    broken = staged("orders", log)
    broken.publish = lambda: (_ for _ in ()).throw(OSError("disk full"))
    with pytest.raises(OSError, match="disk full"):
        finish(None, "silver_orders", broken, RecordingCheck())
    assert log == ["release"]


def test_an_unchanged_table_repeats_the_last_verdict_and_a_step_result_passes_through():
    check = RecordingCheck(refuse=("revenue_daily",))
    kept = finish(
        None, "gold_fct_orders", Unchanged("fct_orders", "gold", StepResult(details={"skipped": "x"})), check
    )
    assert kept.details == {"skipped": "x", "dq": ["as before"]}
    with pytest.raises(Refused, match="last verdict on revenue_daily"):
        finish(None, "gold_revenue_daily", Unchanged("revenue_daily", "gold", StepResult()), check)
    landed = StepResult(5, 5)
    assert finish(None, "bronze_fx_rates", landed, check) is landed
    assert check.calls == [
        ("stands", "gold_fct_orders", "fct_orders", "gold"),
        ("stands", "gold_revenue_daily", "revenue_daily", "gold"),
    ]


def test_a_job_returning_something_else_is_named():
    with pytest.raises(TypeError, match="step silver_x: the job returned dict"):
        finish(None, "silver_x", {"rows": 1}, RecordingCheck())


def test_the_local_executor_runs_its_registry_through_its_check():
    log: list[str] = []
    check = RecordingCheck()
    executor = LocalExecutor({"silver": lambda ctx, dataset: staged(dataset, log)}, check)
    result = executor.run(Step(name="silver_accounts", job="silver", dataset="accounts"), ctx=None)
    assert result.details["dq"] == ["judged"] and log == ["publish", "release"]
    assert check.calls[0][1:4] == ("silver_accounts", "accounts", "silver")
    executor.close_run(ctx=None)  # the run's end reaches the check it was handed
    assert check.calls[1:] == [("close_run",)]


def _cached(frame) -> bool:
    """Whether Spark holds `frame`'s own plan in its cache (the JVM cache manager's answer)."""
    return frame.storageLevel.useMemory


class CacheWatch(RecordingCheck):
    """Records, when judging, whether the judged frame is cached."""

    def judge(self, ctx, step, staged):
        self.calls.append(("judged cached", _cached(staged.audit)))
        return {}


def _staged_frame(frame, log: list, release=lambda: None) -> Staged:
    def publish():
        log.append(("published cached", _cached(frame)))
        return StepResult()

    return Staged("orders", "silver", frame, publish, release=release)


def test_a_frame_the_job_left_uncached_is_cached_through_the_publish_then_released(spark):
    frame = spark.range(50).selectExpr("id", "id % 7 AS k").groupBy("k").count()
    check, log = CacheWatch(), []
    finish(None, "silver_orders", _staged_frame(frame, log), check)
    assert (check.calls, log) == ([("judged cached", True)], [("published cached", True)])
    assert not _cached(frame)


def test_a_frame_the_job_cached_or_a_filter_of_it_gets_no_second_cache(spark):
    source = spark.range(50).selectExpr("id", "id % 7 AS k").cache()
    for audit in (source, source.where("k > 2").select("id")):
        check, log = CacheWatch(), []
        finish(
            None,
            "silver_orders",
            _staged_frame(audit, log, release=partial(log.append, "job released")),
            check,
        )
        assert check.calls == [("judged cached", audit is source)]  # a filter reads the job's cache
        assert log[-1] == "job released" and _cached(source)  # the job's cache is the job's to free
    source.unpersist()
