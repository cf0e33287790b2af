"""The driver without Spark: selection, retry classification and backoff, the runner with a fake
executor and an in-memory state store, resume, backfill window."""

from __future__ import annotations

import io
import random
import re
import threading
from datetime import date, datetime
from types import SimpleNamespace

import pytest

from pipeline.driver import retry
from pipeline.driver.dag import Dag, Step, load_dag
from pipeline.driver.retry import RetryPolicy, classify, short_error
from pipeline.driver.runner import plan_text, resume_selection, run_steps
from pipeline.driver.state import MemoryStateStore, RunState, StepOutcome
from pipeline.driver.window import DateWindow, parse_window
from pipeline.lake import LakeError
from pipeline.observability.logging import LogContextObserver, current_log_context
from pipeline.settings import ConfigError, LakeSettings
from pipeline.step_result import StepResult

# a -> b -> c, a -> d, e independent
DAG_TEXT = """
steps:
  a: {job: j, dataset: da}
  b: {job: j, dataset: db, depends_on: [a]}
  c: {job: j, dataset: dc, depends_on: [b]}
  d: {job: j, dataset: dd, depends_on: [a]}
  e: {job: j, dataset: de}
"""


def dag_file(tmp_path, text=DAG_TEXT):
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def dag(tmp_path) -> Dag:
    return load_dag(dag_file(tmp_path), {"j"})


def fake_ctx(tmp_path, run_id="20250102T030405Z-abc123"):
    return SimpleNamespace(run_id=run_id, settings=SimpleNamespace(lake=LakeSettings(root=str(tmp_path))))


class FakeExecutor:
    """Plays a script per step: a list of exceptions to raise, one per attempt, then succeeds."""

    name = "fake"

    def __init__(self, script: dict[str, list[BaseException]] | None = None):
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.calls: list[str] = []
        self.windows: list = []

    def run(self, step: Step, ctx) -> StepResult:
        self.calls.append(step.name)
        self.windows.append(getattr(ctx, "window", "unset"))
        pending = self.script.get(step.name)
        if pending:
            raise pending.pop(0)
        return StepResult(rows_in=10, rows_out=7, details={"dataset": step.dataset})


class Sleeper:
    def __init__(self):
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def run(ctx, dag, selected=None, executor=None, store=None, **kwargs):
    out = io.StringIO()
    store = store or MemoryStateStore()
    sleeper = kwargs.pop("sleep", Sleeper())
    state = run_steps(
        ctx,
        dag,
        selected or dag.order(),
        out,
        executor=executor or FakeExecutor(),
        store=store,
        sleep=sleeper,
        rng=random.Random(7),
        **kwargs,
    )
    return state, out.getvalue(), store, sleeper


class FakePy4JJavaError(Exception):
    """What a Py4JJavaError looks like from Python: the Java class and stack in str()."""

    def __str__(self):
        return (
            "An error occurred while calling o123.save.\n"
            ": java.net.SocketTimeoutException: Read timed out\n"
            "\tat java.base/sun.nio.ch.NioSocketImpl.timedRead(NioSocketImpl.java:288)\n"
        )


class DeadJvmError(Exception):
    def __str__(self):
        raise RuntimeError("the JVM is gone")


# ---------------------------------------------------------------- selection


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, ["a", "b", "c", "d", "e"]),
        ({"from_step": "b"}, ["b", "c"]),
        ({"from_step": "a"}, ["a", "b", "c", "d"]),
        ({"until_step": "c"}, ["a", "b", "c"]),
        ({"until_step": "e"}, ["e"]),
        ({"from_step": "a", "until_step": "b"}, ["a", "b"]),
        ({"only": ["c", "a", "e"]}, ["a", "c", "e"]),
        ({"only": ["b", "c", "d"], "from_step": "b"}, ["b", "c"]),
        ({"only": ["a", "b", "d"], "until_step": "c"}, ["a", "b"]),
        ({"only": ["a", "b", "c", "d"], "from_step": "a", "until_step": "c"}, ["a", "b", "c"]),
    ],
)
def test_selection_flags_combine_as_an_intersection(dag, kwargs, expected):
    only = kwargs.pop("only", None)
    assert dag.select(only, **kwargs) == expected


def test_upstream_and_downstream_are_transitive(dag):
    assert dag.upstream("c") == {"a", "b"}
    assert dag.downstream("a") == {"b", "c", "d"}
    assert dag.upstream("a") == set() and dag.downstream("e") == set()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"from_step": "zz"}, "--from: unknown step"),
        ({"until_step": "zz"}, "--until: unknown step"),
        ({"only": ["zz"]}, "--only: unknown step"),
        ({"from_step": "c", "until_step": "a"}, "--from c and --until a select no steps"),
        ({"only": ["e"], "from_step": "a"}, "--only e and --from a select no steps"),
    ],
)
def test_bad_selections_name_the_flag(dag, kwargs, message):
    only = kwargs.pop("only", None)
    with pytest.raises(ConfigError, match=message):
        dag.select(only, **kwargs)


# ---------------------------------------------------------------- retry policy in the DAG file


def test_retry_policy_defaults_when_the_block_is_absent(dag):
    assert dag.retry == RetryPolicy(max_attempts=3, initial_backoff_s=2, max_backoff_s=60, jitter=0.5)


def test_retry_policy_is_read_from_the_dag_file(tmp_path):
    text = DAG_TEXT + "retry: {max_attempts: 5, initial_backoff_s: 1, max_backoff_s: 10, jitter: 0}\n"
    dag = load_dag(dag_file(tmp_path, text), {"j"})
    assert dag.retry == RetryPolicy(5, 1.0, 10.0, 0.0)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("retry: {max_attempts: 0}", r"pipeline.yaml: retry: max_attempts: must be at least 1"),
        ("retry: {max_attempts: 2.5}", r"pipeline.yaml: retry.max_attempts: expected int"),
        ("retry: {jitter: 2}", r"pipeline.yaml: retry: jitter: must be between 0 and 1"),
        ("retry: {initial_backoff_s: -1}", r"retry: initial_backoff_s: must be >= 0"),
        ("retry: {initial_backoff_s: 10, max_backoff_s: 5}", r"retry: max_backoff_s: must be >="),
        ("retry: {attempts: 3}", r"pipeline.yaml: retry: unknown key\(s\) attempts"),
        ("retry: 3", r"pipeline.yaml: retry: expected a mapping"),
        ("retyr: {max_attempts: 3}", r"pipeline.yaml: unknown top-level key\(s\) retyr"),
    ],
)
def test_broken_retry_blocks_fail_with_file_and_key(tmp_path, block, message):
    with pytest.raises(ConfigError, match=message):
        load_dag(dag_file(tmp_path, DAG_TEXT + block + "\n"), {"j"})


# ---------------------------------------------------------------- classification


def _caused(outer: BaseException, cause: BaseException) -> BaseException:
    try:
        raise outer from cause
    except BaseException as exc:  # noqa: BLE001
        return exc


@pytest.mark.parametrize(
    "exc",
    [
        OSError("network is unreachable"),
        ConnectionResetError("reset by peer"),
        TimeoutError("timed out"),
        retry.Py4JNetworkError("Answer from Java side is empty"),
        FakePy4JJavaError(),
        RuntimeError(
            "com.amazonaws.services.s3.model.AmazonS3Exception: Slow Down (Status Code: 503; Error Code: SlowDown)"
        ),
        RuntimeError("software.amazon.awssdk...: ThrottlingException: Rate exceeded"),
        RuntimeError(
            "io.delta.exceptions.ConcurrentAppendException: Files were added to the root of the table"
        ),
        RuntimeError("java.util.ConcurrentModificationException"),
        RuntimeError("org.apache.iceberg.exceptions.CommitFailedException: version conflict"),
        RuntimeError("java.net.SocketException: Connection reset"),
        _caused(LakeError("/lake/bronze/x: append failed: boom"), OSError("connection aborted")),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transient_errors_are_retried(exc):
    assert classify(exc) == "transient"


@pytest.mark.parametrize(
    "exc",
    [
        ConfigError("sources.x.jdbc: required"),
        ValueError("bad value"),
        TypeError("wrong type"),
        KeyError("missing"),
        FileNotFoundError("no such landing folder"),
        PermissionError("denied"),
        RuntimeError("a bug nobody classified"),
        _caused(
            LakeError("/lake/bronze/x: append failed: Cast error: Cannot cast string 'x' to Int64"),
            Exception("Cast error"),
        ),
        LakeError(
            "/lake/bronze/x: append failed: [DELTA_FAILED_TO_MERGE_FIELDS] Failed to merge fields 'a' and 'a'"
        ),
        # a schema mismatch stays fatal even where the message also looks transient
        _caused(LakeError("/lake/x: append failed: SchemaMismatchError"), ConnectionError("reset")),
        # a fatal type on top is not retried although its cause is transient
        _caused(ValueError("bad config value"), OSError("io")),
        DeadJvmError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_contract_and_configuration_errors_fail_fast(exc):
    assert classify(exc) == "fatal"


def test_classes_added_to_fatal_fail_fast(monkeypatch):
    class QuotaExceeded(OSError):
        pass

    assert classify(QuotaExceeded("disk quota")) == "transient"
    monkeypatch.setattr(retry, "FATAL", (*retry.FATAL, QuotaExceeded))
    assert classify(QuotaExceeded("disk quota")) == "fatal"


def test_short_error_names_the_java_cause_not_the_py4j_wrapper():
    assert short_error(FakePy4JJavaError()) == "java.net.SocketTimeoutException: Read timed out"
    assert short_error(DeadJvmError()).startswith("DeadJvmError")
    assert len(short_error(ValueError("x" * 1000))) == 300
    # Python errors keep the message their code wrote, not the cause below it
    assert short_error(_caused(LakeError("/lake/x: append failed"), OSError("io"))) == (
        "LakeError: /lake/x: append failed"
    )


# ---------------------------------------------------------------- backoff


def test_backoff_doubles_and_is_capped():
    policy = RetryPolicy(max_attempts=8, initial_backoff_s=2, max_backoff_s=30, jitter=0)
    assert policy.schedule() == [2, 4, 8, 16, 30, 30, 30]
    assert [policy.delay(n) for n in range(1, 8)] == policy.schedule()
    assert RetryPolicy(max_attempts=1).schedule() == []
    assert RetryPolicy(max_attempts=200, max_backoff_s=60).base_delay(199) == 60


def test_jitter_stays_within_bounds_and_is_deterministic_with_a_seed():
    policy = RetryPolicy(max_attempts=6, initial_backoff_s=2, max_backoff_s=60, jitter=0.5)
    rng = random.Random(1)
    for attempt in range(1, 6):
        base = policy.base_delay(attempt)
        draws = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(base * 0.5 <= d <= base for d in draws)
        assert max(draws) - min(draws) > base * 0.3  # actually spread
    first = [policy.delay(n, random.Random(42)) for n in range(1, 6)]
    again = [policy.delay(n, random.Random(42)) for n in range(1, 6)]
    assert first == again


def test_policy_describes_itself_for_the_plan():
    assert "up to 3 attempts" in RetryPolicy().describe() and "waits 2s, 4s" in RetryPolicy().describe()


# ---------------------------------------------------------------- runner


def test_a_step_failing_transiently_twice_then_succeeding_takes_three_attempts(tmp_path, dag):
    executor = FakeExecutor({"b": [OSError("reset"), FakePy4JJavaError()]})
    state, out, store, sleeper = run(fake_ctx(tmp_path), dag, executor=executor)
    b = state.step("b")
    assert (b.status, b.attempts, b.rows_in, b.rows_out, b.error) == ("succeeded", 3, 10, 7, None)
    assert [r["attempt"] for r in b.retries] == [1, 2]
    assert len(sleeper.waits) == 2
    assert 1.0 <= sleeper.waits[0] <= 2.0 and 2.0 <= sleeper.waits[1] <= 4.0
    assert [r["wait_s"] for r in b.retries] == [round(w, 3) for w in sleeper.waits]
    assert state.status == "succeeded" and not state.failed
    assert executor.calls == ["a", "b", "b", "b", "c", "d", "e"]
    assert "attempt 1 failed (transient): OSError: reset; retrying in" in out
    assert re.search(r"\[2/5 \d+:\d\d:\d\d\] b: succeeded in .* \(attempt 3\)", out)


def test_a_fatal_error_fails_at_once_and_skips_only_the_dependants(tmp_path, dag):
    executor = FakeExecutor({"b": [ValueError("column amount: not a number")]})
    state, out, _, sleeper = run(fake_ctx(tmp_path), dag, executor=executor)
    by = {s.step: s for s in state.steps}
    assert (by["b"].status, by["b"].attempts, by["b"].error_kind) == ("failed", 1, "fatal")
    assert by["b"].error == "j db: ValueError: column amount: not a number"  # the dataset it failed on
    assert (by["c"].status, by["c"].error) == ("skipped", "upstream not succeeded: b")
    assert by["c"].attempts == 0
    assert [by[s].status for s in "ade"] == ["succeeded"] * 3
    assert sleeper.waits == [] and executor.calls == ["a", "b", "d", "e"]
    assert state.status == "failed" and state.failed
    assert "b: failed (fatal, not retried): j db: ValueError" in out


def test_transient_errors_give_up_after_max_attempts(tmp_path, dag):
    executor = FakeExecutor({"e": [TimeoutError("t1"), TimeoutError("t2"), TimeoutError("t3")]})
    state, out, _, sleeper = run(fake_ctx(tmp_path), dag, executor=executor)
    e = state.step("e")
    assert (e.status, e.attempts, e.error_kind, e.error) == (
        "failed",
        3,
        "transient",
        "j de: TimeoutError: t3",
    )
    assert len(sleeper.waits) == 2
    assert "e: failed after 3 attempts (transient)" in out


def test_the_policy_can_be_overridden_per_run(tmp_path, dag):
    executor = FakeExecutor({"a": [OSError("x")]})
    state, *_ = run(fake_ctx(tmp_path), dag, executor=executor, policy=RetryPolicy(max_attempts=1))
    assert (state.step("a").status, state.step("a").attempts) == ("failed", 1)


def test_state_is_saved_after_every_change_with_timestamps(tmp_path, dag):
    executor = FakeExecutor({"a": [OSError("x")]})
    state, out, store, _ = run(fake_ctx(tmp_path), dag, selected=["a", "e"], executor=executor)
    # initial, a: running, a: retry recorded, a: attempt 2 running, a: done, e: running, e: done, final
    assert store.saves == 8
    saved = store.load(state.run_id)
    assert saved == state
    for s in saved.steps:
        assert datetime.fromisoformat(s.started_at) <= datetime.fromisoformat(s.ended_at)
    assert saved.started_at and saved.ended_at and saved.executor == "fake" and saved.pid
    assert "state in memory://runs/20250102T030405Z-abc123.json" in out


def test_a_long_step_keeps_the_heartbeat_going(tmp_path, dag):
    """A step that changes nothing for a long time still gets the state written (`heartbeat_at`):
    how `lakehouse status` on another host tells it from a dead driver."""
    beats: list[str] = []
    two_beats = threading.Event()

    class WatchedStore(MemoryStateStore):
        def save(self, state):
            super().save(state)
            if state.step("a").status == "running" and executor.calls:  # while the step's work goes on
                beats.append(state.heartbeat_at)
                if len(beats) >= 2:
                    two_beats.set()

    class SlowExecutor(FakeExecutor):
        def run(self, step, ctx):
            result = super().run(step, ctx)
            assert two_beats.wait(timeout=30), "no heartbeat while the step ran"
            return result

    executor = SlowExecutor()
    state, _, _, _ = run(
        fake_ctx(tmp_path), dag, selected=["a"], executor=executor, store=WatchedStore(), heartbeat_s=0.01
    )
    assert state.status == "succeeded" and len(beats) >= 2
    assert (
        datetime.fromisoformat(beats[0])
        <= datetime.fromisoformat(beats[-1])
        <= datetime.fromisoformat(state.heartbeat_at)
    )


def test_summary_table_has_attempts_and_errors(tmp_path, dag):
    executor = FakeExecutor({"a": [OSError("x")], "e": [KeyError("k")]})
    _, out, _, _ = run(fake_ctx(tmp_path), dag, executor=executor)
    header = next(line for line in out.splitlines() if line.startswith("step "))
    assert [c.strip() for c in header.split("|")] == [
        "step",
        "status",
        "attempts",
        "rows in",
        "rows out",
        "seconds",
        "error",
    ]
    row_a = next(line for line in out.splitlines() if line.startswith("a "))
    assert [c.strip() for c in row_a.split("|")][:5] == ["a", "succeeded", "2", "10", "7"]
    assert "KeyError: 'k'" in out


def test_a_window_is_put_on_the_context_and_recorded(tmp_path, dag):
    executor = FakeExecutor()
    window = DateWindow(date(2025, 1, 1), date(2025, 1, 31))
    ctx = fake_ctx(tmp_path)
    state, *_ = run(ctx, dag, selected=["e"], executor=executor, window=window)
    assert ctx.window == window and executor.windows == [window]
    assert state.window == {"start": "2025-01-01", "end": "2025-01-31"}
    ctx2 = fake_ctx(tmp_path, run_id="other")
    run(ctx2, dag, selected=["e"], executor=executor)
    assert ctx2.window is None  # set even without a window, so jobs can rely on the attribute


def test_the_run_options_are_recorded_for_steps_in_other_processes(tmp_path, dag):
    ctx = fake_ctx(tmp_path)
    ctx.as_of, ctx.full_refresh = date(2025, 2, 1), True
    state, *_ = run(ctx, dag, selected=["e"])
    assert (state.as_of, state.full_refresh) == ("2025-02-01", True)
    plain, *_ = run(fake_ctx(tmp_path, run_id="other"), dag, selected=["e"])
    assert (plain.as_of, plain.full_refresh) == (None, False)


def test_an_interrupt_is_recorded_and_re_raised(tmp_path, dag):
    executor = FakeExecutor({"b": [KeyboardInterrupt()]})
    store = MemoryStateStore()
    with pytest.raises(KeyboardInterrupt):
        run(fake_ctx(tmp_path), dag, executor=executor, store=store)
    saved = store.load("20250102T030405Z-abc123")
    assert saved.status == "interrupted"
    assert [(s.step, s.status) for s in saved.steps] == [
        ("a", "succeeded"),
        ("b", "failed"),
        ("c", "pending"),
        ("d", "pending"),
        ("e", "pending"),
    ]
    assert saved.step("b").error_kind == "interrupted"
    assert resume_selection(saved, dag) == ["b", "c", "d", "e"]


class ClosingExecutor(FakeExecutor):
    """Notes, in one shared order with the observer, when the run is closed."""

    def __init__(self, order: list[str], script=None):
        super().__init__(script)
        self.order = order

    def run(self, step: Step, ctx) -> StepResult:
        self.order.append(f"ran {step.name}")
        return super().run(step, ctx)

    def close_run(self, ctx) -> None:
        self.order.append(f"closed {ctx.run_id}")


class EndObserver:
    def __init__(self, order: list[str]):
        self.order = order

    def step_started(self, ctx, step, outcome):
        pass

    def step_finished(self, ctx, step, outcome):
        pass

    def run_finished(self, ctx, state):
        self.order.append(f"run_finished {state.status}")


@pytest.mark.parametrize("script", [{}, {"b": [KeyboardInterrupt()]}], ids=["succeeded", "interrupted"])
def test_the_executor_closes_the_run_once_after_its_steps_before_the_observers_hear_of_its_end(
    tmp_path, dag, script
):
    """The local executor's check writes what its gates recorded when the run closes
    (dq_results, one commit): after the last step, before run_finished, however the run ends."""
    order: list[str] = []
    executor = ClosingExecutor(order, script)
    if script:
        with pytest.raises(KeyboardInterrupt):
            run(fake_ctx(tmp_path), dag, executor=executor, observers=[EndObserver(order)])
    else:
        run(fake_ctx(tmp_path), dag, executor=executor, observers=[EndObserver(order)])
    closed = [i for i, event in enumerate(order) if event.startswith("closed")]
    assert [order[i] for i in closed] == ["closed 20250102T030405Z-abc123"]
    assert all(event.startswith("ran") for event in order[: closed[0]])
    assert order[closed[0] + 1 :] == [f"run_finished {'interrupted' if script else 'succeeded'}"]


def test_a_failure_closing_the_run_is_told_and_the_run_ends_as_its_steps_did(tmp_path, dag):
    order: list[str] = []

    class FailingClose(ClosingExecutor):
        def close_run(self, ctx) -> None:
            raise OSError("the store refused the write")

    state, out, _, _ = run(
        fake_ctx(tmp_path), dag, executor=FailingClose(order), observers=[EndObserver(order)]
    )
    assert state.status == "succeeded" and order[-1] == "run_finished succeeded"
    assert "warning: closing the run failed: OSError: the store refused the write" in out


def test_parallel_steps_each_log_and_end_in_their_own_context(tmp_path, dag):
    """With steps in worker threads (max_parallel 2), what a step logs carries its own step
    name, though another step started after it; its end is told in that context too, and the
    runner's thread is left with no step."""
    seen: dict[str, str | None] = {}
    ended: dict[str, str | None] = {}
    together = threading.Barrier(2, timeout=10)

    class Concurrent(FakeExecutor):
        max_parallel = 2

        def run(self, step, ctx):
            if step.name in ("a", "e"):  # both roots run at once: each waits for the other
                together.wait()
            seen[step.name] = current_log_context()["step"]
            return super().run(step, ctx)

    class Ends:
        def step_started(self, ctx, step, outcome):
            pass

        def step_finished(self, ctx, step, outcome):
            ended[step.name] = current_log_context()["step"]

        def run_finished(self, ctx, state):
            pass

    state, *_ = run(fake_ctx(tmp_path), dag, executor=Concurrent(), observers=[Ends(), LogContextObserver()])
    assert state.status == "succeeded"
    assert seen == {name: name for name in dag.order()} and ended == seen
    assert current_log_context()["step"] is None


def test_a_failing_state_store_warns_but_does_not_stop_the_run(tmp_path, dag):
    class Flaky(MemoryStateStore):
        def save(self, state):
            self.saves += 1
            if self.saves > 1:
                raise OSError("s3 hiccup")
            super().save(state)

    state, out, _, _ = run(fake_ctx(tmp_path), dag, selected=["a"], store=Flaky())
    assert state.status == "succeeded"
    assert "warning: could not write run state: OSError: s3 hiccup" in out


# ---------------------------------------------------------------- run state and resume


def test_run_state_json_round_trip():
    state = RunState(
        "20250102T030405Z-abc123",
        [
            StepOutcome(
                "a",
                "succeeded",
                2,
                "2025-01-02T03:04:05.000Z",
                "2025-01-02T03:04:09.500Z",
                4.5,
                10,
                7,
                {"files": ["x.csv"], "nested": {"n": 1}},
                None,
                None,
                [{"attempt": 1, "error": "OSError: x", "wait_s": 1.5, "at": "2025-01-02T03:04:06Z"}],
            ),
            StepOutcome("b", "failed", 1, error="ValueError: v", error_kind="fatal"),
            StepOutcome("c", "skipped", error="upstream not succeeded: b", error_kind="upstream"),
        ],
        status="failed",
        started_at="2025-01-02T03:04:05.000Z",
        window={"start": "2025-01-01", "end": None},
        resumes=["2025-01-03T00:00:00.000Z"],
    )
    assert RunState.from_json(state.to_json()) == state


def test_a_state_file_of_the_first_driver_version_still_loads():
    old = '{"run_id": "r1", "status": "failed", "steps": [{"step": "a", "status": "failed", "rows_in": 0, "rows_out": 0, "seconds": 0.1, "error": "X: y", "details": {}}]}'
    state = RunState.from_json(old)
    assert state.step("a").attempts == 0 and state.unfinished() == ["a"]
    newer = '{"run_id": "r1", "steps": [{"step": "a", "status": "succeeded", "future_key": 1}], "future": 2}'
    assert RunState.from_json(newer).step("a").status == "succeeded"


def _recorded_run(dag) -> RunState:
    statuses = {"a": "succeeded", "b": "failed", "c": "skipped", "d": "succeeded", "e": "failed"}
    return RunState(
        "20250102T030405Z-abc123",
        [
            StepOutcome(s, statuses[s], attempts=1, started_at="2025-01-02T03:04:05.000Z", rows_out=5)
            for s in dag.order()
        ],
        status="failed",
        window={"start": "2025-01-01", "end": "2025-01-02"},
    )


def test_resume_selects_only_failed_and_skipped_steps(dag):
    state = _recorded_run(dag)
    assert resume_selection(state, dag) == ["b", "c", "e"]
    assert resume_selection(state, dag, dag.select(from_step="b")) == ["b", "c"]
    assert resume_selection(state, dag, dag.select(["e"])) == ["e"]


def test_resume_refuses_steps_that_left_the_dag(dag):
    state = _recorded_run(dag)
    state.steps.append(StepOutcome("gone", "failed"))
    with pytest.raises(ConfigError, match="gone are no longer in the pipeline DAG"):
        resume_selection(state, dag)


def test_resume_reruns_what_did_not_succeed_under_the_same_run_id(tmp_path, dag):
    store = MemoryStateStore()
    recorded = _recorded_run(dag)
    store.save(recorded)
    previous = store.load(recorded.run_id)
    executor = FakeExecutor()
    state, out, store, _ = run(
        fake_ctx(tmp_path),
        dag,
        selected=resume_selection(previous, dag),
        executor=executor,
        store=store,
        state=previous,
        window=DateWindow.from_dict(previous.window),
    )
    assert executor.calls == ["b", "c", "e"]
    assert state.run_id == recorded.run_id and list(store.files) == [recorded.run_id]
    assert [s.status for s in state.steps] == ["succeeded"] * 5
    # the steps that had succeeded keep their recorded outcome
    assert state.step("a") == recorded.step("a") and state.step("d") == recorded.step("d")
    b = state.step("b")
    assert b.rows_out == 7 and b.previous[0]["status"] == "failed" and b.previous[0]["attempts"] == 1
    assert len(state.resumes) == 1 and state.status == "succeeded"
    assert state.window == {"start": "2025-01-01", "end": "2025-01-02"}


def test_a_resumed_step_whose_upstream_still_fails_is_skipped_again(tmp_path, dag):
    previous = _recorded_run(dag)
    executor = FakeExecutor({"b": [ValueError("still broken")]})
    state, *_ = run(fake_ctx(tmp_path), dag, selected=["b", "c", "e"], executor=executor, state=previous)
    assert [(s.step, s.status) for s in state.steps] == [
        ("a", "succeeded"),
        ("b", "failed"),
        ("c", "skipped"),
        ("d", "succeeded"),
        ("e", "succeeded"),
    ]
    assert state.status == "failed"


def test_the_plan_shows_policy_window_and_what_a_resume_reruns(dag):
    previous = _recorded_run(dag)
    previous.step("b").error = "ValueError: v"
    text = plan_text(dag, ["b", "c", "e"], "plan:", window=DateWindow(date(2025, 1, 1)), resume=previous)
    assert "retry: up to 3 attempts" in text and "window: landing dates from 2025-01-01" in text
    assert "rerun 3 of 5 step(s)" in text
    assert "  1. b: j db after a (was failed: ValueError: v)" in text
    assert "  2. c: j dc after b (was skipped)" in text


# ---------------------------------------------------------------- window


def test_window_contains_both_ends():
    w = DateWindow(date(2025, 1, 1), date(2025, 1, 31))
    assert w.contains(date(2025, 1, 1)) and w.contains(date(2025, 1, 31))
    assert not w.contains(date(2024, 12, 31)) and not w.contains(datetime(2025, 2, 1, 0, 0))
    assert DateWindow(end=date(2025, 1, 1)).contains(date(1999, 1, 1))
    assert DateWindow(start=date(2025, 1, 1)).contains(date(2099, 1, 1))
    assert w.landing_filter == "landing dates 2025-01-01 to 2025-01-31 (inclusive)"
    assert DateWindow.from_dict(w.to_dict()) == w and DateWindow.from_dict(None) is None


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2025-13-01", None, "--start-date: expected a date YYYY-MM-DD, got '2025-13-01'"),
        (None, "20250101", "--end-date: expected a date YYYY-MM-DD"),
        ("2025-02-01", "2025-01-01", "--end-date 2025-01-01 is before --start-date 2025-02-01"),
    ],
)
def test_bad_windows_name_the_flag(start, end, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_window(start, end)


def test_either_bound_alone_is_a_window():
    assert parse_window(None, None) is None
    assert parse_window("2025-01-05", None) == DateWindow(date(2025, 1, 5), None)
    assert parse_window(None, "2025-01-05") == DateWindow(None, date(2025, 1, 5))


def test_the_runner_puts_dependencies_first_and_refuses_unknown_steps(tmp_path, dag):
    executor = FakeExecutor()
    run(fake_ctx(tmp_path), dag, selected=["c", "a", "b"], executor=executor)
    assert executor.calls == ["a", "b", "c"]
    with pytest.raises(ConfigError, match="unknown step"):
        run(fake_ctx(tmp_path), dag, selected=["zz"])


def test_observers_see_every_step_and_the_run_end_and_cannot_fail_the_run(tmp_path):
    import io
    from types import SimpleNamespace

    from pipeline.driver.dag import load_dag
    from pipeline.driver.runner import run_steps
    from pipeline.driver.state import MemoryStateStore
    from pipeline.step_result import StepResult

    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "steps:\n  a: {job: j, dataset: x}\n  b: {job: j, dataset: x, depends_on: [a]}\n  c: {job: j, dataset: y}\n"
    )
    dag = load_dag(path, {"j"})

    class Exec:
        name = "test"

        def run(self, step, ctx):
            if step.dataset == "y":
                raise ValueError("bad data")
            return StepResult(rows_in=1, rows_out=1)

    seen = []

    class Recorder:
        def step_started(self, ctx, step, outcome):
            seen.append(("start", step.name))

        def step_finished(self, ctx, step, outcome):
            seen.append(("end", step.name, outcome.status))

        def run_finished(self, ctx, state):
            seen.append(("run", state.status))

    class Broken:
        def step_started(self, *a):
            raise RuntimeError("lineage endpoint down")

        step_finished = run_finished = step_started

    ctx = SimpleNamespace(run_id="r1", settings=None)
    out = io.StringIO()
    state = run_steps(
        ctx,
        dag,
        ["a", "b", "c"],
        out,
        executor=Exec(),
        store=MemoryStateStore(),
        observers=[Broken(), Recorder()],
    )
    assert seen == [("start", "a"), ("end", "a", "succeeded"), ("start", "b"), ("end", "b", "succeeded"),
                    ("start", "c"), ("end", "c", "failed"), ("run", "failed")]  # fmt: skip
    assert state.status == "failed" and "lineage endpoint down" in out.getvalue()


def test_an_observer_abort_stops_the_run(tmp_path):
    import io
    from types import SimpleNamespace

    from pipeline.driver.dag import load_dag
    from pipeline.driver.observers import ObserverAbort
    from pipeline.driver.runner import run_steps
    from pipeline.driver.state import MemoryStateStore
    from pipeline.step_result import StepResult

    path = tmp_path / "pipeline.yaml"
    path.write_text("steps:\n  a: {job: j, dataset: x}\n")

    class Exec:
        name = "test"

        def run(self, step, ctx):
            return StepResult()

    class Strict:
        def step_started(self, *a):
            raise ObserverAbort("lineage endpoint down and fail_on_error is set")

        def step_finished(self, *a):
            pass

        run_finished = step_finished

    ctx = SimpleNamespace(run_id="r2", settings=None)
    with pytest.raises(ObserverAbort):
        run_steps(
            ctx,
            load_dag(path, {"j"}),
            ["a"],
            io.StringIO(),
            executor=Exec(),
            store=MemoryStateStore(),
            observers=[Strict()],
        )


@pytest.mark.parametrize("parallel", [1, 2])
def test_the_stored_state_calls_a_step_done_only_after_its_observers_were_told(tmp_path, dag, parallel):
    """A driver killed after a step ended but before its lineage COMPLETE (and metrics, alerts)
    went out must not leave that step succeeded in the stored state: `--resume` would skip it
    and its events would never come. While the observers hear of a step's end, the stored state
    still shows it running; once they have, succeeded."""
    store = MemoryStateStore()
    stored_when_told: dict[str, str] = {}

    class Parallel(FakeExecutor):
        max_parallel = parallel

    class Watcher:
        def step_started(self, ctx, step, outcome):
            pass

        def step_finished(self, ctx, step, outcome):
            saved = RunState.from_json(store.files[ctx.run_id])
            stored_when_told[step.name] = saved.step(step.name).status

        def run_finished(self, ctx, state):
            pass

    state, *_ = run(fake_ctx(tmp_path), dag, executor=Parallel(), store=store, observers=[Watcher()])
    assert state.status == "succeeded"
    assert stored_when_told == {name: "running" for name in dag.order()}
    saved = RunState.from_json(store.files[state.run_id])
    assert {o.step: o.status for o in saved.steps} == {name: "succeeded" for name in dag.order()}
