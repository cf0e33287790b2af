"""EMR executors: each DAG step is one EMR job run of `aws/jobs/run_step.py --step <name> --run-id
<id> --env <env> --member` (the parameters `pipeline.deploy.submit.job_submission` builds).

- `EmrServerlessExecutor`: StartJobRun on the application named `aws.emr.application_name`.
- `EmrStepsExecutor`: AddJobFlowSteps (with the layer's ExecutionRoleArn) on the WAITING or
  RUNNING cluster named `aws.emr.cluster_name`.

Both: the application or cluster is looked up once per executor (one run); `max_parallel` is
`aws.emr.max_parallel_steps`; a job run is polled with backoff (from `aws.emr.poll_seconds` up
to 4x that) until it ends, and cancelled when the run is stopped (`interrupt()` from the
runner, or KeyboardInterrupt / SystemExit in this thread) or when the executor's wall-clock
timeout (`aws.emr.execution_timeout_minutes`) passes.

The outcome: the job writes its step's `StepOutcome` to `<lake>/_ops/runs/<run_id>/steps/<step>.json`
(`pipeline.entry.main --member`); read here once the job run ends, it gives rows, details and the
error of a step that failed in Python (already retried inside the job, so fatal here). A job
that ended without writing it (killed, out of memory, bad image) is judged by its EMR state and
state details (transient when they read like throttling or a network fault). Either way the
outcome's `details["emr"]` names the job run, its logs and a console link.

Submissions are idempotent: StartJobRun's client token is derived from (run id, step, rerun,
job runs of the step that have ended), so a StartJobRun the runner retries after a transient
error cannot start a second job; EMR steps have no token, so a step of the same name already
PENDING or RUNNING is adopted instead of adding another. A job run whose polling failed with a
transient API error is re-attached, not resubmitted, when the runner retries the step.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.driver.dag import Step
from pipeline.driver.executors import StepAttempt
from pipeline.driver.retry import FATAL_KIND, ClassifiedError, classify, short_error
from pipeline.driver.state import FAILED, SUCCEEDED, read_step_state, step_state_location
from pipeline.settings import ConfigError, Settings
from pipeline.step_result import StepResult

log = logging.getLogger(__name__)

POLL_GROWTH = 1.5  # each poll waits this much longer than the last ...
POLL_CAP = 4.0  # ... up to this multiple of aws.emr.poll_seconds

SERVERLESS_WAITING = ("SUBMITTED", "PENDING", "SCHEDULED", "QUEUED", "RUNNING", "CANCELLING")
SERVERLESS_SUCCEEDED, SERVERLESS_ENDED = "SUCCESS", ("SUCCESS", "FAILED", "CANCELLED")
SERVERLESS_APPLICATION_STATES = ("CREATING", "CREATED", "STARTING", "STARTED", "STOPPING", "STOPPED")
STEPS_WAITING = ("PENDING", "CANCEL_PENDING", "RUNNING")
STEPS_SUCCEEDED, STEPS_ENDED = "COMPLETED", ("COMPLETED", "CANCELLED", "FAILED", "INTERRUPTED")
CLUSTER_STATES = ("WAITING", "RUNNING")


class StepInterrupted(BaseException):
    """The run is being stopped; the step's job run was cancelled. A BaseException, like
    KeyboardInterrupt: the runner records the run as interrupted, not the step as failed."""


class JobRunFailed(ClassifiedError):
    """A job run ended without success (or was cancelled for its timeout)."""


@dataclass
class JobRun:
    """What the executor knows of one job run; kept in the step's details as `emr`."""

    executor: str
    job_run_id: str
    parent_id: str  # the EMR Serverless application or the EMR cluster
    state: str = ""
    state_details: str = ""
    log_uri: str = ""
    console_url: str = ""
    submitted_at: float = 0.0  # the executor's clock
    step_state: str | None = None  # the step-state file, when the job wrote it
    stale_step_state: str | None = None  # that file's text before the submit: an earlier job's

    def details(self) -> dict[str, Any]:
        return {
            "executor": self.executor,
            "job_run_id": self.job_run_id,
            "parent_id": self.parent_id,
            "state": self.state,
            "state_details": self.state_details,
            "log_uri": self.log_uri,
            "console_url": self.console_url,
            "step_state": self.step_state,
        }


def client_token(run_id: str, step: str, rerun: int, ended: int) -> str:
    """StartJobRun's idempotency token (1-64 characters of [A-Za-z0-9._-]): the same for every
    submit of one job run of a step, new once that job run has ended."""
    return hashlib.sha256(f"{run_id}/{step}/{rerun}/{ended}".encode()).hexdigest()[:64]


class _EmrExecutor:
    """What both EMR executors share: the attempt bookkeeping, polling, cancelling, reading the
    step-state file. Subclasses talk to their API (`_find_parent`, `_submit`, `_describe`,
    `_cancel`, `_links`)."""

    name = ""
    mode = ""
    label = ""  # for messages: "EMR Serverless job run", "EMR step"
    waiting: tuple[str, ...] = ()
    ended: tuple[str, ...] = ()
    succeeded = ""

    def __init__(
        self,
        settings: Settings,
        *,
        client: Any = None,
        files: Any = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        timeout_s: float | None = None,
        max_parallel: int | None = None,
        version: str | None = None,
        kms: Any = None,
    ):
        if settings.aws is None:
            raise ConfigError(
                f"--executor {self.name}: config/{settings.env}.yaml has no aws section (region, "
                "buckets, emr); use --env dev or prod, or --executor local"
            )
        self.settings = settings
        self.aws = settings.aws
        self.emr = settings.aws.emr
        self.max_parallel = max_parallel or self.emr.max_parallel_steps
        self.poll_s = self.emr.poll_seconds
        self.timeout_s = timeout_s if timeout_s is not None else self.emr.execution_timeout_minutes * 60.0
        self.version = version
        self.runs = settings.lake.path("_ops", "runs")
        self._client = client
        self._files = files
        self._sleep = sleep
        self._clock = clock
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._parent: str | None = None
        self._kms, self._kms_key_arn = kms, None
        self._ended: dict[tuple[str, str, int], int] = {}  # job runs of a step that have ended
        self._active: dict[tuple[str, str, int], JobRun] = {}  # in flight, re-attached on retry

    # --- clients -------------------------------------------------------------------------------
    service = ""

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client(self.service, region_name=self.aws.region)
        return self._client

    @property
    def files(self) -> Any:
        if self._files is None:
            from pipeline.files import files_for

            self._files = files_for(self.runs, self.settings.lake.storage_options)
        return self._files

    def parent(self) -> str:
        """The application or cluster id, looked up by name once."""
        with self._lock:
            if self._parent is None:
                self._parent = self._find_parent()
            return self._parent

    # --- Executor ------------------------------------------------------------------------------
    def run(self, step: Step, ctx: Any) -> StepResult:
        return self.run_attempt(step, ctx, StepAttempt(ctx.run_id, step.name, 1))

    def interrupt(self) -> None:
        """Stop: every job run being polled is cancelled and its step raises StepInterrupted."""
        self._stop.set()

    def submission(self, step: Step, run_id: str) -> Any:
        from pipeline.deploy.submit import job_submission

        return job_submission(
            self.settings,
            step.name,
            step.job,
            run_id,
            mode=self.mode,
            dataset=step.dataset,
            version=self.version,
            kms_key_arn=self.kms_key_arn(),
        )

    def kms_key_arn(self) -> str | None:
        """`aws.kms_key_alias` as the key ARN the job-run log settings require; once per run."""
        with self._lock:
            if self._kms_key_arn is None and self.aws.kms_key_alias:
                import boto3

                kms = self._kms or boto3.client("kms", region_name=self.aws.region)
                self._kms_key_arn = kms.describe_key(KeyId=self.aws.kms_key_alias)["KeyMetadata"]["Arn"]
            return self._kms_key_arn

    def run_attempt(self, step: Step, ctx: Any, attempt: StepAttempt) -> StepResult:
        key = (attempt.run_id, step.name, attempt.rerun)
        with self._lock:
            job = self._active.get(key)
            ended = self._ended.get(key, 0)
        location = step_state_location(self.runs, attempt.run_id, step.name)
        if job is None:
            submission = self.submission(step, attempt.run_id)
            before = self._read_text(location)  # a file left by an earlier job run is not this one's
            parent = self.parent()
            token = client_token(attempt.run_id, step.name, attempt.rerun, ended)
            job_id = self._submit(parent, submission, token)  # a transient error here: same token next time
            job = JobRun(self.name, job_id, parent, submitted_at=self._clock(), stale_step_state=before)
            job.log_uri, job.console_url = self._links(submission, parent, job_id)
            with self._lock:
                self._active[key] = job
            log.info("step %s: %s %s submitted (logs %s)", step.name, self.label, job_id, job.log_uri)
        else:
            log.info("step %s: re-attaching to %s %s", step.name, self.label, job.job_run_id)
        try:
            self._poll(step, job, attempt.run_id)
        except Exception as exc:
            if isinstance(exc, JobRunFailed):  # it ended; an API error leaves it to re-attach to
                self._forget(key, ended)
            raise
        except BaseException:
            self._forget(key, ended)
            raise
        self._forget(key, ended)
        return self._outcome(step, job, location, attempt.run_id)

    def _forget(self, key: tuple[str, str, int], ended: int) -> None:
        """The job run of `key` has ended: the next attempt submits a new one, with a new token."""
        with self._lock:
            self._active.pop(key, None)
            self._ended[key] = ended + 1

    # --- polling -------------------------------------------------------------------------------
    def _poll(self, step: Step, job: JobRun, run_id: str) -> None:
        delay = self.poll_s
        try:
            while True:
                job.state, job.state_details = self._describe(job.parent_id, job.job_run_id)
                if job.state in self.ended:
                    return
                if job.state not in self.waiting:
                    raise JobRunFailed(
                        f"step {step.name}: {self.label} {job.job_run_id} is in state {job.state!r}, "
                        f"which this driver does not know; check it in the console ({job.console_url}) "
                        f"and rerun with lakehouse run --resume {run_id}",
                        FATAL_KIND,
                        {"emr": job.details()},
                    )
                if self._clock() - job.submitted_at >= self.timeout_s:
                    self._cancel_quietly(job)
                    job.state = "CANCELLED"
                    raise JobRunFailed(
                        f"step {step.name}: {self.label} {job.job_run_id} still {job.state_details or 'running'} "
                        f"after {self.timeout_s / 60:g} min: cancelled; raise aws.emr.execution_timeout_minutes "
                        f"in config/{self.settings.env}.yaml if the step needs longer (logs {job.log_uri})",
                        FATAL_KIND,
                        {"emr": job.details()},
                    )
                self._wait(delay)
                delay = min(delay * POLL_GROWTH, self.poll_s * POLL_CAP)
                if self._stop.is_set():
                    raise StepInterrupted(f"step {step.name}: run stopped")
        except (KeyboardInterrupt, SystemExit, StepInterrupted):
            self._cancel_quietly(job)
            raise

    def _wait(self, seconds: float) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        else:
            self._stop.wait(seconds)  # wakes at once when the run is stopped

    def _cancel_quietly(self, job: JobRun) -> None:
        try:
            self._cancel(job.parent_id, job.job_run_id)
            log.warning("%s %s cancelled", self.label, job.job_run_id)
        except Exception as exc:  # noqa: BLE001 - the run is stopping anyway; say what to clean up
            log.error("could not cancel %s %s: %s", self.label, job.job_run_id, short_error(exc))

    # --- the outcome ---------------------------------------------------------------------------
    def _read_text(self, location: str) -> str | None:
        try:
            return self.files.read_text(location)
        except Exception as exc:  # noqa: BLE001 - the EMR state still says how the job ended
            log.warning("cannot read %s: %s", location, short_error(exc))
            return None

    def _outcome(self, step: Step, job: JobRun, location: str, run_id: str) -> StepResult:
        text = self._read_text(location)
        member = None
        if text is not None and text != job.stale_step_state:
            try:
                member = read_step_state(_Text(text), location)
            except ValueError as exc:
                log.warning("%s: unreadable step state: %s", location, exc)
        if member is not None and member.status in (SUCCEEDED, FAILED):
            job.step_state = location
            details = {**member.details, "emr": job.details(), "reported_by": "member"}
            if member.status == SUCCEEDED:
                return StepResult(rows_in=member.rows_in, rows_out=member.rows_out, details=details)
            raise JobRunFailed(
                f"step {step.name}: {member.error or 'failed'} ({self.label} {job.job_run_id}, "
                f"{member.attempts} attempt(s) in the job; logs {job.log_uri})",
                FATAL_KIND,  # the job applied the retry policy itself
                details,
            )
        details = {"emr": job.details()}
        if job.state == self.succeeded:
            log.warning(
                "step %s: %s succeeded without a step-state file at %s", step.name, job.job_run_id, location
            )
            return StepResult(details=details)
        reason = job.state_details or "no details from EMR"
        kind = classify(RuntimeError(reason)) if job.state != "CANCELLED" else FATAL_KIND
        raise JobRunFailed(
            f"step {step.name}: {self.label} {job.job_run_id} ended {job.state}: {reason}; logs {job.log_uri}; "
            f"fix the cause and rerun with lakehouse run --resume {run_id}",
            kind,
            details,
        )

    # --- the API, per executor -----------------------------------------------------------------
    def _find_parent(self) -> str:
        raise NotImplementedError

    def _submit(self, parent: str, submission: Any, token: str) -> str:
        raise NotImplementedError

    def _describe(self, parent: str, job_id: str) -> tuple[str, str]:
        raise NotImplementedError

    def _cancel(self, parent: str, job_id: str) -> None:
        raise NotImplementedError

    def _links(self, submission: Any, parent: str, job_id: str) -> tuple[str, str]:
        raise NotImplementedError


class _Text:
    """read_step_state's `files` for text already read."""

    def __init__(self, text: str):
        self.text = text

    def read_text(self, location: str) -> str:  # noqa: ARG002
        return self.text


class EmrServerlessExecutor(_EmrExecutor):
    name = "emr-serverless"
    mode = "serverless"
    service = "emr-serverless"
    label = "EMR Serverless job run"
    waiting = SERVERLESS_WAITING
    ended = SERVERLESS_ENDED
    succeeded = SERVERLESS_SUCCEEDED

    def _find_parent(self) -> str:
        wanted = self.emr.application_name
        found, token = [], None
        while True:
            page = self.client.list_applications(
                states=list(SERVERLESS_APPLICATION_STATES), **({"nextToken": token} if token else {})
            )
            found += [a["id"] for a in page.get("applications", []) if a.get("name") == wanted]
            token = page.get("nextToken")
            if not token:
                break
        if not found:
            raise ConfigError(
                f"no EMR Serverless application named {wanted!r} in {self.aws.region} (aws.emr.application_name "
                f"in config/{self.settings.env}.yaml): create it with aws/terraform (envs/{self.settings.env}) "
                "or correct the name"
            )
        if len(found) > 1:
            raise ConfigError(
                f"{len(found)} EMR Serverless applications are named {wanted!r} ({', '.join(found)}); "
                "delete the extra ones or give this environment's a name of its own"
            )
        return found[0]

    def _submit(self, parent: str, submission: Any, token: str) -> str:
        return self.client.start_job_run(**submission.serverless_request(parent, token))["jobRunId"]

    def _describe(self, parent: str, job_id: str) -> tuple[str, str]:
        run = self.client.get_job_run(applicationId=parent, jobRunId=job_id)["jobRun"]
        return run["state"], run.get("stateDetails", "") or ""

    def _cancel(self, parent: str, job_id: str) -> None:
        self.client.cancel_job_run(applicationId=parent, jobRunId=job_id)

    def _links(self, submission: Any, parent: str, job_id: str) -> tuple[str, str]:
        region = self.aws.region
        logs = f"{submission.log_uri.rstrip('/')}/applications/{parent}/jobs/{job_id}/"
        console = (
            f"https://{region}.console.aws.amazon.com/emr/home?region={region}"
            f"#/serverless-applications/{parent}/job-runs/{job_id}"
        )
        return logs, console


class EmrStepsExecutor(_EmrExecutor):
    name = "emr-ec2"
    mode = "ec2"
    service = "emr"
    label = "EMR step"
    waiting = STEPS_WAITING
    ended = STEPS_ENDED
    succeeded = STEPS_SUCCEEDED

    def _find_parent(self) -> str:
        wanted = self.emr.cluster_name
        found, marker = [], None
        while True:
            page = self.client.list_clusters(
                ClusterStates=list(CLUSTER_STATES), **({"Marker": marker} if marker else {})
            )
            found += [c["Id"] for c in page.get("Clusters", []) if c.get("Name") == wanted]
            marker = page.get("Marker")
            if not marker:
                break
        if not found:
            raise ConfigError(
                f"no EMR cluster named {wanted!r} is WAITING or RUNNING in {self.aws.region} "
                f"(aws.emr.cluster_name in config/{self.settings.env}.yaml): create it with aws/terraform "
                f"(enable_emr_ec2 = true in envs/{self.settings.env}, then terraform apply), "
                "or run with --executor emr-serverless"
            )
        if len(found) > 1:
            raise ConfigError(
                f"{len(found)} running EMR clusters are named {wanted!r} ({', '.join(found)}); "
                "terminate the extra ones so steps go to one cluster"
            )
        return found[0]

    def _submit(self, parent: str, submission: Any, token: str) -> str:  # noqa: ARG002 - no token here
        step = submission.emr_step()
        # No idempotency token for steps: a step of this name still queued or running is the one
        # an earlier AddJobFlowSteps added before its answer was lost.
        for existing in self.client.list_steps(ClusterId=parent, StepStates=["PENDING", "RUNNING"]).get(
            "Steps", []
        ):
            if existing.get("Name") == step["Name"]:
                return existing["Id"]
        response = self.client.add_job_flow_steps(
            JobFlowId=parent, Steps=[step], ExecutionRoleArn=submission.role_arn
        )
        return response["StepIds"][0]

    def _describe(self, parent: str, job_id: str) -> tuple[str, str]:
        status = self.client.describe_step(ClusterId=parent, StepId=job_id)["Step"]["Status"]
        failure = status.get("FailureDetails") or {}
        reason = " ".join(
            str(part)
            for part in (
                failure.get("Reason"),
                failure.get("Message"),
                (status.get("StateChangeReason") or {}).get("Message"),
            )
            if part
        )
        if failure.get("LogFile"):
            reason += f" (log {failure['LogFile']})"
        return status["State"], reason

    def _cancel(self, parent: str, job_id: str) -> None:
        self.client.cancel_steps(ClusterId=parent, StepIds=[job_id], StepCancellationOption="SEND_INTERRUPT")

    def _links(self, submission: Any, parent: str, job_id: str) -> tuple[str, str]:
        region = self.aws.region
        logs = f"{submission.log_uri.rstrip('/')}/cluster/{parent}/steps/{job_id}/"  # the cluster's LogUri
        console = f"https://{region}.console.aws.amazon.com/emr/home?region={region}#/clusterDetails/{parent}"
        return logs, console
