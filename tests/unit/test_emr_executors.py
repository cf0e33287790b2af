"""The EMR executors behind the driver, without AWS: each API is a fake state machine walking a
script one state per poll; request shapes are checked against the real botocore model under
moto. Also the parallel runner (limit, DAG order and skips as in a sequential run) and the
step-state files merged into the run state. No sleeping: polls and backoff get an injected
sleep and clock."""

from __future__ import annotations

import io
import random
import threading
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED
from types import SimpleNamespace

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

import pipeline.driver.runner as runner_module
from pipeline.driver.dag import load_dag
from pipeline.driver.emr import EmrServerlessExecutor, EmrStepsExecutor, client_token
from pipeline.driver.executors import executor_for
from pipeline.driver.retry import classify
from pipeline.driver.runner import run_steps
from pipeline.driver.state import LocalStateStore, RunState, StepOutcome, StepStateStore, step_state_location
from pipeline.files import LocalFiles
from pipeline.settings import ConfigError, load_settings
from pipeline.step_result import StepResult

RUN_ID = "20250102T030405Z-abc123"

# a -> b -> c, a -> d, e independent
DAG_TEXT = """
steps:
  a: {job: bronze, dataset: da}
  b: {job: silver, dataset: db, depends_on: [a]}
  c: {job: gold, dataset: dc, depends_on: [b]}
  d: {job: silver, dataset: dd, depends_on: [a]}
  e: {job: bronze, dataset: de}
"""

# Threads spinning on a held job move the shared fake clock: no timeout in the parallel tests.
NEVER = float("inf")
WAITING_TO_SUCCESS = ["SUBMITTED", "PENDING", "SCHEDULED", "QUEUED", "RUNNING", "RUNNING", "SUCCESS"]


@pytest.fixture
def settings(tmp_path):
    return load_settings("dev", lake_root=str(tmp_path / "lake"))


@pytest.fixture
def dag(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text(DAG_TEXT)
    return load_dag(path, {"bronze", "silver", "gold"})


def throttled(operation: str, code: str = "ThrottlingException", status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "Rate exceeded"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )


class Member:
    """What the job on EMR does at its end: write its step's outcome to the step-state file, as
    `pipeline.entry.main --member` does (through the same StepStateStore)."""

    def __init__(self, settings, outcomes: dict[str, dict] | None = None):
        self.runs = settings.lake.path("_ops", "runs")
        self.outcomes = outcomes or {}

    def finish(self, step: str, run_id: str, emr_state: str) -> None:
        fields = self.outcomes.get(step)
        if fields is None:
            fields = {"status": "succeeded", "rows_in": 10, "rows_out": 7, "details": {"dataset": step}}
        if fields == "nothing":  # the job died before writing
            return
        outcome = StepOutcome(step, attempts=1, started_at="2025-01-02T03:04:06.000Z", **fields)
        StepStateStore(self.runs, step, LocalFiles()).save(RunState(run_id, [outcome]))


class FakeServerless:
    """EMR Serverless: applications (listed one per page) and job runs, each walking its
    step's script one state per get_job_run (the last state repeats). Client tokens are
    idempotent, as StartJobRun's are. `errors[operation]`: exceptions to raise first, in order;
    an entry ("after", exc) raises after doing the work (a lost answer)."""

    def __init__(self, scripts=None, *, member=None, errors=None, hold_until_started=0, names=None):
        self.scripts = scripts or {}
        self.member = member
        self.errors = {k: list(v) for k, v in (errors or {}).items()}
        self.hold_until_started = hold_until_started
        self.apps = names or ["other-app", "lakehouse-dev-old", "lakehouse-dev"]
        self.jobs: dict[str, dict] = {}
        self.by_token: dict[str, str] = {}
        self.requests: list[dict] = []
        self.calls: list[str] = []
        self.cancelled: list[str] = []
        self.max_active = 0
        self.lock = threading.Lock()

    def _fail(self, operation: str, when: str = "before") -> None:
        pending = self.errors.get(operation)
        if pending and (pending[0][0] if isinstance(pending[0], tuple) else "before") == when:
            error = pending.pop(0)
            raise error[1] if isinstance(error, tuple) else error

    def list_applications(self, states=None, nextToken=None):
        self.calls.append("list_applications")
        assert "STARTED" in states and "TERMINATED" not in states
        i = int(nextToken or 0)
        page = {"applications": [{"id": f"app-{i}", "name": self.apps[i], "state": "STARTED"}]}
        if i + 1 < len(self.apps):
            page["nextToken"] = str(i + 1)
        return page

    def start_job_run(self, **request):
        with self.lock:
            self.calls.append("start_job_run")
            self.requests.append(request)
            self._fail("start_job_run")
            token = request["clientToken"]
            if token not in self.by_token:
                step = request["jobDriver"]["sparkSubmit"]["entryPointArguments"][1]
                job_id = f"jr-{len(self.jobs) + 1}"
                script = self.scripts.get(step, WAITING_TO_SUCCESS)
                self.jobs[job_id] = {"step": step, "script": list(script), "i": -1, "request": request}
                self.by_token[token] = job_id
                active = sum(1 for j in self.jobs.values() if not self._ended(j))
                self.max_active = max(self.max_active, active)
            self._fail("start_job_run", "after")
            return {"applicationId": request["applicationId"], "jobRunId": self.by_token[token]}

    @staticmethod
    def _ended(job) -> bool:
        return job["i"] >= 0 and job["script"][min(job["i"], len(job["script"]) - 1)] in (
            "SUCCESS",
            "FAILED",
            "CANCELLED",
        )

    def get_job_run(self, applicationId, jobRunId):
        with self.lock:
            self.calls.append("get_job_run")
            self._fail("get_job_run")
            job = self.jobs[jobRunId]
            if len(self.jobs) < self.hold_until_started and job["i"] >= 0:
                state = "PENDING"  # hold the first jobs until the others started: they overlap
            else:
                job["i"] += 1
                state = job["script"][min(job["i"], len(job["script"]) - 1)]
                if state in ("SUCCESS", "FAILED") and job["i"] == len(job["script"]) - 1 and self.member:
                    self.member.finish(job["step"], _run_id(job), state)
            details = "Job failed, ExitCode: 137. OOMKilled" if state == "FAILED" else ""
            return {
                "jobRun": {
                    "applicationId": applicationId,
                    "jobRunId": jobRunId,
                    "state": state,
                    "stateDetails": details,
                }
            }

    def cancel_job_run(self, applicationId, jobRunId):
        with self.lock:
            self.cancelled.append(jobRunId)
            self.jobs[jobRunId]["script"] = ["CANCELLED"]
            self.jobs[jobRunId]["i"] = 0
            return {"applicationId": applicationId, "jobRunId": jobRunId}


def _run_id(job) -> str:
    args = job["request"]["jobDriver"]["sparkSubmit"]["entryPointArguments"]
    return args[args.index("--run-id") + 1]


class FakeSteps:
    """EMR on EC2: clusters (one per page) and steps walking their script per describe_step."""

    def __init__(self, scripts=None, *, member=None, clusters=None, errors=None):
        self.scripts = scripts or {}
        self.member = member
        self.clusters = (
            clusters if clusters is not None else [("j-OTHER", "other"), ("j-DEV", "lakehouse-dev")]
        )
        self.errors = {k: list(v) for k, v in (errors or {}).items()}
        self.steps: dict[str, dict] = {}
        self.added: list[dict] = []
        self.cancelled: list[str] = []
        self.calls: list[str] = []

    def list_clusters(self, ClusterStates, Marker=None):
        self.calls.append("list_clusters")
        assert ClusterStates == ["WAITING", "RUNNING"]
        if not self.clusters:
            return {"Clusters": []}
        i = int(Marker or 0)
        cluster_id, name = self.clusters[i]
        page = {"Clusters": [{"Id": cluster_id, "Name": name, "Status": {"State": "WAITING"}}]}
        if i + 1 < len(self.clusters):
            page["Marker"] = str(i + 1)
        return page

    def list_steps(self, ClusterId, StepStates):
        return {
            "Steps": [
                {"Id": sid, "Name": s["name"]}
                for sid, s in self.steps.items()
                if s["script"][max(s["i"], 0)] in StepStates
            ]
        }

    def add_job_flow_steps(self, JobFlowId, Steps, ExecutionRoleArn):
        self.calls.append("add_job_flow_steps")
        pending = self.errors.get("add_job_flow_steps")
        if pending:
            raise pending.pop(0)
        self.added.append({"JobFlowId": JobFlowId, "Steps": Steps, "ExecutionRoleArn": ExecutionRoleArn})
        args = Steps[0]["HadoopJarStep"]["Args"]
        step = args[args.index("--step") + 1]
        sid = f"s-{len(self.steps) + 1}"
        self.steps[sid] = {
            "step": step,
            "name": Steps[0]["Name"],
            "run_id": args[args.index("--run-id") + 1],
            "script": list(self.scripts.get(step, ["PENDING", "RUNNING", "COMPLETED"])),
            "i": -1,
        }
        return {"StepIds": [sid]}

    def describe_step(self, ClusterId, StepId):
        self.calls.append("describe_step")
        s = self.steps[StepId]
        s["i"] += 1
        state = s["script"][min(s["i"], len(s["script"]) - 1)]
        if state in ("COMPLETED", "FAILED") and s["i"] == len(s["script"]) - 1 and self.member:
            self.member.finish(s["step"], s["run_id"], state)
        status = {"State": state, "StateChangeReason": {}}
        if state == "FAILED":
            status["FailureDetails"] = {
                "Reason": "Unknown Error.",
                "Message": "Container killed on request. Exit code is 137",
                "LogFile": f"s3://lakehouse-dev-logs/emr/cluster/{ClusterId}/steps/{StepId}/stderr.gz",
            }
        return {"Step": {"Id": StepId, "Status": status}}

    def cancel_steps(self, ClusterId, StepIds, StepCancellationOption):
        assert StepCancellationOption == "SEND_INTERRUPT"
        self.cancelled.extend(StepIds)
        for sid in StepIds:
            self.steps[sid]["script"], self.steps[sid]["i"] = ["CANCELLED"], 0
        return {"CancelStepsInfoList": [{"StepId": sid, "Status": "SUBMITTED"} for sid in StepIds]}


class Clock:
    """A clock that moves only when the executor waits."""

    def __init__(self):
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


class FakeKms:
    """kms:DescribeKey of the lake key's alias (aws.kms_key_alias)."""

    def __init__(self):
        self.asked: list[str] = []

    def describe_key(self, KeyId):  # noqa: N803 - boto3's parameter name
        self.asked.append(KeyId)
        return {"KeyMetadata": {"Arn": KEY_ARN}}


def serverless(settings, fake, clock=None, **kwargs):
    clock = clock or Clock()
    kwargs.setdefault("kms", FakeKms())
    return EmrServerlessExecutor(
        settings, client=fake, sleep=clock.sleep, clock=clock, version="1.2.3", **kwargs
    )


def ec2(settings, fake, clock=None, **kwargs):
    clock = clock or Clock()
    kwargs.setdefault("kms", FakeKms())
    return EmrStepsExecutor(settings, client=fake, sleep=clock.sleep, clock=clock, version="1.2.3", **kwargs)


def run(settings, dag, executor, selected=None, **kwargs):
    out = io.StringIO()
    store = kwargs.pop("store", None) or LocalStateStore(settings.lake.path("_ops", "runs"))
    ctx = SimpleNamespace(run_id=RUN_ID, settings=settings)
    waits: list[float] = []
    state = run_steps(
        ctx,
        dag,
        selected or dag.order(),
        out,
        executor=executor,
        store=store,
        sleep=waits.append,
        rng=random.Random(7),
        **kwargs,
    )
    return state, out.getvalue(), store, waits


# ---------------------------------------------------------------- EMR Serverless


def test_a_job_run_walks_every_waiting_state_and_its_step_state_gives_the_outcome(settings, dag):
    fake = FakeServerless(member=Member(settings))
    clock = Clock()
    state, out, store, _ = run(settings, dag, serverless(settings, fake, clock), selected=["a"])
    a = state.step("a")
    assert (a.status, a.attempts, a.rows_in, a.rows_out) == ("succeeded", 1, 10, 7)
    assert a.details["dataset"] == "a" and a.details["reported_by"] == "member"
    emr = a.details["emr"]
    assert emr["job_run_id"] == "jr-1" and emr["parent_id"] == "app-2" and emr["state"] == "SUCCESS"
    assert emr["log_uri"] == "s3://lakehouse-dev-logs/emr/applications/app-2/jobs/jr-1/"
    assert "serverless-applications/app-2" in emr["console_url"] and "region=us-east-1" in emr["console_url"]
    assert emr["step_state"] == step_state_location(settings.lake.path("_ops", "runs"), RUN_ID, "a")
    assert store.load(RUN_ID).step("a").details["emr"]["job_run_id"] == "jr-1"  # in the run state
    # one poll per state; the waits back off from aws.emr.poll_seconds (15) by 1.5x to 4x (60)
    assert fake.calls.count("get_job_run") == len(WAITING_TO_SUCCESS)
    assert clock.waits == [15.0, 22.5, 33.75, 50.625, 60.0, 60.0]
    request = fake.requests[0]
    assert request["executionTimeoutMinutes"] == 120 and request["applicationId"] == "app-2"
    assert request["executionRoleArn"] == "arn:aws:iam::123456789012:role/lakehouse-dev-ingest"
    assert request["jobDriver"]["sparkSubmit"]["entryPointArguments"] == [
        "--step",
        "a",
        "--run-id",
        RUN_ID,
        "--env",
        "dev",
        "--member",
    ]
    assert request["clientToken"] == client_token(RUN_ID, "a", 0, 0)


def test_a_step_that_failed_in_python_fails_with_its_error_and_is_not_resubmitted(settings, dag):
    member = Member(
        settings,
        {
            "b": {
                "status": "failed",
                "error": "DqGateFailed: DQ gate failed for db in b: 1 critical rule(s)",
                "error_kind": "fatal",
                "details": {"dq": [{"rule": "id:unique", "severity": "critical", "passed": False}]},
            }
        },
    )
    fake = FakeServerless({"b": ["RUNNING", "FAILED"]}, member=member)
    state, out, _, _ = run(settings, dag, serverless(settings, fake))
    b = state.step("b")
    assert (b.status, b.attempts, b.error_kind) == ("failed", 1, "fatal")
    assert "DQ gate failed for db in b" in b.error and b.details["emr"]["job_run_id"] in b.error
    assert b.details["dq"][0]["rule"] == "id:unique"  # the gate's results reach the run state
    assert b.details["emr"]["state"] == "FAILED"
    assert sorted(j["step"] for j in fake.jobs.values()) == ["a", "b", "d", "e"]  # c skipped, b once
    assert state.step("c").status == "skipped" and state.step("c").error == "upstream not succeeded: b"


def test_a_job_that_died_before_writing_its_state_fails_with_the_emr_state_details(settings, dag):
    fake = FakeServerless({"a": ["RUNNING", "FAILED"]}, member=Member(settings, {"a": "nothing"}))
    state, out, _, _ = run(settings, dag, serverless(settings, fake), selected=["a"])
    a = state.step("a")
    assert a.status == "failed" and a.error_kind == "fatal"
    for part in ("step a", "jr-1", "ended FAILED", "OOMKilled", "s3://lakehouse-dev-logs/emr/applications/"):
        assert part in a.error or part in a.details["emr"]["log_uri"], part
    assert "--resume " + RUN_ID in a.error
    assert a.details["emr"]["step_state"] is None


def test_an_unknown_job_state_is_an_error(settings, dag):
    fake = FakeServerless({"a": ["RUNNING", "EXPLODED"]})
    state, *_ = run(settings, dag, serverless(settings, fake), selected=["a"])
    a = state.step("a")
    assert a.status == "failed" and a.error_kind == "fatal"
    assert "jr-1 is in state 'EXPLODED'" in a.error


def test_a_job_cancelled_outside_the_driver_fails_the_step(settings, dag):
    fake = FakeServerless({"a": ["RUNNING", "CANCELLED"]})
    state, *_ = run(settings, dag, serverless(settings, fake), selected=["a"])
    assert state.step("a").status == "failed" and "ended CANCELLED" in state.step("a").error
    assert state.step("a").attempts == 1  # not retried


def test_throttled_start_job_run_is_retried_by_the_runner_with_the_same_token(settings, dag):
    fake = FakeServerless(errors={"start_job_run": [throttled("StartJobRun")]}, member=Member(settings))
    state, out, _, waits = run(settings, dag, serverless(settings, fake), selected=["a"])
    a = state.step("a")
    assert (a.status, a.attempts) == ("succeeded", 2)
    assert "attempt 1 failed (transient): ClientError" in out and len(waits) == 1  # the runner's backoff
    assert [r["clientToken"] for r in fake.requests] == [client_token(RUN_ID, "a", 0, 0)] * 2
    assert len(fake.jobs) == 1


def test_a_lost_start_job_run_answer_never_starts_a_second_job(settings, dag):
    lost = ("after", throttled("StartJobRun", "InternalServerException", 500))
    fake = FakeServerless(errors={"start_job_run": [lost]}, member=Member(settings))
    state, *_ = run(settings, dag, serverless(settings, fake), selected=["a"])
    assert state.step("a").status == "succeeded" and state.step("a").attempts == 2
    assert len(fake.requests) == 2 and len(fake.jobs) == 1  # EMR answered the same token with jr-1


def test_a_throttled_poll_re_attaches_to_the_running_job(settings, dag):
    fake = FakeServerless(errors={"get_job_run": [throttled("GetJobRun", "TooManyRequestsException")]})
    fake.member = Member(settings)
    state, *_ = run(settings, dag, serverless(settings, fake), selected=["a"])
    assert state.step("a").status == "succeeded" and state.step("a").attempts == 2
    assert fake.calls.count("start_job_run") == 1


def test_a_rerun_after_a_failed_job_gets_a_new_token(settings, dag):
    # The first job dies in a way EMR describes as throttling (transient): a new job, new token.
    fake = FakeServerless({"a": ["RUNNING", "FAILED"]}, member=Member(settings, {"a": "nothing"}))
    executor = serverless(settings, fake)
    original = fake.get_job_run

    def get_job_run(applicationId, jobRunId):
        answer = original(applicationId, jobRunId)
        if answer["jobRun"]["state"] == "FAILED":
            answer["jobRun"]["stateDetails"] = "Throttling: Rate exceeded while fetching the image"
            fake.scripts["a"] = WAITING_TO_SUCCESS
        return answer

    fake.get_job_run = get_job_run
    state, *_ = run(settings, dag, executor, selected=["a"])
    assert state.step("a").attempts == 2 and state.step("a").error_kind is None
    tokens = [r["clientToken"] for r in fake.requests]
    assert tokens == [client_token(RUN_ID, "a", 0, 0), client_token(RUN_ID, "a", 0, 1)]


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("ThrottlingException", 400, "transient"),
        ("TooManyRequestsException", 429, "transient"),
        ("ServiceUnavailable", 503, "transient"),
        ("InternalServerException", 500, "transient"),
        ("SomethingNew", 502, "transient"),
        ("ValidationException", 400, "fatal"),
        ("AccessDeniedException", 403, "fatal"),
        ("ResourceNotFoundException", 404, "fatal"),
    ],
)
def test_aws_api_errors_are_classified_by_code_and_status(code, status, kind):
    assert classify(throttled("StartJobRun", code, status)) == kind


def test_interrupting_the_run_cancels_its_running_job(settings, dag):
    fake = FakeServerless({"a": ["RUNNING"]})  # runs until cancelled
    clock = Clock()
    polls = []

    def sleep(seconds):
        polls.append(seconds)
        if len(polls) == 3:
            raise KeyboardInterrupt  # Ctrl-C; SIGTERM arrives as SystemExit the same way

    executor = EmrServerlessExecutor(
        settings, client=fake, sleep=sleep, clock=clock, version="1", max_parallel=1, kms=FakeKms()
    )
    with pytest.raises(KeyboardInterrupt):
        run(settings, dag, executor, selected=["a", "e"])
    assert fake.cancelled == ["jr-1"]
    saved = LocalStateStore(settings.lake.path("_ops", "runs")).load(RUN_ID)
    assert saved.status == "interrupted"
    assert saved.step("a").error_kind == "interrupted" and saved.step("e").status == "pending"


def test_stopping_a_parallel_run_cancels_every_running_job(settings, dag, monkeypatch):
    fake = FakeServerless({"a": ["RUNNING"], "e": ["RUNNING"]})  # both run until cancelled
    both_running = threading.Event()
    polled = fake.get_job_run

    def get_job_run(applicationId, jobRunId):
        if len(fake.jobs) == 2:
            both_running.set()
        return polled(applicationId, jobRunId)

    fake.get_job_run = get_job_run
    real_wait = runner_module.wait

    def sigterm_while_waiting(fs, timeout=None, return_when=ALL_COMPLETED):
        if return_when == FIRST_COMPLETED:  # the runner's main thread, waiting for a step to end
            assert both_running.wait(10)
            raise SystemExit(143)  # what the CLI's SIGTERM handler raises
        return real_wait(fs, timeout=timeout)

    monkeypatch.setattr(runner_module, "wait", sigterm_while_waiting)
    with pytest.raises(SystemExit):
        run(settings, dag, serverless(settings, fake, timeout_s=NEVER), selected=["a", "e"])
    assert sorted(fake.cancelled) == ["jr-1", "jr-2"]
    saved = LocalStateStore(settings.lake.path("_ops", "runs")).load(RUN_ID)
    assert saved.status == "interrupted"
    assert {s.step: (s.status, s.error) for s in saved.steps} == {
        "a": ("failed", "interrupted: SystemExit(143)"),
        "e": ("failed", "interrupted: SystemExit(143)"),
    }


def test_the_executor_timeout_cancels_the_job_and_fails_the_step(settings, dag):
    fake = FakeServerless({"a": ["RUNNING"]})
    clock = Clock()
    executor = serverless(settings, fake, clock, timeout_s=300)
    state, *_ = run(settings, dag, executor, selected=["a"])
    a = state.step("a")
    assert a.status == "failed" and a.error_kind == "fatal" and a.attempts == 1
    assert fake.cancelled == ["jr-1"]
    assert "jr-1" in a.error and "after 5 min: cancelled" in a.error
    assert "aws.emr.execution_timeout_minutes" in a.error
    assert sum(clock.waits) >= 300


def test_the_application_is_found_by_name_once_per_run(settings, dag):
    fake = FakeServerless(member=Member(settings))
    state, *_ = run(settings, dag, serverless(settings, fake, max_parallel=1))
    assert state.status == "succeeded"
    assert fake.calls.count("list_applications") == 3  # three pages, looked through once
    assert {r["applicationId"] for r in fake.requests} == {"app-2"}


def test_a_missing_application_names_it_and_how_to_create_it(settings, dag):
    fake = FakeServerless(names=["other"])
    state, *_ = run(settings, dag, serverless(settings, fake), selected=["a"])
    error = state.step("a").error
    assert "no EMR Serverless application named 'lakehouse-dev' in us-east-1" in error
    assert "aws/terraform" in error and state.step("a").attempts == 1


# ---------------------------------------------------------------- EMR on EC2


def test_an_emr_step_runs_with_the_layer_role_and_its_step_state_gives_the_outcome(settings, dag):
    fake = FakeSteps(member=Member(settings))
    clock = Clock()
    state, *_ = run(settings, dag, ec2(settings, fake, clock), selected=["a", "b"])
    assert [s.status for s in state.steps] == ["succeeded", "succeeded"]
    added = fake.added[1]
    assert added["JobFlowId"] == "j-DEV"
    assert added["ExecutionRoleArn"] == "arn:aws:iam::123456789012:role/lakehouse-dev-silver"
    from pipeline.deploy.submit import job_submission

    assert added["Steps"] == [
        job_submission(settings, "b", "silver", RUN_ID, mode="ec2", version="1.2.3").emr_step()
    ]
    b = state.step("b")
    assert b.rows_out == 7 and b.details["emr"]["job_run_id"] == "s-2"
    assert b.details["emr"]["log_uri"] == "s3://lakehouse-dev-logs/emr/cluster/j-DEV/steps/s-2/"
    assert fake.calls.count("list_clusters") == 2  # two pages, once per run
    assert clock.waits == [15.0, 22.5] * 2


@pytest.mark.parametrize("end", ["FAILED", "CANCELLED", "INTERRUPTED"])
def test_an_emr_step_that_did_not_complete_fails_the_step(settings, dag, end):
    fake = FakeSteps({"a": ["PENDING", "RUNNING", end]}, member=Member(settings, {"a": "nothing"}))
    state, *_ = run(settings, dag, ec2(settings, fake), selected=["a"])
    a = state.step("a")
    assert a.status == "failed" and f"EMR step s-1 ended {end}" in a.error
    if end == "FAILED":
        assert "Exit code is 137" in a.error and "stderr.gz" in a.error


def test_an_emr_step_is_cancelled_on_interrupt(settings, dag):
    fake = FakeSteps({"a": ["PENDING", "RUNNING"]})

    def sleep(seconds):
        if fake.calls.count("describe_step") == 2:
            raise SystemExit(143)

    executor = EmrStepsExecutor(
        settings, client=fake, sleep=sleep, clock=Clock(), version="1", max_parallel=1, kms=FakeKms()
    )
    with pytest.raises(SystemExit):
        run(settings, dag, executor, selected=["a"])
    assert fake.cancelled == ["s-1"]


def test_an_emr_step_past_the_timeout_is_cancelled(settings, dag):
    fake = FakeSteps({"a": ["PENDING", "RUNNING"]})
    state, *_ = run(settings, dag, ec2(settings, fake, timeout_s=120), selected=["a"])
    assert fake.cancelled == ["s-1"] and "after 2 min: cancelled" in state.step("a").error


def test_a_retried_add_job_flow_steps_adopts_the_step_it_added(settings, dag):
    fake = FakeSteps({"a": ["PENDING", "RUNNING", "COMPLETED"]}, member=Member(settings))
    executor = ec2(settings, fake)
    fake.errors["add_job_flow_steps"] = [throttled("AddJobFlowSteps")]
    state, *_ = run(settings, dag, executor, selected=["a"])
    assert state.step("a").status == "succeeded" and len(fake.steps) == 1
    # the answer of an AddJobFlowSteps was lost but the step is there: it is adopted, not added again
    fake2 = FakeSteps({"a": ["RUNNING", "RUNNING", "COMPLETED"]}, member=Member(settings))
    fake2.add_job_flow_steps(
        JobFlowId="j-DEV",
        Steps=[executor.submission(load_step(dag, "a"), RUN_ID).emr_step()],
        ExecutionRoleArn="arn:aws:iam::123456789012:role/lakehouse-dev-ingest",
    )
    state, *_ = run(
        settings,
        dag,
        ec2(settings, fake2),
        selected=["a"],
        store=LocalStateStore(settings.lake.path("_ops", "runs2")),
    )
    assert state.step("a").status == "succeeded" and len(fake2.steps) == 1


def load_step(dag, name):
    return dag.steps[name]


def test_a_missing_cluster_names_it_and_how_to_create_it(settings, dag):
    state, *_ = run(settings, dag, ec2(settings, FakeSteps(clusters=[])), selected=["a"])
    error = state.step("a").error
    assert "no EMR cluster named 'lakehouse-dev' is WAITING or RUNNING in us-east-1" in error
    assert "enable_emr_ec2" in error


# ---------------------------------------------------------------- request shapes (moto)


@pytest.fixture
def aws(monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


def test_serverless_requests_validate_against_the_real_api_model(settings, dag, aws):
    client = boto3.client("emr-serverless", region_name="us-east-1")
    app = client.create_application(name="lakehouse-dev", releaseLabel="emr-7.12.0", type="SPARK")
    kms = boto3.client("kms", region_name="us-east-1")
    key = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName=settings.aws.kms_key_alias, TargetKeyId=key["KeyId"])
    executor = serverless(settings, client, kms=kms)
    state, *_ = run(settings, dag, executor, selected=["a"])
    a = state.step("a")
    assert a.status == "succeeded", a.error  # moto's job runs succeed at once; no step-state file
    job = client.get_job_run(applicationId=app["applicationId"], jobRunId=a.details["emr"]["job_run_id"])[
        "jobRun"
    ]
    assert job["executionTimeoutMinutes"] == 120
    assert job["jobDriver"]["sparkSubmit"]["entryPointArguments"][:2] == ["--step", "a"]
    # job-run logs are encrypted with the lake key, its alias resolved to the ARN the API requires
    submitted = executor.submission(dag.steps["a"], RUN_ID).serverless_request("app", "token")
    monitoring = submitted["configurationOverrides"]["monitoringConfiguration"]
    assert monitoring["cloudWatchLoggingConfiguration"]["encryptionKeyArn"] == key["Arn"]
    assert monitoring["s3MonitoringConfiguration"]["encryptionKeyArn"] == key["Arn"]
    executor._cancel(app["applicationId"], a.details["emr"]["job_run_id"])  # CancelJobRun's shape


def test_emr_step_requests_validate_against_the_real_api_model(settings, dag, aws):
    client = boto3.client("emr", region_name="us-east-1")
    cluster = client.run_job_flow(
        Name="lakehouse-dev",
        ReleaseLabel="emr-7.12.0",
        Instances={
            "KeepJobFlowAliveWhenNoSteps": True,
            "InstanceCount": 1,
            "MasterInstanceType": "m5.xlarge",
        },
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]
    # moto's steps stay RUNNING: the executor's timeout ends it (CancelSteps' request is built and
    # validated; moto does not implement the call, which the executor reports and goes on)
    state, *_ = run(settings, dag, ec2(settings, client, timeout_s=60), selected=["b"])
    steps = client.list_steps(ClusterId=cluster)["Steps"]
    assert len(steps) == 1 and steps[0]["Name"] == f"lakehouse-dev-b-{RUN_ID}"
    assert steps[0]["Config"]["Args"][-7:] == ["--step", "b", "--run-id", RUN_ID, "--env", "dev", "--member"]
    assert "after 1 min: cancelled" in state.step("b").error


# ---------------------------------------------------------------- parallel runs


class SequentialFake:
    """The local executor's contract (in-process, one at a time) with the same failing step."""

    name = "local"
    max_parallel = 1

    def __init__(self, failing):
        self.failing = failing

    def run(self, step, ctx):
        if step.name in self.failing:
            raise ValueError(f"{step.name} broke")
        return StepResult(rows_in=10, rows_out=7)


def test_parallel_steps_never_exceed_the_limit(settings, dag):
    fake = FakeServerless(member=Member(settings), hold_until_started=2)
    state, *_ = run(settings, dag, serverless(settings, fake, max_parallel=2, timeout_s=NEVER))
    assert state.status == "succeeded"
    assert fake.max_active == 2  # the limit, reached and never passed


def test_dag_order_and_skips_are_those_of_the_sequential_run(settings, dag, tmp_path):
    member = Member(
        settings, {"b": {"status": "failed", "error": "ValueError: b broke", "error_kind": "fatal"}}
    )
    fake = FakeServerless({"b": ["RUNNING", "FAILED"]}, member=member, hold_until_started=2)
    parallel, out, _, _ = run(settings, dag, serverless(settings, fake, max_parallel=3, timeout_s=NEVER))
    local_store = LocalStateStore(tmp_path / "local-runs")
    sequential, *_ = run(settings, dag, SequentialFake({"b"}), store=local_store)

    def shape(state):
        return [
            (s.step, s.status, s.error_kind, s.error if s.status == "skipped" else None) for s in state.steps
        ]

    assert shape(parallel) == shape(sequential)
    assert [s.step for s in parallel.steps] == dag.order()
    assert parallel.status == sequential.status == "failed"
    # c started only after b ended, and was skipped; one line per event
    lines = out.splitlines()
    assert any(line.endswith("c: skipped (upstream not succeeded: b)") for line in lines)
    assert all(line.startswith("[") or "|" in line or line.startswith(("-", "run ")) for line in lines)
    assert [j["step"] for j in fake.jobs.values()].index("d") > 0  # d ran beside b, after a


def test_two_parallel_steps_both_land_in_the_merged_run_file(settings, dag):
    member = Member(
        settings,
        {
            "a": {"status": "succeeded", "rows_in": 100, "rows_out": 90, "details": {"dataset": "da"}},
            "e": {"status": "succeeded", "rows_in": 50, "rows_out": 45, "details": {"dataset": "de"}},
        },
    )
    fake = FakeServerless(member=member, hold_until_started=2)
    state, _, store, _ = run(
        settings, dag, serverless(settings, fake, max_parallel=2, timeout_s=NEVER), selected=["a", "e"]
    )
    assert fake.max_active == 2
    saved = store.load(RUN_ID)
    assert {s.step: (s.status, s.rows_in, s.rows_out) for s in saved.steps} == {
        "a": ("succeeded", 100, 90),
        "e": ("succeeded", 50, 45),
    }
    runs = settings.lake.path("_ops", "runs")
    for step in ("a", "e"):  # each job wrote its own file; the driver alone wrote the run file
        assert (LocalFiles().read_text(step_state_location(runs, RUN_ID, step))) is not None


def test_executor_for_builds_each_remote_executor_and_refuses_unknown_names(settings):
    serverless_executor = executor_for(settings, "emr-serverless", client=object())
    assert serverless_executor.max_parallel == settings.aws.emr.max_parallel_steps == 3
    assert isinstance(executor_for(settings, "emr-ec2", client=object()), EmrStepsExecutor)
    with pytest.raises(
        ConfigError, match="unknown remote executor 'emr'; choose one of emr-serverless, emr-ec2"
    ):
        executor_for(settings, "emr")
    local = load_settings("local", lake_root=str(settings.lake.root))
    with pytest.raises(ConfigError, match="no aws section"):
        executor_for(local, "emr-serverless")
