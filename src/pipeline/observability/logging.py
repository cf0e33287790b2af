"""Structured JSON logs: one JSON object per line, with the run, step, dataset and layer.

`configure_json_logging(level)` installs a `JsonFormatter` handler on the root logger (stderr
by default; calling it again replaces its own handler, not others). The context comes from
context variables set by `log_context(run_id=..., step=..., dataset=..., layer=...)` (a context
manager) or `set_log_context(...)` / `clear_log_context(...)`; `LogContextObserver` sets the
step fields at step_started and clears them at step_finished. Context variables follow the
thread / task that set them: work in other threads logs without the step fields unless it
runs inside `contextvars.copy_context().run(...)`.

Extra fields (`log.info(..., extra={...})`) are included; values of keys containing
password, secret, token or key are replaced by "***".
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

CONTEXT_FIELDS = ("run_id", "step", "dataset", "layer")
_VARS: dict[str, contextvars.ContextVar[str | None]] = {
    name: contextvars.ContextVar(f"lakehouse_log_{name}", default=None) for name in CONTEXT_FIELDS
}
SENSITIVE = ("password", "secret", "token", "key")
REDACTED = "***"
# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def current_log_context() -> dict[str, str | None]:
    return {name: var.get() for name, var in _VARS.items()}


def set_log_context(**values: str | None) -> dict[str, contextvars.Token]:
    """Set some of run_id, step, dataset, layer; returns tokens for `reset_log_context`."""
    unknown = set(values) - set(CONTEXT_FIELDS)
    if unknown:
        raise TypeError(f"unknown log context field(s): {', '.join(sorted(unknown))}")
    return {name: _VARS[name].set(value) for name, value in values.items()}


def reset_log_context(tokens: dict[str, contextvars.Token]) -> None:
    for name, token in tokens.items():
        _VARS[name].reset(token)


def clear_log_context(*names: str) -> None:
    """Unset the given fields (all when none given)."""
    for name in names or CONTEXT_FIELDS:
        _VARS[name].set(None)


@contextmanager
def log_context(**values: str | None) -> Iterator[None]:
    tokens = set_log_context(**values)
    try:
        yield
    finally:
        reset_log_context(tokens)


def _redact(key: str, value: Any) -> Any:
    if any(word in key.lower() for word in SENSITIVE):
        return REDACTED
    if isinstance(value, dict):
        return {str(k): _redact(str(k), v) for k, v in value.items()}
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        entry: dict[str, Any] = {
            "ts": ts.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **current_log_context(),
        }
        for key, value in vars(record).items():
            if key in _STANDARD or key in entry or key.startswith("_"):
                continue
            entry[key] = _redact(key, value)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


class _JsonHandler(logging.StreamHandler):
    """Marks the handler this module installed, so reconfiguring replaces only it."""


def configure_json_logging(level: int | str = "INFO", stream: TextIO | None = None) -> logging.Handler:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _JsonHandler)]:
        root.removeHandler(handler)
    handler = _JsonHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler


class LogContextObserver:
    """StepObserver: run/step/dataset/layer in the log context while a step runs."""

    def step_started(self, ctx: Any, step: Any, outcome: Any) -> None:
        set_log_context(
            run_id=ctx.run_id, step=step.name or outcome.step, dataset=step.dataset, layer=step.job
        )

    def step_finished(self, ctx: Any, step: Any, outcome: Any) -> None:
        clear_log_context("step", "dataset", "layer")
        set_log_context(run_id=ctx.run_id)

    def run_finished(self, ctx: Any, state: Any) -> None:
        clear_log_context()
