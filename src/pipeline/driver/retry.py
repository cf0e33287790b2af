"""Which step failures are worth retrying, and how long to wait between attempts.

The one place that decides. `classify(exc)` answers "transient" or "fatal":

1. A schema mismatch anywhere in the exception chain is fatal (a rerun writes the same rows
   into the same table and fails the same way).
2. The raised exception being an instance of a `FATAL` class is fatal: configuration and
   contract errors (`ConfigError`, `ValueError`, `TypeError`, `KeyError`, Spark analysis
   errors) and the deterministic `OSError`s (missing file, no permission).
3. An exception that says its own kind (`ClassifiedError`: an EMR job run that failed, whose
   own process already applied the retry policy) is that kind.
4. Transient when any exception in the chain is a `TRANSIENT` class (`OSError`,
   `ConnectionError`, `TimeoutError`, py4j network errors), an AWS API error whose code is in
   `TRANSIENT_AWS_CODES` or whose HTTP status is 5xx (botocore `ClientError`: EMR throttling,
   service unavailable), or its text (Java class names and messages included) matches a
   `TRANSIENT_PATTERNS` entry: socket timeouts, connection resets, S3 503 / SlowDown,
   throttling, Delta concurrent-commit conflicts.
5. Anything else is fatal: retrying an unknown error (most often a bug) only delays the report.

The policy (attempts, backoff) comes from the `retry:` block of config/pipeline.yaml.

`explain(exc)` says what failed, for the run state, the summary, `lakehouse status` and the
alerts: the root cause (the innermost Java exception, not py4j's "An error occurred while
calling o123.parquet."), the file a message names, a hint for known causes (corrupt file,
permission, disk space, memory, missing file), and the whole cause chain.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from pipeline.lake import SCHEMA_MISMATCH_ERRORS
from pipeline.settings import ConfigError

try:  # py4j ships with pyspark; the guard keeps this module importable without it
    from py4j.protocol import Py4JNetworkError
except ImportError:  # pragma: no cover
    Py4JNetworkError = ConnectionError  # type: ignore[assignment,misc]

try:
    from pyspark.errors import AnalysisException
except ImportError:  # pragma: no cover
    AnalysisException = ValueError  # type: ignore[assignment,misc]

Kind = Literal["transient", "fatal"]
TRANSIENT: Kind = "transient"
FATAL_KIND: Kind = "fatal"

# Fail fast: the raised exception is one of these. Checked before TRANSIENT, so the
# deterministic OSError subclasses listed here are not retried although OSError is.
FATAL: tuple[type[BaseException], ...] = (
    ConfigError,
    ValueError,
    TypeError,
    KeyError,
    AnalysisException,
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)

# Retry: any exception in the chain is one of these.
TRANSIENT_TYPES: tuple[type[BaseException], ...] = (OSError, ConnectionError, TimeoutError, Py4JNetworkError)

# Retry: any exception in the chain mentions one of these (case-insensitive regular expressions).
TRANSIENT_PATTERNS: tuple[str, ...] = (
    r"SocketTimeoutException",
    r"SocketException",
    r"Connection reset",
    r"Connection refused",
    r"Broken pipe",
    r"Read timed out",
    r"UnknownHostException",
    r"\b503\b",
    r"Service Unavailable",
    r"SlowDown",
    r"Throttling",  # ThrottlingException, Throttling: Rate exceeded
    r"TooManyRequests",
    r"RequestLimitExceeded",
    r"ConcurrentAppendException",
    r"ConcurrentModification",  # java.util.ConcurrentModificationException, Delta's family
    r"CommitFailed",  # CommitFailedException (Iceberg/Delta), delta-rs CommitFailedError
    r"Py4JNetworkError",
    r"Answer from Java side is empty",
)

# Fatal even when a transient pattern also matches: the data does not fit the table.
SCHEMA_MISMATCH_PATTERNS: tuple[str, ...] = (
    r"SchemaMismatch",
    r"schema mismatch",
    r"DELTA_FAILED_TO_MERGE_FIELDS",
    r"Failed to merge (?:fields|incompatible)",
    r"DELTA_SCHEMA_CHANGED",
    r"Cannot cast schema",
    r"Cast error: Cannot cast",
)

# Retry: an AWS API error (botocore ClientError, read through its `response`) with one of these codes.
TRANSIENT_AWS_CODES: frozenset[str] = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalServerException",
        "InternalServerError",
        "InternalFailure",
        "RequestTimeout",
    }
)


class ClassifiedError(RuntimeError):
    """An error that knows whether it is worth retrying (`kind`) and what the step found
    (`details`, recorded in the step's outcome)."""

    def __init__(self, message: str, kind: Kind, details: dict | None = None):
        super().__init__(message)
        self.kind = kind
        self.details = dict(details or {})


_TRANSIENT_RE = re.compile("|".join(f"(?:{p})" for p in TRANSIENT_PATTERNS), re.IGNORECASE)
_SCHEMA_RE = re.compile("|".join(f"(?:{p})" for p in SCHEMA_MISMATCH_PATTERNS), re.IGNORECASE)


def classify(exc: BaseException) -> Kind:
    """`transient` (worth retrying) or `fatal` (fail fast); see the module docstring."""
    chain = list(exception_chain(exc))
    if any(_is_schema_mismatch(e) for e in chain):
        return FATAL_KIND
    if isinstance(exc, FATAL):
        return FATAL_KIND
    if isinstance(exc, ClassifiedError):
        return exc.kind
    for e in chain:
        if isinstance(e, TRANSIENT_TYPES) and not isinstance(e, FATAL):
            return TRANSIENT
        if _aws_transient(e):
            return TRANSIENT
        if _TRANSIENT_RE.search(_text(e)):
            return TRANSIENT
    return FATAL_KIND


def is_transient(exc: BaseException) -> bool:
    return classify(exc) == TRANSIENT


def exception_chain(exc: BaseException, limit: int = 16) -> Iterator[BaseException]:
    """`exc`, then what caused it (`__cause__`, `__context__`, pyspark's captured Java cause)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < limit:
        seen.add(id(current))
        yield current
        nxt = current.__cause__ or current.__context__
        if nxt is None:
            captured = getattr(current, "_cause", None)  # pyspark CapturedException
            nxt = captured if isinstance(captured, BaseException) else None
        current = nxt


def _aws_transient(exc: BaseException) -> bool:
    """A botocore ClientError (duck-typed: botocore is not needed to import this module) that
    AWS documents as retryable: throttling, or the service failing on its side (HTTP 5xx)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    code = str((response.get("Error") or {}).get("Code", ""))
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return code in TRANSIENT_AWS_CODES or (isinstance(status, int) and status >= 500)


def _is_schema_mismatch(exc: BaseException) -> bool:
    """A lake write refused because the rows do not fit the table (either engine's wording)."""
    return isinstance(exc, SCHEMA_MISMATCH_ERRORS) or bool(_SCHEMA_RE.search(_text(exc)))


def _text(exc: BaseException) -> str:
    """Class name and message; for Spark/Java errors the Java class and stack as well. Never
    raises: str() of a Java-backed exception calls into a JVM that may be gone."""
    parts = [type(exc).__module__ + "." + type(exc).__name__]
    for attr in ("_desc", "_stackTrace"):  # pyspark CapturedException, without calling the JVM
        value = getattr(exc, attr, None)
        if isinstance(value, str):
            parts.append(value)
    try:
        parts.append(str(exc))
    except Exception:  # noqa: BLE001 - a dead JVM must not hide the original failure
        parts.append(repr(exc.args))
    return "\n".join(parts)


def short_error(exc: BaseException, limit: int = 300) -> str:
    """One line for a table cell, a log line or the state file: the root cause (see `explain`)
    with the file it names and a hint, when there are."""
    return explain(exc, limit=limit).message


# Where a failure happened: a URI in a Spark/Hadoop message (`file:/lake/x/part-0.parquet`,
# `s3://bucket/key`). Trailing punctuation belongs to the sentence, not to the path.
_PATH_RE = re.compile(r"\b(?:file|s3[an]?|hdfs|abfss?|wasbs?|gs|viewfs):/+[^\s,;'\"<>()\[\]]+")

# (pattern over the root-cause chain, what to do about it): the first match gives the hint.
HINTS: tuple[tuple[str, str], ...] = (
    (
        r"TIMESTAMP\(NANOS",
        "nanosecond timestamps (pandas' default), which Spark does not read: re-deliver the file "
        "written with microseconds (pyarrow: coerce_timestamps='us'; pandas: to_parquet(..., "
        "coerce_timestamps='us'))",
    ),
    (
        r"not a Parquet file|CANNOT_READ_FILE_FOOTER|Could not read footer|magic number|corrupt|"
        r"truncated|EOFException|Unexpected end of (?:file|stream|input)|"
        r"can not read (?:FileMetaData|class org\.apache\.parquet)",
        "corrupt or truncated file: fix or remove the file, then rerun",
    ),
    (
        r"No space left on device|ENOSPC|Disk quota exceeded|DiskFull",
        "no space left: free disk where Spark spills (spark.local.dir, /tmp) or on the target volume, "
        "then rerun",
    ),
    (
        r"Permission denied|AccessDenied|Access Denied|AccessControlException|403 Forbidden|PermissionError",
        "permission denied: grant the run's user or role access to the path (file mode, IAM or bucket "
        "policy), then rerun",
    ),
    (
        r"OutOfMemoryError|Java heap space|GC overhead limit",
        "out of memory: raise the driver/executor memory or split the input, then rerun",
    ),
    (
        r"FileNotFoundException|FileNotFoundError|No such file or directory|PATH_NOT_FOUND",
        "a file is missing: check the path, or what removed it while the step ran, then rerun",
    ),
)
_HINT_RES = tuple((re.compile(p, re.IGNORECASE), hint) for p, hint in HINTS)


@dataclass(frozen=True)
class ErrorReport:
    """What a failure was: `message`, one line (dataset, root cause, file, hint); `cause`, the
    same without the dataset, for lines that name the step already; `chain`, every cause as
    `Class: message`, outermost first, Java causes included; `path` and `hint` when known."""

    message: str
    cause: str
    chain: list[str]
    path: str | None = None
    hint: str | None = None


def explain(exc: BaseException, limit: int = 300, *, job: str = "", dataset: str = "") -> ErrorReport:
    """The root cause of `exc` rather than py4j's wrapper ("An error occurred while calling
    o3257.parquet."): the innermost Java exception when the chain has any (Py4JJavaError's
    `java_exception`, pyspark's captured exceptions), else the raised exception, whose message
    Python code writes for people. `job` and `dataset` (a step's) go in front of `message`,
    unless the cause names the dataset already. Never raises: a dead JVM leaves the Python side."""
    causes = list(_causes(exc))
    java = [c for c in causes if c[2]]
    name, message, _ = java[-1] if java else causes[0]
    path = (
        None  # our own callback's message says what it needs; a folder it names is not "the file"
        if name.startswith(PYTHON_RAISED)
        else next((p for c in reversed(causes) if (p := _path(c[1]))), None) or _os_filename(exc)
    )
    text = " ".join(message.split())
    shown = name.removeprefix(PYTHON_RAISED)
    root = f"{shown}: {text}" if text else shown
    # A cause our own code raised in a JVM callback (a refused micro-batch) says what to do itself;
    # its words ("corrupt records") are not about files.
    said = [(n, m) for n, m, _ in causes if not n.startswith(PYTHON_RAISED)]
    hint = (
        None
        if name.startswith(PYTHON_RAISED)
        else next((h for pattern, h in _HINT_RES if any(pattern.search(f"{n}: {m}") for n, m in said)), None)
    )
    located = f"{job} {dataset}: {root}" if dataset and dataset not in root else root
    return ErrorReport(
        message=_one_line(located, path, hint, limit),
        cause=_one_line(root, path, hint, limit),
        chain=[_clip_entry(n, m) for n, m, _ in causes],
        path=path,
        hint=hint,
    )


def _one_line(root: str, path: str | None, hint: str | None, limit: int) -> str:
    """`root`, then the file (unless `root` names it within `limit`) and the hint: clipping
    shortens the cause's message, not the file or the hint."""
    tail = f"; hint: {hint}" if hint else ""
    if path is not None and not (path in root and len(root) + len(tail) <= limit):
        tail = f" (file {path}){tail}"
    room = max(limit - len(tail), limit // 3)
    line = (root if len(root) <= room else root[: room - 3] + "...") + tail
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _causes(exc: BaseException) -> Iterator[tuple[str, str, bool]]:
    """(class, message, from Java) of every exception in the chain, outermost first; a Java-backed
    exception gives its Java causes in its place."""
    # Java causes met again: pyspark's converted `_cause`s, and the py4j error it raised from
    # (the captured exception's __context__) carry the chain already walked.
    seen: set[tuple[str, str]] = set()
    for e in exception_chain(exc):
        java = _java_chain(getattr(e, "java_exception", None) or getattr(e, "_origin", None))
        if java:
            for name, message in java:
                if (name, message) not in seen:
                    yield name, message, True
            seen.update(java)
            continue
        desc = getattr(e, "_desc", None)  # a captured exception without its JVM object (Spark Connect)
        if isinstance(desc, str):
            yield type(e).__name__, _head(desc), True
            continue
        try:
            message = str(e)
        except Exception:  # noqa: BLE001 - a dead JVM must not hide the original failure
            message = repr(e.args)
        yield type(e).__name__, _head(message), False
        if isinstance(e, ClassifiedError):
            continue  # its message is written for people (an EMR job's end, with its logs)
        # A Java stack as text only (a py4j error whose JVM is gone, a job's log): its causes.
        yield from ((m.group(1), m.group(2) or "", True) for m in _JAVA_LINE_RE.finditer(message))


# `: java.net.SocketTimeoutException: Read timed out` (py4j) or `Caused by: ...` (a Java stack).
_JAVA_LINE_RE = re.compile(
    r"^(?::|Caused by:) ((?:[a-z_$][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error|Throwable)[\w$]*)(?:: (.*))?$",
    re.MULTILINE,
)

_CAUSED_BY_RE = re.compile(_JAVA_LINE_RE.pattern.replace("(?::|Caused by:)", "Caused by:"), re.MULTILINE)


def _java_chain(throwable: object, limit: int = 16) -> list[tuple[str, str]]:
    """(class, message) of a Java Throwable (a py4j JavaObject) and its getCause()s; empty when
    there is none or the JVM cannot be asked."""
    found: list[tuple[str, str]] = []
    try:
        while throwable is not None and len(found) < limit:
            message = str(throwable.getMessage() or "")
            found.append(_python_raised(message) or (str(throwable.getClass().getName()), _head(message)))
            # A task's failure reaches the driver as text in the job's ("most recent failure:
            # ... Caused by: ..."), with no cause object behind it: its causes from that text.
            found += [(m.group(1), m.group(2) or "") for m in _CAUSED_BY_RE.finditer(message)]
            throwable = throwable.getCause()
    except Exception:  # noqa: BLE001 - the JVM may be gone; keep what was read
        pass
    return found


PYTHON_RAISED = "python: "  # marks a cause that Python code raised inside a JVM callback
_PYTHON_LAST_LINE = re.compile(r"^([A-Za-z_][\w.]*): (.*)$")


def _python_raised(message: str) -> tuple[str, str] | None:
    """py4j's "An exception was raised by the Python Proxy. Return Message: Traceback ...": the
    Python exception at the traceback's end (a foreachBatch function's), not py4j's wrapper."""
    if "Traceback (most recent call last)" not in message:
        return None
    last = [line for line in message.splitlines() if line.strip()][-1].strip()
    match = _PYTHON_LAST_LINE.match(last)
    return (PYTHON_RAISED + match.group(1), match.group(2)) if match else None


def _head(message: str) -> str:
    """A message without the stack trace some carry (`\n\tat ...`, py4j's `\n: java...`)."""
    kept = []
    for line in message.splitlines():
        if line.lstrip().startswith("at ") or line.startswith((": ", "Caused by:")):
            break
        kept.append(line)
    return "\n".join(kept).strip()


def _clip_entry(name: str, message: str, limit: int = 1000) -> str:
    entry = f"{name}: {' '.join(message.split())}" if message else name
    return entry if len(entry) <= limit else entry[: limit - 3] + "..."


def _path(message: str) -> str | None:
    match = _PATH_RE.search(message)
    return match.group(0).rstrip(".:") if match else None


def _os_filename(exc: BaseException) -> str | None:
    """The file a Python OSError names (FileNotFoundError, PermissionError, ...)."""
    for e in exception_chain(exc):
        filename = getattr(e, "filename", None) if isinstance(e, OSError) else None
        if filename:
            return str(filename)
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """How transient step failures are retried (top-level `retry:` of config/pipeline.yaml).

    Attempt n failing transiently waits min(max_backoff_s, initial_backoff_s * 2**(n-1)),
    reduced by a random share of up to `jitter` (0.5: between 50% and 100% of it), so
    max_backoff_s is a true upper bound and parallel runs do not retry in lockstep.
    """

    max_attempts: int = 3
    initial_backoff_s: float = 2.0
    max_backoff_s: float = 60.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts: must be at least 1, got {self.max_attempts}")
        if self.initial_backoff_s < 0:
            raise ConfigError(f"initial_backoff_s: must be >= 0, got {self.initial_backoff_s}")
        if self.max_backoff_s < self.initial_backoff_s:
            raise ConfigError(
                f"max_backoff_s: must be >= initial_backoff_s ({self.initial_backoff_s}), got {self.max_backoff_s}"
            )
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"jitter: must be between 0 and 1, got {self.jitter}")

    def base_delay(self, attempt: int) -> float:
        """The wait after failed attempt `attempt` (1-based), before jitter."""
        if attempt < 1:
            raise ValueError(f"attempt numbers start at 1, got {attempt}")
        try:
            grown = math.ldexp(self.initial_backoff_s, attempt - 1)
        except OverflowError:  # past any float, so past any cap
            grown = math.inf
        return min(self.max_backoff_s, grown)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The jittered wait after failed attempt `attempt`: in [base*(1-jitter), base]."""
        base = self.base_delay(attempt)
        draw = (rng or random).random()
        return base * (1.0 - self.jitter * draw)

    def schedule(self) -> list[float]:
        """The un-jittered waits between the attempts (max_attempts - 1 of them)."""
        return [self.base_delay(n) for n in range(1, self.max_attempts)]

    def describe(self) -> str:
        if self.max_attempts == 1:
            return "no retries (max_attempts 1)"
        waits = ", ".join(f"{s:g}s" for s in self.schedule())
        return (
            f"up to {self.max_attempts} attempts for transient errors; waits {waits} "
            f"(doubling, cap {self.max_backoff_s:g}s, jitter -{self.jitter:.0%}); fatal errors fail fast"
        )
