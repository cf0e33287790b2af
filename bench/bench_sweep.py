#!/usr/bin/env python
"""Scale sweep: bench_pipeline.py at each of --scales on each lake engine, each in its own process
(so every first full run is cold and every peak is that run's own), then one summary:

1. Per engine and scale: the cold full run's seconds per layer, rows in per second, peak memory
   (driver Python + JVM) and the data files the run left per table.
2. Issue 11's figures per engine and scale (ratios within one run, a warm full run as the
   denominator of the no-change and 1 % increment ratios), and across scales: the largest scale's
   cold full run over the smallest's, in time and in peak memory, next to the data's own ratio.

A run that fails (delta-rs refuses writes above lake.delta_rs_max_bytes: it is the engine for
small data) is reported as such, and the sweep goes on. Figures only; nothing here asserts a time.
Results: bench/results/pipeline_<engine>_scale<S>.json per run, bench/results/sweep.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import ENGINES, results_file, write_results
from dag_runs import LAYERS

HERE = Path(__file__).parent
REFUSED = "refused: above lake.delta_rs_max_bytes or the driver's memory"


def run_one(
    scale: float, engine: str, seed: int, only: list[str] | None, cold_only: bool, reuse: bool
) -> dict:
    """bench_pipeline.py in a fresh process, its output passed through; its results, or
    {"failed": why} (REFUSED when delta-rs refused a write above its byte limit or one that did
    not fit the driver's memory: its LakeError names lake.delta_rs_max_bytes). `reuse`: the
    results an earlier run left, when there are any."""
    saved = results_file(f"pipeline_{engine}_scale{scale}.json")
    if reuse and saved.exists():
        print(f"\n===== scale {scale} on {engine}: results of an earlier run, {saved} =====", flush=True)
        return json.loads(saved.read_text())
    print(f"\n===== bench_pipeline.py --scale {scale} --engine {engine} =====", flush=True)
    command = [sys.executable, str(HERE / "bench_pipeline.py"), "--scale", str(scale), "--engine", engine, "--seed", str(seed)]  # fmt: skip
    if only:
        command += ["--only", *only]
    if cold_only:
        command.append("--cold-only")
    refused = False
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:  # type: ignore[union-attr]
            print(line, end="", flush=True)
            refused = refused or "lake.delta_rs_max_bytes" in line
    if proc.returncode != 0:
        why = REFUSED if refused else f"failed (exit {proc.returncode})"
        print(f"===== scale {scale} on {engine}: {why} =====")
        return {"failed": why}
    return json.loads(results_file(f"pipeline_{engine}_scale{scale}.json").read_text())


def print_runs(results: dict[str, dict[float, dict]]) -> None:
    print("\n1. cold full run per engine and scale")
    header = (
        f"{'engine':<12} {'scale':>6} {'records':>11} {'seconds':>8} "
        + " ".join(f"{layer + ' s':>9}" for layer in LAYERS)
        + f" {'rows in/s':>10} {'peak MB':>8} {'files':>6}"
    )
    print(header)
    print("-" * len(header))
    for engine, by_scale in results.items():
        for scale, r in by_scale.items():
            if "failed" in r:
                print(f"{engine:<12} {scale:>6} {r['failed']}")
                continue
            full = r["full"]
            layers = " ".join(
                f"{full['layers'].get(layer, {}).get('seconds', 0.0):>9.1f}" for layer in LAYERS
            )
            files = sum(t["files"] for t in r["files_after_full"].values())
            print(
                f"{engine:<12} {scale:>6} {r['landing_records']:>11,} {full['wall_s']:>8.1f} {layers} "
                f"{full['total']['rows_in_s']:>10,.0f} {full['total']['peak_mb']:>8,.0f} {files:>6,}"
            )
    print("\ndata files per table after the cold full run")
    columns = [(e, s) for e, by_scale in results.items() for s, r in by_scale.items() if "failed" not in r]
    tables = sorted({t for e, s in columns for t in results[e][s]["files_after_full"]})
    header = f"{'table':<32} " + " ".join(f"{f'{e[6:]} {s}':>11}" for e, s in columns)
    print(header)
    print("-" * len(header))
    for table in tables:
        cells = " ".join(
            f"{results[e][s]['files_after_full'].get(table, {}).get('files', 0):>11,}" for e, s in columns
        )
        print(f"{table:<32} {cells}")


FIGURES = (
    ("no_change_over_warm_full", "no-change rerun / warm full run", "{:.3f}"),
    ("no_change_slowest_step_s", "  slowest step with nothing to do, s", "{:.2f}"),
    ("increment_over_warm_full", "1 % increment / warm full run", "{:.3f}"),
    ("increment_commit_floor_over_warm_full", "  its commits one after another", "{:.3f}"),
    ("orders_over_plain", "orders path / plain Spark", "{:.2f}"),
    ("watched_over_bare", "gates + observers / bare run", "{:.2f}"),
    ("watched_over_bare_fastest_steps", "  step times at fastest, 1 at once", "{:.2f}"),
)


def scale_ratios(by_scale: dict[float, dict]) -> dict | None:
    """The largest scale's cold full run over the smallest's, of the scales that ran."""
    ran = {s: r for s, r in by_scale.items() if "failed" not in r}
    if len(ran) < 2:
        return None
    small, large = ran[min(ran)], ran[max(ran)]
    return {
        "scales": [min(ran), max(ran)],
        "data": large["landing_records"] / small["landing_records"],
        "time": large["figures"]["cold_full_s"] / small["figures"]["cold_full_s"],
        "peak_memory": large["figures"]["cold_full_peak_mb"] / small["figures"]["cold_full_peak_mb"],
    }


def print_figures(results: dict[str, dict[float, dict]]) -> dict:
    print("\n2. issue 11's figures (ratios within one run)")
    columns = [(e, s) for e, by_scale in results.items() for s in by_scale]
    header = f"{'figure':<38} " + " ".join(f"{f'{e[6:]} {s}':>11}" for e, s in columns)
    print(header)
    print("-" * len(header))
    for key, label, fmt in FIGURES:
        cells = []
        for e, s in columns:
            r = results[e][s]
            value = r.get("figures", {}).get(key)  # a --cold-only scale has the cold run's only
            cells.append(f"{'-' if value is None else fmt.format(value):>11}")
        print(f"{label:<38} {' '.join(cells)}")
    across = {engine: scale_ratios(by_scale) for engine, by_scale in results.items()}
    for engine, ratio in across.items():
        if ratio is None:
            print(f"{engine}: fewer than two scales ran, no scale ratio")
            continue
        lo, hi = ratio["scales"]
        print(
            f"{engine}: cold full run, scale {hi} / scale {lo}: time {ratio['time']:.2f}x, peak memory "
            f"{ratio['peak_memory']:.2f}x, for {ratio['data']:.2f}x the records"
        )
    return across


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 3.0, 10.0])
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--only", nargs="+", metavar="STEP", help="passed to bench_pipeline.py (a smaller DAG)"
    )
    parser.add_argument(
        "--cold-only",
        type=float,
        nargs="+",
        default=[],
        metavar="SCALE",
        help="scales (also in --scales) run for the cold full run only: time, peak memory, files",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="take a scale's results from bench/results when an earlier run left them (a sweep in parts)",
    )
    args = parser.parse_args()
    scales = sorted(set(args.scales) | set(args.cold_only))
    results = {
        engine: {
            scale: run_one(scale, engine, args.seed, args.only, scale in args.cold_only, args.reuse)
            for scale in scales
        }
        for engine in args.engines
    }
    print_runs(results)
    across = print_figures(results)
    path = write_results(
        "sweep.json",
        {
            "scales": scales,
            "figures": {e: {str(s): r.get("figures", r) for s, r in by.items()} for e, by in results.items()},
            "scale_ratios": across,
        },
    )
    print(f"\nfigures in {path}")
    # A refusal is delta-rs working as documented; any other failure fails the sweep.
    failed = [
        r["failed"] for by in results.values() for r in by.values() if r.get("failed", REFUSED) != REFUSED
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
