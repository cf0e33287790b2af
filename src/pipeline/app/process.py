"""What every process that writes to the lake does around its work: UTC and JSON logging, SIGTERM
as an exit (so the run is recorded as interrupted), the lake's lease (one writer per lake)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from pipeline.settings import Settings

LAKE_HELD = 3  # exit status of a run refused because another holds the lake's lease


def configure_process(level: str) -> None:
    # Pipeline processes work in UTC end to end (Python, JVM, Spark session, JDBC sessions).
    os.environ["TZ"] = "UTC"
    time.tzset()
    from pipeline.observability.logging import configure_json_logging

    configure_json_logging(level.upper())  # one JSON object per line, with run/step/dataset/layer
    logging.getLogger("py4j").setLevel(logging.WARNING)


def hold_lake(settings: Settings, run_id: str):
    """`with hold_lake(settings, run_id):` the lake's lease (pipeline.lease) for a writer of the
    lake: taken (LeaseHeld, naming the holder, when another holds it), renewed, released at the
    end; a writer whose lease is taken over is interrupted."""
    from pipeline.lease import HeldLease, lease_for

    return HeldLease(lease_for(settings), run_id, _command_line(), on_lost=stop_run)


def hold_continuous_streams(settings: Settings, run_id: str, datasets: list[str]):
    """`with hold_continuous_streams(settings, run_id, datasets):` a continuous stream's leases: its
    tables', not the lake's (pipeline.lease.stream_scope), taken before Spark starts (LeaseHeld,
    naming the holder, when another writes a table), renewed, released at the end."""
    from pipeline.bronze.kafka import stream_command
    from pipeline.lease import hold_streams

    return hold_streams(
        settings, run_id, datasets, lambda dataset: stream_command(dataset, "continuous"), stop_run
    )


# Options whose value is personal data: the lease file keeps the command line (ten generations),
# and `lakehouse lease`/`status` and every refused run print it.
PERSONAL_OPTIONS = ("--subject",)


def _command_line(argv: list[str] | None = None) -> str:
    """What holds the lease, as the lease shows it: this process's command, clipped, the values of
    PERSONAL_OPTIONS (`erase --subject <email>`) left out."""
    argv = list(sys.argv if argv is None else argv)
    words: list[str] = []
    for word in argv[1:]:
        if words and _personal(words[-1]) and "=" not in words[-1]:
            word = "<redacted>"
        elif _personal(word) and "=" in word:
            word = word.split("=", 1)[0] + "=<redacted>"
        words.append(word)
    program = Path(argv[0]).name
    text = " ".join(["lakehouse" if program == "__main__.py" else program, *words])  # python -m
    return text if len(text) <= 160 else text[:157] + "..."


def _personal(word: str) -> bool:
    """`word` names a PERSONAL_OPTIONS option, as argparse reads it: whole or a prefix (`--subj`)."""
    name = word.split("=", 1)[0]
    return len(name) > 2 and name.startswith("--") and any(o.startswith(name) for o in PERSONAL_OPTIONS)


def stop_run(lost: Exception) -> None:
    """The lease was taken over (this run's heartbeat stopped for a ttl, or it was broken): stop
    writing. Interrupting the main thread records the run as interrupted, to resume later.

    Called in the heartbeat thread. It first cancels every running Spark job over its own py4j
    connection, so a main thread blocked in a Spark action (or waiting on step threads running
    one) gets its call back at once, and keeps cancelling the jobs submitted after that until the
    process ends (`_keep_cancelling`). Then it raises SIGTERM in the main thread at its next
    bytecode, which `sigterm_as_exit` (every lease holder runs under it) turns into SystemExit.
    Not a signal sent to the thread: one that ends a py4j call mid-answer leaves its connection
    unreadable, and py4j's own error handling then fails in place of the exit. Not SIGINT: it is
    ignored in a run started in the background. A Delta commit the JVM already began still lands."""
    import _thread

    print(f"error: {lost}; stopping the run", file=sys.stderr, flush=True)
    _cancel_spark_jobs()
    threading.Thread(target=_keep_cancelling, name="lost-lease-cancel", daemon=True).start()
    handled = callable(signal.getsignal(signal.SIGTERM))  # sigterm_as_exit's handler
    _thread.interrupt_main(signal.SIGTERM if handled else signal.SIGINT)


# After a lost lease, how often jobs submitted since are cancelled.
CANCEL_EVERY_S = 0.5


def _keep_cancelling() -> None:
    """Cancel, until the process ends, every Spark job submitted after the lease was lost: one the
    main thread was about to submit when its call began (the exit waits for the call to return,
    which waited for the job: ten minutes in a CI run), or one a step thread beside it submits."""
    while _cancel_spark_jobs(quiet=True):
        time.sleep(CANCEL_EVERY_S)


def _cancel_spark_jobs(quiet: bool = False) -> bool:
    """Whether there was a SparkContext whose jobs could be cancelled."""
    try:
        from pyspark import SparkContext

        context = SparkContext._active_spark_context
        if context is None:
            return False
        context.cancelAllJobs()
        return True
    except Exception as exc:  # noqa: BLE001 - stopping goes on without it
        if not quiet:
            print(f"warning: could not cancel the running Spark jobs: {exc}", file=sys.stderr, flush=True)
        return False


@contextlib.contextmanager
def sigterm_as_exit():
    """SIGTERM (YARN, a CI timeout, `kill`) raises SystemExit, so the runner records the run as
    interrupted before the process goes; a resume then picks it up."""

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
