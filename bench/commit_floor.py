"""Section 4's floor: what the increment's commits cost at the least a commit can cost.

An increment's steps each end in commits (bronze appends, silver merges, quarantine and `_ops`
appends, gold writes), and a commit of one row costs the lake engine its fixed work: the log read,
the snapshot, for a MERGE the scan for matches and the rewrite, the commit. Measured here on a
scratch table in the same process (median of COMMIT_REPEATS, after one unmeasured commit of each
kind) and multiplied by the commits the increment made (by operation, from the tables' logs): the
share of the warm full run that no step's own work can go below on this engine and machine.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from pathlib import Path

from pipeline.context import RunContext
from pipeline.lake import MergeSpec
from pipeline.maintenance import LakeTable, lake_tables

COMMIT_REPEATS = 5
SCRATCH_ROWS = 1_000  # the scratch table's size: a small silver table's order of magnitude
MERGES = frozenset({"MERGE"})  # every other operation is costed as an append


def table_versions(ctx: RunContext) -> dict[LakeTable, int | None]:
    """The current version of every table the pipeline writes (None: not created yet)."""
    return {t: ctx.lake.version(t.path) for t in lake_tables(ctx)}


def commits_since(ctx: RunContext, before: dict[LakeTable, int | None]) -> Counter:
    """The commits made since `before` (table_versions), counted by (operation, layer)."""
    found: Counter = Counter()
    for table, then in before.items():
        now = ctx.lake.version(table.path)
        if now is None or now == then:
            continue
        last = -1 if then is None else then
        commits = ctx.lake.history(table.path, now - last)
        found.update((c.operation, table.layer) for c in commits if c.version > last)
    return found


def one_row_commit_s(ctx: RunContext, work: Path) -> dict[str, float]:
    """Median seconds of one commit of one row into a table of SCRATCH_ROWS rows: an append and
    a MERGE by key that updates one row."""
    path = str(work / "commit_floor")
    spark = ctx.spark
    ctx.lake.overwrite(path, spark.range(SCRATCH_ROWS).selectExpr("id", "CAST(id AS STRING) AS v"))

    def append(i: int) -> None:
        ctx.lake.append(path, spark.createDataFrame([(SCRATCH_ROWS + i, f"new {i}")], "id long, v string"))

    def merge(i: int) -> None:
        row = spark.createDataFrame([(i, f"updated {i}")], "id long, v string")
        ctx.lake.merge(path, row, MergeSpec(keys=("id",)))

    figures = {}
    for name, commit in (("append", append), ("merge", merge)):
        commit(-1)  # not measured: the first of its kind compiles its plans
        seconds = []
        for i in range(COMMIT_REPEATS):
            started = time.perf_counter()
            commit(i)
            seconds.append(time.perf_counter() - started)
        figures[f"{name}_s"] = statistics.median(seconds)
    return figures


def floor_figures(commits: Counter, cost: dict[str, float], warm_full_s: float) -> dict:
    """The increment's commits at one row's cost each, and that over the warm full run."""
    merges = sum(n for (op, _), n in commits.items() if op in MERGES)
    others = sum(commits.values()) - merges
    floor_s = merges * cost["merge_s"] + others * cost["append_s"]
    by_operation: dict[str, dict[str, int]] = {}
    for (op, layer), n in sorted(commits.items()):
        by_operation.setdefault(op, {})[layer] = n
    return {
        "commits": by_operation,
        "one_row_append_s": cost["append_s"],
        "one_row_merge_s": cost["merge_s"],
        "floor_s": floor_s,
        "floor_over_warm_full": floor_s / warm_full_s,
    }


def print_floor(f: dict) -> None:
    ops = "; ".join(
        f"{op} {sum(layers.values())} ({', '.join(f'{layer} {n}' for layer, n in layers.items())})"
        for op, layers in f["commits"].items()
    )
    total = sum(n for layers in f["commits"].values() for n in layers.values())
    print(
        f"   its commits: {total}: {ops}. One commit of one row on this engine "
        f"(median of {COMMIT_REPEATS}, a {SCRATCH_ROWS:,}-row table): append {f['one_row_append_s']:.2f}s, "
        f"merge {f['one_row_merge_s']:.2f}s; so the commits alone take at least {f['floor_s']:.1f}s, "
        f"{f['floor_over_warm_full']:.3f} of the warm full run"
    )
