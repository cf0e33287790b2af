"""What the benchmarks share: the peak-memory sampler, a stopwatch, the generated landing zone,
the benchmark's RunContext (one SparkSession per benchmark process) and where results go.

The benchmarks run as scripts (`python bench/bench_<name>.py`), so this module is imported as
`common`: the script's folder is first on sys.path.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import psutil
from pyspark.sql import SparkSession

from pipeline.catalog import load_catalog
from pipeline.context import RunContext
from pipeline.generate import generate
from pipeline.lake import open_lake
from pipeline.settings import load_settings
from pipeline.spark import build_spark

RESULTS = Path(__file__).parent / "results"
ENGINES = ("delta-spark", "delta-rs")


class PeakMemory:
    """Peak resident memory of this process and its children (the JVM), sampled every 50 ms.

    `peak` is the largest sum; `at_peak` splits that sample by process (PROCESS_KINDS: this
    driver Python, the Spark JVM, Python workers, anything else) and `peaks` holds each kind's
    own largest sample, so a report says which process grows with the data.

    Left out: the JVM's forks. It forks for shell commands (Hadoop's local file system runs
    chmod, ls, ...); until the fork execs, its RSS shows the JVM's whole resident set again
    (shared copy-on-write pages), so counting it counts the JVM twice. Under load a fork can
    wait over a second to exec (seen: 5.6 GB "processes" named after the forking thread, or
    jspawnhelper), so they are told by their parent, not their age: a child of the JVM that is
    not Python. `min_child_age_s` also leaves out children younger than this.
    """

    def __init__(self, min_child_age_s: float = 1.0):
        self.peak = 0
        self.at_peak: dict[str, int] = dict.fromkeys(PROCESS_KINDS, 0)
        self.peaks: dict[str, int] = dict.fromkeys(PROCESS_KINDS, 0)
        self.min_child_age_s = min_child_age_s
        self._stop = threading.Event()

    def _rss(self) -> dict[str, int]:
        me = psutil.Process()
        parts = dict.fromkeys(PROCESS_KINDS, 0)
        parts["driver"] = me.memory_info().rss
        now = time.time()
        jvms: set[int] = set()
        for child in me.children(recursive=True):  # parents before their children
            with contextlib.suppress(psutil.NoSuchProcess):  # a Python worker may just have exited
                kind = _process_kind(child, me.pid, jvms)
                if kind == "jvm":
                    jvms.add(child.pid)
                if kind is None or (
                    self.min_child_age_s and now - child.create_time() < self.min_child_age_s
                ):
                    continue
                parts[kind] += child.memory_info().rss
        return parts

    def _take(self) -> None:
        parts = self._rss()
        for kind, rss in parts.items():
            self.peaks[kind] = max(self.peaks[kind], rss)
        if sum(parts.values()) > self.peak:
            self.peak, self.at_peak = sum(parts.values()), parts

    def __enter__(self):
        self._take()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.05):
            self._take()

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def breakdown_mb(self) -> dict[str, dict[str, float]]:
        """{"at_peak": MB per kind in the peak sample, "peaks": each kind's own peak MB}."""
        return {
            "at_peak": {k: round(v / 2**20, 1) for k, v in self.at_peak.items()},
            "peaks": {k: round(v / 2**20, 1) for k, v in self.peaks.items()},
        }


# The processes a run's memory is split into: this Python (the Spark driver's Python side), the
# JVM it launched (driver and local executors), PySpark's Python workers, and anything else.
PROCESS_KINDS = ("driver", "jvm", "python_workers", "other")


def _process_kind(process: psutil.Process, me: int, jvms: set[int]) -> str | None:
    """The kind of one of this process's descendants; None for a fork of the JVM (not counted)."""
    python = process.name().startswith("python")
    if process.ppid() in jvms and not python:
        return None
    if process.ppid() == me and process.name() == "java":
        return "jvm"
    return "python_workers" if python else "other"


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every benchmark takes; a benchmark adds its own."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", type=Path, help="keep the lake here (default: a temp folder, removed)")
    return parser


def add_engine_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=ENGINES, help="lake engine (default: the local settings', auto)")


def measure(fn: Callable[[], Any], min_child_age_s: float = 1.0) -> tuple[Any, float, float]:
    """(fn's result, seconds, peak MB of driver Python + JVM while it ran); see PeakMemory."""
    with PeakMemory(min_child_age_s) as mem:
        started = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - started
    return result, seconds, mem.peak / 2**20


def generate_landing(work: Path, scale: float, seed: int, *, skew: bool = False) -> tuple[Path, dict, float]:
    """A fresh lake folder `<work>/lake` with a generated landing zone; prints one line.
    Returns (lake root, manifest, generation seconds)."""
    lake = work / "lake"
    shutil.rmtree(lake, ignore_errors=True)
    started = time.perf_counter()
    # In a process of its own: the generator's memory (the arrays of a scale-10 landing zone left
    # this process 0.74 GB larger) is not the pipeline's, which the peak-memory figures measure.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        manifest = child.submit(generate, lake / "landing", scale=scale, seed=seed, skew=skew).result()
    seconds = time.perf_counter() - started
    total = sum(d["records"] for d in manifest["datasets"].values())
    print(
        f"generate: scale {scale}{', skewed orders' if skew else ''}, {total:,} records in {seconds:.1f}s "
        f"({total / seconds:,.0f} records/s)"
    )
    return lake, manifest, seconds


def bench_context(lake: Path, run_id: str = "bench", engine: str | None = None) -> RunContext:
    """A RunContext on the local settings with `lake` as lake root, in a new SparkSession, on
    `engine` (default: the settings')."""
    settings = load_settings("local", lake_root=str(lake))
    spark = build_spark(settings)
    return RunContext(
        settings,
        spark,
        open_lake(engine or settings.lake.engine, spark, max_bytes=settings.lake.delta_rs_max_bytes),
        load_catalog(settings.config_path(settings.datasets_file)),
        run_id,
    )


def context_like(ctx: RunContext, run_id: str, lake: Path | None = None) -> RunContext:
    """Another run (and optionally another lake root) in the same SparkSession and lake engine."""
    settings = ctx.settings if lake is None else load_settings("local", lake_root=str(lake))
    return RunContext(settings, ctx.spark, ctx.lake, ctx.catalog, run_id)


def warm_up(spark: SparkSession) -> None:
    """JVM warm-up, not reported."""
    measure(lambda: spark.range(100_000).selectExpr("sum(id)").collect())


def results_file(name: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    return RESULTS / name


def write_results(name: str, figures: dict) -> Path:
    """bench/results/<name> as indented JSON (numbers as they are, anything else as text)."""
    path = results_file(name)
    path.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return path
