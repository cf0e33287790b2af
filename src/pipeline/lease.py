"""One writer per lake: the lease a run, a step run on its own and `lakehouse maintain` hold on
the lake while they may write to it.

The lease is a sequence of small JSON files under `<lake>/_ops/lease/`, one per holder,
`<generation>.json` (zero-padded, so names sort as numbers). The highest generation is the
lease: its holder (run id, host, pid, command, since) renews `heartbeat_at`/`expires_at` every
quarter of the ttl while it lives and marks it released when it ends. Taking the lease is
creating the next generation with `LakeFiles.create_text` (create-if-absent: a hard link in a
folder, PutObject `If-None-Match: *` on S3), so of two takers exactly one wins, whether the lake
was free or its holder expired. Only a holder ever writes its own generation file, so a holder
never releases (or renews) a lease that another took over: it sees a higher generation instead.
No compare-and-swap is needed, which matters: the suite's S3 endpoint does not apply If-Match
atomically (pipeline.files).

A lease is free when its holder released it, or expired (`expired_because`): its process on this
host is gone, or its heartbeat is older than the ttl (`lake.lease_ttl_s`). Holders compare their
clocks: hosts whose clocks differ by a sizeable part of the ttl see leases expire early or late.

`HeldLease` holds it for a with-block; `MemberLease` is the step of a run whose driver runs
elsewhere (an EMR job run): it takes none, and watches that its run still holds it. Nothing here
imports pyspark.

A streaming table has a lease of its own (`scope`, `stream_scope(dataset)`, under
`_ops/lease/<scope>/`): whatever writes it holds that one, the Kafka step of a batch run as a
`--trigger continuous` stream. So a stream that runs for days holds its table, not the lake:
batch runs go on beside it, and their Kafka step, finding the stream's lease held, leaves the
table to the stream (pipeline.bronze.kafka).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.driver.state import process_alive, utc_now
from pipeline.files import LakeFiles, files_for
from pipeline.settings import ConfigError, Settings

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 120.0
KEEP_GENERATIONS = 10  # earlier holders kept for `lakehouse lease` to show the history
_NAME = re.compile(r"^(\d{10})\.json$")


@dataclass(frozen=True)
class LeaseRecord:
    generation: int
    run_id: str
    token: str  # this acquisition's; a holder only ever writes the generation carrying its token
    host: str
    pid: int
    command: str
    started_at: str
    heartbeat_at: str
    expires_at: str
    ttl_s: float
    released_at: str | None = None
    broken_by: str | None = None  # `lakehouse lease --break`: who freed it

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> LeaseRecord:
        data = json.loads(text)
        keys = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in keys})

    def describe(self) -> str:
        return (
            f"run {self.run_id} ({self.command}, pid {self.pid} on {self.host}) since {self.started_at}, "
            f"last heartbeat {self.heartbeat_at}, expires {self.expires_at}"
        )


class LeaseHeld(ConfigError):
    """Another run holds the lease; the message names it and how to proceed."""

    def __init__(self, lake: str, holder: LeaseRecord, wanted_by: str, scope: str = ""):
        self.holder = holder
        if scope:
            what, show = (
                f"{scope} of lake {lake}",
                f"`lakehouse status {holder.run_id}`, {lake}/_ops/lease/{scope}/",
            )
            free = f"it expires {holder.ttl_s:.0f} s after its holder's last heartbeat"
        else:
            what, show = f"lake {lake}", f"`lakehouse status {holder.run_id}`, `lakehouse lease`"
            free = (
                f"if its process is certainly gone (another host, a machine that died) and you cannot wait "
                f"{holder.ttl_s:.0f} s for the lease to expire, free it with `lakehouse lease --break --lake {lake}`"
            )
        super().__init__(
            f"{what} is in use: {holder.describe()}. One writer at a time: {wanted_by} was not "
            f"started and touched no table. Wait for that run to end ({show}); {free}"
        )


class LeaseLost(RuntimeError):
    """The lease this process held was taken over (it expired, or was broken)."""


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stream_scope(dataset: str) -> str:
    """The lease scope of a streaming bronze table: held by whatever writes it."""
    return f"stream-{dataset}"


class LakeLease:
    """The lease of the lake at `lake_root`, or with `scope` of one part of it (a streaming
    table). `host`, `pid`, `alive` and `now` are parameters so tests can play other processes
    and clocks."""

    def __init__(
        self,
        lake_root: str,
        files: LakeFiles,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        host: str | None = None,
        pid: int | None = None,
        alive: Callable[[int], bool] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        scope: str = "",
    ):
        if ttl_s <= 0:
            raise ConfigError(f"lake.lease_ttl_s: expected a positive number of seconds, got {ttl_s}")
        self.lake_root = lake_root.rstrip("/")
        self.scope = scope
        self.folder = f"{self.lake_root}/_ops/lease" + (f"/{scope}" if scope else "")
        self.files = files
        self.ttl_s = ttl_s
        self.host = host or socket.gethostname()
        self.pid = pid or os.getpid()
        self.alive = alive or process_alive
        self.now = now
        self.held: LeaseRecord | None = None

    def _location(self, generation: int) -> str:
        return f"{self.folder}/{generation:010d}.json"

    def _generations(self) -> list[int]:
        return sorted(int(m.group(1)) for n in self.files.list_names(self.folder) if (m := _NAME.match(n)))

    def current(self) -> LeaseRecord | None:
        """The highest generation's record: the lease (held, expired or released); None when the
        lake never had one."""
        for generation in reversed(self._generations()):
            text = self.files.read_text(self._location(generation))
            if text is not None:  # None: pruned between listing and reading; an older one is shown
                return LeaseRecord.from_json(text)
        return None

    def expired_because(self, record: LeaseRecord) -> str | None:
        """Why `record` no longer holds the lake (released, its process on this host gone, its
        heartbeat older than its ttl), or None while it does. Unlike a run's liveness
        (`driver.state.presumed_dead`), a live pid on this host does not keep a lease whose
        heartbeat stopped: the pid may have been reused, or the process hangs."""
        if record.released_at:
            return f"released at {record.released_at}" + (
                f" by {record.broken_by}" if record.broken_by else ""
            )
        if record.host == self.host and not self.alive(record.pid):
            return f"process {record.pid} on {record.host} is gone"
        silent = (self.now() - datetime.fromisoformat(record.heartbeat_at)).total_seconds()
        if silent > record.ttl_s:
            return f"no heartbeat for {silent:.0f} s (ttl {record.ttl_s:.0f} s)"
        return None

    def is_this_process(self, record: LeaseRecord, run_id: str) -> bool:
        """`record` is this process's, for `run_id` (a holder further up the stack took it)."""
        return (record.host, record.pid, record.run_id) == (self.host, self.pid, run_id)

    def _record(self, generation: int, run_id: str, command: str, **extra: Any) -> LeaseRecord:
        now = self.now()
        return LeaseRecord(
            generation=generation,
            run_id=run_id,
            token=uuid.uuid4().hex,
            host=self.host,
            pid=self.pid,
            command=command,
            started_at=_iso(now),
            heartbeat_at=_iso(now),
            expires_at=_iso(now + timedelta(seconds=self.ttl_s)),
            ttl_s=self.ttl_s,
            **extra,
        )

    def _take(
        self, record_for: Callable[[int], LeaseRecord], refuse: Callable[[LeaseRecord], None]
    ) -> LeaseRecord:
        """Create the next generation after the current one (when `refuse` lets it be), retrying
        when another taker created it first; that winner then meets `refuse`."""
        while True:
            current = self.current()
            if current is not None:
                refuse(current)
            record = record_for(current.generation + 1 if current else 1)
            if not self.files.create_text(self._location(record.generation), record.to_json()):
                continue  # another taker won this generation: judge the winner
            if self._generations()[-1] == record.generation:
                return record
            # This taker stalled while later takers came and went, and recreated a generation
            # pruned since: the higher one is the lease. Judge it.

    def acquire(self, run_id: str, command: str) -> LeaseRecord:
        """Take the lease for `run_id`, or raise LeaseHeld naming the live holder."""

        def refuse(current: LeaseRecord) -> None:
            if self.expired_because(current) is None:
                raise LeaseHeld(self.lake_root, current, f"{command} (run {run_id})", self.scope)

        self.held = self._take(lambda generation: self._record(generation, run_id, command), refuse)
        self._prune(self.held.generation)
        return self.held

    def renew(self) -> None:
        """Push the held lease's expiry a ttl ahead; LeaseLost when another holder took it over."""
        held = self._still_held()
        now = self.now()
        self.held = replace(
            held, heartbeat_at=_iso(now), expires_at=_iso(now + timedelta(seconds=self.ttl_s))
        )
        self.files.write_text(self._location(held.generation), self.held.to_json(), "application/json")

    def release(self) -> None:
        """Mark the held lease released (no-op when this process holds none, or lost it)."""
        if self.held is None:
            return
        try:
            held = self._still_held()
        except LeaseLost as exc:
            log.warning("%s", exc)
            return
        finally:
            self.held = None
        released = replace(held, released_at=utc_now())
        self.files.write_text(self._location(held.generation), released.to_json(), "application/json")

    def _still_held(self) -> LeaseRecord:
        assert self.held is not None, "renew/release without acquire"
        current = self.current()
        if current is None or current.generation != self.held.generation or current.token != self.held.token:
            raise LeaseLost(
                f"lake {self.lake_root}: the lease of run {self.held.run_id} was taken over"
                + (f" by {current.describe()}" if current else "")
                + f" (its heartbeat was older than the ttl of {self.ttl_s:.0f} s, or it was broken)"
            )
        return self.held

    def break_lease(self, by: str) -> LeaseRecord | None:
        """Free the lake whoever holds it (the holder is certainly gone): a released generation
        after the current one, so a live holder learns at its next heartbeat that it lost the
        lease. The record broken, or None when the lake was free already."""
        broken: list[LeaseRecord] = []

        def note(current: LeaseRecord) -> None:
            broken[:] = [current] if self.expired_because(current) is None else []

        self._take(
            lambda generation: self._record(
                generation, "-", "lakehouse lease --break", released_at=utc_now(), broken_by=by
            ),
            note,
        )
        return broken[0] if broken else None

    def verify(self, run_id: str, wanted_by: str) -> LeaseRecord:
        """The live lease held by `run_id` (a step run as a member of that run); LeaseHeld when
        another run holds it, ConfigError when none does."""
        current = self.current()
        if current is not None and self.expired_because(current) is None:
            if current.run_id == run_id:
                return current
            raise LeaseHeld(self.lake_root, current, wanted_by, self.scope)
        raise ConfigError(
            f"lake {self.lake_root}: {wanted_by} runs as a member of run {run_id}, but that run holds "
            "no lease on the lake (its driver ended or died). Start the step through its driver "
            "(`lakehouse run --resume`), or on its own without --member"
        )

    def _prune(self, latest: int) -> None:
        try:
            for generation in self._generations():
                if generation <= latest - KEEP_GENERATIONS:
                    self.files.delete(self._location(generation))
        except Exception as exc:  # noqa: BLE001 - housekeeping: the lease is taken, the run goes on
            log.warning("could not remove old lease records under %s: %s", self.folder, exc)


def lease_for(settings: Settings, **kwargs: Any) -> LakeLease:
    """The lake's lease, or a part's with `scope=` (`stream_scope`)."""
    return LakeLease(
        settings.lake.root,
        files_for(settings.lake.root, settings.lake.storage_options),
        ttl_s=settings.lake.lease_ttl_s,
        **kwargs,
    )


class HeldLease:
    """`with HeldLease(lease, run_id, command):` the lease held for the block, renewed every
    quarter of the ttl by a daemon thread (one missed renewal still leaves three quarters), and
    released at the end (normal exit, an exception, SIGTERM as SystemExit). `on_lost`: called
    in the renewing thread when another holder took over (the CLI interrupts the run)."""

    def __init__(
        self, lease: LakeLease, run_id: str, command: str, on_lost: Callable[[Exception], None] | None = None
    ):
        self.lease, self.run_id, self.command = lease, run_id, command
        self.on_lost = on_lost
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _start(self) -> LeaseRecord:
        return self.lease.acquire(self.run_id, self.command)

    def _check(self) -> None:
        self.lease.renew()

    def _end(self) -> None:
        self.lease.release()

    def __enter__(self) -> LeaseRecord:
        record = self._start()
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
        self._thread.start()
        return record

    def _beat(self) -> None:
        while not self._stop.wait(self.lease.ttl_s / 4):
            try:
                self._check()
            except (LeaseLost, ConfigError) as exc:  # taken over; a member: its run holds it no more
                log.error("%s", exc)
                if self.on_lost is not None:
                    self.on_lost(exc)
                return
            except Exception as exc:  # noqa: BLE001 - a store hiccup; the next beat may pass
                log.warning("could not check the lease of run %s: %s", self.run_id, exc)

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._end()


class MemberLease(HeldLease):
    """`with MemberLease(lease, run_id, what):` a step of run `run_id` whose driver runs elsewhere
    (`--member`, an EMR job run) works under the driver's lease and takes none: the run must hold
    it at the start (LeaseHeld or ConfigError otherwise) and still hold it every quarter of the
    ttl, else `on_lost` (the CLI interrupts the step: its driver died or lost the lake)."""

    def _start(self) -> LeaseRecord:
        return self.lease.verify(self.run_id, self.command)

    def _check(self) -> None:
        self.lease.verify(self.run_id, self.command)

    def _end(self) -> None:
        pass  # the driver's to release


@contextlib.contextmanager
def hold_streams(
    settings: Settings,
    run_id: str,
    datasets: list[str],
    command: Callable[[str], str],
    on_lost: Callable[[Exception], None] | None = None,
) -> Iterator[None]:
    """`with hold_streams(...):` the stream leases of `datasets` (their bronze tables), each held
    as `HeldLease` holds one, as `command(dataset)`; LeaseHeld, naming the holder, before any is
    written when one is held elsewhere."""
    with contextlib.ExitStack() as stack:
        for dataset in datasets:
            lease = lease_for(settings, scope=stream_scope(dataset))
            stack.enter_context(HeldLease(lease, run_id, command(dataset), on_lost=on_lost))
        yield
