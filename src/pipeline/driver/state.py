"""Run state: what each step of a run did, persisted as `<lake>/_ops/runs/<run_id>.json`.

The runner saves the whole state after every change (step started, attempt failed, step
finished, run finished), so a killed run leaves a file that says how far it got, and
`lakehouse run --resume RUN_ID` reruns what did not succeed under the same run id. It also
saves it every HEARTBEAT_S while a step runs (`heartbeat_at`): with the driver's host and pid,
how `lakehouse status` tells a dead run from a live one (`presumed_dead`).

Stores (one interface: `save`, `load`, `exists`, `run_ids`, `latest`, `location`):

- `LocalStateStore`: a local lake folder, plain Python (no Spark). Writes go to a temporary
  file renamed over the old one, so a reader (or a kill) never sees half a file.
- `HadoopStateStore`: any other lake root inside a run (s3:// on EMR): writes with
  `pipeline.storage.write_text`, reads and lists through the Hadoop FileSystem of the session.
- `S3StateStore`: s3:// roots without Spark (`lakehouse status`, `--plan`), through boto3 (with
  the endpoint of the settings' `lake.storage_options` when the store is not AWS S3).

`state_store_for(runs_location, spark, storage_options)` picks one. Nothing here imports pyspark.

Step-state files, for steps run by other processes (EMR job runs started by a driver elsewhere,
`--member`): each job writes only `<lake>/_ops/runs/<run_id>/steps/<step>.json`, its step's
`StepOutcome` (`StepStateStore`), and the driver, the only writer of `<run_id>.json`, reads it
when the job run ends (`read_step_state`) and merges it into the run's state. Parallel jobs
never write the same object, so none overwrites another's update.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from pipeline.files import S3_SCHEMES, is_local, local_path, s3_client, s3_not_found, s3_parts
from pipeline.run_id import RUN_ID_RE
from pipeline.settings import ConfigError

__all__ = ["S3_SCHEMES", "is_local", "local_path", "s3_parts"]  # re-exported: where they were first

STATE_FORMAT = 1
# A running run whose liveness cannot be checked (another host, an S3 lake) is presumed dead when
# its driver, which writes a heartbeat every HEARTBEAT_S while it runs, has been silent this long.
HEARTBEAT_S = 60.0
STALE_AFTER_S = 10 * 60.0

# Step statuses. `pending` and `running` remain in the file of a run that was killed.
PENDING, RUNNING, SUCCEEDED, FAILED, SKIPPED = "pending", "running", "succeeded", "failed", "skipped"
# Run statuses: running | succeeded | failed | interrupted.
INTERRUPTED = "interrupted"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class StepOutcome:
    step: str
    status: str = PENDING  # pending | running | succeeded | failed | skipped
    attempts: int = 0
    started_at: str | None = None  # ISO 8601 UTC
    ended_at: str | None = None
    seconds: float = 0.0
    rows_in: int = 0
    rows_out: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_kind: str | None = None  # transient | fatal | upstream | interrupted
    retries: list[dict[str, Any]] = field(default_factory=list)  # {attempt, error, wait_s}
    previous: list[dict[str, Any]] = field(default_factory=list)  # earlier outcomes (resumes)

    def reset_for_rerun(self) -> None:
        """Keep the outcome being replaced in `previous`, and start over."""
        if self.status != PENDING or self.attempts:
            snapshot = {k: v for k, v in asdict(self).items() if k not in ("step", "previous")}
            self.previous.append(snapshot)
        keep = self.previous
        fresh = StepOutcome(self.step)
        for f in fields(self):
            setattr(self, f.name, getattr(fresh, f.name))
        self.previous = keep


@dataclass
class RunState:
    run_id: str
    steps: list[StepOutcome]
    status: str = RUNNING  # running | succeeded | failed | interrupted
    started_at: str | None = None
    ended_at: str | None = None
    window: dict[str, str | None] | None = None  # DateWindow.to_dict()
    executor: str | None = None
    host: str | None = None  # the driver's, for `lakehouse status` to tell a dead run from a live one
    pid: int | None = None
    heartbeat_at: str | None = None  # last write by the driver (ISO 8601 UTC): every change, every minute
    resumes: list[str] = field(default_factory=list)  # when `--resume` picked the run up again
    as_of: str | None = None  # gold's --as-of date (ISO), read by the run's remote jobs
    full_refresh: bool = False  # --full-refresh: the run's remote gold jobs rebuild in full too
    format: int = STATE_FORMAT

    @property
    def failed(self) -> bool:
        return any(s.status in (FAILED, SKIPPED) for s in self.steps)

    def step(self, name: str) -> StepOutcome | None:
        return next((s for s in self.steps if s.step == name), None)

    def unfinished(self) -> list[str]:
        """Steps a resume reruns: everything not succeeded (failed, skipped, and the pending or
        running steps a killed run leaves behind)."""
        return [s.step for s in self.steps if s.status != SUCCEEDED]

    def finish(self) -> None:
        done = all(s.status in (SUCCEEDED, FAILED, SKIPPED) for s in self.steps)
        self.status = (FAILED if self.failed else SUCCEEDED) if done else INTERRUPTED
        self.ended_at = utc_now()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        """Tolerant of older files (missing keys take defaults) and newer ones (unknown keys
        are dropped)."""
        if not isinstance(data, dict) or "run_id" not in data or not isinstance(data.get("steps"), list):
            raise ValueError("not a run state: expected a mapping with run_id and steps")
        step_keys = {f.name for f in fields(StepOutcome)}
        steps = [StepOutcome(**{k: v for k, v in s.items() if k in step_keys}) for s in data["steps"]]
        run_keys = {f.name for f in fields(cls)} - {"steps"}
        return cls(steps=steps, **{k: v for k, v in data.items() if k in run_keys})

    @classmethod
    def from_json(cls, text: str) -> RunState:
        return cls.from_dict(json.loads(text))


class RunNotFound(ConfigError):
    """No state file for the run id asked for."""


class StateStore(Protocol):
    def location(self, run_id: str) -> str: ...
    def save(self, state: RunState) -> None: ...
    def load(self, run_id: str) -> RunState: ...
    def exists(self, run_id: str) -> bool: ...
    def run_ids(self) -> list[tuple[str, float]]:
        """(run id, modification time in epoch seconds) of every stored run."""
        ...


def latest_run_id(store: StateStore) -> str | None:
    """The newest run: by the time in the run id (`YYYYMMDDTHHMMSSZ-xxxxxx`, as the driver makes
    them), for custom ids by the state file's modification time."""
    found = store.run_ids()
    return max(found, key=lambda item: (_run_time(*item), item[0]))[0] if found else None


def _run_time(run_id: str, mtime: float) -> float:
    match = RUN_ID_RE.match(run_id)
    if match:
        return datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    return mtime


def _parse(text: str, where: str, run_id: str) -> RunState:
    try:
        return RunState.from_json(text)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: unreadable run state for {run_id}: {exc}") from exc


def _state_names(names_and_times: list[tuple[str, float]]) -> list[tuple[str, float]]:
    return [
        (name.removesuffix(".json"), mtime)
        for name, mtime in names_and_times
        if name.endswith(".json") and not name.startswith((".", "_"))
    ]


class MemoryStateStore:
    """In-process store for tests and dry runs."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        self.saves = 0

    def location(self, run_id: str) -> str:
        return f"memory://runs/{run_id}.json"

    def save(self, state: RunState) -> None:
        self.files[state.run_id] = state.to_json()
        self.saves += 1

    def exists(self, run_id: str) -> bool:
        return run_id in self.files

    def load(self, run_id: str) -> RunState:
        if run_id not in self.files:
            raise RunNotFound(f"run {run_id} not found: looked for {self.location(run_id)}")
        return _parse(self.files[run_id], self.location(run_id), run_id)

    def run_ids(self) -> list[tuple[str, float]]:
        return [(run_id, float(i)) for i, run_id in enumerate(self.files)]


class LocalStateStore:
    """A local folder, plain Python; atomic replace on every save."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def location(self, run_id: str) -> str:
        return str(self.folder / f"{run_id}.json")

    def save(self, state: RunState) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{state.run_id}.{uuid.uuid4().hex[:8]}.tmp"  # hidden: not a run
        try:
            with open(tmp, "x", encoding="utf-8") as handle:
                handle.write(state.to_json())
            os.replace(tmp, self.location(state.run_id))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def exists(self, run_id: str) -> bool:
        return Path(self.location(run_id)).is_file()

    def load(self, run_id: str) -> RunState:
        path = Path(self.location(run_id))
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RunNotFound(f"run {run_id} not found: looked for {path}") from None
        return _parse(text, str(path), run_id)

    def run_ids(self) -> list[tuple[str, float]]:
        if not self.folder.is_dir():
            return []
        return _state_names([(p.name, p.stat().st_mtime) for p in self.folder.iterdir() if p.is_file()])


class HadoopStateStore:
    """Any Hadoop file system the session can reach (s3:// through EMRFS or S3A, hdfs://, ...)."""

    def __init__(self, spark: Any, folder: str):
        self.spark = spark
        self.folder = folder.rstrip("/")

    def location(self, run_id: str) -> str:
        return f"{self.folder}/{run_id}.json"

    def _fs(self, location: str) -> tuple[Any, Any]:  # as pipeline.storage does
        jvm = self.spark.sparkContext._jvm
        path = jvm.org.apache.hadoop.fs.Path(location)
        return path, path.getFileSystem(self.spark.sparkContext._jsc.hadoopConfiguration())

    def save(self, state: RunState) -> None:
        from pipeline.storage import write_text

        write_text(self.spark, self.location(state.run_id), state.to_json())

    def exists(self, run_id: str) -> bool:
        path, fs = self._fs(self.location(run_id))
        return bool(fs.exists(path))

    def load(self, run_id: str) -> RunState:
        location = self.location(run_id)
        path, fs = self._fs(location)
        if not fs.exists(path):
            raise RunNotFound(f"run {run_id} not found: looked for {location}")
        jvm = self.spark.sparkContext._jvm
        buffer = jvm.java.io.ByteArrayOutputStream()
        stream = fs.open(path)
        try:
            jvm.org.apache.hadoop.io.IOUtils.copyBytes(stream, buffer, 65536, False)
        finally:
            stream.close()
        return _parse(bytes(buffer.toByteArray()).decode("utf-8"), location, run_id)

    def run_ids(self) -> list[tuple[str, float]]:
        path, fs = self._fs(self.folder)
        if not fs.exists(path):
            return []
        return _state_names(
            [
                (status.getPath().getName(), status.getModificationTime() / 1000.0)
                for status in fs.listStatus(path)
                if status.isFile()
            ]
        )


class S3StateStore:
    """s3:// (s3a://, s3n://) through boto3: status and plans without a SparkSession."""

    def __init__(self, folder: str, client: Any = None, storage_options: dict[str, str] | None = None):
        parsed = urlparse(folder)
        self.folder = folder.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self._client = client
        self.storage_options = storage_options

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = s3_client(self.storage_options)
        return self._client

    def _key(self, run_id: str) -> str:
        return f"{self.prefix}/{run_id}.json" if self.prefix else f"{run_id}.json"

    def location(self, run_id: str) -> str:
        return f"{self.folder}/{run_id}.json"

    def save(self, state: RunState) -> None:
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._key(state.run_id),
            Body=state.to_json().encode("utf-8"),
            ContentType="application/json",
        )

    def exists(self, run_id: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(run_id))
        except Exception as exc:  # noqa: BLE001 - botocore ClientError without importing botocore
            if s3_not_found(exc):
                return False
            raise
        return True

    def load(self, run_id: str) -> RunState:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(run_id))["Body"].read()
        except Exception as exc:  # noqa: BLE001
            if s3_not_found(exc):
                raise RunNotFound(f"run {run_id} not found: looked for {self.location(run_id)}") from None
            raise
        return _parse(body.decode("utf-8"), self.location(run_id), run_id)

    def run_ids(self) -> list[tuple[str, float]]:
        prefix = f"{self.prefix}/" if self.prefix else ""
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, Delimiter="/"
        ):
            for obj in page.get("Contents", []):
                found.append((obj["Key"][len(prefix) :], obj["LastModified"].timestamp()))
        return _state_names(found)


def state_store_for(
    runs_location: str, spark: Any = None, storage_options: dict[str, str] | None = None
) -> StateStore:
    """The store for `<lake>/_ops/runs`: a local folder in plain Python; otherwise the Hadoop
    file system of `spark` when there is a session, else boto3 for s3 URIs (reaching the store
    the lake's `storage_options` name)."""
    if is_local(runs_location):
        return LocalStateStore(local_path(runs_location))
    if spark is not None:
        return HadoopStateStore(spark, runs_location)
    if urlparse(runs_location).scheme in S3_SCHEMES:
        return S3StateStore(runs_location, storage_options=storage_options)
    raise ConfigError(
        f"{runs_location}: reading run state without Spark works for local folders and s3:// only"
    )


def step_state_location(runs_location: str, run_id: str, step: str) -> str:
    """`<lake>/_ops/runs/<run_id>/steps/<step>.json`: one step's outcome, written by its job."""
    return f"{runs_location.rstrip('/')}/{run_id}/steps/{step}.json"


class StepStateStore:
    """The state store of a `--member` process (one step of a run a driver elsewhere owns): every
    save writes that step's outcome, and only it, to its step-state file. Reads come from the
    run's store (`runs`), which this process never writes."""

    def __init__(self, runs_location: str, step: str, files: Any, runs: StateStore | None = None):
        self.runs_location = runs_location
        self.step = step
        self.files = files
        self.runs = runs

    def location(self, run_id: str) -> str:
        return step_state_location(self.runs_location, run_id, self.step)

    def save(self, state: RunState) -> None:
        outcome = state.step(self.step)
        if outcome is None:
            raise ValueError(f"step-state file for {self.step}: run {state.run_id} has no such step")
        text = json.dumps(asdict(outcome), indent=2, default=str)
        self.files.write_text(self.location(state.run_id), text, content_type="application/json")

    def exists(self, run_id: str) -> bool:
        return self.runs is not None and self.runs.exists(run_id)

    def load(self, run_id: str) -> RunState:
        if self.runs is None:
            raise RunNotFound(f"run {run_id}: a step-state store reads no run state")
        return self.runs.load(run_id)

    def run_ids(self) -> list[tuple[str, float]]:
        return self.runs.run_ids() if self.runs is not None else []


def read_step_state(files: Any, location: str) -> StepOutcome | None:
    """The outcome a job wrote to its step-state file; None when there is no such file (the job
    died before writing it)."""
    text = files.read_text(location)
    if text is None:
        return None
    data = json.loads(text)
    if not isinstance(data, dict) or "step" not in data:
        raise ValueError(f"{location}: not a step state: expected a mapping with step")
    keys = {f.name for f in fields(StepOutcome)}
    return StepOutcome(**{k: v for k, v in data.items() if k in keys})


def summary_table(state: RunState, error_width: int = 80, full_errors: bool = False) -> str:
    """The per-step table printed at the end of a run and by `lakehouse status`; `full_errors`:
    under it, each failed step's error the column had to clip (root cause, file, hint)."""
    header = ("step", "status", "attempts", "rows in", "rows out", "seconds", "error")
    rows = [
        (
            s.step,
            s.status,
            str(s.attempts),
            f"{s.rows_in:,}",
            f"{s.rows_out:,}",
            f"{s.seconds:.1f}",
            _clip(s.error or "", error_width),
        )
        for s in state.steps
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "-+-".join("-" * w for w in widths)
    text_columns = {0, 1, 6}

    def fmt(row: tuple[str, ...]) -> str:  # text columns left-aligned, figures right-aligned
        cells = zip(row, widths, strict=True)
        return " | ".join(
            v.ljust(w) if i in text_columns else v.rjust(w) for i, (v, w) in enumerate(cells)
        ).rstrip()

    table = [line, fmt(header), line, *[fmt(r) for r in rows], line]
    errors = [(s.step, " ".join(s.error.split())) for s in state.steps if s.status == FAILED and s.error]
    if full_errors:
        table += [f"{step}: {error}" for step, error in errors if len(error) > error_width]
    return "\n".join(table)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def presumed_dead(
    state: RunState,
    *,
    host: str,
    alive: Callable[[int], bool],
    now: datetime,
    stale_after_s: float = STALE_AFTER_S,
) -> str | None:
    """Why a run recorded as running is not (its driver process on this `host` is gone, or its
    heartbeat is older than `stale_after_s`), or None: ended, alive, or no way to tell (another
    host and a state file of a driver without heartbeats)."""
    if state.status != RUNNING:
        return None
    if state.host == host and state.pid:
        return None if alive(state.pid) else f"process {state.pid} on {state.host} is gone"
    if not state.heartbeat_at:
        return None
    silent = (now - datetime.fromisoformat(state.heartbeat_at)).total_seconds()
    if silent <= stale_after_s:
        return None
    return f"no heartbeat for {silent / 60:.0f} min: presumed dead"


def describe_run(state: RunState, location: str, dead: str | None = None) -> str:
    """Heading lines for `lakehouse status`; `dead`: why a run recorded as running is not
    (`presumed_dead`)."""
    counts: dict[str, int] = {}
    for s in state.steps:
        counts[s.status] = counts.get(s.status, 0) + 1
    tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    status = f"dead ({dead}; resume with lakehouse run --resume {state.run_id})" if dead else state.status
    lines = [f"run {state.run_id}: {status} ({tally})"]
    lines.append(f"  started {state.started_at or '?'}, ended {state.ended_at or '-'}")
    if state.window and (state.window.get("start") or state.window.get("end")):
        lines.append(f"  window {state.window.get('start') or '...'} to {state.window.get('end') or '...'}")
    if state.resumes:
        lines.append(f"  resumed {len(state.resumes)}x, last at {state.resumes[-1]}")
    if state.host or state.heartbeat_at:
        lines.append(f"  driver pid {state.pid} on {state.host}, last heartbeat {state.heartbeat_at or '-'}")
    lines.append(f"  state {location}")
    return "\n".join(lines)


def process_alive(pid: int) -> bool:
    """Whether process `pid` of this host exists (signal 0 checks without sending anything)."""
    if pid <= 0:  # 0 and negative numbers address process groups, not a process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
