"""Section 4's floor: what the increment's commits cost at the least a commit can cost.

An increment's steps each end in commits (bronze appends, silver merges, quarantine and `_ops`
appends, gold writes), and a commit of one row costs the lake engine its fixed work: the log read,
the snapshot, for a MERGE the scan for matches and the rewrite, the commit. Measured here on a
scratch table in the same process (median of COMMIT_REPEATS, after one unmeasured commit of each
kind) and multiplied by the commits the increment made (by operation, from the tables' logs): the
share of the warm full run that no step's own work can go below on this engine and machine, with
the steps one at a time (steps side by side, `spark.parallel_steps`, overlap their commits too).

A commit that carries a Txn (bronze's file batches and micro-batches, silver, quarantine, the
ledger) is costed as one: delta-spark checks a Txn against the snapshot's whole reconstructed
state (`OptimisticTransaction.txnVersion` -> `Snapshot.transactions`, Spark jobs over the log),
which a commit without one never builds (docs/performance.md).
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections import Counter
from pathlib import Path

from pipeline.context import RunContext
from pipeline.lake import MergeSpec, Txn
from pipeline.maintenance import LakeTable, lake_tables

COMMIT_REPEATS = 5
SCRATCH_ROWS = 1_000  # the scratch table's size: a small silver table's order of magnitude
MERGES = frozenset({"MERGE"})  # every other operation is costed as an append


def table_versions(ctx: RunContext) -> dict[LakeTable, int | None]:
    """The current version of every table the pipeline writes (None: not created yet)."""
    return {t: ctx.lake.version(t.path) for t in lake_tables(ctx)}


def carries_txn(path: str, version: int) -> bool:
    """Whether commit `version` of the (local) table at `path` sets a Txn: a `txn` action in its
    commit file, which both engines write the same way."""
    text = (Path(path) / "_delta_log" / f"{version:020d}.json").read_text(encoding="utf-8")
    return any(line.startswith('{"txn"') for line in text.splitlines())


def commits_since(ctx: RunContext, before: dict[LakeTable, int | None]) -> Counter:
    """The commits made since `before` (table_versions), counted by (operation, layer, whether
    the commit carries a Txn)."""
    found: Counter = Counter()
    for table, then in before.items():
        now = ctx.lake.version(table.path)
        if now is None or now == then:
            continue
        last = -1 if then is None else then
        commits = ctx.lake.history(table.path, now - last)
        found.update(
            (c.operation, table.layer, carries_txn(table.path, c.version))
            for c in commits
            if c.version > last
        )
    return found


def one_row_commit_s(ctx: RunContext, work: Path) -> dict[str, float]:
    """Median seconds of one commit of one row into a table of SCRATCH_ROWS rows: an append and
    a MERGE by key that updates one row, each without and with a Txn (a new version each time,
    as a step's next batch)."""
    path = str(work / "commit_floor")
    shutil.rmtree(path, ignore_errors=True)  # a new table: no Txn of an earlier run in its log
    spark = ctx.spark
    ctx.lake.overwrite(path, spark.range(SCRATCH_ROWS).selectExpr("id", "CAST(id AS STRING) AS v"))
    txns = iter(range(1, 4 * (COMMIT_REPEATS + 1) + 1))

    def txn(with_txn: bool) -> Txn | None:
        return Txn("commit-floor", next(txns)) if with_txn else None

    def append(i: int, with_txn: bool) -> None:
        row = spark.createDataFrame([(SCRATCH_ROWS + i, f"new {i}")], "id long, v string")
        ctx.lake.append(path, row, txn=txn(with_txn))

    def merge(i: int, with_txn: bool) -> None:
        row = spark.createDataFrame([(i, f"updated {i}")], "id long, v string")
        ctx.lake.merge(path, row, MergeSpec(keys=("id",)), txn=txn(with_txn))

    figures = {}
    for name, commit in (("append", append), ("merge", merge)):
        for with_txn in (False, True):
            commit(-1, with_txn)  # not measured: the first of its kind compiles its plans
            seconds = []
            for i in range(COMMIT_REPEATS):
                started = time.perf_counter()
                commit(i, with_txn)
                seconds.append(time.perf_counter() - started)
            figures[f"{name}{'_txn' if with_txn else ''}_s"] = statistics.median(seconds)
    return figures


def floor_figures(commits: Counter, cost: dict[str, float], warm_full_s: float) -> dict:
    """The increment's commits at one row's cost each (with a Txn's where they carry one), and
    that over the warm full run."""
    floor_s = 0.0
    by_operation: dict[str, dict[str, int]] = {}
    with_txn: Counter = Counter()
    for (op, layer, txn), n in sorted(commits.items()):
        kind = "merge" if op in MERGES else "append"
        floor_s += n * cost[f"{kind}{'_txn' if txn else ''}_s"]
        by_operation.setdefault(op, {})
        by_operation[op][layer] = by_operation[op].get(layer, 0) + n
        if txn:
            with_txn[op] += n
    return {
        "commits": by_operation,
        "commits_with_txn": dict(with_txn),
        "one_row_append_s": cost["append_s"],
        "one_row_merge_s": cost["merge_s"],
        "one_row_append_txn_s": cost["append_txn_s"],
        "one_row_merge_txn_s": cost["merge_txn_s"],
        "floor_s": floor_s,
        "floor_over_warm_full": floor_s / warm_full_s,
    }


def print_floor(f: dict) -> None:
    ops = "; ".join(
        f"{op} {sum(layers.values())} ({', '.join(f'{layer} {n}' for layer, n in layers.items())})"
        for op, layers in f["commits"].items()
    )
    total = sum(n for layers in f["commits"].values() for n in layers.values())
    txn = sum(f["commits_with_txn"].values())
    print(
        f"   its commits: {total}: {ops}; {txn} carry a Txn. One commit of one row on this engine "
        f"(median of {COMMIT_REPEATS}, a {SCRATCH_ROWS:,}-row table): append {f['one_row_append_s']:.2f}s "
        f"({f['one_row_append_txn_s']:.2f}s with a Txn), merge {f['one_row_merge_s']:.2f}s "
        f"({f['one_row_merge_txn_s']:.2f}s); so the commits alone, one after another, take {f['floor_s']:.1f}s, "
        f"{f['floor_over_warm_full']:.3f} of the warm full run"
    )
