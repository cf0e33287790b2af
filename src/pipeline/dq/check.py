"""The DQ gate as the driver's check (`driver.edge.Check`): a staged publish is judged by
`gate.gate_step`, an unchanged table by its last recorded verdict (`gate.recheck`); at the run's
end the results the gates spooled go to dq_results in one commit (`record.flush`)."""

from __future__ import annotations

from typing import Any

from pipeline.dq.gate import dq_enabled, gate_step, recheck
from pipeline.dq.record import flush
from pipeline.step_result import Staged


class DqCheck:
    def judge(self, ctx: Any, step: str, staged: Staged) -> dict[str, Any]:
        if not dq_enabled(ctx):  # LAKEHOUSE_DQ=off: nor is the table's after-figure derived
            return {}
        # The table's figures are derived inside the gate, beside its GX validation.
        return gate_step(ctx, step, staged.dataset, staged.layer, staged.audit, staged.counts, staged.table)

    def stands(self, ctx: Any, step: str, dataset: str, layer: str) -> dict[str, Any]:
        return recheck(ctx, step, dataset, layer)

    def close_run(self, ctx: Any) -> None:
        # Other runs' leftovers only under the lake's lease: a continuous stream holds its table's.
        flush(ctx, leftovers=getattr(ctx, "stream_trigger", None) != "continuous")


DQ_CHECK = DqCheck()
