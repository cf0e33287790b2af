"""What a job hands back to the driver's edge (`driver.edge`).

A step is read -> pure transform -> check -> write -> observe. The job does the reading and
the transform; it returns either
- a `StepResult`: the step is done (bronze landed its files; silver had nothing new), or
- a `Staged` publish: what the step would write, the frame the check judges, and how to write
  it. The edge checks it and publishes only when the check passes (write, audit, publish), or
- `Unchanged`: nothing to write, the table the last check judged stands; the edge repeats that
  verdict, so a rerun after a refused publish fails again instead of letting downstream read on.
The check itself (the DQ gate) and the observers belong to the driver, never to a job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class StepResult:
    rows_in: int = 0
    rows_out: int = 0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TableAfter:
    """The table as a batch's publish will leave it, derived before the commit (a check of a
    batch judges table-level rules on these, never by reading the table)."""

    rows: int  # rows after the publish: rows before + rows the merge inserts - rows it deletes
    newest: datetime | str | None = None  # newest data time after the publish (freshness)
    # The table as the publish will leave it, unevaluated: a check computes from it only the
    # figures neither the batch nor `rows` answer (gold `counts` conditions). None: not offered.
    frame: Any = field(default=None, compare=False)


def _nothing() -> None:
    return None


# Staged.counts' key for the rows of `audit`, where the job counted that very frame already: the
# check then takes them instead of counting the frame again (one Spark query less a step).
AUDIT_ROWS = "audit_rows"


@dataclass
class Staged:
    """A publish waiting for its check. `audit` (a DataFrame) is what the check judges: the batch
    a merge adds (then `table` derives the table's figures after it, called only by a check that
    needs them) or the whole table an overwrite leaves (`table` None). `counts`: row-level rule
    counts the job took in its own pass ({"rows", "quarantined", "rules"}), and `audit`'s rows
    under AUDIT_ROWS where the job counted them. `publish` writes and
    returns the step's result; `release` frees what the job cached, whatever happened."""

    dataset: str
    layer: str
    audit: Any
    publish: Callable[[], StepResult]
    counts: dict[str, Any] | None = None
    table: Callable[[], TableAfter] | None = None
    release: Callable[[], None] = _nothing


@dataclass
class Unchanged:
    """Nothing to write: `dataset`'s table in `layer` is the one the last check judged."""

    dataset: str
    layer: str
    result: StepResult


JobOutput = StepResult | Staged | Unchanged
