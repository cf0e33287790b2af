"""Alerts on failed steps, failed DQ results and failed runs: SNS and / or a webhook.

`AlertObserver(settings)` reads `settings.alerts`:

- `sns_topic_arn`: `sns.publish` (boto3; region from the ARN), subject <= 100 characters,
  the message is the alert as JSON.
- `webhook_url`: a SecretRef, resolved when an alert is sent; the alert JSON is POSTed with
  urllib (timeout 10 s). The URL is never logged, not even on errors.
- neither (local): the alert is logged as a warning.
- `on` (default: step_failed, dq_critical, dq_warn): `step_failed` (a step failed after its
  retries), `dq_critical` (a step's `details["dq"]` holds entries with `severity: critical`
  and `passed: false`), `dq_warn` (entries with `severity: warn` and `passed: false`: the
  step succeeded, the rules are alerted at a lower `severity`), `run_failed`. Unknown kinds
  are refused when the settings load. A step that wrote nothing new repeats the last gate's
  verdict (`details["dq_from_run"]`, see dq.gate.recheck): its warnings were alerted by the run
  that judged them and are not sent again on every rerun; a repeated critical verdict fails the
  step, and that is alerted as step_failed.

Every alert carries a `severity` (`critical`, or `warning` for dq_warn) and lists the step's
failed DQ rules: `dq_critical_failures` (all) and `dq_warn_failures` (at most
MAX_WARN_LISTED, with `dq_warn_failures_total` the full count).

One alert per step at most, the most severe kind that `on` enables: step_failed, then
dq_critical, then dq_warn. A failed step with DQ failures sends one `step_failed` alert that
lists them, a step with critical and warn failures one `dq_critical` alert that lists both. Run
level (duplicates avoided): at run_finished, a run that did not succeed gets a `run_failed`
alert only when no `step_failed` alert was sent for it by this observer (e.g. the run was
interrupted, or `on` lacks step_failed but has run_failed); otherwise the step alerts, which
carry the run id and the run-state location, already said it. A delivery failure is logged
and never fails the run.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.request
from typing import Any

from pipeline.observability.metrics import dq_results
from pipeline.settings import DQ_CRITICAL, DQ_WARN, RUN_FAILED, STEP_FAILED, Settings

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 10
SUBJECT_MAX = 100
MAX_WARN_LISTED = 20  # warn rules listed in one alert; the total is always given
SEVERITY = {STEP_FAILED: "critical", DQ_CRITICAL: "critical", DQ_WARN: "warning", RUN_FAILED: "critical"}


def failed_dq(outcome: Any, severity: str) -> list[dict[str, Any]]:
    """The step's DQ results of `severity` (`critical` / `warn`) that did not pass."""
    return [r for r in dq_results(outcome) if r.get("severity") == severity and r.get("passed") is False]


def critical_dq_failures(outcome: Any) -> list[dict[str, Any]]:
    return failed_dq(outcome, "critical")


def warn_dq_failures(outcome: Any) -> list[dict[str, Any]]:
    return failed_dq(outcome, "warn")


def replayed_dq(outcome: Any) -> bool:
    """The step's DQ results repeat an earlier gate's verdict (the table did not change)."""
    return bool((outcome.details or {}).get("dq_from_run"))


def _subject(text: str) -> str:
    """SNS subjects: printable ASCII, no line breaks, at most 100 characters."""
    text = re.sub(r"[^\x20-\x7e]", " ", text).strip() or "lakehouse alert"
    return text if len(text) <= SUBJECT_MAX else text[: SUBJECT_MAX - 3] + "..."


def _region_of(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 and parts[3] else None


class AlertObserver:
    """StepObserver sending alerts; `sns_client` and `opener` are injectable for tests."""

    def __init__(self, settings: Settings, *, sns_client: Any = None, opener: Any = None):
        self.settings = settings
        self.config = settings.alerts
        self.on = set(self.config.on)
        self._sns = sns_client
        self._open = opener or urllib.request.urlopen
        self.sent: list[dict[str, Any]] = []  # every alert built, delivered or not
        self._step_alerted: set[str] = set()  # run ids with a step_failed alert

    # -- StepObserver ---------------------------------------------------------------------
    def step_started(self, ctx: Any, step: Any, outcome: Any) -> None:
        pass

    def step_finished(self, ctx: Any, step: Any, outcome: Any) -> None:
        critical = critical_dq_failures(outcome)
        warn = warn_dq_failures(outcome)
        if outcome.status == "failed" and STEP_FAILED in self.on:
            kind = STEP_FAILED
        elif critical and DQ_CRITICAL in self.on:
            kind = DQ_CRITICAL
        elif warn and DQ_WARN in self.on and not replayed_dq(outcome):
            kind = DQ_WARN
        else:
            return
        alert = self._base(kind, ctx.run_id)
        alert.update(
            step=step.name or outcome.step,
            dataset=step.dataset,
            layer=step.job,
            status=outcome.status,
            attempts=outcome.attempts,
            error=outcome.error,
            error_kind=outcome.error_kind,
            dq_critical_failures=critical,
            dq_warn_failures=warn[:MAX_WARN_LISTED],
            dq_warn_failures_total=len(warn),
        )
        if kind == STEP_FAILED:
            what = f"step {alert['step']} failed"
        elif kind == DQ_CRITICAL:
            what = f"critical DQ failed in {alert['step']}"
        else:
            what = f"DQ warnings in {alert['step']}: {len(warn)} rule(s)"
        if kind == STEP_FAILED:
            self._step_alerted.add(ctx.run_id)
        self.send(f"[lakehouse {self.settings.env}] {what} (run {ctx.run_id})", alert)

    def run_finished(self, ctx: Any, state: Any) -> None:
        if state.status == "succeeded" or state.run_id in self._step_alerted:
            return
        if STEP_FAILED in self.on and any(
            s.status == "failed" and (s.details or {}).get("reported_by") == "member" for s in state.steps
        ):
            return  # the step's own job (EMR, --member) sent its step_failed alert
        if not self.on & {RUN_FAILED, STEP_FAILED}:
            return
        alert = self._base(RUN_FAILED, state.run_id)
        alert.update(
            status=state.status,
            failed_steps=[s.step for s in state.steps if s.status == "failed"],
            skipped_steps=[s.step for s in state.steps if s.status == "skipped"],
            unfinished_steps=[s.step for s in state.steps if s.status in ("pending", "running")],
            errors={s.step: s.error for s in state.steps if s.error},
        )
        self.send(f"[lakehouse {self.settings.env}] run {state.status} (run {state.run_id})", alert)

    # -- delivery --------------------------------------------------------------------------
    def _base(self, kind: str, run_id: str) -> dict[str, Any]:
        return {
            "alert": kind,
            "severity": SEVERITY[kind],
            "env": self.settings.env,
            "run_id": run_id,
            "run_state": self.settings.lake.path("_ops", "runs", f"{run_id}.json"),
        }

    def send(self, subject: str, alert: dict[str, Any]) -> None:
        subject = _subject(subject)
        message = json.dumps(alert, sort_keys=True, default=str)
        self.sent.append(alert)
        delivered = False
        if self.config.sns_topic_arn:
            delivered |= self._publish_sns(subject, message)
        if self.config.webhook_url is not None:
            delivered |= self._post_webhook(subject, alert)
        if not (self.config.sns_topic_arn or self.config.webhook_url):
            log.warning("ALERT %s: %s", subject, message)
        elif not delivered:
            log.error("ALERT not delivered %s: %s", subject, message)

    def _publish_sns(self, subject: str, message: str) -> bool:
        arn = self.config.sns_topic_arn
        try:
            if self._sns is None:
                import boto3

                self._sns = boto3.client("sns", region_name=_region_of(arn))
            self._sns.publish(TopicArn=arn, Subject=subject, Message=message)
            return True
        except Exception as exc:
            log.error("alert to SNS topic %s failed: %s: %s", arn, type(exc).__name__, exc)
            return False

    def _post_webhook(self, subject: str, alert: dict[str, Any]) -> bool:
        ref = self.config.webhook_url
        try:
            url = ref.resolve()
            body = json.dumps({"text": subject, **alert}, sort_keys=True, default=str).encode()
            request = urllib.request.Request(
                url, data=body, method="POST", headers={"Content-Type": "application/json"}
            )
            with self._open(request, timeout=WEBHOOK_TIMEOUT_S) as response:
                response.read()
            return True
        except Exception as exc:  # the message may hold the URL: report the type only
            log.error("alert webhook (%s) failed: %s", ref.describe(), type(exc).__name__)
            return False
