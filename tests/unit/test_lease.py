"""pipeline.lease: one writer per lake, on a local folder and on the suite's S3 endpoint. Other
processes are played by leases with their own pid, host and clock; the races run in threads,
each with its own client."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from pipeline import cli, entry
from pipeline.app.process import LAKE_HELD, _command_line
from pipeline.driver.state import LocalStateStore, RunState, StepOutcome
from pipeline.files import LocalFiles, files_for
from pipeline.lease import HeldLease, LakeLease, LeaseHeld, LeaseLost, LeaseRecord, MemberLease, stream_scope
from pipeline.settings import ConfigError
from tests.helpers import REPO
from tests.s3_endpoint import env

BUCKET = "lakehouse-lease-test"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TTL = 120.0


class Clock:
    def __init__(self, at: datetime = T0):
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture(params=["folder", "bucket"])
def lake(request, tmp_path, monkeypatch):
    """(lake root, a function making a fresh LakeFiles for it: one per simulated process)."""
    if request.param == "folder":
        return str(tmp_path / "lake"), LocalFiles
    proxy = request.getfixturevalue("s3_endpoint")
    for key, value in env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    if BUCKET not in {b["Name"] for b in proxy.client().list_buckets()["Buckets"]}:
        proxy.create_bucket(BUCKET)
    root = f"s3a://{BUCKET}/{request.node.name.replace('[', '-').rstrip(']')}/lake"
    return root, lambda: files_for(root, proxy.storage_options())


def process(lake, pid, *, host="host-a", clock=None, dead=(), ttl_s=TTL) -> LakeLease:
    """The lease as process `pid` on `host` sees it; pids in `dead` are gone."""
    root, files = lake
    return LakeLease(
        root, files(), ttl_s=ttl_s, host=host, pid=pid, alive=lambda p: p not in dead, now=clock or Clock()
    )


def test_a_second_taker_is_refused_with_the_holder_named(lake):
    first = process(lake, 101).acquire("run-1", "lakehouse run")
    with pytest.raises(LeaseHeld) as refused:
        process(lake, 202).acquire("run-2", "lakehouse maintain")
    message = str(refused.value)
    for part in ("run run-1", "pid 101 on host-a", f"since {first.started_at}", "last heartbeat", "--break"):
        assert part in message
    assert "lakehouse maintain (run run-2) was not started" in message
    assert refused.value.holder == first


def test_a_streaming_tables_lease_is_apart_from_the_lakes(lake):
    """A continuous stream holds its table, not the lake: batch runs go on beside it, while a
    second writer of the same table is refused, naming the stream."""
    root, files = lake

    def table_lease(pid: int) -> LakeLease:
        scope = stream_scope("kafka_events")
        return LakeLease(root, files(), ttl_s=TTL, host="host-a", pid=pid, alive=lambda p: True, scope=scope)

    held = table_lease(101).acquire("stream-run", "kafka_streaming_ingest.py --trigger continuous")
    assert process(lake, 202).acquire("batch-run", "lakehouse run").generation == 1  # the lake is free
    with pytest.raises(LeaseHeld) as refused:
        table_lease(303).acquire("batch-run", "bronze_kafka_events (available-now)")
    assert refused.value.holder == held
    assert f"{stream_scope('kafka_events')} of lake {root.rstrip('/')} is in use" in str(refused.value)
    assert "--break" not in str(refused.value)  # lakehouse lease --break frees the lake's lease only
    assert process(lake, 404).current().run_id == "batch-run"  # each scope has its own generations


def test_a_released_lease_is_taken_by_the_next_run(lake):
    holder = process(lake, 101)
    holder.acquire("run-1", "lakehouse run")
    holder.release()
    assert holder.current().released_at is not None
    second = process(lake, 202).acquire("run-2", "lakehouse run")
    assert (second.run_id, second.generation) == ("run-2", 2)


def test_a_lease_expires_when_its_heartbeat_is_older_than_the_ttl(lake):
    clock = Clock()
    holder = process(lake, 101, host="host-a", clock=clock)
    holder.acquire("run-1", "lakehouse run")
    other = process(lake, 202, host="host-b", clock=clock)  # cannot see host-a's processes
    clock.advance(TTL * 0.75)
    holder.renew()  # the heartbeat pushes the expiry a ttl ahead
    clock.advance(TTL * 0.75)  # 1.5 ttl after taking it, 0.75 after the renewal
    with pytest.raises(LeaseHeld):
        other.acquire("run-2", "lakehouse run")
    clock.advance(TTL * 0.25 + 1)
    assert other.acquire("run-2", "lakehouse run").run_id == "run-2"
    with pytest.raises(LeaseLost, match="run-2"):
        holder.renew()  # the old holder learns it lost the lake


def test_a_lease_expires_when_its_process_on_this_host_is_gone(lake):
    process(lake, 101).acquire("run-1", "lakehouse run")
    with pytest.raises(LeaseHeld):  # another host cannot tell that pid 101 is gone: heartbeat rules
        process(lake, 202, host="host-b", dead={101}).acquire("run-2", "lakehouse run")
    taken = process(lake, 202, dead={101}).acquire("run-2", "lakehouse run")  # same host, fresh heartbeat
    assert (taken.run_id, taken.pid, taken.generation) == ("run-2", 202, 2)


def test_a_live_pid_does_not_keep_a_lease_whose_heartbeat_stopped(lake):
    clock = Clock()
    process(lake, 101, clock=clock).acquire("run-1", "lakehouse run")
    clock.advance(TTL + 1)  # pid 101 alive (or reused by another program), silent for a ttl
    assert process(lake, 202, clock=clock).acquire("run-2", "lakehouse run").run_id == "run-2"


def race(leases: list[LakeLease], prefix: str) -> tuple[list, list, list]:
    """All `leases` acquire at once, each in its thread: (records won, holders named by the
    refusals, other errors)."""
    barrier = threading.Barrier(len(leases))
    won, refused, failed = [], [], []

    def take(lease: LakeLease, n: int) -> None:
        barrier.wait()
        try:
            won.append(lease.acquire(f"{prefix}-{n}", "lakehouse run"))
        except LeaseHeld as exc:
            refused.append(exc.holder)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            failed.append(exc)

    threads = [threading.Thread(target=take, args=(lease, n)) for n, lease in enumerate(leases)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won, refused, failed


@pytest.mark.parametrize("expired", [False, True], ids=["free lake", "expired holder"])
def test_of_takers_racing_exactly_one_wins(lake, expired):
    takers = 4
    for round_ in range(3):
        process(lake, 1).break_lease("the test, between rounds")  # free the last round's winner
        if expired:  # a holder whose process died: every taker sees it expired
            process(lake, 900 + round_).acquire(f"dead-{round_}", "lakehouse run")
        leases = [process(lake, 100 * round_ + n, dead={900 + round_}) for n in range(takers)]
        won, refused, failed = race(leases, f"run-{round_}")
        assert not failed, failed
        assert len(won) == 1, (round_, won)
        assert [h.token for h in refused] == [won[0].token] * (takers - 1)  # all name the winner
        assert process(lake, 1).current() == won[0]


def test_only_the_holder_releases_its_lease(lake):
    clock = Clock()
    first = process(lake, 101, host="host-a", clock=clock)
    first.acquire("run-1", "lakehouse run")
    bystander = process(lake, 303, host="host-a", clock=clock)
    bystander.release()  # holds nothing: changes nothing
    assert first.current().released_at is None
    clock.advance(TTL + 1)
    second = process(lake, 202, host="host-b", clock=clock)
    taken = second.acquire("run-2", "lakehouse run")
    first.release()  # lost it to run-2: must not free run-2's lease
    assert first.current() == taken and first.current().released_at is None
    second.release()
    assert second.current().released_at is not None


def test_a_step_of_a_run_verifies_its_run_holds_the_lease(lake):
    process(lake, 101).acquire("run-1", "lakehouse run")
    job = process(lake, 555, host="emr-node")
    assert job.verify("run-1", "step bronze_fx_rates").run_id == "run-1"  # no second lease taken
    assert job.current().generation == 1
    with pytest.raises(LeaseHeld, match="run run-1"):
        job.verify("run-9", "step bronze_fx_rates of run run-9")
    process(lake, 101).break_lease("test")
    with pytest.raises(ConfigError, match="member of run run-1, but that run holds no lease"):
        job.verify("run-1", "step bronze_fx_rates")


def test_breaking_frees_the_lake_and_the_old_holder_learns_it(lake):
    holder = process(lake, 101, host="host-a")
    held = holder.acquire("run-1", "lakehouse run")
    assert process(lake, 7, host="ops-box").break_lease("ops@ops-box") == held
    current = holder.current()
    assert (current.generation, current.broken_by) == (2, "ops@ops-box")
    assert process(lake, 202, host="host-b").acquire("run-2", "lakehouse run").generation == 3
    with pytest.raises(LeaseLost):
        holder.renew()
    assert process(lake, 7).break_lease("again").run_id == "run-2"
    assert process(lake, 7).break_lease("once more") is None  # the lake was free already


def test_the_held_lease_is_renewed_while_the_block_runs_and_released_after(lake):
    root, files = lake
    lease = LakeLease(root, files(), ttl_s=0.2)  # this process, the real clock: renewed every 50 ms
    with HeldLease(lease, "run-1", "lakehouse run") as taken:
        deadline = time.monotonic() + 30  # bounded wait for the renewing thread under load
        while lease.current().heartbeat_at == taken.heartbeat_at and time.monotonic() < deadline:
            time.sleep(0.05)
        renewed = lease.current()
        assert renewed.heartbeat_at > taken.heartbeat_at and renewed.expires_at > taken.expires_at
        assert renewed.token == taken.token and renewed.released_at is None
    assert lease.current().released_at is not None


def test_a_holder_whose_lease_was_broken_is_told_at_its_next_heartbeat(lake):
    root, files = lake
    lost = threading.Event()
    lease = LakeLease(root, files(), ttl_s=0.2)
    with HeldLease(lease, "run-1", "lakehouse run", on_lost=lambda exc: lost.set()):
        process(lake, 7, host="ops-box").break_lease("ops@ops-box")
        assert lost.wait(30)  # bounded wait for the renewing thread under load
    assert lease.current().broken_by == "ops@ops-box"  # the exit released nothing of the breaker's


def test_a_member_step_works_under_its_drivers_lease_and_stops_when_the_run_loses_it(lake):
    root, files = lake
    driver = LakeLease(root, files(), host="driver-host", pid=101)  # the real clock: a fresh heartbeat
    held = driver.acquire("run-1", "lakehouse run --executor emr-serverless")
    job = LakeLease(root, files(), ttl_s=0.2, host="emr-node")  # checks every 50 ms
    with MemberLease(job, "run-1", "step silver_orders of run run-1") as verified:
        assert verified == held
    assert driver.current() == held  # the step took no lease and released nothing
    lost = []
    with MemberLease(job, "run-1", "step silver_orders of run run-1", on_lost=lost.append):
        driver.release()  # the driver ended (or died and its lease expired) under the step
        deadline = time.monotonic() + 30  # bounded wait for the checking thread under load
        while not lost and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(lost) == 1 and "member of run run-1, but that run holds no lease" in str(lost[0])


def test_the_lease_is_released_when_the_block_fails(lake):
    root, files = lake
    lease = LakeLease(root, files())
    with pytest.raises(SystemExit), HeldLease(lease, "run-1", "lakehouse run"):
        raise SystemExit(143)  # SIGTERM, as the CLI turns it into an exit
    assert lease.current().released_at is not None
    assert LakeLease(root, files()).acquire("run-2", "lakehouse run").generation == 2


def test_old_generations_are_pruned(lake):
    root, files = lake
    for n in range(13):
        lease = process(lake, 100 + n)
        lease.acquire(f"run-{n}", "lakehouse run")
        lease.release()
    names = files().list_names(f"{root}/_ops/lease")
    assert names == [f"{g:010d}.json" for g in range(4, 14)]
    assert LeaseRecord.from_json(files().read_text(f"{root}/_ops/lease/{names[-1]}")).run_id == "run-12"


# ---------------------------------------------------------------- through the CLI (no Spark)


@pytest.fixture
def cli_lake(tmp_path, monkeypatch):
    """(a lake folder, the CLI's arguments for it), with Spark refused: the lease is decided first."""
    from pipeline.context import RunContext

    for name in ("LAKEHOUSE_LAKE_ROOT", "LAKEHOUSE_ENV", "LAKEHOUSE_LAKE_ENGINE"):
        monkeypatch.delenv(name, raising=False)

    def no_spark(*args, **kwargs):
        raise AssertionError("Spark was started")

    monkeypatch.setattr(RunContext, "create", classmethod(no_spark))
    lake = tmp_path / "lake"
    return lake, ["--lake", str(lake), "--config-dir", str(REPO / "config")]


def test_run_maintain_and_a_step_on_a_held_lake_are_refused_naming_the_holder(cli_lake, capsys):
    lake, args = cli_lake
    holder = LakeLease(str(lake), LocalFiles(), pid=os.getppid())  # a live process of this host
    held = holder.acquire("20260301T120000Z-aaaaaa", "lakehouse run")
    for command in (["run"], ["maintain"], ["run", "--resume", held.run_id]):
        assert cli.main([*command, *args]) == LAKE_HELD
        err = capsys.readouterr().err
        assert f"run {held.run_id} (lakehouse run, pid {os.getppid()} on {held.host})" in err
        assert f"since {held.started_at}" in err and "lakehouse lease --break" in err
    assert entry.main("bronze_fx_rates", argv=args) == LAKE_HELD  # spark-submit of an aws/jobs script
    assert f"run {held.run_id} (lakehouse run, pid {os.getppid()}" in capsys.readouterr().err
    assert not (lake / "_ops" / "runs").exists()  # refused before any run state, any table
    assert holder.current() == held


def test_a_member_step_needs_its_run_to_hold_the_lease(cli_lake, capsys):
    lake, args = cli_lake
    member = ["--step", "bronze_fx_rates", "--run-id", "run-1", "--member", *args]
    with pytest.raises(ConfigError, match="member of run run-1, but that run holds no lease"):
        entry.main(argv=member)
    LakeLease(str(lake), LocalFiles(), pid=os.getppid()).acquire("run-2", "lakehouse run")
    assert entry.main(argv=member) == LAKE_HELD
    assert "in use: run run-2" in capsys.readouterr().err


def test_status_and_lease_show_the_holder_and_break_frees_it(cli_lake, capsys):
    lake, args = cli_lake
    LocalStateStore(lake / "_ops" / "runs").save(RunState("run-1", [StepOutcome("bronze_fx_rates")]))
    assert cli.main(["lease", *args]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "lease: free (never taken)",
        "stream kafka_events lease: free (never taken)",
    ]
    held = LakeLease(str(lake), LocalFiles(), pid=os.getppid()).acquire("run-1", "lakehouse run")
    cli.main(["status", *args])
    assert f"  lease: held by {held.describe()}" in capsys.readouterr().out.splitlines()
    cli.main(["status", "--json", *args])
    assert json.loads(capsys.readouterr().out)["lease"]["holder"]["token"] == held.token
    assert cli.main(["lease", "--break", *args]) == 0
    out = capsys.readouterr().out
    assert "broken: it was held by run run-1" in out and "--resume run-1" in out
    assert cli.main(["lease", *args]) == 0
    assert capsys.readouterr().out.startswith("lease: free (released at ")


def test_status_and_lease_show_a_streams_lease_and_break_frees_only_it(cli_lake, capsys):
    lake, args = cli_lake
    LocalStateStore(lake / "_ops" / "runs").save(RunState("run-1", [StepOutcome("bronze_fx_rates")]))
    stream = LakeLease(str(lake), LocalFiles(), pid=os.getppid(), scope=stream_scope("kafka_events"))
    held = stream.acquire("run-s", "bronze_kafka_events (continuous)")
    assert cli.main(["lease", *args]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "lease: free (never taken)",
        f"stream kafka_events lease: held by {held.describe()}",
    ]
    cli.main(["status", *args])
    assert f"  stream kafka_events lease: held by {held.describe()}" in capsys.readouterr().out.splitlines()
    cli.main(["status", "--json", *args])
    shown = json.loads(capsys.readouterr().out)
    assert shown["stream_leases"]["kafka_events"]["holder"]["token"] == held.token
    assert shown["lease"]["holder"] is None
    assert cli.main(["lease", "--break", *args]) == 0  # the lake's: the stream's stays held
    assert "free already; nothing broken" in capsys.readouterr().out
    assert stream.current() == held
    assert cli.main(["lease", "--break", "--stream", "kafka_events", *args]) == 0
    assert "stream kafka_events lease of" in capsys.readouterr().out
    assert cli.main(["lease", "--stream", "kafka_events", *args]) == 0
    assert capsys.readouterr().out.startswith("stream kafka_events lease: free (")
    assert cli.main(["lease", "--stream", "orders", *args]) == 2
    assert "lease --stream orders: not a streamed dataset of " in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["lakehouse", "erase", "--subject", "jane@x.com", "--dry-run"],
        ["lakehouse", "erase", "--subject=jane@x.com"],
        ["lakehouse", "erase", "--subj", "jane@x.com"],  # argparse takes a prefix too
        ["/usr/bin/lakehouse", "erase", "--lake", "/l", "--sub=jane@x.com"],
    ],
)
def test_the_lease_records_an_erasure_command_without_its_subject(argv):
    """The lease file keeps the command line (ten generations) and `lakehouse lease`, `status` and
    every refused run print it: an erasure's subject (an email or id) must not be in it."""
    text = _command_line(argv)
    assert "jane" not in text and "<redacted>" in text
    assert text.startswith("lakehouse erase")


def test_the_lease_records_other_commands_as_they_are():
    argv = ["lakehouse", "run", "--only", "silver_contacts", "--start-date", "2026-01-01"]
    assert _command_line(argv) == " ".join(argv)


def test_a_lost_lease_ends_a_run_whose_sigint_is_ignored():
    """A run started in the background ignores SIGINT: the lost lease still ends it, as the
    SIGTERM exit every lease holder records as interrupted (before: nothing happened)."""
    import subprocess
    import sys

    script = (
        "import signal, sys, threading\n"
        "from pipeline.app.process import sigterm_as_exit, stop_run\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"  # as for a run started in the background
        "threading.Timer(0.3, stop_run, args=(RuntimeError('lease taken over'),)).start()\n"
        "try:\n"
        "    with sigterm_as_exit():\n"  # as every lease holder runs
        "        while True: threading.Event().wait(0.05)\n"  # a holder at work
        "except SystemExit as exc:\n"
        "    print('interrupted', exc.code, flush=True)\n"
        "    sys.exit(7)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20)
    assert (done.returncode, done.stdout.strip()) == (7, "interrupted 143"), done.stderr
    assert "lease taken over; stopping the run" in done.stderr


def test_a_lost_lease_cancels_a_running_spark_job_and_ends_the_run():
    """The main thread blocked in a Spark action (a task that would run ten minutes): the lost
    lease cancels the job from the heartbeat thread and ends the main thread's call at once, as
    an exit the runner records as interrupted, not a step that finishes (and commits) later."""
    import subprocess
    import sys

    script = (
        "import sys, threading, time\n"
        "from pyspark.sql import SparkSession\n"
        "from pipeline.app.process import sigterm_as_exit, stop_run\n"
        "spark = SparkSession.builder.master('local[1]').config('spark.ui.enabled', 'false').getOrCreate()\n"
        "threading.Timer(2, stop_run, args=(RuntimeError('lease taken over'),)).start()\n"
        "started = time.monotonic()\n"
        "try:\n"
        "    with sigterm_as_exit():\n"
        "        spark.range(1).rdd.map(lambda x: time.sleep(600)).collect()\n"
        "except SystemExit as exc:\n"
        "    print('interrupted', exc.code, time.monotonic() - started < 60, flush=True)\n"
        "    sys.exit(7)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert (done.returncode, done.stdout.strip()) == (7, "interrupted 143 True"), done.stderr[-3000:]


def test_a_job_submitted_after_the_lease_was_lost_is_cancelled_too():
    """A step thread beside the main one (or the main thread inside the call that is about to
    submit its job) starts a Spark job after the lost lease's first cancel: it is cancelled
    as well, not left to run (and commit) while the run exits."""
    import subprocess
    import sys

    script = (
        "import sys, threading, time\n"
        "from pyspark.sql import SparkSession\n"
        "from pipeline.app.process import sigterm_as_exit, stop_run\n"
        "spark = SparkSession.builder.master('local[1]').config('spark.ui.enabled', 'false').getOrCreate()\n"
        "try:\n"
        "    with sigterm_as_exit():\n"
        "        stopper = threading.Thread(target=stop_run, args=(RuntimeError('lease taken over'),))\n"
        "        stopper.start(); stopper.join(); time.sleep(30)\n"
        "except SystemExit:\n"  # the main thread is leaving; a step thread submits its next job
        "    pass\n"
        "ended = []\n"
        "def step():\n"
        "    try:\n"
        "        spark.range(1).rdd.map(lambda x: time.sleep(600)).collect()\n"
        "    except Exception as exc:\n"
        "        ended.append('cancelled' in str(exc))\n"
        "late = threading.Thread(target=step)\n"
        "started = time.monotonic()\n"
        "late.start(); late.join(120)\n"
        "print('late job', ended, time.monotonic() - started < 60, flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert done.stdout.strip() == "late job [True] True", (done.stdout, done.stderr[-3000:])
