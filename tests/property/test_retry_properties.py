"""Retry backoff (pipeline.driver.retry.RetryPolicy and the runner's retry loop) for any valid
policy and attempt number: waits within [0, max_backoff_s], within the jitter band below the
doubling base, and a step that keeps failing transiently is tried exactly max_attempts times."""

from __future__ import annotations

import io
import random
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.driver.dag import Dag, Step
from pipeline.driver.retry import RetryPolicy
from pipeline.driver.runner import run_steps
from pipeline.driver.state import MemoryStateStore
from pipeline.settings import LakeSettings

# No wait, or any positive one: tiny waits must still double up to the cap.
seconds = st.one_of(st.just(0.0), st.floats(min_value=1e-300, max_value=1e6))


@st.composite
def policies(draw, most_attempts: int = 50):
    initial = draw(seconds)
    cap = draw(st.floats(min_value=initial, max_value=1e7, allow_nan=False, allow_infinity=False))
    jitter = draw(st.floats(min_value=0, max_value=1))
    return RetryPolicy(
        max_attempts=draw(st.integers(min_value=1, max_value=most_attempts)),
        initial_backoff_s=initial,
        max_backoff_s=cap,
        jitter=jitter,
    )


def doubled_and_capped(policy: RetryPolicy, attempt: int) -> float:
    """The base wait by repeated doubling, capped at every step (exact in floating point)."""
    wait = min(policy.initial_backoff_s, policy.max_backoff_s)
    for _ in range(attempt - 1):
        wait = min(policy.max_backoff_s, wait * 2)
    return wait


@settings(max_examples=200)
@given(policies(), st.integers(min_value=1, max_value=2000), st.randoms(use_true_random=False))
def test_a_wait_is_never_negative_never_above_the_cap_and_within_the_jitter_band(policy, attempt, rng):
    base = policy.base_delay(attempt)
    assert base == doubled_and_capped(policy, attempt)
    wait = policy.delay(attempt, rng)
    assert 0 <= base * (1 - policy.jitter) <= wait <= base <= policy.max_backoff_s


@settings(max_examples=200)
@given(policies(), st.integers(min_value=1, max_value=2000))
def test_base_waits_never_shrink_from_one_attempt_to_the_next(policy, attempt):
    assert policy.base_delay(attempt) <= policy.base_delay(attempt + 1)


def test_a_tiny_initial_wait_still_doubles_up_to_the_cap():
    policy = RetryPolicy(max_attempts=100, initial_backoff_s=1e-20, max_backoff_s=1.0)
    assert policy.base_delay(99) == doubled_and_capped(policy, 99) == 1.0


class AlwaysTransient:
    """An executor whose step fails with a retryable error on every attempt."""

    name = "always-transient"

    def __init__(self):
        self.calls = 0

    def run(self, step, ctx):
        self.calls += 1
        raise ConnectionError("Connection reset by peer")


@settings(max_examples=50)
@given(policies(most_attempts=8), st.integers(min_value=0, max_value=2**32))
def test_a_step_failing_transiently_is_tried_max_attempts_times_with_waits_below_the_cap(
    tmp_path_factory, policy, seed
):
    dag = Dag(steps={"s": Step(name="s", job="j", dataset="d")}, retry=policy)
    ctx = SimpleNamespace(
        run_id="20260101T000000Z-prop01",
        settings=SimpleNamespace(lake=LakeSettings(root=str(tmp_path_factory.mktemp("lake")))),
    )
    executor, waits = AlwaysTransient(), []
    state = run_steps(
        ctx, dag, ["s"], io.StringIO(), executor=executor, store=MemoryStateStore(), sleep=waits.append,
        rng=random.Random(seed),
    )  # fmt: skip
    outcome = state.step("s")
    assert (outcome.status, outcome.attempts, executor.calls) == (
        "failed",
        policy.max_attempts,
        policy.max_attempts,
    )
    assert len(waits) == policy.max_attempts - 1
    assert all(0 <= w <= policy.max_backoff_s for w in waits)
    assert [r["wait_s"] for r in outcome.retries] == [round(w, 3) for w in waits]
