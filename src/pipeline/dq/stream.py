"""The streaming job's gate: each micro-batch is judged inside foreachBatch, before it is written.

The contract of the silver dataset the stream feeds is compiled onto the micro-batch (the same
rules silver applies, `silver.conform`); the rules' verdicts are held beside the batch (narrow:
the rules each row breaks and what the conflict rule compares) and counted in the aggregate the
sink already runs. The batch itself is written as it came. The results (quarantine ratio of the
batch, share of each rule) are recorded per micro-batch (`dq.record`): in a run, spooled and
written to `<lake>/_ops/dq_results` with the run's other gates when it ends; in a `--trigger
continuous` stream, which does not end, written after each micro-batch.

A `critical` failure raises `MicroBatchRefused` before the batch is written: the query stops,
the checkpoint does not advance, and a restart judges the same batch again. Nothing is lost
(the records stay in Kafka, or in the replay files) and nothing bad reaches bronze. Gating
before the write matters: a batch already committed would be skipped as replayed on restart,
so a gate after the write could stop the query only once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Row

from pipeline.contracts.model import Contract
from pipeline.dq.gate import (
    CONFIG_FILE,
    ENV_SWITCH,
    DqGateFailed,
    DqResult,
    dq_config,
    dq_enabled,
    row_level_results,
)
from pipeline.dq.record import flush, record
from pipeline.silver.conform import flag_conflicts, rule_count_aggregates, rule_counts, rule_verdicts

log = logging.getLogger(__name__)


class MicroBatchRefused(DqGateFailed):
    """A micro-batch broke a critical rule; it was not written and the query stopped before it."""

    def __init__(self, gate: MicroBatchGate, batch_id: int, failed: list[DqResult], results: list[DqResult]):
        super().__init__(gate.step, gate.dataset, failed, results)
        self.batch_id = batch_id
        self.args = (  # what happened first: a one-line summary keeps it when it clips the rest
            f"micro-batch {batch_id} was not written and the query stopped before it: {self.args[0]}. "
            "A restart judges the same batch again. Fix the upstream records, or accept the "
            f"batch: raise silver.{gate.contract.name}.quarantine_ratio in "
            f"{CONFIG_FILE} or run once with {ENV_SWITCH}=off",
        )


@dataclass
class MicroBatchGate:
    """Judges micro-batches of bronze `dataset` against the contract of the silver dataset it
    feeds. One per query run; `summary()` is what the step reports in details["dq"]."""

    ctx: Any
    step: str
    dataset: str
    contract: Contract
    references: dict[str, tuple[str, ...]]
    flush_each: bool = False  # a continuous stream: dq_results gets each micro-batch's results
    seconds: float = 0.0
    judged: int = 0
    _worst: dict[str, DqResult] = field(default_factory=dict)  # per rule, the worst batch's result
    _totals: dict[str, Any] = field(default_factory=lambda: {"rows": 0, "quarantined": 0, "rules": {}})

    @classmethod
    def for_stream(
        cls, ctx: Any, step: str, dataset: str, trigger: str = "available-now"
    ) -> MicroBatchGate | None:
        """The gate of a bronze stream (its `trigger`: the query's), or None when the gates are
        off or no contract reads it."""
        if not dq_enabled(ctx):
            return None
        readers = sorted((c for c in ctx.contracts.values() if c.source == dataset), key=lambda c: c.name)
        if not readers:
            log.info("dq: no contract reads bronze %s; its micro-batches are not gated", dataset)
            return None
        contract = readers[0]
        return cls(ctx, step, dataset, contract, ctx.references(contract), flush_each=trigger == "continuous")

    def measure(self, batch: DataFrame, aggregates: list[Column], reading: tuple[str, ...]) -> Row:
        """`aggregates` (of `batch`'s columns `reading`) over the persisted `batch` and the rule
        counts of its conformed rows, the conflict rule included (`rule_count_aggregates`), in
        one row. The rules' verdicts are held beside the batch while counted (`rule_verdicts`:
        the columns read, each row's broken rules, what the conflict rule compares), not every
        typed value: the batch is written as it is."""
        verdicts = rule_verdicts(batch, self.contract, self.references, reading)
        verdicts = verdicts.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            measured = flag_conflicts(verdicts, self.contract)
            return measured.agg(*aggregates, *rule_count_aggregates(self.contract)).first()
        finally:
            verdicts.unpersist()

    def judge(self, batch_id: int, totals: Row) -> list[DqResult]:
        """Record the batch's results; raise MicroBatchRefused on a critical failure."""
        start = time.monotonic()
        config = dq_config(self.ctx)
        counts = rule_counts(totals, self.contract)
        results = [
            replace(r, observed=f"{r.observed} in micro-batch {batch_id}")
            for r in row_level_results(config, config.silver_rules(self.contract.name), counts)
        ]
        record(self.ctx, self.step, self.dataset, "bronze", results)
        if self.flush_each:
            flush(self.ctx, leftovers=False)  # under its table's lease, not the lake's
        self.judged += 1
        for r in results:
            self._worst[r.rule] = _worse(self._worst.get(r.rule), r)
        self._totals["rows"] += counts["rows"]
        self._totals["quarantined"] += counts["quarantined"]
        for rule, n in counts["rules"].items():
            self._totals["rules"][rule] = self._totals["rules"].get(rule, 0) + n
        self.seconds += time.monotonic() - start
        failed = [r for r in results if not r.passed and r.severity == "critical"]
        for r in results:
            if not r.passed and r.severity == "warn":
                log.warning("dq warn %s micro-batch %d: %s %s", self.dataset, batch_id, r.rule, r.observed)
        if failed:
            refused = MicroBatchRefused(self, batch_id, failed, results)
            refused.details = self.details()
            raise refused
        return results

    def summary(self) -> list[DqResult]:
        """Per rule: the failing micro-batch's result when one failed (critical before warn),
        else the ratio over all of this run's micro-batches."""
        if not self.judged:
            return []
        config = dq_config(self.ctx)
        overall = {
            r.rule: replace(r, observed=f"{r.observed} over {self.judged} micro-batch(es)")
            for r in row_level_results(config, config.silver_rules(self.contract.name), self._totals)
        }
        return [
            self._worst[rule] if not self._worst[rule].passed else overall.get(rule, self._worst[rule])
            for rule in sorted(self._worst)
        ]

    def details(self) -> dict[str, Any]:
        """What the step adds to StepResult.details."""
        return {
            "dq": [r.detail() for r in self.summary()],
            "dq_seconds": round(self.seconds, 3),
            "dq_micro_batches": self.judged,
        }


def _rank(r: DqResult) -> int:
    return 0 if r.passed else (2 if r.severity == "critical" else 1)


def _worse(current: DqResult | None, new: DqResult) -> DqResult:
    return new if current is None or _rank(new) > _rank(current) else current
